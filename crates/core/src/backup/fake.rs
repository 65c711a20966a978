//! RDS in memory for the backup's unit tests: CreateDBSnapshot makes a `creating` snapshot that turns
//! `available` after [`FakeRds::reads_until_available`] looks (RDS takes it in the background), an
//! identifier that is taken is `DBSnapshotAlreadyExists`, a missing one `DBSnapshotNotFound`, and a
//! snapshot that is not available cannot be deleted (`InvalidDBSnapshotState`), as the RDS API
//! reference gives them. Any call can be made to fail once with [`FakeRds::fail_next`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{RdsApi, Snapshot};
use crate::aws_error::{AwsError, Service};

#[derive(Debug, Default)]
struct Inner {
    snapshots: BTreeMap<String, (Snapshot, u32)>,
    failures: VecDeque<(&'static str, AwsError)>,
    calls: Vec<String>,
    clock: u64,
}

#[derive(Debug, Default)]
pub struct FakeRds {
    inner: Mutex<Inner>,
    /// Looks at a new snapshot before it is available.
    pub reads_until_available: u32,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An available manual snapshot of `instance`, created `age_s` seconds after the epoch, with `tags`.
pub fn snapshot(id: &str, instance: &str, created_s: u64, tags: &[(&str, &str)]) -> Snapshot {
    Snapshot {
        id: id.into(),
        instance: instance.into(),
        status: "available".into(),
        kind: "manual".into(),
        created: Some(UNIX_EPOCH + Duration::from_secs(created_s)),
        percent: Some(100),
        arn: format!("arn:aws:rds:us-east-1:123456789012:snapshot:{id}"),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

impl FakeRds {
    /// A new snapshot turns available after `reads` looks.
    pub fn slow(mut self, reads: u32) -> Self {
        self.reads_until_available = reads;
        self
    }

    pub fn with(snapshots: Vec<Snapshot>) -> Self {
        let fake = FakeRds::default();
        for s in snapshots {
            lock(&fake.inner).snapshots.insert(s.id.clone(), (s, 0));
        }
        fake
    }

    /// The next call of `operation` fails with `error`.
    pub fn fail_next(&self, operation: &'static str, error: AwsError) {
        lock(&self.inner).failures.push_back((operation, error));
    }

    /// Every call so far: `Operation id`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.inner).calls.clone()
    }

    pub fn ids(&self) -> Vec<String> {
        lock(&self.inner).snapshots.keys().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Snapshot> {
        lock(&self.inner).snapshots.get(id).map(|(s, _)| s.clone())
    }

    fn call(&self, operation: &'static str, on: &str) -> Result<(), AwsError> {
        let mut inner = lock(&self.inner);
        inner.calls.push(format!("{operation} {on}"));
        if let Some(i) = inner.failures.iter().position(|(op, _)| *op == operation) {
            if let Some((_, e)) = inner.failures.remove(i) {
                return Err(e);
            }
        }
        Ok(())
    }
}

impl RdsApi for FakeRds {
    async fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, AwsError> {
        self.call("DescribeDBSnapshots", id)?;
        let until = self.reads_until_available;
        let mut inner = lock(&self.inner);
        Ok(inner.snapshots.get_mut(id).map(|(s, reads)| {
            if s.status == "creating" {
                *reads += 1;
                if *reads > until {
                    s.status = "available".into();
                    s.percent = Some(100);
                }
            }
            s.clone()
        }))
    }

    async fn create_snapshot(
        &self,
        instance: &str,
        id: &str,
        tags: &[(String, String)],
    ) -> Result<Snapshot, AwsError> {
        self.call("CreateDBSnapshot", id)?;
        let mut inner = lock(&self.inner);
        if inner.snapshots.contains_key(id) {
            return Err(AwsError::answered(
                Service::Rds,
                "CreateDBSnapshot",
                "DBSnapshotAlreadyExists",
                format!("Cannot create the snapshot because a snapshot with the identifier {id} already exists."),
            ));
        }
        inner.clock += 1;
        let s = Snapshot {
            id: id.into(),
            instance: instance.into(),
            status: "creating".into(),
            kind: "manual".into(),
            created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + inner.clock)),
            percent: Some(0),
            arn: format!("arn:aws:rds:us-east-1:123456789012:snapshot:{id}"),
            tags: tags.iter().cloned().collect(),
        };
        inner.snapshots.insert(id.into(), (s.clone(), 0));
        Ok(s)
    }

    async fn snapshots_of(&self, instance: &str) -> Result<Vec<Snapshot>, AwsError> {
        self.call("DescribeDBSnapshots", instance)?;
        Ok(lock(&self.inner)
            .snapshots
            .values()
            .map(|(s, _)| s.clone())
            .filter(|s| s.instance.eq_ignore_ascii_case(instance))
            .collect())
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), AwsError> {
        self.call("DeleteDBSnapshot", id)?;
        let mut inner = lock(&self.inner);
        match inner.snapshots.get(id) {
            None => Err(AwsError::answered(
                Service::Rds,
                "DeleteDBSnapshot",
                "DBSnapshotNotFound",
                format!("DBSnapshot {id} not found."),
            )),
            Some((s, _)) if s.status != "available" => Err(AwsError::answered(
                Service::Rds,
                "DeleteDBSnapshot",
                "InvalidDBSnapshotState",
                "Cannot delete the snapshot because it is not in the available state.",
            )),
            Some(_) => {
                inner.snapshots.remove(id);
                Ok(())
            }
        }
    }
}
