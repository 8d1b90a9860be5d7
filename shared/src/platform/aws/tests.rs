use super::*;

#[test]
fn json_errors_keep_the_code_and_message() {
    let sqs = br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#;
    assert_eq!(json_error(None, sqs), Some(("QueueDoesNotExist".into(), "The specified queue does not exist.".into())));
    let moto = br#"{"__type": "AWS.SimpleQueueService.NonExistentQueue", "message": "gone"}"#;
    assert_eq!(json_error(None, moto), Some(("AWS.SimpleQueueService.NonExistentQueue".into(), "gone".into())));
    let header = Some("GoneException:http://internal.amazon.com/coral/com.amazonaws.apigatewaymanagement/");
    assert_eq!(
        json_error(header, br#"{"Message":"Connection gone"}"#),
        Some(("GoneException".into(), "Connection gone".into()))
    );
    assert_eq!(json_error(Some("Throttling"), b"not json"), Some(("Throttling".into(), String::new())));
    assert_eq!(json_error(None, b"<html>bad gateway</html>"), None);
    assert_eq!(json_error(None, br#"{"message":"no code"}"#), None);
}

#[test]
fn throttling_server_errors_and_refused_connections_are_retried_nothing_else() {
    let service =
        |status, code: &str| AwsError::Service { operation: "Op", status, code: code.into(), message: String::new() };
    assert!(service(400, "ThrottlingException").retryable());
    assert!(service(503, "ServiceUnavailable").retryable());
    assert!(!service(400, "ValidationError").retryable());
    assert!(!service(410, "GoneException").retryable());
    assert!(!AwsError::Timeout { operation: "Op", timeout: Duration::ZERO }.retryable());
    assert!(backoff(1) >= BACKOFF && backoff(1) <= BACKOFF * 3 / 2);
    assert!(backoff(3) >= BACKOFF * 4);
    assert_eq!(
        service(400, "ValidationError").to_string(),
        "Op: HTTP 400: ValidationError: ",
        "the display starts with the operation"
    );
}

#[tokio::test]
async fn a_call_that_cannot_connect_says_so_within_its_bound() {
    let client = AwsClient::from_env(&SQS, "us-east-1", Duration::from_secs(5))
        .with_endpoint("http://127.0.0.1:9")
        .with_credentials("a", "b", None);
    let error = client.json::<serde_json::Value>("AmazonSQS", "ListQueues", &serde_json::json!({}), None).await;
    let error = error.unwrap_err();
    assert!(matches!(error, AwsError::Transport { .. }), "{error}");
    assert!(error.to_string().starts_with("ListQueues: "), "{error}");
    let bad = AwsClient::from_env(&SQS, "us-east-1", Duration::from_secs(1)).with_endpoint("ftp://x");
    let refused = bad.query("Op", "1", &[]).await.unwrap_err();
    assert!(matches!(refused, AwsError::Endpoint { .. }), "{refused}");
}

#[test]
fn rest_paths_are_added_as_encoded_segments() {
    let client = AwsClient::from_env(&API_GATEWAY_MANAGEMENT, "us-east-1", Duration::from_secs(1))
        .with_endpoint("https://abc.execute-api.us-east-1.amazonaws.com/prod");
    let url = client.url("PostToConnection", &["@connections", "L0SM9c/Fv+HcCIhw="]).unwrap();
    assert_eq!(url.as_str(), "https://abc.execute-api.us-east-1.amazonaws.com/prod/@connections/L0SM9c%2FFv+HcCIhw=");
    let root = AwsClient::from_env(&SQS, "us-east-1", Duration::from_secs(1)).with_endpoint("http://127.0.0.1:5000");
    assert_eq!(root.url("Op", &[]).unwrap().as_str(), "http://127.0.0.1:5000/");
}
