//! S3 in memory: the objects that exist, by bucket and key, with the checksum package's bundles carry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::lock;
use crate::aws_error::AwsError;
use crate::clock::FakeClock;
use crate::package::StoredBundles;
use crate::s3::S3Api;

#[derive(Debug, Default)]
struct Buckets {
    objects: BTreeSet<(String, String)>,
    /// (bucket, key) -> the SHA-256 of the object's content.
    sha256: BTreeMap<(String, String), String>,
    failures: VecDeque<(&'static str, AwsError)>,
    calls: Vec<String>,
    /// Each call moves this clock on by this much, as a slow (throttled, retried) call would.
    latency: Option<(FakeClock, Duration)>,
}

/// S3 in memory: objects by (bucket, key); deleting one that is not there succeeds, as on S3.
#[derive(Debug, Default)]
pub struct FakeS3 {
    buckets: Mutex<Buckets>,
}

impl FakeS3 {
    pub fn put(&self, bucket: &str, key: &str) {
        lock(&self.buckets)
            .objects
            .insert((bucket.to_string(), key.to_string()));
    }

    /// A bundle whose content has this SHA-256 (as its metadata or its bytes would tell).
    pub fn put_bundle(&self, bucket: &str, key: &str, sha256: &str) {
        let mut b = lock(&self.buckets);
        let at = (bucket.to_string(), key.to_string());
        b.objects.insert(at.clone());
        b.sha256.insert(at, sha256.to_string());
    }

    pub fn exists(&self, bucket: &str, key: &str) -> bool {
        lock(&self.buckets)
            .objects
            .contains(&(bucket.to_string(), key.to_string()))
    }

    /// The next call of `operation` fails with `error`.
    pub fn fail_next(&self, operation: &'static str, error: AwsError) {
        lock(&self.buckets).failures.push_back((operation, error));
    }

    /// From now on every call takes `each` on `clock`.
    pub fn set_latency(&self, clock: &FakeClock, each: Duration) {
        lock(&self.buckets).latency = Some((clock.clone(), each));
    }

    /// Every call so far, as `Operation` names in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.buckets).calls.clone()
    }

    fn call(&self, operation: &'static str) -> Result<MutexGuard<'_, Buckets>, AwsError> {
        let mut b = lock(&self.buckets);
        b.calls.push(operation.to_string());
        if let Some((clock, each)) = &b.latency {
            clock.advance(*each);
        }
        if let Some(i) = b.failures.iter().position(|(op, _)| *op == operation) {
            if let Some((_, e)) = b.failures.remove(i) {
                return Err(e);
            }
        }
        Ok(b)
    }
}

impl S3Api for FakeS3 {
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), AwsError> {
        let mut b = self.call("DeleteObject")?;
        let at = (bucket.to_string(), key.to_string());
        b.objects.remove(&at);
        b.sha256.remove(&at);
        Ok(())
    }
}

/// A bundle's checksum as package reads it (HeadObject, its metadata); an object put without one
/// reads as the checksum of nothing.
impl StoredBundles for FakeS3 {
    async fn bundle_sha256(&self, bucket: &str, key: &str) -> Result<Option<String>, AwsError> {
        let b = self.call("HeadObject")?;
        let at = (bucket.to_string(), key.to_string());
        if !b.objects.contains(&at) {
            return Ok(None);
        }
        Ok(Some(b.sha256.get(&at).cloned().unwrap_or_else(|| {
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()
        })))
    }
}
