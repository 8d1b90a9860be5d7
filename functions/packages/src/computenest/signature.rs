//! ACS3-HMAC-SHA256, the request signature of Alibaba Cloud's V3 SDKs, checked on Berth's side.
//!
//! The canonical request is `METHOD \n / \n sorted query \n canonical headers \n signed headers
//! \n hex(SHA-256(body))`; the query's values are re-encoded as the SDK does (RFC 3986: only
//! `A-Za-z0-9-_.~` left as they are, so a space is `%20` whatever the wire said); each signed
//! header is `name:trimmed value\n`. The string to sign is `ACS3-HMAC-SHA256 \n
//! hex(SHA-256(canonical request))`, the signature hex(HMAC-SHA256(secret, string to sign)).
//! Everything here is a pure function of the request; the key look-up and the nonce are the
//! caller's.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

/// The only signature algorithm accepted.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// Longest query string accepted (bytes).
pub const MAX_QUERY_BYTES: usize = 64 << 10;
/// Most query parameters accepted.
pub const MAX_PARAMETERS: usize = 500;
/// Headers a request must sign: without them the operation, the time or the nonce could be
/// changed under a valid signature.
pub const REQUIRED_SIGNED: [&str; 5] =
    ["host", "x-acs-action", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce"];

/// Why a request's signature part is refused, before or after the key is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Authorization` header, or not one of ours.
    #[error("the request is not signed with ACS3-HMAC-SHA256")]
    Missing,
    /// The header does not parse.
    #[error("the Authorization header is malformed: {0}")]
    Malformed(&'static str),
    /// A header that must be signed is not.
    #[error("header {0} must be signed")]
    Unsigned(&'static str),
    /// The body's hash is not the one declared.
    #[error("x-acs-content-sha256 is not the SHA-256 of the body")]
    ContentHash,
    /// The signature does not match.
    #[error("the request signature does not match")]
    Mismatch,
}

/// The parts of an `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// Lower-case names, as listed (sorted by the SDK).
    pub signed_headers: Vec<String>,
    /// Lower-case hex.
    pub signature: String,
}

/// Parses the `Authorization` header.
pub fn parse_authorization(headers: &HeaderMap) -> Result<Authorization, SignatureError> {
    let value = headers.get("authorization").ok_or(SignatureError::Missing)?;
    let value = value.to_str().map_err(|_| SignatureError::Malformed("not ASCII"))?;
    let rest = value.strip_prefix(ALGORITHM).ok_or(SignatureError::Missing)?;
    let rest = rest.strip_prefix(' ').ok_or(SignatureError::Malformed("no space after the algorithm"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed("a part is not name=value"))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(SignatureError::Malformed("unknown part")),
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(SignatureError::Malformed("a part appears twice"));
        }
    }
    let access_key_id = credential.filter(|c| !c.is_empty()).ok_or(SignatureError::Malformed("no Credential"))?;
    let signed = signed.ok_or(SignatureError::Malformed("no SignedHeaders"))?;
    let signature = signature
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(SignatureError::Malformed("Signature is not 64 hex digits"))?
        .to_ascii_lowercase();
    let signed_headers: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
    if signed_headers.iter().any(|h| h.is_empty()) || signed_headers.len() > 50 {
        return Err(SignatureError::Malformed("SignedHeaders"));
    }
    for required in REQUIRED_SIGNED {
        if !signed_headers.iter().any(|h| h == required) {
            return Err(SignatureError::Unsigned(required));
        }
    }
    Ok(Authorization { access_key_id, signed_headers, signature })
}

/// Why a query string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string is longer than {MAX_QUERY_BYTES} bytes")]
    TooLong,
    #[error("the query has more than {MAX_PARAMETERS} parameters")]
    TooMany,
    #[error("parameter {0} is not valid percent-encoded UTF-8")]
    Encoding(String),
    #[error("parameter {0} is given twice")]
    Duplicate(String),
}

/// Decodes a form-encoded query (`+` is a space) into its parameters, refusing duplicates.
pub fn parse_query(raw: &str) -> Result<BTreeMap<String, String>, QueryError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(QueryError::TooLong);
    }
    let mut parameters = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        if parameters.len() == MAX_PARAMETERS {
            return Err(QueryError::TooMany);
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let shown = || key.chars().take(64).collect::<String>();
        let key = decode(key).ok_or_else(|| QueryError::Encoding(shown()))?;
        let value = decode(value).ok_or_else(|| QueryError::Encoding(key.chars().take(64).collect()))?;
        if parameters.insert(key.clone(), value).is_some() {
            return Err(QueryError::Duplicate(key.chars().take(64).collect()));
        }
    }
    Ok(parameters)
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes as the SDK's canonical form does: RFC 3986 unreserved characters stay,
/// every other byte is `%XX` (upper case).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query: parameters sorted by name, `name=value` joined by `&`.
pub fn canonical_query(parameters: &BTreeMap<String, String>) -> String {
    parameters.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// The canonical request of a signed request.
pub fn canonical_request(
    method: &str,
    path: &str,
    parameters: &BTreeMap<String, String>,
    headers: &HeaderMap,
    signed_headers: &[String],
    body_hash: &str,
) -> String {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let mut values: Vec<&str> =
            headers.get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok()).map(str::trim).collect();
        values.sort_unstable();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let path = if path.is_empty() { "/" } else { path };
    format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{}\n{body_hash}",
        canonical_query(parameters),
        signed_headers.join(";")
    )
}

