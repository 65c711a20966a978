//! CloudWatch alarms as the swap's bake reads them: by name, their state now (DescribeAlarms). An alarm
//! in ALARM during the bake moves production back.
//!
//! DescribeAlarms answers only the alarms that exist; a name it does not return is reported, never
//! read as "not in alarm", so a misspelt alarm cannot silently watch nothing.

use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
use aws_sdk_cloudwatch::Client;

use crate::aws_error::{AwsError, Service};

/// DescribeAlarms takes at most this many names per call (API reference: AlarmNames, 100 items).
const NAMES_PER_CALL: usize = 100;

/// An alarm's state, as CloudWatch names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
    /// A state a newer API adds, as given.
    Other(String),
}

impl AlarmState {
    fn from_sdk(s: Option<&StateValue>) -> Self {
        match s {
            Some(StateValue::Ok) => AlarmState::Ok,
            Some(StateValue::Alarm) => AlarmState::Alarm,
            Some(StateValue::InsufficientData) => AlarmState::InsufficientData,
            Some(other) => AlarmState::Other(other.as_str().to_string()),
            None => AlarmState::Other(String::new()),
        }
    }
}

/// One alarm now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub name: String,
    pub state: AlarmState,
    /// CloudWatch's StateReason: why it is in this state.
    pub reason: String,
}

/// The CloudWatch call the bake makes; [`crate::fakes::FakeAlarms`] stands in for it in unit tests.
pub trait AlarmsApi: Send + Sync {
    /// The named alarms (metric and composite) that exist, in any order.
    fn alarms(&self, names: &[String])
        -> impl Future<Output = Result<Vec<Alarm>, AwsError>> + Send;
}

/// CloudWatch with the SDK.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    client: Client,
}

impl CloudWatch {
    pub fn new(config: &SdkConfig) -> Self {
        CloudWatch {
            client: Client::new(config),
        }
    }

    /// Around a client built elsewhere (the local run aims its own at local-aws).
    pub fn from_client(client: Client) -> Self {
        CloudWatch { client }
    }
}

impl AlarmsApi for CloudWatch {
    async fn alarms(&self, names: &[String]) -> Result<Vec<Alarm>, AwsError> {
        let mut found = Vec::new();
        for chunk in names.chunks(NAMES_PER_CALL) {
            let mut token = None;
            loop {
                let out = self
                    .client
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(Service::CloudWatch, "DescribeAlarms", e))?;
                for a in out.metric_alarms() {
                    found.push(Alarm {
                        name: a.alarm_name().unwrap_or_default().to_string(),
                        state: AlarmState::from_sdk(a.state_value()),
                        reason: a.state_reason().unwrap_or_default().to_string(),
                    });
                }
                for a in out.composite_alarms() {
                    found.push(Alarm {
                        name: a.alarm_name().unwrap_or_default().to_string(),
                        state: AlarmState::from_sdk(a.state_value()),
                        reason: a.state_reason().unwrap_or_default().to_string(),
                    });
                }
                token = out.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(found)
    }
}
