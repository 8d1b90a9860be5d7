//! Where a service is called, picked as the SDK picks it from the environment:
//! `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL` (both ignored with
//! `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`), else AWS's own endpoint for the region by
//! partition, FIPS with `AWS_USE_FIPS_ENDPOINT=true`, dual-stack with
//! `AWS_USE_DUALSTACK_ENDPOINT=true`. (The shared config file's `endpoint_url` is not read.)

use reqwest::Url;

use super::Service;

/// Why an endpoint is not one to call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint '{endpoint}' {reason}")]
pub struct EndpointError {
    endpoint: String,
    reason: String,
}

/// The endpoint `service` is called at in `region`, from the environment (see the module).
pub fn from_env(service: &Service, region: &str) -> Result<Url, EndpointError> {
    from_lookup(service, region, |name| std::env::var(name).ok())
}

/// [`from_env`] with the variables read through `var`.
pub fn from_lookup(
    service: &Service,
    region: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Url, EndpointError> {
    let flag = |name: &str| var(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let nonempty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let configured = if flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") {
        None
    } else {
        nonempty(&format!("AWS_ENDPOINT_URL_{}", service.env_suffix)).or_else(|| nonempty("AWS_ENDPOINT_URL"))
    };
    let endpoint = configured.unwrap_or_else(|| {
        aws_endpoint(service.host_prefix, region, flag("AWS_USE_FIPS_ENDPOINT"), flag("AWS_USE_DUALSTACK_ENDPOINT"))
    });
    parse(&endpoint)
}

/// `endpoint` as a URL to call: http or https, with a host.
pub fn parse(endpoint: &str) -> Result<Url, EndpointError> {
    let refused = |reason: String| EndpointError { endpoint: endpoint.to_owned(), reason };
    let url = Url::parse(endpoint.trim()).map_err(|e| refused(format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refused("is not an http(s) URL with a host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refused("has a query or a fragment".into()));
    }
    Ok(url)
}

/// AWS's endpoint of the service whose host starts with `prefix` in `region`, by partition.
pub fn aws_endpoint(prefix: &str, region: &str, fips: bool, dual_stack: bool) -> String {
    let host = if fips { format!("{prefix}-fips") } else { prefix.to_owned() };
    let suffix = match region {
        r if r.starts_with("cn-") => {
            if dual_stack {
                "api.amazonwebservices.com.cn"
            } else {
                "amazonaws.com.cn"
            }
        }
        r if r.starts_with("us-isob-") => "sc2s.sgov.gov",
        r if r.starts_with("us-isof-") => "csp.hci.ic.gov",
        r if r.starts_with("us-iso-") => "c2s.ic.gov",
        r if r.starts_with("eu-isoe-") => "cloud.adc-e.uk",
        r if r.starts_with("eusc-") => "amazonaws.eu",
        _ if dual_stack => "api.aws",
        _ => "amazonaws.com",
    };
    format!("https://{host}.{region}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::aws::{AUTO_SCALING, CLOUDWATCH, ELB_V2, SQS};

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_service_variable_comes_first_then_the_general_one_then_aws() {
        let both = with(&[("AWS_ENDPOINT_URL_AUTO_SCALING", "http://127.0.0.1:1"), ("AWS_ENDPOINT_URL", "http://h:2")]);
        assert_eq!(from_lookup(&AUTO_SCALING, "us-east-1", &both).unwrap().as_str(), "http://127.0.0.1:1/");
        assert_eq!(from_lookup(&SQS, "us-east-1", &both).unwrap().as_str(), "http://h:2/");
        let elb = with(&[("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", "http://e:3")]);
        assert_eq!(from_lookup(&ELB_V2, "eu-west-1", &elb).unwrap().as_str(), "http://e:3/");
        assert_eq!(
            from_lookup(&ELB_V2, "eu-west-1", with(&[])).unwrap().as_str(),
            "https://elasticloadbalancing.eu-west-1.amazonaws.com/"
        );
        let ignored = with(&[("AWS_ENDPOINT_URL", "http://h:2"), ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")]);
        assert_eq!(from_lookup(&SQS, "us-east-1", ignored).unwrap().as_str(), "https://sqs.us-east-1.amazonaws.com/");
        let fips = with(&[("AWS_USE_FIPS_ENDPOINT", "TRUE")]);
        assert_eq!(
            from_lookup(&CLOUDWATCH, "us-gov-west-1", fips).unwrap().as_str(),
            "https://monitoring-fips.us-gov-west-1.amazonaws.com/"
        );
        assert!(from_lookup(&SQS, "us-east-1", with(&[("AWS_ENDPOINT_URL_SQS", "ftp://x")])).is_err());
    }

    #[test]
    fn aws_endpoints_follow_the_partition() {
        assert_eq!(aws_endpoint("monitoring", "eu-west-1", false, false), "https://monitoring.eu-west-1.amazonaws.com");
        assert_eq!(
            aws_endpoint("monitoring", "us-gov-west-1", true, false),
            "https://monitoring-fips.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(aws_endpoint("sqs", "cn-north-1", false, false), "https://sqs.cn-north-1.amazonaws.com.cn");
        assert_eq!(aws_endpoint("sqs", "us-east-1", false, true), "https://sqs.us-east-1.api.aws");
        for bad in ["", "x", "ftp://h", "http://", "http://h/?a=b"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("https://a.execute-api.r.amazonaws.com/prod").unwrap().path(), "/prod");
    }
}
