use super::*;
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn auto_scaling_is_off_unless_aws_is_asked_for() {
    assert_eq!(config(&[]).unwrap().auto_scaling, AutoScaling::Off);
    assert_eq!(config(&[("BERTH_AUTO_SCALING", "aws")]).unwrap().auto_scaling, AutoScaling::Aws);
    assert_eq!(config(&[("BERTH_AUTO_SCALING", "off")]).unwrap().auto_scaling, AutoScaling::Off);
    let gates = config(&[
        ("BERTH_ALARMS", "aws"),
        ("BERTH_TARGET_GROUPS", "aws"),
        ("BERTH_PROMETHEUS_URL", "http://127.0.0.1:9090/"),
    ])
    .unwrap();
    assert!(gates.cloudwatch_alarms && gates.target_groups);
    assert_eq!(gates.prometheus_url.as_deref(), Some("http://127.0.0.1:9090"));
    assert!(!config(&[]).unwrap().cloudwatch_alarms);
    assert!(config(&[("BERTH_ALARMS", "yes")]).is_err());
    assert!(config(&[("BERTH_PROMETHEUS_URL", "prometheus")]).is_err());
    assert_eq!(config(&[("BERTH_AUTO_SCALING", "AWS")]).unwrap_err().variable, "BERTH_AUTO_SCALING");
}

#[test]
fn defaults_are_the_embedded_setup() {
    let c = config(&[]).unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.store, StoreLocation::File(PathBuf::from("berth-data/store")));
    assert_eq!(c.queue, QueueLocation::InProcess);
    assert_eq!(c.queue_max_attempts, DEFAULT_MAX_ATTEMPTS);
    assert_eq!(c.account_issuer, "berth-accounts");
    assert_eq!(c.registry.issuer, "berth");
    assert_eq!(c.account_token_max_seconds, 86_400);
    assert_eq!(c.public_url, None);
    assert!(!c.trust_forwarded);
}

#[test]
fn account_token_settings() {
    let c = config(&[("BERTH_ACCOUNT_TOKEN_MAX_SECONDS", "3600"), ("BERTH_ACCOUNT_ISSUER", "idp")]).unwrap();
    assert_eq!((c.account_token_max_seconds, c.account_issuer.as_str()), (3600, "idp"));
    for bad in ["0", "59", "2592001", "-1", "1h", "1e3"] {
        let e = config(&[("BERTH_ACCOUNT_TOKEN_MAX_SECONDS", bad)]).unwrap_err();
        assert_eq!(e.variable, "BERTH_ACCOUNT_TOKEN_MAX_SECONDS", "{bad}");
    }
    let e = config(&[("BERTH_ACCOUNT_ISSUER", "berth")]).unwrap_err();
    assert_eq!(e.variable, "BERTH_ACCOUNT_ISSUER");
    let e = config(&[("BERTH_ACCOUNT_ISSUER", "x"), ("BERTH_TOKEN_ISSUER", "x")]).unwrap_err();
    assert_eq!(e.variable, "BERTH_ACCOUNT_ISSUER");
}

#[test]
fn public_url_and_forwarded_headers() {
    for (raw, expected) in [
        ("https://berth.example.com", "https://berth.example.com"),
        ("https://berth.example.com/", "https://berth.example.com"),
        ("http://127.0.0.1:9080", "http://127.0.0.1:9080"),
        (
            "https://abc.execute-api.us-east-1.amazonaws.com/prod/",
            "https://abc.execute-api.us-east-1.amazonaws.com/prod",
        ),
    ] {
        assert_eq!(config(&[("BERTH_PUBLIC_URL", raw)]).unwrap().public_url.as_deref(), Some(expected), "{raw}");
    }
    for bad in [
        "berth.example.com",
        "ftp://berth.example.com",
        "https://",
        "https://user:pw@berth.example.com",
        "https://berth.example.com/?x=1",
        "https://berth.example.com/#top",
        "https://berth example.com",
        "/v1",
    ] {
        assert_eq!(config(&[("BERTH_PUBLIC_URL", bad)]).unwrap_err().variable, "BERTH_PUBLIC_URL", "{bad}");
    }
    assert!(config(&[("BERTH_TRUST_FORWARDED", "true")]).unwrap().trust_forwarded);
    assert!(!config(&[("BERTH_TRUST_FORWARDED", "false")]).unwrap().trust_forwarded);
    let e = config(&[("BERTH_TRUST_FORWARDED", "yes")]).unwrap_err();
    assert_eq!(e.to_string(), "BERTH_TRUST_FORWARDED: 'yes' is not true or false");
}

#[test]
fn store_urls() {
    assert_eq!(StoreLocation::parse("memory://"), Ok(StoreLocation::Memory));
    assert_eq!(StoreLocation::parse("file:///var/lib/berth"), Ok(StoreLocation::File("/var/lib/berth".into())));
    assert_eq!(StoreLocation::parse("s3://my-bucket"), Ok(StoreLocation::S3 { bucket: "my-bucket".into() }));
    assert!(StoreLocation::parse("s3://My_Bucket").is_err());
    assert!(StoreLocation::parse("file://").is_err());
    assert!(StoreLocation::parse("/tmp/x").is_err());
}

#[test]
fn bad_values_name_their_variable() {
    let e = config(&[("BERTH_STORE_URL", "ftp://x")]).unwrap_err();
    assert_eq!(e.variable, "BERTH_STORE_URL");
    assert!(e.to_string().contains("unknown store scheme 'ftp'"), "{e}");
    assert_eq!(config(&[("BERTH_LISTEN", "nowhere")]).unwrap_err().variable, "BERTH_LISTEN");
    assert_eq!(config(&[("BERTH_QUEUE_URL", "kafka://x")]).unwrap_err().variable, "BERTH_QUEUE_URL");
    assert_eq!(config(&[("BERTH_QUEUE_MAX_ATTEMPTS", "0")]).unwrap_err().variable, "BERTH_QUEUE_MAX_ATTEMPTS");
    assert_eq!(config(&[("BERTH_LOG_FORMAT", "xml")]).unwrap_err().variable, "BERTH_LOG_FORMAT");
    assert_eq!(config(&[("BERTH_S3_ENDPOINT", "localhost:9000")]).unwrap_err().variable, "BERTH_S3_ENDPOINT");
    let e = config(&[("BERTH_ACCOUNT_KEY_FILE", "/nonexistent/key.pem")]).unwrap_err();
    assert_eq!(e.to_string(), "BERTH_ACCOUNT_KEY_FILE: /nonexistent/key.pem does not exist or is not a file");
}

#[test]
fn sqs_queue_url() {
    let c = config(&[("BERTH_QUEUE_URL", "http://127.0.0.1:5000/123456789012/packages")]).unwrap();
    assert!(matches!(c.queue, QueueLocation::Sqs { ref url, dead_letter_url: None } if url.ends_with("/packages")));
}
