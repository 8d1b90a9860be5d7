//! Secrets and the redaction rule that keeps them out of logs.
//!
//! Two layers: [`Secret`] values print as `[redacted]` (Debug and Display), and every log line
//! passes through [`redact`] on its way out, which blanks JWTs, `Bearer`/`Basic` credentials,
//! Berth's random tokens by their prefix ([`TokenKind`]) and the value of any field whose name
//! says it is secret. A secret logged by mistake, even as part of a formatted string, does not
//! reach the log.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::platform::token_kind::TokenKind;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Field-name fragments that mark a value as secret.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "dockerconfigjson",
    "private_key",
    "credential",
    "auth",
];

/// Shortest random part of a random token that is blanked (real ones have 43 characters).
const MIN_TOKEN_SUFFIX: usize = 16;

/// Whether a word is a random token of one of Berth's kinds ([`TokenKind`]'s prefixes): such a
/// word is blanked wherever it appears in a log line.
fn is_random_token(word: &str) -> bool {
    TokenKind::ALL
        .iter()
        .filter_map(|kind| kind.prefix())
        .any(|p| word.starts_with(p) && word.len() >= p.len() + MIN_TOKEN_SUFFIX)
}

/// A value that must not be logged. Serialises as itself (it is sent to its owner), but
/// Debug and Display show [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The byte at `i`, or 0 past the end (no rule below matches 0).
fn byte_at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// `s` from `i` on; empty past the end.
fn tail(s: &[u8], i: usize) -> &[u8] {
    s.get(i..).unwrap_or_default()
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

fn is_credential_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=' | b':')
}

/// Length of a JWT (three base64url segments, the first starting `eyJ`) at `s[i..]`, if any.
fn jwt_at(s: &[u8], i: usize) -> Option<usize> {
    if !tail(s, i).starts_with(b"eyJ") || (i > 0 && is_token_byte(byte_at(s, i - 1))) {
        return None;
    }
    let mut j = i;
    for segment in 0..3 {
        let start = j;
        while j < s.len() && is_token_byte(byte_at(s, j)) {
            j += 1;
        }
        if segment < 2 {
            if j == start || j >= s.len() || byte_at(s, j) != b'.' {
                return None;
            }
            j += 1;
        }
    }
    Some(j - i)
}

/// Length of the credential after `Bearer ` / `Basic ` at `s[i..]`, and where it starts.
fn scheme_credential_at(s: &[u8], i: usize) -> Option<(usize, usize)> {
    for scheme in [&b"bearer "[..], &b"basic "[..]] {
        if s.len() >= i + scheme.len()
            && s.get(i..i + scheme.len()).unwrap_or_default().eq_ignore_ascii_case(scheme)
            && (i == 0 || !is_token_byte(byte_at(s, i - 1)))
        {
            let start = i + scheme.len();
            let mut j = start;
            while j < s.len() && is_credential_byte(byte_at(s, j)) {
                j += 1;
            }
            if j > start && !s.get(start..j).unwrap_or_default().starts_with(REDACTED.as_bytes()) {
                return Some((start, j - start));
            }
        }
    }
    None
}

/// Where the value of a secret-named field starts and ends, for a field name ending at
/// `s[name_end]`: `name=value`, `name: value`, `"name":"value"`, `\"name\":\"value\"`.
fn field_value_after(s: &[u8], name_end: usize) -> Option<(usize, usize)> {
    let mut j = skip_styling(s, name_end);
    let mut quoted_name = false;
    if tail(s, j).starts_with(b"\\\"") {
        j += 2;
        quoted_name = true;
    } else if tail(s, j).starts_with(b"\"") {
        j += 1;
        quoted_name = true;
    }
    j = skip_styling(s, j);
    if j >= s.len() || !(byte_at(s, j) == b'=' || byte_at(s, j) == b':') {
        return None;
    }
    if byte_at(s, j) == b':' && !quoted_name && s.get(j + 1) == Some(&b':') {
        return None; // a Rust path like `auth::x`, not a field
    }
    j = skip_styling(s, j + 1);
    // Value quoted with \" (inside a JSON string), with ", or bare.
    let (start, end) = if tail(s, j).starts_with(b"\\\"") {
        let start = j + 2;
        let end = find(s, start, b"\\\"").unwrap_or(s.len());
        (start, end)
    } else if s.get(j) == Some(&b'"') {
        let start = j + 1;
        let mut k = start;
        while k < s.len() && byte_at(s, k) != b'"' {
            k += if byte_at(s, k) == b'\\' { 2 } else { 1 };
        }
        (start, k.min(s.len()))
    } else {
        let start = j;
        let mut k = start;
        while k < s.len() && !matches!(byte_at(s, k), b' ' | b',' | b'}' | b']' | b'\n' | b'\r' | b'\t' | b'"' | b'\\')
        {
            k += 1;
        }
        // `Authorization: Bearer xyz`: the whole credential, not just the scheme word.
        match scheme_credential_at(s, start) {
            Some((credential, len)) if k == credential - 1 => (start, credential + len),
            _ => (start, k),
        }
    };
    // Numbers and booleans (`expires_in=300`, `token_count: 3`) are not secrets.
    let value = s.get(start..end).unwrap_or_default();
    if end == start
        || value == REDACTED.as_bytes()
        || value.iter().all(u8::is_ascii_digit)
        || value == b"true"
        || value == b"false"
        || value == b"null"
    {
        return None;
    }
    Some((start, end))
}

