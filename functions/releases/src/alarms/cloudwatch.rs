//! CloudWatch alarms by name: one SigV4-signed `DescribeAlarms` (the awsQuery protocol: a
//! form POST, an XML answer) made with the HTTP client and the SDK parts already in the
//! binary. The CloudWatch SDK crate this replaces brought a second generation of the SDK's
//! runtime crates along (its last awsQuery release is older than the other clients), about a
//! megabyte of the function, for this one read-only call.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use berth_shared::release::Alarm;
use quick_xml::events::Event;

use super::{AlarmError, AlarmSource, CALL_TIMEOUT, reason};

/// Names a call asks for (DescribeAlarms takes at most 100).
const NAMES_PER_CALL: usize = 100;
/// Largest answer read: 100 alarms of a few kilobytes each, with room to spare.
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Deepest element nesting read (an alarm's metric queries nest about ten deep).
const MAX_DEPTH: usize = 32;
/// Credentials this close to their expiry are fetched anew before a call.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);
/// The API version of the awsQuery protocol's CloudWatch.
const API_VERSION: &str = "2010-08-01";

/// CloudWatch: `DescribeAlarms` of the names (100 a call); an alarm in state `ALARM` fires.
/// A name CloudWatch does not know is an error, not a pass: a typo must not gate nothing.
pub struct CloudWatch {
    region: String,
    reach: tokio::sync::OnceCell<Result<Arc<Reach>, String>>,
}

/// What a call needs, made on first use from the SDK's usual sources (the credentials chain,
/// `AWS_ENDPOINT_URL_CLOUDWATCH` / `AWS_ENDPOINT_URL`, FIPS and dual-stack settings): its
/// configuration loads asynchronously while the function is built synchronously.
struct Reach {
    endpoint: reqwest::Url,
    region: String,
    provider: SharedCredentialsProvider,
    credentials: parking_lot::Mutex<Option<Credentials>>,
    http: reqwest::Client,
}

impl CloudWatch {
    /// For `region` (`AWS_REGION`), from the SDK's usual sources.
    pub fn new(region: &str) -> Self {
        Self { region: region.to_owned(), reach: tokio::sync::OnceCell::new() }
    }

    /// At `endpoint` with `credentials` of your own (tests, other credentials).
    pub fn with_credentials(endpoint: &str, region: &str, credentials: Credentials) -> Result<Self, String> {
        let reach = Reach::new(endpoint, region, SharedCredentialsProvider::new(credentials))?;
        Ok(Self { region: region.to_owned(), reach: tokio::sync::OnceCell::new_with(Some(Ok(Arc::new(reach)))) })
    }

    async fn reach(&self) -> Result<&Reach, String> {
        let made = self
            .reach
            .get_or_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.region.clone()))
                    .load()
                    .await;
                let provider = config.credentials_provider().ok_or("no AWS credentials are configured")?;
                Reach::new(&endpoint_of(&config, &self.region), &self.region, provider).map(Arc::new)
            })
            .await;
        made.as_deref().map_err(Clone::clone)
    }
}

/// The endpoint configured for CloudWatch, else AWS's own for the region, as the SDK would
/// pick it.
fn endpoint_of(config: &aws_config::SdkConfig, region: &str) -> String {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("CloudWatch")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build();
    let configured = key.ok().and_then(|key| config.service_config()?.load_config(key));
    configured.or_else(|| config.endpoint_url().map(str::to_owned)).unwrap_or_else(|| {
        aws_endpoint(region, config.use_fips().unwrap_or(false), config.use_dual_stack().unwrap_or(false))
    })
}

/// AWS's CloudWatch endpoint for `region`, by partition.
fn aws_endpoint(region: &str, fips: bool, dual_stack: bool) -> String {
    let host = if fips { "monitoring-fips" } else { "monitoring" };
    let suffix = match region {
        r if r.starts_with("cn-") => {
            if dual_stack {
                "api.amazonwebservices.com.cn"
            } else {
                "amazonaws.com.cn"
            }
        }
        r if r.starts_with("us-isob-") => "sc2s.sgov.gov",
        r if r.starts_with("us-iso-") => "c2s.ic.gov",
        _ if dual_stack => "api.aws",
        _ => "amazonaws.com",
    };
    format!("https://{host}.{region}.{suffix}")
}

