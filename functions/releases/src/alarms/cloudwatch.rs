//! CloudWatch alarms by name: one SigV4-signed `DescribeAlarms` (the awsQuery protocol: a
//! form POST, an XML answer) through the shared AWS request layer. (The CloudWatch SDK crate
//! it first replaced brought a second generation of the SDK's runtime crates along, about a
//! megabyte of the function, for this one read-only call.)

use async_trait::async_trait;
use berth_shared::platform::aws::{self, AwsClient, CLOUDWATCH};
use berth_shared::release::Alarm;

use super::{AlarmError, AlarmSource, CALL_TIMEOUT, reason};

/// Names a call asks for (DescribeAlarms takes at most 100).
const NAMES_PER_CALL: usize = 100;
/// The API version of the awsQuery protocol's CloudWatch.
const API_VERSION: &str = "2010-08-01";

/// CloudWatch: `DescribeAlarms` of the names (100 a call); an alarm in state `ALARM` fires.
/// A name CloudWatch does not know is an error, not a pass: a typo must not gate nothing.
/// Credentials come from the environment, the endpoint from `AWS_ENDPOINT_URL_CLOUDWATCH` /
/// `AWS_ENDPOINT_URL` (else AWS's own for the region).
pub struct CloudWatch {
    client: AwsClient,
}

impl CloudWatch {
    /// For `region` (`AWS_REGION`).
    pub fn new(region: &str) -> Self {
        Self { client: AwsClient::from_env(&CLOUDWATCH, region, CALL_TIMEOUT) }
    }

    /// Over a client of your own (tests, other credentials).
    pub fn with_client(client: AwsClient) -> Self {
        Self { client }
    }

    /// `DescribeAlarms` of `names` (at most 100): each alarm's name and state.
    async fn describe(&self, names: &[String]) -> Result<Vec<AlarmState>, String> {
        let mut params: Vec<(String, String)> =
            names.iter().enumerate().map(|(i, name)| (format!("AlarmNames.member.{}", i + 1), name.clone())).collect();
        // Without them CloudWatch answers metric alarms only.
        params.push(("AlarmTypes.member.1".into(), "MetricAlarm".into()));
        params.push(("AlarmTypes.member.2".into(), "CompositeAlarm".into()));
        params.push(("MaxRecords".into(), NAMES_PER_CALL.to_string()));
        let xml = self.client.query("DescribeAlarms", API_VERSION, &params).await.map_err(|e| e.to_string())?;
        read_answer(&xml).map_err(|why| format!("DescribeAlarms: {why}"))
    }
}

#[async_trait]
impl AlarmSource for CloudWatch {
    async fn firing(&self, alarms: &[Alarm]) -> Result<Option<String>, AlarmError> {
        let unreachable = |why: String| AlarmError::Unreachable(reason(format_args!("CloudWatch: {why}")));
        let names: Vec<String> =
            alarms.iter().filter(|a| matches!(a, Alarm::CloudWatch(_))).map(|a| a.name().to_owned()).collect();
        for chunk in names.chunks(NAMES_PER_CALL) {
            let states = self.describe(chunk).await.map_err(unreachable)?;
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

/// One alarm of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AlarmState {
    name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    state: String,
}

/// The metric and composite alarms of a `DescribeAlarms` answer, their names and states
/// (`…/DescribeAlarmsResult/{MetricAlarms,CompositeAlarms}/member/{AlarmName,StateValue}`);
/// nesting deeper than the shared reader's bound is refused.
fn read_answer(xml: &str) -> Result<Vec<AlarmState>, String> {
    let (mut alarms, mut answered) = (Vec::new(), false);
    let (mut name, mut state) = (None, None);
    aws::xml::walk(xml, |path, text| {
        answered |= aws::xml::is(path, &["DescribeAlarmsResponse"]);
        let Some(rest) = aws::xml::under(path, &["DescribeAlarmsResponse", "DescribeAlarmsResult"]) else { return };
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match (rest.as_slice(), text) {
            (["MetricAlarms" | "CompositeAlarms", "member", "AlarmName"], Some(text)) => name = Some(text),
            (["MetricAlarms" | "CompositeAlarms", "member", "StateValue"], Some(text)) => state = Some(text),
            (["MetricAlarms" | "CompositeAlarms", "member"], _) => {
                if let Some(name) = name.take() {
                    alarms.push(AlarmState { name, state: state.take().unwrap_or_default() });
                }
                state = None;
            }
            _ => {}
        }
    })
    .map_err(|e| e.to_string())?;
    if answered { Ok(alarms) } else { Err("an answer that is neither alarms nor an error".into()) }
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
            Ok(vec![
                alarm("5xx & <latency> \u{263A}", "ALARM"),
                alarm("quiet", "OK"),
                alarm("both", "INSUFFICIENT_DATA"),
            ])
        );
        let empty = "<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms/></DescribeAlarmsResult></DescribeAlarmsResponse>";
        assert_eq!(read_answer(empty), Ok(vec![]));
    }

    #[test]
    fn an_error_answer_gives_its_code_and_message() {
        let xml = "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type>\
                   <Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message>\
                   </Error><RequestId>r</RequestId></ErrorResponse>";
        assert_eq!(
            aws::xml::error_of(xml),
            Some(("InvalidClientTokenId".into(), "The security token included in the request is invalid.".into()))
        );
        assert!(read_answer(xml).is_err(), "an error is not an empty list of alarms");
    }

    #[test]
    fn anything_else_is_refused_without_reading_it_all() {
        for xml in ["", "not xml", "<Other/>", "<DescribeAlarmsResponse><a></b></DescribeAlarmsResponse>"] {
            assert!(read_answer(xml).is_err(), "{xml:?}");
        }
        let deep = format!("<DescribeAlarmsResponse>{}", "<a>".repeat(100_000));
        assert!(read_answer(&deep).unwrap_err().contains("nested deeper"));
        let entity =
            "<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms><member><AlarmName>&bomb;</AlarmName>";
        assert!(read_answer(entity).unwrap_err().contains("unknown entity"));
    }
}
