//! Content digests.

/// SHA-256 of `bytes` in lowercase hex: what tokens are stored under (never the token), and
/// the body of content digests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// The OCI digest of some bytes: `sha256:` and the hex SHA-256.
pub fn oci_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}
