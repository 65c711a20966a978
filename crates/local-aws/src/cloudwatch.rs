//! CloudWatch alarms, as the swap's bake reads them, over the protocol the Rust SDK speaks to
//! CloudWatch: Smithy RPC v2 CBOR (`POST /service/GraniteServiceVersion20100801/operation/<Op>`,
//! `smithy-protocol: rpc-v2-cbor`, CBOR bodies). moto (5.2.5) serves CloudWatch only over the query
//! protocol, so it cannot answer this client (FIDELITY.md, "CloudWatch").
//!
//! Alarms are what a test or the local pipeline puts (PutMetricAlarm) and sets (SetAlarmState);
//! nothing evaluates metrics. DescribeAlarms answers the named alarms that exist and leaves out the
//! rest, as CloudWatch does.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use ciborium::Value;

use crate::beanstalk::{ACCOUNT, REGION};

/// The service name in the RPC v2 path (the model's `targetPrefix`).
pub const SERVICE: &str = "GraniteServiceVersion20100801";

#[derive(Debug, Clone)]
struct Alarm {
    name: String,
    namespace: String,
    metric: String,
    statistic: Option<String>,
    period: Option<i64>,
    evaluation_periods: Option<i64>,
    threshold: Option<f64>,
    comparison: Option<String>,
    state: String,
    reason: String,
    updated: SystemTime,
    configured: SystemTime,
}

/// The alarms that exist, by name.
#[derive(Debug, Default)]
pub struct Alarms(BTreeMap<String, Alarm>);

/// An error as RPC v2 CBOR returns it: the status, and `__type` naming the model's error shape.
#[derive(Debug, Clone)]
pub struct CborError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl CborError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        CborError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The error body: `__type` is the shape id (`com.amazonaws.cloudwatch#ResourceNotFound`).
    pub fn body(&self) -> Value {
        map(vec![
            (
                "__type",
                Value::Text(format!("com.amazonaws.cloudwatch#{}", self.code)),
            ),
            ("message", Value::Text(self.message.clone())),
        ])
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_string()), v))
            .collect(),
    )
}

/// A timestamp as RPC v2 CBOR sends it: tag 1 (epoch seconds), a float.
fn timestamp(t: SystemTime) -> Value {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    Value::Tag(1, Box::new(Value::Float(secs)))
}

/// A CBOR answer as JSON: a timestamp (tag 1) becomes its epoch seconds, as AWS JSON sends it.
fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_text()?.to_string(), to_json(v))))
                .collect(),
        ),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Text(t) => J::String(t.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Integer(i) => i64::try_from(*i).map_or(J::Null, J::from),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Tag(_, inner) => to_json(inner),
        _ => J::Null,
    }
}

fn member<'a>(input: &'a Value, name: &str) -> Option<&'a Value> {
    input
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
}

fn text(input: &Value, name: &str) -> Option<String> {
    member(input, name)?.as_text().map(str::to_string)
}

