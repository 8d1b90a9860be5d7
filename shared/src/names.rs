//! The names everything else is keyed by: account IDs (which are also registry namespaces)
//! and repository names, in the distribution grammar, validated and rejected, never
//! normalised.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest account ID accepted; it becomes the first registry path component.
pub const MAX_ACCOUNT_ID_LEN: usize = 64;
/// An account ID, which is also the account's registry namespace.
///
/// Grammar: one distribution path component, `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`,
/// at most [`MAX_ACCOUNT_ID_LEN`] characters. Rejected, never normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

/// Why a string is not an [`AccountId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountIdError {
    #[error("account id is empty")]
    Empty,
    #[error("account id is longer than {MAX_ACCOUNT_ID_LEN} characters")]
    TooLong,
    /// Not one registry path component.
    #[error("account id must be lowercase letters and digits, separated by '.', '_', '__' or '-'")]
    Grammar,
}

impl AccountId {
    /// Validates `value` as an account ID.
    pub fn parse(value: &str) -> Result<Self, AccountIdError> {
        if value.is_empty() {
            return Err(AccountIdError::Empty);
        }
        if value.len() > MAX_ACCOUNT_ID_LEN {
            return Err(AccountIdError::TooLong);
        }
        if !is_path_component(value) {
            return Err(AccountIdError::Grammar);
        }
        Ok(Self(value.to_owned()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Distribution's path-component grammar: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
pub fn is_path_component(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while bytes.get(i).is_some_and(|&b| alnum(b)) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        match bytes.get(i) {
            Some(b'.') => i += 1,
            Some(b'_') => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            Some(b'-') => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        debug_assert!(i > sep_start);
    }
}

/// Longest name of anything a caller names: packages, services, applications, groups,
/// deployments, hosts, template identifiers.
pub const MAX_NAME_LEN: usize = 128;

/// Longest repository name distribution accepts.
pub const MAX_REPOSITORY_NAME: usize = 255;

/// A repository name such as `acme/app` or `acme/team/app`: path components of
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by single `/`, at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RepositoryName(String);

/// Why a string is not a repository name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryNameError {
    #[error("repository name is empty")]
    Empty,
    /// Over [`MAX_REPOSITORY_NAME`].
    #[error("repository name is longer than {MAX_REPOSITORY_NAME} characters")]
    TooLong,
    /// A component breaks the grammar (uppercase, `..`, `//`, `%2F`, a leading separator...).
    #[error(
        "repository name must be lowercase path components ([a-z0-9] separated by '.', '_', '__' or '-') joined by '/'"
    )]
    Grammar,
}

impl RepositoryName {
    /// Validates `value`.
    pub fn parse(value: &str) -> Result<Self, RepositoryNameError> {
        if value.is_empty() {
            return Err(RepositoryNameError::Empty);
        }
        if value.len() > MAX_REPOSITORY_NAME {
            return Err(RepositoryNameError::TooLong);
        }
        if !value.split('/').all(is_path_component) {
            return Err(RepositoryNameError::Grammar);
        }
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the repository lies in `namespace`: strictly below it (`acme/app` is in `acme`;
    /// `acme12/app` is not). A repository named exactly like the namespace (`acme`) is in no
    /// namespace: as in ACR, a namespace holds repositories and is not one, so every entry
    /// point refuses it (`repository_is_namespace`).
    pub fn is_in(&self, namespace: &AccountId) -> bool {
        self.relative_to(namespace).is_some()
    }

    /// The name below `namespace` (`app` for `acme/app` in `acme`), if it lies there.
    pub fn relative_to(&self, namespace: &AccountId) -> Option<&str> {
        self.0.strip_prefix(namespace.as_str())?.strip_prefix('/').filter(|rest| !rest.is_empty())
    }

    /// Whether the name is the namespace itself, which no entry point accepts.
    pub fn is_namespace_root(&self, namespace: &AccountId) -> bool {
        self.0 == namespace.as_str()
    }

    /// `namespace/relative`, validated as a whole.
    pub fn within(namespace: &AccountId, relative: &str) -> Result<Self, RepositoryNameError> {
        Self::parse(&format!("{namespace}/{relative}"))
    }
}

impl<'de> Deserialize<'de> for RepositoryName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_grammar() {
        for ok in ["a", "acme", "1234567890", "a.b", "a_b", "a__b", "a-b", "a---b"] {
            assert!(AccountId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a/b", "a..b", "-a", "a-", "a___b", "a b", "..", "%2F", "a_", "ä"] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AccountId::parse(&"a".repeat(65)), Err(AccountIdError::TooLong));
    }

    #[test]
    fn grammar() {
        for ok in ["a", "acme/app", "acme/team/app-1", "a.b/c__d/e---f", "1234/x"] {
            assert!(RepositoryName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Acme/app",
            "acme//app",
            "acme/../x",
            "acme/%2Fx",
            "acme%2Fapp",
            "/acme",
            "acme/",
            "acme/app:tag",
            "acme/.x",
            "acme/x.",
            "acme/x_",
            "acme/ x",
            "acme\\app",
            "acme/app\n",
            "acme/ａpp",
        ] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(RepositoryName::parse(&"a".repeat(256)), Err(RepositoryNameError::TooLong));
        assert!(RepositoryName::parse(&format!("{}/{}", "a".repeat(127), "b".repeat(127))).is_ok());
    }

    #[test]
    fn namespace_match_is_exact_or_below() {
        let ns = AccountId::parse("acme").unwrap();
        let name = |s: &str| RepositoryName::parse(s).unwrap();
        assert!(!name("acme").is_in(&ns), "the namespace is not a repository in it");
        assert!(name("acme").is_namespace_root(&ns));
        assert_eq!(name("acme").relative_to(&ns), None);
        assert_eq!(name("acme/app").relative_to(&ns), Some("app"));
        assert_eq!(name("acme/a/b").relative_to(&ns), Some("a/b"));
        assert!(name("acme/app").is_in(&ns));
        assert!(name("acme/a/b").is_in(&ns));
        assert!(!name("acme12/app").is_in(&ns));
        assert!(!name("acmeapp").is_in(&ns));
        assert!(!name("other/acme").is_in(&ns));
        assert!(!name("acm").is_in(&ns));
    }
}