impl Reach {
    fn new(endpoint: &str, region: &str, provider: SharedCredentialsProvider) -> Result<Self, String> {
        let endpoint = reqwest::Url::parse(endpoint).map_err(|e| format!("endpoint '{endpoint}': {e}"))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(format!("endpoint '{endpoint}' is not an http(s) URL with a host"));
        }
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().map_err(|e| chain(&e))?;
        Ok(Self { endpoint, region: region.to_owned(), provider, credentials: parking_lot::Mutex::new(None), http })
    }

    /// The credentials, fetched anew when the last ones are about to expire.
    async fn credentials(&self) -> Result<Credentials, String> {
        let fresh = |c: &Credentials| c.expiry().is_none_or(|at| at > SystemTime::now() + CREDENTIALS_MARGIN);
        if let Some(kept) = self.credentials.lock().as_ref().filter(|c| fresh(c)) {
            return Ok(kept.clone());
        }
        let credentials = self.provider.provide_credentials().await.map_err(|e| chain(&e))?;
        *self.credentials.lock() = Some(credentials.clone());
        Ok(credentials)
    }

    /// `DescribeAlarms` of `names` (at most 100): each alarm's name and state.
    async fn describe(&self, names: &[String]) -> Result<Vec<AlarmState>, String> {
        let mut body = String::new();
        let mut form = aws_smithy_query::QueryWriter::new(&mut body, "DescribeAlarms", API_VERSION);
        let mut list = form.prefix("AlarmNames").start_list(false, None);
        for name in names {
            list.entry().string(name);
        }
        list.finish();
        // Without it CloudWatch answers metric alarms only.
        let mut types = form.prefix("AlarmTypes").start_list(false, None);
        for kind in ["MetricAlarm", "CompositeAlarm"] {
            types.entry().string(kind);
        }
        types.finish();
        form.prefix("MaxRecords").string(&NAMES_PER_CALL.to_string());
        form.finish();

        let content_type = "application/x-www-form-urlencoded";
        let identity = self.credentials().await.map_err(|e| format!("credentials: {e}"))?.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("monitoring")
            .time(SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| chain(&e))?
            .into();
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            [("content-type", content_type)].into_iter(),
            aws_sigv4::http_request::SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| chain(&e))?;
        let (signature, _) = aws_sigv4::http_request::sign(signable, &params).map_err(|e| chain(&e))?.into_parts();
        let mut request = self.http.post(self.endpoint.clone()).header("content-type", content_type);
        for (name, value) in signature.headers() {
            request = request.header(name, value);
        }
        let mut response = request.body(body).send().await.map_err(|e| chain(&e.without_url()))?;
        let status = response.status();
        // Read bounded: the answer is not trusted to be small.
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| chain(&e.without_url()))? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
            }
            answer.extend_from_slice(&chunk);
        }
        let text = std::str::from_utf8(&answer).map_err(|_| format!("HTTP {status}: an answer that is not UTF-8"))?;
        match (status.is_success(), read_answer(text)) {
            (_, Ok(Answer::Error { code, message })) => Err(format!("HTTP {}: {code}: {message}", status.as_u16())),
            (true, Ok(Answer::Alarms(states))) => Ok(states),
            (true, Err(why)) => Err(format!("HTTP {status}, {why}")),
            (false, _) => Err(format!("HTTP {status}")),
        }
    }
}

#[async_trait]
impl AlarmSource for CloudWatch {
    async fn firing(&self, alarms: &[Alarm]) -> Result<Option<String>, AlarmError> {
        let unreachable = |why: String| AlarmError::Unreachable(reason(format_args!("CloudWatch: {why}")));
        let names: Vec<String> =
            alarms.iter().filter(|a| matches!(a, Alarm::CloudWatch(_))).map(|a| a.name().to_owned()).collect();
        for chunk in names.chunks(NAMES_PER_CALL) {
            let states = self.reach().await.map_err(unreachable)?.describe(chunk).await.map_err(unreachable)?;
            let states: std::collections::HashMap<&str, &str> =
                states.iter().map(|a| (a.name.as_str(), a.state.as_str())).collect();
            for name in chunk {
                match states.get(name.as_str()) {
                    None => {
                        return Err(AlarmError::Unreachable(reason(format_args!(
                            "CloudWatch has no alarm named '{name}'"
                        ))));
                    }
                    Some(&"ALARM") => return Ok(Some(name.clone())),
                    Some(_) => {}
                }
            }
        }
        Ok(None)
    }