fn required(input: &Value, name: &str) -> Result<String, CborError> {
    text(input, name).ok_or_else(|| {
        CborError::new(
            400,
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    })
}

fn integer(input: &Value, name: &str) -> Option<i64> {
    member(input, name)?
        .as_integer()
        .and_then(|i| i64::try_from(i).ok())
}

fn float(input: &Value, name: &str) -> Option<f64> {
    match member(input, name)? {
        Value::Float(f) => Some(*f),
        Value::Integer(i) => i64::try_from(*i).ok().map(|i| i as f64),
        _ => None,
    }
}

fn texts(input: &Value, name: &str) -> Vec<String> {
    member(input, name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_text().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The alarms a request names (AlarmName, or AlarmNames): the resources its permission is checked on.
pub fn alarm_names(input: &Value) -> Vec<String> {
    let mut names = texts(input, "AlarmNames");
    names.extend(text(input, "AlarmName"));
    names
}

/// [`alarm_names`] of an AWS JSON request.
pub fn alarm_names_json(input: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = input["AlarmNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.extend(input["AlarmName"].as_str().map(str::to_string));
    names
}

const STATES: [&str; 3] = ["OK", "ALARM", "INSUFFICIENT_DATA"];

impl Alarms {
    /// The same operation over AWS JSON 1.0 (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`), the
    /// protocol botocore (the AWS CLI) prefers among the model's `protocols`: the members are the same,
    /// timestamps are epoch seconds.
    pub fn handle_json(
        &mut self,
        operation: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, CborError> {
        let input = Value::serialized(input).map_err(|e| {
            CborError::new(
                400,
                "SerializationException",
                format!("bad request body: {e}"),
            )
        })?;
        Ok(to_json(&self.handle(operation, &input)?))
    }

    /// One operation: the output (a CBOR map), or the error.
    pub fn handle(&mut self, operation: &str, input: &Value) -> Result<Value, CborError> {
        let now = SystemTime::now();
        match operation {
            "PutMetricAlarm" => {
                let name = required(input, "AlarmName")?;
                let alarm = Alarm {
                    name: name.clone(),
                    namespace: text(input, "Namespace").unwrap_or_default(),
                    metric: text(input, "MetricName").unwrap_or_default(),
                    statistic: text(input, "Statistic"),
                    period: integer(input, "Period"),
                    evaluation_periods: integer(input, "EvaluationPeriods"),
                    threshold: float(input, "Threshold"),
                    comparison: text(input, "ComparisonOperator"),
                    // A new alarm has no data yet (CloudWatch User Guide: "Alarm states").
                    state: "INSUFFICIENT_DATA".into(),
                    reason: "Unchecked: Initial alarm creation".into(),
                    updated: now,
                    configured: now,
                };
                // Putting an existing alarm replaces its configuration, keeping its state.
                let alarm = match self.0.get(&name) {
                    Some(old) => Alarm {
                        state: old.state.clone(),
                        reason: old.reason.clone(),
                        updated: old.updated,
                        ..alarm
                    },
                    None => alarm,
                };
                self.0.insert(name, alarm);
                Ok(map(vec![]))
            }
            "SetAlarmState" => {
                let name = required(input, "AlarmName")?;
                let state = required(input, "StateValue")?;
                let reason = required(input, "StateReason")?;
                if !STATES.contains(&state.as_str()) {
                    return Err(CborError::new(
                        400,
                        "InvalidParameterValue",
                        format!("1 validation error detected: Value '{state}' at 'stateValue' failed to satisfy constraint: Member must satisfy enum value set: [INSUFFICIENT_DATA, ALARM, OK]"),
                    ));
                }
                let Some(alarm) = self.0.get_mut(&name) else {
                    return Err(CborError::new(
                        404,
                        "ResourceNotFound",
                        format!("Alarm {name} not found"),
                    ));
                };
                alarm.state = state;
                alarm.reason = reason;
                alarm.updated = now;
                Ok(map(vec![]))
            }
            "DeleteAlarms" => {
                for name in texts(input, "AlarmNames") {
                    self.0.remove(&name);
                }
                Ok(map(vec![]))
            }
            "DescribeAlarms" => {
                let names = texts(input, "AlarmNames");
                let types = texts(input, "AlarmTypes");
                let metric = types.is_empty() || types.iter().any(|t| t == "MetricAlarm");
                let found: Vec<Value> = self
                    .0
                    .values()
                    .filter(|_| metric)
                    .filter(|a| names.is_empty() || names.contains(&a.name))
                    .map(Alarm::describe)
                    .collect();
                Ok(map(vec![
                    ("MetricAlarms", Value::Array(found)),
                    ("CompositeAlarms", Value::Array(vec![])),
                ]))
            }
            other => Err(CborError::new(
                400,
                "UnknownOperationException",
                format!("local-aws does not serve CloudWatch {other}"),
            )),
        }
    }
}

impl Alarm {
    fn describe(&self) -> Value {
        let mut entries = vec![
            ("AlarmName", Value::Text(self.name.clone())),
            (
                "AlarmArn",
                Value::Text(format!(
                    "arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{}",
                    self.name
                )),
            ),
            (
                "AlarmConfigurationUpdatedTimestamp",
                timestamp(self.configured),
            ),
            ("ActionsEnabled", Value::Bool(true)),
            ("StateValue", Value::Text(self.state.clone())),
            ("StateReason", Value::Text(self.reason.clone())),
            ("StateUpdatedTimestamp", timestamp(self.updated)),
            ("MetricName", Value::Text(self.metric.clone())),
            ("Namespace", Value::Text(self.namespace.clone())),
        ];
        if let Some(s) = &self.statistic {
            entries.push(("Statistic", Value::Text(s.clone())));
        }
        if let Some(p) = self.period {
            entries.push(("Period", Value::Integer(p.into())));
        }
        if let Some(e) = self.evaluation_periods {
            entries.push(("EvaluationPeriods", Value::Integer(e.into())));
        }
        if let Some(t) = self.threshold {
            entries.push(("Threshold", Value::Float(t)));
        }
        if let Some(c) = &self.comparison {
            entries.push(("ComparisonOperator", Value::Text(c.clone())));
        }
        map(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(entries: Vec<(&str, Value)>) -> Value {
        map(entries)
    }

    #[test]
    fn alarms_are_put_set_described_and_missing_ones_left_out() {
        let mut alarms = Alarms::default();
        alarms
            .handle(
                "PutMetricAlarm",
                &input(vec![("AlarmName", Value::Text("shop-5xx".into()))]),
            )
            .unwrap();
        let err = alarms
            .handle(
                "SetAlarmState",
                &input(vec![
                    ("AlarmName", Value::Text("nope".into())),
                    ("StateValue", Value::Text("ALARM".into())),
                    ("StateReason", Value::Text("x".into())),
                ]),
            )
            .unwrap_err();
        assert_eq!((err.status, err.code), (404, "ResourceNotFound"));
        let out = alarms
            .handle(
                "DescribeAlarms",
                &input(vec![(
                    "AlarmNames",
                    Value::Array(vec![
                        Value::Text("shop-5xx".into()),
                        Value::Text("missing".into()),
                    ]),
                )]),
            )
            .unwrap();
        let found = member(&out, "MetricAlarms").unwrap().as_array().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            text(&found[0], "StateValue").as_deref(),
            Some("INSUFFICIENT_DATA")
        );
    }
}
