//! Every kind of credential Berth hands out, and how each shows in text.
//!
//! The random kinds (join token, host token, instance credential) are a prefix that names the
//! kind and 32 random bytes (a host token then names its host's place, in the same URL-safe
//! base64); only their digest is ever stored. The signed kinds are JWTs
//! (`eyJ...`), told apart by their `typ` and audience. The log redaction
//! ([`redact`](super::secret::redact)) blanks every word with a prefix listed here and every
//! JWT; a test mints a token of each kind in [`TokenKind::ALL`] and checks that it is blanked,
//! so a kind the redaction would miss fails it.

/// A kind of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An account's bearer token for the API.
    AccountToken,
    /// A temporary key's password: a signed grant.
    TemporaryKey,
    /// What the registry token endpoint signs for the registry.
    RegistryToken,
    /// The signed part of a rendered file URL.
    DownloadToken,
    /// A group's join token: agents register with it.
    JoinToken,
    /// A host's own token, handed out at registration.
    HostToken,
    /// The password of an instance's long-lived pull credential.
    InstanceCredential,
}

/// How a kind's tokens look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A JWT signed by Berth.
    Signed,
    /// A random token of this kind.
    Random(RandomKind),
}

/// A kind of random bearer token: its prefix and 32 random bytes in URL-safe base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomKind {
    /// Names the kind: every token of the kind starts with it.
    pub prefix: &'static str,
}

/// A group's join token.
pub const JOIN_TOKEN: RandomKind = RandomKind { prefix: "bjt_" };
/// A host's own token.
pub const HOST_TOKEN: RandomKind = RandomKind { prefix: "bht_" };
/// An instance credential's password.
pub const INSTANCE_CREDENTIAL: RandomKind = RandomKind { prefix: "bic_" };

impl TokenKind {
    /// Every kind (the redaction test mints one of each).
    pub const ALL: [Self; 7] = [
        Self::AccountToken,
        Self::TemporaryKey,
        Self::RegistryToken,
        Self::DownloadToken,
        Self::JoinToken,
        Self::HostToken,
        Self::InstanceCredential,
    ];

    /// How its tokens look.
    pub const fn shape(self) -> Shape {
        match self {
            Self::AccountToken | Self::TemporaryKey | Self::RegistryToken | Self::DownloadToken => Shape::Signed,
            Self::JoinToken => Shape::Random(JOIN_TOKEN),
            Self::HostToken => Shape::Random(HOST_TOKEN),
            Self::InstanceCredential => Shape::Random(INSTANCE_CREDENTIAL),
        }
    }

    /// The prefix of its tokens, for a random kind.
    pub const fn prefix(self) -> Option<&'static str> {
        match self.shape() {
            Shape::Random(kind) => Some(kind.prefix),
            Shape::Signed => None,
        }
    }
}

impl RandomKind {
    /// A new token of this kind.
    pub fn mint(self) -> String {
        use base64::Engine as _;
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
        format!("{}{}", self.prefix, base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Whether `token` is of this kind by its prefix (not whether it is valid).
    pub fn marks(self, token: &str) -> bool {
        token.starts_with(self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_random_kinds_have_distinct_prefixes() {
        for (i, kind) in TokenKind::ALL.iter().enumerate() {
            assert!(!TokenKind::ALL[..i].contains(kind), "{kind:?} is listed twice");
        }
        let prefixes: Vec<&str> = TokenKind::ALL.iter().filter_map(|k| k.prefix()).collect();
        for (i, prefix) in prefixes.iter().enumerate() {
            assert!(prefixes.iter().skip(i + 1).all(|other| !other.starts_with(prefix) && !prefix.starts_with(other)));
        }
        let token = JOIN_TOKEN.mint();
        assert!(JOIN_TOKEN.marks(&token) && !HOST_TOKEN.marks(&token) && token.len() == 47, "{token}");
    }
}
