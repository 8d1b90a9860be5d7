//! Content digests.

/// SHA-256 of `bytes` in lowercase hex: what tokens are stored under (never the token), and
/// the body of content digests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    lower_hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// `bytes` in lowercase hex.
pub fn lower_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// The OCI digest of some bytes: `sha256:` and the hex SHA-256.
pub fn oci_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_lowercase_hex() {
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(lower_hex(&[]), "");
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(oci_digest(b"abc"), format!("sha256:{}", sha256_hex(b"abc")));
    }
}
