//! S3 in memory: the objects that exist, by bucket and key, with the checksum package's bundles carry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::lock;
use crate::aws_error::AwsError;
use crate::clock::FakeClock;
use crate::package::BundleStore;
use crate::s3::S3Api;

#[derive(Debug, Default)]
struct Buckets {
    objects: BTreeSet<(String, String)>,
    /// (bucket, key) -> the SHA-256 of the object's content.
    sha256: BTreeMap<(String, String), String>,
    /// (bucket, key) -> the size of what was uploaded there.
    sizes: BTreeMap<(String, String), u64>,
    /// Upload id -> the multipart upload in progress.
    uploads: BTreeMap<String, Upload>,
    /// How many multipart uploads were started.
    started: u32,
    failures: VecDeque<(&'static str, AwsError)>,
    calls: Vec<String>,
    /// Each call moves this clock on by this much, as a slow (throttled, retried) call would.
    latency: Option<(FakeClock, Duration)>,
}

/// A multipart upload in progress: where to, its checksum, and the parts' sizes by number.
#[derive(Debug)]
struct Upload {
    at: (String, String),
    sha256: String,
    parts: BTreeMap<i32, u64>,
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

    /// The checksum a stored object carries (`None`: no object, or none given).
    pub fn sha256_of(&self, bucket: &str, key: &str) -> Option<String> {
        lock(&self.buckets)
            .sha256
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
    }

    /// How many bytes were uploaded to s3://bucket/key (`None`: not uploaded).
    pub fn size_of(&self, bucket: &str, key: &str) -> Option<u64> {
        lock(&self.buckets)
            .sizes
            .get(&(bucket.to_string(), key.to_string()))
            .copied()
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        lock(&self.buckets).uploads.len()
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

fn no_such(
    operation: &'static str,
    code: &str,
    message: &str,
    bucket: &str,
    key: &str,
) -> AwsError {
    AwsError::answered(crate::aws_error::Service::S3, operation, code, message)
        .on(format!("s3://{bucket}/{key}"))
}

/// package's bundles: a checksum read as HeadObject of its metadata (an object put without one
/// reads as the checksum of nothing); a copy needs its source; a multipart upload is stored only
/// when completed with the parts' ETags, in order.
impl BundleStore for FakeS3 {
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

    async fn copy_bundle(
        &self,
        from_bucket: &str,
        from_key: &str,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> Result<(), AwsError> {
        let mut b = self.call("CopyObject")?;
        let from = (from_bucket.to_string(), from_key.to_string());
        if !b.objects.contains(&from) {
            return Err(no_such(
                "CopyObject",
                "NoSuchKey",
                "The specified key does not exist.",
                bucket,
                key,
            ));
        }
        let at = (bucket.to_string(), key.to_string());
        b.objects.insert(at.clone());
        b.sha256.insert(at, sha256.to_string());
        Ok(())
    }

    async fn upload_whole(
        &self,
        bucket: &str,
        key: &str,
        sha256: &str,
        body: Vec<u8>,
    ) -> Result<(), AwsError> {
        let mut b = self.call("PutObject")?;
        let at = (bucket.to_string(), key.to_string());
        b.objects.insert(at.clone());
        b.sha256.insert(at.clone(), sha256.to_string());
        b.sizes.insert(at, body.len() as u64);
        Ok(())
    }

    async fn start_multipart(
        &self,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> Result<String, AwsError> {
        let mut b = self.call("CreateMultipartUpload")?;
        b.started += 1;
        let id = format!("upload-{}", b.started);
        b.uploads.insert(
            id.clone(),
            Upload {
                at: (bucket.to_string(), key.to_string()),
                sha256: sha256.to_string(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn upload_multipart_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<Option<String>, AwsError> {
        let mut b = self.call("UploadPart")?;
        let Some(upload) = b.uploads.get_mut(upload_id) else {
            return Err(no_such(
                "UploadPart",
                "NoSuchUpload",
                "The specified upload does not exist.",
                bucket,
                key,
            ));
        };
        upload.parts.insert(number, body.len() as u64);
        Ok(Some(format!("\"etag-{number}\"")))
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, Option<String>)>,
    ) -> Result<(), AwsError> {
        let mut b = self.call("CompleteMultipartUpload")?;
        let Some(upload) = b.uploads.remove(upload_id) else {
            return Err(no_such(
                "CompleteMultipartUpload",
                "NoSuchUpload",
                "The specified upload does not exist.",
                bucket,
                key,
            ));
        };
        let expected: Vec<(i32, Option<String>)> = upload
            .parts
            .keys()
            .map(|n| (*n, Some(format!("\"etag-{n}\""))))
            .collect();
        if parts != expected {
            return Err(no_such(
                "CompleteMultipartUpload",
                "InvalidPart",
                "One or more of the specified parts could not be found.",
                bucket,
                key,
            ));
        }
        b.objects.insert(upload.at.clone());
        b.sha256.insert(upload.at.clone(), upload.sha256);
        b.sizes.insert(upload.at, upload.parts.values().sum());
        Ok(())
    }

    async fn abort_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), AwsError> {
        let mut b = self.call("AbortMultipartUpload")?;
        b.uploads.remove(upload_id);
        Ok(())
    }
}
