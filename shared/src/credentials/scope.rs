//! Registry token scopes (`repository:acme/app:pull,push`) and what a temporary key grants
//! for them. Pure functions: parse, then grant.

use serde::{Deserialize, Serialize};

use crate::credentials::temporary_key::{KeyGrant, KeyPurpose};
use crate::names::RepositoryName;

/// Most scopes accepted in one token request.
pub const MAX_SCOPES: usize = 64;
/// Longest single scope string.
pub const MAX_SCOPE_LEN: usize = 512;

/// One access entry of a registry token: what may be done to which resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Resource type, e.g. `repository`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name, e.g. `acme/app`.
    pub name: String,
    /// Granted actions; empty when nothing is granted.
    pub actions: Vec<String>,
}

/// A requested scope, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Resource type.
    pub kind: String,
    /// Resource name as requested.
    pub name: String,
    /// Requested actions.
    pub actions: Vec<String>,
}

/// Why a scope string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// More than [`MAX_SCOPES`].
    #[error("more than {MAX_SCOPES} scopes")]
    TooMany,
    /// Longer than [`MAX_SCOPE_LEN`].
    #[error("a scope is longer than {MAX_SCOPE_LEN} characters")]
    TooLong,
    /// Not `type:name:actions`, or a part is malformed.
    #[error("scope '{0}' is not type:name:actions with a valid name")]
    Malformed(String),
}

/// Parses the `scope` query values (each may hold several scopes separated by spaces).
pub fn parse_scopes<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, ScopeError> {
    let mut scopes = Vec::new();
    for value in values {
        for raw in value.split(' ').filter(|s| !s.is_empty()) {
            if scopes.len() == MAX_SCOPES {
                return Err(ScopeError::TooMany);
            }
            scopes.push(parse_scope(raw)?);
        }
    }
    Ok(scopes)
}

fn parse_scope(raw: &str) -> Result<Scope, ScopeError> {
    if raw.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong);
    }
    let malformed = || ScopeError::Malformed(printable(raw));
    let (kind, rest) = raw.split_once(':').ok_or_else(malformed)?;
    let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
    // Types are a lowercase word with an optional (class): `repository`, `repository(plugin)`, `registry`.
    let kind_ok = {
        let (word, class) = match kind.split_once('(') {
            Some((word, class)) => (word, class.strip_suffix(')').ok_or_else(malformed)?),
            None => (kind, "a"),
        };
        !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_lowercase())
            && !class.is_empty()
            && class.bytes().all(|b| b.is_ascii_lowercase())
    };
    if !kind_ok {
        return Err(malformed());
    }
    let name_ok = match kind {
        "repository" => RepositoryName::parse(name).is_ok(),
        _ => {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/._-*".contains(&b))
        }
    };
    let actions: Vec<String> =
        if actions.is_empty() { Vec::new() } else { actions.split(',').map(str::to_owned).collect() };
    let actions_ok = actions.iter().all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'*'));
    if !name_ok || !actions_ok {
        return Err(malformed());
    }
    Ok(Scope { kind: kind.to_owned(), name: name.to_owned(), actions })
}

/// Control characters and non-ASCII shown escaped, so a hostile scope cannot forge log or
/// error text.
fn printable(raw: &str) -> String {
    raw.chars()
        .take(80)
        .flat_map(|c| if c.is_ascii_graphic() { vec![c] } else { c.escape_default().collect() })
        .collect()
}

/// The first repository scope naming the key's namespace itself (`repository:acme:pull` for
/// `acme`): refused with a 400 rather than silently granted nothing, as at every other entry
/// point, because no repository may be named like its namespace.
pub fn namespace_root<'a>(key: &KeyGrant, scopes: &'a [Scope]) -> Option<&'a Scope> {
    scopes.iter().find(|scope| scope.kind == "repository" && scope.name == key.sub.as_str())
}

/// What `grant` allows for each requested scope. Every scope gets an entry; scopes outside
/// the key's namespace (or repository list), other resource types and `registry:catalog:*`
/// get no actions.
pub fn grant(key: &KeyGrant, scopes: &[Scope]) -> Vec<Access> {
    scopes
        .iter()
        .map(|scope| {
            let allowed = actions(key.purpose);
            let in_reach =
                scope.kind == "repository" && RepositoryName::parse(&scope.name).is_ok_and(|name| key.reaches(&name));
            let mut actions: Vec<String> = if in_reach {
                allowed.iter().filter(|a| scope.actions.iter().any(|r| r == *a)).map(|a| (*a).to_owned()).collect()
            } else {
                Vec::new()
            };
            actions.dedup();
            Access { kind: scope.kind.clone(), name: scope.name.clone(), actions }
        })
        .collect()
}