/// The signature of a canonical request with `secret`, lower-case hex.
pub fn sign(secret: &str, canonical_request: &str) -> String {
    let to_sign = format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    hex(aws_lc_rs::hmac::sign(&key, to_sign.as_bytes()).as_ref())
}

/// A request's parts as the check needs them.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub parameters: &'a BTreeMap<String, String>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Checks the signature of `request` against `secret`, in constant time.
pub fn verify(request: &SignedRequest<'_>, authorization: &Authorization, secret: &str) -> Result<(), SignatureError> {
    let body_hash = sha256_hex(request.body);
    let declared = request.headers.get("x-acs-content-sha256").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !declared.eq_ignore_ascii_case(&body_hash) {
        return Err(SignatureError::ContentHash);
    }
    let canonical = canonical_request(
        request.method,
        request.path,
        request.parameters,
        request.headers,
        &authorization.signed_headers,
        &body_hash,
    );
    let expected = sign(secret, &canonical);
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), authorization.signature.as_bytes())
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_plus_and_encode_percent_20() {
        let parameters = parse_query("Description=a+b%2Bc&Filter.1.Name=Name&A=%E4%B8%AD").unwrap();
        assert_eq!(parameters["Description"], "a b+c");
        assert_eq!(canonical_query(&parameters), "A=%E4%B8%AD&Description=a%20b%2Bc&Filter.1.Name=Name");
        assert_eq!(parse_query("a=1&a=2"), Err(QueryError::Duplicate("a".into())));
        assert!(matches!(parse_query("a=%zz"), Err(QueryError::Encoding(_))));
        assert_eq!(parse_query(&"a".repeat(MAX_QUERY_BYTES + 1)), Err(QueryError::TooLong));
        let many: Vec<String> = (0..=MAX_PARAMETERS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_query(&many.join("&")), Err(QueryError::TooMany));
    }

    fn headers(signature: &str, signed: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("{ALGORITHM} Credential=BAKX,SignedHeaders={signed},Signature={signature}");
        headers.insert("authorization", value.parse().unwrap());
        headers.insert("host", "127.0.0.1:1".parse().unwrap());
        headers.insert("x-acs-action", "ListArtifacts".parse().unwrap());
        headers.insert("x-acs-content-sha256", sha256_hex(b"").parse().unwrap());
        headers.insert("x-acs-date", "2026-12-01T00:00:00Z".parse().unwrap());
        headers.insert("x-acs-signature-nonce", "n1".parse().unwrap());
        headers
    }

    const SIGNED: &str = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce";

    #[test]
    fn a_signature_made_with_the_secret_verifies_and_a_changed_query_does_not() {
        let parameters = parse_query("MaxResults=10").unwrap();
        let unsigned = headers(&"0".repeat(64), SIGNED);
        let authorization = parse_authorization(&unsigned).unwrap();
        let canonical =
            canonical_request("POST", "/", &parameters, &unsigned, &authorization.signed_headers, &sha256_hex(b""));
        let signed = headers(&sign("s3cret", &canonical), SIGNED);
        let authorization = parse_authorization(&signed).unwrap();
        let request = SignedRequest { method: "POST", path: "/", parameters: &parameters, headers: &signed, body: b"" };
        assert_eq!(verify(&request, &authorization, "s3cret"), Ok(()));
        assert_eq!(verify(&request, &authorization, "other"), Err(SignatureError::Mismatch));
        let tampered = parse_query("MaxResults=11").unwrap();
        let request = SignedRequest { parameters: &tampered, ..request };
        assert_eq!(verify(&request, &authorization, "s3cret"), Err(SignatureError::Mismatch));
        let request = SignedRequest { parameters: &parameters, body: b"x", ..request };
        assert_eq!(verify(&request, &authorization, "s3cret"), Err(SignatureError::ContentHash));
    }

    #[test]
    fn the_header_must_sign_the_action_date_and_nonce() {
        let headers = headers(&"a".repeat(64), "host;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce");
        assert_eq!(parse_authorization(&headers), Err(SignatureError::Unsigned("x-acs-action")));
        let mut other = HeaderMap::new();
        other.insert("authorization", "Bearer x".parse().unwrap());
        assert_eq!(parse_authorization(&other), Err(SignatureError::Missing));
    }
}
