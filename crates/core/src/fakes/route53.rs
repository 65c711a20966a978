//! Route 53 in memory: records per (zone, name), changed by atomic batches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::lock;
use crate::aws_error::AwsError;
use crate::route53::{Existing, Planned, Record, Route53Api};

#[derive(Debug, Default)]
struct Zone {
    /// (zone, name) -> records.
    records: BTreeMap<(String, String), Vec<Record>>,
    failures: VecDeque<(&'static str, AwsError)>,
    calls: Vec<String>,
    changes: usize,
}

/// Route 53 in memory: records by zone and name; every change is in sync at once.
#[derive(Debug, Default)]
pub struct FakeRoute53 {
    zone: Mutex<Zone>,
}

impl FakeRoute53 {
    pub fn set_records(&self, zone: &str, name: &str, records: Vec<Record>) {
        lock(&self.zone)
            .records
            .insert((zone.to_string(), crate::route53::fqdn(name)), records);
    }

    pub fn records_of(&self, zone: &str, name: &str) -> Vec<Record> {
        lock(&self.zone)
            .records
            .get(&(zone.to_string(), crate::route53::fqdn(name)))
            .cloned()
            .unwrap_or_default()
    }

    pub fn fail_next(&self, operation: &'static str, error: AwsError) {
        lock(&self.zone).failures.push_back((operation, error));
    }

    /// Every call so far, as `Operation` names in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.zone).calls.clone()
    }

    /// How many change batches were applied.
    pub fn changes(&self) -> usize {
        lock(&self.zone).changes
    }

    fn call(&self, operation: &'static str) -> Result<MutexGuard<'_, Zone>, AwsError> {
        let mut zone = lock(&self.zone);
        zone.calls.push(operation.to_string());
        if let Some(i) = zone.failures.iter().position(|(op, _)| *op == operation) {
            if let Some((_, e)) = zone.failures.remove(i) {
                return Err(e);
            }
        }
        Ok(zone)
    }
}

impl Route53Api for FakeRoute53 {
    async fn records(&self, zone: &str, name: &str) -> Result<Vec<Existing>, AwsError> {
        let z = self.call("ListResourceRecordSets")?;
        z.records
            .get(&(zone.to_string(), crate::route53::fqdn(name)))
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(Existing::new)
            .collect()
    }

    async fn apply(
        &self,
        zone: &str,
        _existing: &[Existing],
        planned: &[Planned],
        _comment: &str,
    ) -> Result<String, AwsError> {
        let mut z = self.call("ChangeResourceRecordSets")?;
        z.changes += 1;
        for p in planned {
            let (record, upsert) = match p {
                Planned::Delete(r) => (r, false),
                Planned::Upsert(r) => (r, true),
            };
            let key = (zone.to_string(), record.name.clone());
            let records = z.records.entry(key).or_default();
            records.retain(|r| {
                !(r.set_identifier == record.set_identifier && r.rr_type() == record.rr_type())
            });
            if upsert {
                records.push(record.clone());
            }
        }
        Ok(format!("/change/C{}", z.changes))
    }

    async fn wait_in_sync(&self, _change_id: &str, _timeout: Duration) -> Result<bool, AwsError> {
        drop(self.call("GetChange")?);
        Ok(true)
    }
}