    fn reaches(&self, alarm: &Alarm) -> Result<(), AlarmError> {
        match alarm {
            Alarm::CloudWatch(_) => Ok(()),
            Alarm::Prometheus { .. } => Err(AlarmError::NotConfigured("not a CloudWatch alarm")),
        }
    }
}

/// An error and the errors that caused it, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One alarm of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AlarmState {
    name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    state: String,
}

/// What CloudWatch answered.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// `DescribeAlarmsResponse`: its metric and composite alarms.
    Alarms(Vec<AlarmState>),
    /// `ErrorResponse`.
    Error { code: String, message: String },
}

/// Reads a `DescribeAlarms` answer or an error answer, keeping only the alarms' names and
/// states (`…/DescribeAlarmsResult/{MetricAlarms,CompositeAlarms}/member/{AlarmName,StateValue}`)
/// and an error's code and message; nesting deeper than [`MAX_DEPTH`] is refused.
fn read_answer(xml: &str) -> Result<Answer, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text: Option<String> = None;
    let (mut alarms, mut error, mut answered) = (Vec::new(), None::<(String, String)>, false);
    let (mut name, mut state) = (None, None);
    let bad = |e: &dyn std::error::Error| format!("an answer that is not XML ({e})");
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(start) => {
                if path.len() >= MAX_DEPTH {
                    return Err(format!("an answer nested deeper than {MAX_DEPTH} elements"));
                }
                path.push(start.local_name().as_ref().to_vec());
                text = wanted(&path).then(String::new);
                if let [root] = path.as_slice() {
                    answered |= root.as_slice() == b"DescribeAlarmsResponse";
                }
            }
            Event::Text(part) => {
                if let Some(text) = text.as_mut() {
                    text.push_str(&part.decode().map_err(|e| bad(&e))?);
                }
            }
            Event::CData(part) => {
                if let Some(text) = text.as_mut() {
                    text.push_str(&part.decode().map_err(|e| bad(&e))?);
                }
            }
            Event::GeneralRef(entity) => {
                if let Some(text) = text.as_mut() {
                    match entity.resolve_char_ref().map_err(|e| bad(&e))? {
                        Some(c) => text.push(c),
                        None => {
                            let entity = entity.decode().map_err(|e| bad(&e))?;
                            let resolved = quick_xml::escape::resolve_predefined_entity(&entity)
                                .ok_or_else(|| format!("an answer with an unknown entity '&{entity};'"))?;
                            text.push_str(resolved);
                        }
                    }
                }
            }
            Event::End(_) => {
                let leaf = path.last().map(Vec::as_slice);
                match (leaf, text.take()) {
                    (Some(b"AlarmName"), Some(value)) => name = Some(value),
                    (Some(b"StateValue"), Some(value)) => state = Some(value),
                    (Some(b"Code"), Some(value)) => error.get_or_insert_default().0 = value,
                    (Some(b"Message"), Some(value)) => error.get_or_insert_default().1 = value,
                    (Some(b"member"), _) if in_alarm_list(&path) => {
                        if let Some(name) = name.take() {
                            alarms.push(AlarmState { name, state: state.take().unwrap_or_default() });
                        }
                        state = None;
                    }
                    _ => {}
                }
                path.pop();
            }
            Event::Eof => break,
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    match error {
        Some((code, message)) => Ok(Answer::Error { code, message }),
        None if answered => Ok(Answer::Alarms(alarms)),
        None => Err("an answer that is neither alarms nor an error".into()),
    }
}

/// Whether `path` ends in `…/{MetricAlarms,CompositeAlarms}/member` of a result.
fn in_alarm_list(path: &[Vec<u8>]) -> bool {
    matches!(
        path,
        [root, result, list, member]
            if root.as_slice() == b"DescribeAlarmsResponse"
                && result.as_slice() == b"DescribeAlarmsResult"
                && matches!(list.as_slice(), b"MetricAlarms" | b"CompositeAlarms")
                && member.as_slice() == b"member"
    )
}