/// Registry actions a key's purpose allows.
fn actions(purpose: KeyPurpose) -> &'static [&'static str] {
    match purpose {
        KeyPurpose::Push => &["pull", "push"],
        KeyPurpose::Pull => &["pull"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::temporary_key::KEY_AUDIENCE;
    use crate::names::AccountId;

    fn key(purpose: KeyPurpose, repositories: Option<Vec<&str>>) -> KeyGrant {
        KeyGrant {
            sub: AccountId::parse("acme").unwrap(),
            aud: KEY_AUDIENCE.into(),
            purpose,
            repositories: repositories.map(|l| l.into_iter().map(|r| RepositoryName::parse(r).unwrap()).collect()),
            iat: 0,
            exp: u64::MAX,
            jti: "k".into(),
            instance: None,
        }
    }

    #[test]
    fn the_namespace_itself_is_never_granted_and_is_named() {
        let key = key(KeyPurpose::Push, None);
        assert!(granted(&key, "repository:acme:pull,push").is_empty());
        let scopes = parse_scopes(["repository:acme/app:pull repository:acme:pull"]).unwrap();
        assert_eq!(namespace_root(&key, &scopes).map(|s| s.name.as_str()), Some("acme"));
        assert!(namespace_root(&key, &parse_scopes(["repository:acmex:pull"]).unwrap()).is_none());
    }

    fn granted(key: &KeyGrant, scope: &str) -> Vec<String> {
        grant(key, &parse_scopes([scope]).unwrap())[0].actions.clone()
    }

    #[test]
    fn parses_types_names_and_actions() {
        let scopes =
            parse_scopes(["repository:acme/app:pull,push registry:catalog:*", "repository(plugin):acme/x:pull"])
                .unwrap();
        assert_eq!(scopes.len(), 3);
        assert_eq!(
            scopes[0],
            Scope { kind: "repository".into(), name: "acme/app".into(), actions: vec!["pull".into(), "push".into()] }
        );
        assert_eq!(scopes[1].kind, "registry");
        assert_eq!(scopes[2].kind, "repository(plugin)");
        assert_eq!(parse_scopes(["repository:acme/app:"]).unwrap()[0].actions, Vec::<String>::new());
    }

    #[test]
    fn refuses_malformed_scopes() {
        for bad in [
            "repository",
            "repository:acme/app",
            "repository:acme/app:pull:push",
            "repository:ACME/app:pull",
            "repository:acme//app:pull",
            "repository:../x:pull",
            "repository:acme%2Fapp:pull",
            ":acme/app:pull",
            "repository(:acme:pull",
            "Repository:acme/app:pull",
            "repository:acme/app:pull,,push",
            "repository:acme/app:PULL",
        ] {
            assert!(parse_scopes([bad]).is_err(), "{bad:?}");
        }
        let many = vec!["repository:acme/app:pull"; MAX_SCOPES + 1].join(" ");
        assert_eq!(parse_scopes([many.as_str()]), Err(ScopeError::TooMany));
        let long = format!("repository:acme/{}:pull", "a".repeat(MAX_SCOPE_LEN));
        assert_eq!(parse_scopes([long.as_str()]), Err(ScopeError::TooLong));
    }

    #[test]
    fn grants_follow_namespace_purpose_and_list() {
        let push = key(KeyPurpose::Push, None);
        assert_eq!(granted(&push, "repository:acme/app:pull,push"), ["pull", "push"]);
        assert!(granted(&push, "repository:acme:push").is_empty(), "the namespace is not a repository");
        assert_eq!(granted(&push, "repository:acme/app:push,pull,*,delete"), ["pull", "push"]);
        assert!(granted(&push, "repository:acme12/app:pull,push").is_empty());
        assert!(granted(&push, "repository:bravo/acme:pull").is_empty());
        assert!(granted(&push, "registry:catalog:*").is_empty());
        assert!(granted(&push, "repository(plugin):acme/app:pull").is_empty());
        let pull = key(KeyPurpose::Pull, None);
        assert_eq!(granted(&pull, "repository:acme/app:pull,push"), ["pull"]);
        let listed = key(KeyPurpose::Pull, Some(vec!["acme/app"]));
        assert_eq!(granted(&listed, "repository:acme/app:pull"), ["pull"]);
        assert!(granted(&listed, "repository:acme/other:pull").is_empty());
    }
}
