//! SigV4 signing of one request, by `aws-sigv4` (the SDK's own signer, without its runtime).

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
use object_store::aws::AwsCredential;

/// Why a request could not be signed (a URL or header the signer refuses).
#[derive(Debug, thiserror::Error)]
#[error("signing the request: {0}")]
pub struct SignError(#[source] Box<dyn std::error::Error + Send + Sync>);

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> SignError {
    SignError(Box::new(error))
}

/// The headers that sign a request (`authorization`, `x-amz-date`, and
/// `x-amz-security-token` with a session's credentials): `headers` are signed with it (the
/// host is taken from `url`), `body` by its hash.
#[allow(clippy::too_many_arguments, reason = "a request's parts, the signer's inputs")]
pub fn sign(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credential: &AwsCredential,
    region: &str,
    service: &str,
    at: SystemTime,
) -> Result<Vec<(String, String)>, SignError> {
    let credentials = aws_credential_types::Credentials::new(
        &credential.key_id,
        &credential.secret_key,
        credential.token.clone(),
        None,
        "berth",
    );
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .map_err(failed)?
        .into();
    let signable =
        SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body)).map_err(failed)?;
    let (instructions, _) = aws_sigv4::http_request::sign(signable, &params).map_err(failed)?.into_parts();
    Ok(instructions.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// The credentials of AWS's published SigV4 examples.
    fn example() -> AwsCredential {
        AwsCredential {
            key_id: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        }
    }

    /// 2015-08-30T12:36:00Z, the examples' time.
    fn example_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn header<'a>(signed: &'a [(String, String)], name: &str) -> Option<&'a str> {
        signed.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_get_vanilla_test_vector_signs_as_published() {
        // aws-sig-v4-test-suite/get-vanilla.
        let signed =
            sign("GET", "https://example.amazonaws.com/", &[], b"", &example(), "us-east-1", "service", example_time())
                .unwrap();
        assert_eq!(header(&signed, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            header(&signed, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(header(&signed, "x-amz-security-token"), None);
    }

    #[test]
    fn the_iam_list_users_example_signs_as_published() {
        // The IAM ListUsers example of AWS's "create a signed request" guide.
        let signed = sign(
            "GET",
            "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
            &[("content-type", "application/x-www-form-urlencoded; charset=utf-8")],
            b"",
            &example(),
            "us-east-1",
            "iam",
            example_time(),
        )
        .unwrap();
        assert_eq!(
            header(&signed, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, \
                 Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
            )
        );
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let credential = AwsCredential { token: Some("session".into()), ..example() };
        let signed =
            sign("POST", "http://127.0.0.1:5000/", &[], b"{}", &credential, "us-east-1", "sqs", example_time())
                .unwrap();
        assert_eq!(header(&signed, "x-amz-security-token"), Some("session"));
        assert!(
            header(&signed, "authorization").unwrap().contains("SignedHeaders=host;x-amz-date;x-amz-security-token")
        );
        assert!(sign("GET", "not a url", &[], b"", &example(), "r", "s", example_time()).is_err());
    }
}