/// Whether the element at `path` is one whose text is kept.
fn wanted(path: &[Vec<u8>]) -> bool {
    match path.split_last() {
        Some((leaf, parent)) if matches!(leaf.as_slice(), b"AlarmName" | b"StateValue") => in_alarm_list(parent),
        Some((leaf, [root, error]))
            if matches!(leaf.as_slice(), b"Code" | b"Message")
                && root.as_slice() == b"ErrorResponse"
                && error.as_slice() == b"Error" =>
        {
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(name: &str, state: &str) -> AlarmState {
        AlarmState { name: name.into(), state: state.into() }
    }

    #[test]
    fn an_answer_gives_each_alarms_name_and_state_and_nothing_nested_deeper() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeAlarmsResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
  <DescribeAlarmsResult>
    <MetricAlarms>
      <member>
        <Dimensions><member><Name>AlarmName</Name><Value>not-this</Value></member></Dimensions>
        <AlarmName>5xx &amp; &lt;latency&gt; &#x263A;</AlarmName>
        <Metrics><member><MetricStat><Metric><MetricName>StateValue</MetricName></Metric></MetricStat></member></Metrics>
        <StateValue>ALARM</StateValue>
        <AlarmDescription><![CDATA[<AlarmName>ignored</AlarmName>]]></AlarmDescription>
      </member>
      <member><StateValue>OK</StateValue><AlarmName>quiet</AlarmName></member>
    </MetricAlarms>
    <CompositeAlarms>
      <member><AlarmName>both</AlarmName><AlarmRule>ALARM(a)</AlarmRule><StateValue>INSUFFICIENT_DATA</StateValue></member>
    </CompositeAlarms>
  </DescribeAlarmsResult>
  <ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>
</DescribeAlarmsResponse>"#;
        assert_eq!(
            read_answer(xml),
            Ok(Answer::Alarms(vec![
                alarm("5xx & <latency> \u{263A}", "ALARM"),
                alarm("quiet", "OK"),
                alarm("both", "INSUFFICIENT_DATA"),
            ]))
        );
        let empty = "<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms/></DescribeAlarmsResult></DescribeAlarmsResponse>";
        assert_eq!(read_answer(empty), Ok(Answer::Alarms(vec![])));
    }

    #[test]
    fn an_error_answer_gives_its_code_and_message() {
        let xml = "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type>\
                   <Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message>\
                   </Error><RequestId>r</RequestId></ErrorResponse>";
        assert_eq!(
            read_answer(xml),
            Ok(Answer::Error {
                code: "InvalidClientTokenId".into(),
                message: "The security token included in the request is invalid.".into()
            })
        );
    }

    #[test]
    fn anything_else_is_refused_without_reading_it_all() {
        for xml in ["", "not xml", "<Other/>", "<DescribeAlarmsResponse><a></b></DescribeAlarmsResponse>"] {
            assert!(read_answer(xml).is_err(), "{xml:?}");
        }
        let deep = format!("<DescribeAlarmsResponse>{}", "<a>".repeat(100_000));
        assert_eq!(read_answer(&deep), Err(format!("an answer nested deeper than {MAX_DEPTH} elements")));
        let entity =
            "<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms><member><AlarmName>&bomb;</AlarmName>";
        assert!(read_answer(entity).unwrap_err().contains("unknown entity"));
    }

    #[test]
    fn aws_endpoints_follow_the_partition() {
        assert_eq!(aws_endpoint("eu-west-1", false, false), "https://monitoring.eu-west-1.amazonaws.com");
        assert_eq!(aws_endpoint("us-gov-west-1", true, false), "https://monitoring-fips.us-gov-west-1.amazonaws.com");
        assert_eq!(aws_endpoint("cn-north-1", false, false), "https://monitoring.cn-north-1.amazonaws.com.cn");
        assert_eq!(aws_endpoint("us-east-1", false, true), "https://monitoring.us-east-1.api.aws");
        assert!(
            Reach::new(
                "ftp://x",
                "us-east-1",
                SharedCredentialsProvider::new(Credentials::new("a", "b", None, None, "test"))
            )
            .is_err()
        );
    }
}