/// Skips spaces and terminal colour codes (`ESC [ ... m`), which the text log format puts
/// between a field's name, its `=` and its value.
fn skip_styling(s: &[u8], mut j: usize) -> usize {
    loop {
        if j < s.len() && byte_at(s, j) == b' ' {
            j += 1;
        } else if tail(s, j).starts_with(b"\x1b[") {
            let end = tail(s, j + 2).iter().position(|b| b.is_ascii_alphabetic()).map_or(s.len(), |p| j + 2 + p + 1);
            j = end;
        } else {
            return j;
        }
    }
}

fn find(s: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    tail(s, from).windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Blanks every secret in a log line (see the module docs for the rule).
pub fn redact(line: &str) -> Cow<'_, str> {
    let s = line.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if let Some(len) = jwt_at(s, i) {
            spans.push((i, i + len));
            i += len;
            continue;
        }
        if let Some((start, len)) = scheme_credential_at(s, i) {
            spans.push((start, start + len));
            i = start + len;
            continue;
        }
        if is_token_byte(byte_at(s, i)) && (i == 0 || !is_token_byte(byte_at(s, i - 1))) {
            let mut j = i;
            while j < s.len() && is_token_byte(byte_at(s, j)) {
                j += 1;
            }
            let word = line.get(i..j).unwrap_or_default();
            if is_random_token(word) {
                spans.push((i, j));
                i = j;
                continue;
            }
            let name = word.to_ascii_lowercase();
            if SECRET_NAMES.iter().any(|n| name.contains(n))
                && let Some((start, end)) = field_value_after(s, j)
            {
                spans.push((start, end));
                i = end;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    if spans.is_empty() {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    for (start, end) in spans {
        out.push_str(line.get(last..start).unwrap_or_default());
        out.push_str(REDACTED);
        last = end;
    }
    out.push_str(line.get(last..).unwrap_or_default());
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::token_kind::{HOST_TOKEN, INSTANCE_CREDENTIAL, JOIN_TOKEN};
    use proptest::prelude::*;

    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl";

    #[test]
    fn random_tokens_are_blanked_by_their_prefix() {
        for kind in [JOIN_TOKEN, HOST_TOKEN, INSTANCE_CREDENTIAL] {
            let token = kind.mint();
            let line = format!("refused {token} for host h1");
            assert_eq!(redact(&line), format!("refused {REDACTED} for host h1"));
        }
        assert_eq!(redact("bic_short and bht_"), "bic_short and bht_");
    }

    #[test]
    fn secret_prints_redacted() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hunter2\"");
    }

    #[test]
    fn redacts_jwts_schemes_and_secret_fields() {
        let cases = [
            (format!("token {JWT} used"), "token [redacted] used"),
            ("Authorization: Bearer abc.def-ghi".to_string(), "Authorization: [redacted]"),
            ("header basic dXNlcjpwYXNz= x".to_string(), "header basic [redacted] x"),
            (r#"{"password":"p@ss w\"rd","user":"bob"}"#.to_string(), r#"{"password":"[redacted]","user":"bob"}"#),
            (
                r#"{"fields":{"message":"x password=\"hunter2\" y"}}"#.to_string(),
                r#"{"fields":{"message":"x password=\"[redacted]\" y"}}"#,
            ),
            ("registry_password=hunter2 next=1".to_string(), "registry_password=[redacted] next=1"),
            (r#""dockerconfigjson": "eyJhdXRocyI6e319""#.to_string(), r#""dockerconfigjson": "[redacted]""#),
            ("access_token: abc123".to_string(), "access_token: [redacted]"),
            (
                "\x1b[3mpassword\x1b[0m\x1b[2m=\x1b[0m\"hunter2\"".to_string(),
                "\x1b[3mpassword\x1b[0m\x1b[2m=\x1b[0m\"[redacted]\"",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(&input), expected, "input: {input}");
        }
    }

    #[test]
    fn leaves_ordinary_lines_alone() {
        for line in [
            "GET /healthz 200 in 3ms",
            r#"{"expires_in":300,"token_count":3,"ok":true}"#,
            "berth_shared::auth::verify failed",
            "request_id=7b7c… status=401",
        ] {
            assert!(matches!(redact(line), Cow::Borrowed(_)), "{line}");
        }
    }

    proptest! {
        #[test]
        fn a_jwt_anywhere_never_survives(prefix in "[ -~]{0,40}", suffix in "[ -~]{0,40}") {
            let line = format!("{prefix} {JWT} {suffix}");
            prop_assert!(!redact(&line).contains("c2lnbmF0dXJl"));
        }

        #[test]
        fn a_secret_field_never_survives(name in "(password|token|secret|registry_password)", value in "[A-Za-z0-9@#%^&*]{4,30}") {
            for line in [format!("{name}={value}"), format!("{{\"{name}\":\"{value}\"}}"), format!("x {name}: {value}, y")] {
                let out = redact(&line);
                prop_assert!(!out.contains(&value) || value.chars().all(|c| c.is_ascii_digit()), "{} -> {}", line, out);
            }
        }
    }
}
