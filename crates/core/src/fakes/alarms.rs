//! CloudWatch alarms in memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::lock;
use crate::alarms::{Alarm, AlarmsApi};
use crate::aws_error::AwsError;

/// CloudWatch alarms in memory: the alarms that exist, set by the test, one set per call in turn (the
/// last one stays).
#[derive(Debug, Default)]
pub struct FakeAlarms {
    readings: Mutex<VecDeque<Vec<Alarm>>>,
    calls: Mutex<usize>,
    failures: Mutex<VecDeque<AwsError>>,
}

impl FakeAlarms {
    /// The alarms each DescribeAlarms call finds, in turn; the last set stays.
    pub fn set(&self, readings: Vec<Vec<Alarm>>) {
        *lock(&self.readings) = readings.into();
    }

    /// The next DescribeAlarms call fails with `error` (several: the next ones, in turn).
    pub fn fail_next(&self, error: AwsError) {
        lock(&self.failures).push_back(error);
    }

    /// How many DescribeAlarms calls were made.
    pub fn calls(&self) -> usize {
        *lock(&self.calls)
    }
}

impl AlarmsApi for FakeAlarms {
    async fn alarms(&self, names: &[String]) -> Result<Vec<Alarm>, AwsError> {
        *lock(&self.calls) += 1;
        if let Some(e) = lock(&self.failures).pop_front() {
            return Err(e);
        }
        let mut readings = lock(&self.readings);
        let now = if readings.len() > 1 {
            readings.pop_front().unwrap_or_default()
        } else {
            readings.front().cloned().unwrap_or_default()
        };
        Ok(now
            .into_iter()
            .filter(|a| names.contains(&a.name))
            .collect())
    }
}
