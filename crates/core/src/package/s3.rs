//! The bundle's way into S3 with the function's own role: [`BundleStore`], the narrow trait of the S3
//! calls on the bundles' bucket (the SDK client's implementation here, FakeS3's in
//! [`crate::fakes`]), and where a bundle goes: a server-side copy when unchanged, else an upload.
//! Apart from the sequence, which only says what to store where; the streamed upload of a rewritten
//! bundle is `multipart.rs`. (The input artifact is read with the job's credentials by
//! [`crate::artifacts`].)

use std::future::Future;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use sha2::{Digest, Sha256};

use super::{PackageError, Packager, METADATA_SHA256};
use crate::aws_error::{AwsError, ErrorClass, HttpStatus, Service};
use crate::bundle::{self, BundleError, Plan, Spooled, Written};
use crate::job::Artifact;

/// A failed S3 call on s3://bucket/key.
pub(super) fn s3_error<E, R>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> AwsError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    AwsError::from_sdk(Service::S3, operation, e).on(format!("s3://{bucket}/{key}"))
}

/// An S3 call that broke off without an AWS answer (a body stream that ended early).
fn s3_other(operation: &'static str, bucket: &str, key: &str, message: String) -> AwsError {
    AwsError::other(Service::S3, operation, message).on(format!("s3://{bucket}/{key}"))
}

/// CopyObject's `x-amz-copy-source`: bucket and key, URL-encoded except `/`.
pub(super) fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where a bundle goes.
pub(super) struct Target<'a> {
    pub(super) bucket: &'a str,
    pub(super) key: &'a str,
    pub(super) sha256: &'a str,
}

/// How the bundle reached its bucket.
pub(super) enum Stored {
    Copied,
    Uploaded(Written),
}

/// The S3 calls package makes on the bundles' bucket with its own role, narrow enough that
/// [`crate::fakes::FakeS3`] stands in for S3 in unit tests: the checksum of a stored bundle (a label
/// found taken is judged by it), the server-side copy of an unchanged bundle, and the upload of a
/// rewritten one (whole, or in parts). Every stored bundle carries its SHA-256 as metadata
/// ([`METADATA_SHA256`]); every error is the one [`AwsError`], on s3://bucket/key.
pub trait BundleStore: Send + Sync {
    /// The SHA-256 of a stored bundle: from its metadata when beanswap wrote it, else by reading it.
    /// `None` when the object does not exist.
    fn bundle_sha256(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// CopyObject of s3://`from_bucket`/`from_key` to s3://`bucket`/`key`, its metadata replaced by
    /// the checksum.
    fn copy_bundle(
        &self,
        from_bucket: &str,
        from_key: &str,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// PutObject of a bundle that fits in one part.
    fn upload_whole(
        &self,
        bucket: &str,
        key: &str,
        sha256: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// CreateMultipartUpload: the upload id.
    fn start_multipart(
        &self,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// UploadPart `number` (from 1): its ETag.
    fn upload_multipart_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// CompleteMultipartUpload of these parts, (number, ETag) each, in order.
    fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, Option<String>)>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// AbortMultipartUpload, so no parts are left stored (and billed).
    fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl BundleStore for aws_sdk_s3::Client {
    async fn bundle_sha256(&self, bucket: &str, key: &str) -> Result<Option<String>, AwsError> {
        match self.head_object().bucket(bucket).key(key).send().await {
            Ok(head) => {
                if let Some(sha) = head.metadata().and_then(|m| m.get(METADATA_SHA256)) {
                    return Ok(Some(sha.clone()));
                }
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None)
            }
            Err(e) => {
                let mut e = s3_error("HeadObject", bucket, key, e);
                // A HEAD answer has no body, so AWS's 403 names no action: say which ones decide it.
                if e.status == Some(403) {
                    e.message = format!(
                        "{} (403 to HEAD, which carries no reason: S3 refuses it without s3:GetObject on the object, and answers a missing object with 403 instead of 404 without s3:ListBucket on the bucket)",
                        e.message
                    );
                }
                return Err(e);
            }
        }
        let mut object = self
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("GetObject", bucket, key, e))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = object
            .body
            .try_next()
            .await
            .map_err(|e| s3_other("GetObject", bucket, key, e.to_string()))?
        {
            hasher.update(&chunk);
        }
        Ok(Some(hex::encode(hasher.finalize())))
    }

    async fn copy_bundle(
        &self,
        from_bucket: &str,
        from_key: &str,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> Result<(), AwsError> {
        self.copy_object()
            .copy_source(copy_source(from_bucket, from_key))
            .bucket(bucket)
            .key(key)
            .metadata_directive(MetadataDirective::Replace)
            .metadata(METADATA_SHA256, sha256)
            .content_type("application/zip")
            .send()
            .await
            .map_err(|e| s3_error("CopyObject", bucket, key, e))?;
        Ok(())
    }

    async fn upload_whole(
        &self,
        bucket: &str,
        key: &str,
        sha256: &str,
        body: Vec<u8>,
    ) -> Result<(), AwsError> {
        self.put_object()
            .bucket(bucket)
            .key(key)
            .metadata(METADATA_SHA256, sha256)
            .content_type("application/zip")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", bucket, key, e))?;
        Ok(())
    }

    async fn start_multipart(
        &self,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> Result<String, AwsError> {
        Ok(self
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .metadata(METADATA_SHA256, sha256)
            .content_type("application/zip")
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", bucket, key, e))?
            .upload_id()
            .unwrap_or_default()
            .to_string())
    }

    async fn upload_multipart_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<Option<String>, AwsError> {
        let part = self
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("UploadPart", bucket, key, e))?;
        Ok(part.e_tag().map(str::to_string))
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, Option<String>)>,
    ) -> Result<(), AwsError> {
        let parts = parts
            .into_iter()
            .map(|(number, e_tag)| {
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(e_tag)
                    .build()
            })
            .collect();
        self.complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", bucket, key, e))?;
        Ok(())
    }

    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), AwsError> {
        self.abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| s3_error("AbortMultipartUpload", bucket, key, e))?;
        Ok(())
    }
}

impl<B, C, S: BundleStore> Packager<B, C, S> {
    /// Puts the bundle at the target: a server-side copy when it needs no change, else a stream.
    pub(super) async fn store(
        &self,
        artifact: &Artifact,
        spooled: &Arc<Spooled>,
        plan: &Arc<Plan>,
        target: &Target<'_>,
    ) -> Result<Stored, PackageError> {
        let (bucket, key, sha256) = (target.bucket, target.key, target.sha256);
        if plan.needs_rewrite() {
            let (s, p) = (spooled.clone(), plan.clone());
            return self
                .upload(bucket, key, sha256, move |out| {
                    bundle::write_normalised(&s, &p, out)
                })
                .await;
        }
        match self
            .s3
            .copy_bundle(&artifact.bucket, &artifact.key, bucket, key, sha256)
            .await
        {
            Ok(()) => Ok(Stored::Copied),
            // The function's role may not read the artifact bucket (only the job's credentials can):
            // send the spooled copy instead.
            Err(e) if e.class() == ErrorClass::PermissionDenied => {
                tracing::info!(error = %e, "CopyObject refused; uploading the spooled bundle");
                let s = spooled.clone();
                self.upload(bucket, key, sha256, move |out| {
                    let mut hashing = bundle::HashingWriter::new(out);
                    std::io::copy(&mut s.reader()?, &mut hashing).map_err(|e| BundleError::Io {
                        action: "upload",
                        reason: e.to_string(),
                    })?;
                    Ok(hashing.finish())
                })
                .await
            }
            Err(e) => Err(e.into()),
        }
    }
}
