//! CloudWatch alarms by name (`DescribeAlarms`).

use async_trait::async_trait;
use aws_sdk_cloudwatch::error::DisplayErrorContext;
use berth_shared::release::Alarm;

use super::{AlarmError, AlarmSource, CALL_TIMEOUT, reason};
use crate::aws::LazyClient;

/// CloudWatch: `DescribeAlarms` of the names (100 a call); an alarm in state `ALARM` fires.
/// A name CloudWatch does not know is an error, not a pass: a typo must not gate nothing.
pub struct CloudWatch {
    client: LazyClient<aws_sdk_cloudwatch::Client>,
}

impl CloudWatch {
    /// For `region` (`AWS_REGION`), from the SDK's usual sources.
    pub fn new(region: &str) -> Self {
        Self { client: LazyClient::new(region, CALL_TIMEOUT, aws_sdk_cloudwatch::Client::new) }
    }

    /// Over a client of your own (tests, other credentials).
    pub fn with_client(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client: LazyClient::with_client(client, aws_sdk_cloudwatch::Client::new) }
    }
}

#[async_trait]
impl AlarmSource for CloudWatch {
    async fn firing(&self, alarms: &[Alarm]) -> Result<Option<String>, AlarmError> {
        let names: Vec<String> =
            alarms.iter().filter(|a| matches!(a, Alarm::CloudWatch(_))).map(|a| a.name().to_owned()).collect();
        for chunk in names.chunks(100) {
            let answer = self
                .client
                .get()
                .await
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .max_records(100)
                .send()
                .await
                .map_err(|e| AlarmError::Unreachable(reason(format_args!("CloudWatch: {}", DisplayErrorContext(e)))))?;
            let known = answer.metric_alarms().iter().map(|a| (a.alarm_name(), a.state_value()));
            let known = known.chain(answer.composite_alarms().iter().map(|a| (a.alarm_name(), a.state_value())));
            let states: std::collections::HashMap<&str, Option<&aws_sdk_cloudwatch::types::StateValue>> =
                known.filter_map(|(name, state)| Some((name?, state))).collect();
            for name in chunk {
                match states.get(name.as_str()) {
                    None => {
                        return Err(AlarmError::Unreachable(reason(format_args!(
                            "CloudWatch has no alarm named '{name}'"
                        ))));
                    }
                    Some(Some(aws_sdk_cloudwatch::types::StateValue::Alarm)) => return Ok(Some(name.clone())),
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
