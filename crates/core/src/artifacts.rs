//! Reading input artifacts and writing output artifacts with the job's own credentials.
//!
//! CodePipeline gives each job short-lived credentials that reach only its artifact bucket; the function's
//! role usually cannot read that bucket at all, so every access goes through a client built from them.

use std::io::Cursor;

use aws_config::SdkConfig;
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::job::{Artifact, Job};

/// Largest artifact we will load into memory: Beanstalk's own source bundle limit.
pub const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("could not read artifact `{name}` (s3://{bucket}/{key}): {reason}")]
    Read {
        name: String,
        bucket: String,
        key: String,
        reason: String,
        /// S3's error code, when S3 answered (AccessDenied is the pipeline's setup, not the build's).
        code: Option<String>,
    },
    #[error("artifact `{name}` is {size} bytes; the limit is {max} bytes")]
    TooLarge { name: String, size: u64, max: u64 },
    #[error("artifact `{name}` is not a zip file: {reason}")]
    NotZip { name: String, reason: String },
    #[error("could not write artifact `{name}` (s3://{bucket}/{key}): {reason}")]
    Write {
        name: String,
        bucket: String,
        key: String,
        reason: String,
        code: Option<String>,
    },
}

/// S3 access for one job's artifacts.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    s3: aws_sdk_s3::Client,
    kms_key: Option<String>,
}

impl ArtifactStore {
    /// Builds a client from the job's artifact credentials (or the function's own, when the job has none,
    /// as in a local run). Endpoint and region come from `base`, so AWS_ENDPOINT_URL_S3 still applies.
    pub fn for_job(base: &SdkConfig, job: &Job) -> Self {
        let mut builder = s3_config(base);
        if let Some(c) = &job.artifact_credentials {
            builder = builder.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "codepipeline-artifact-credentials",
            ));
        }
        ArtifactStore {
            s3: aws_sdk_s3::Client::from_conf(builder.build()),
            kms_key: job.encryption_key.clone(),
        }
    }

    /// The whole artifact, refusing anything larger than `max_bytes` before downloading it.
    pub async fn read(
        &self,
        artifact: &Artifact,
        max_bytes: u64,
    ) -> Result<Vec<u8>, ArtifactError> {
        let read_error = |(code, reason): (Option<String>, String)| ArtifactError::Read {
            name: artifact.name.clone(),
            bucket: artifact.bucket.clone(),
            key: artifact.key.clone(),
            reason,
            code,
        };
        let object = self
            .s3
            .get_object()
            .bucket(&artifact.bucket)
            .key(&artifact.key)
            .send()
            .await
            .map_err(|e| read_error(crate::aws_error::describe(&e)))?;
        let size = object.content_length().unwrap_or(0).max(0) as u64;
        if size > max_bytes {
            return Err(ArtifactError::TooLarge {
                name: artifact.name.clone(),
                size,
                max: max_bytes,
            });
        }
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| read_error((None, e.to_string())))?
            .into_bytes();
        Ok(bytes.to_vec())
    }

    /// The artifact opened as a zip archive (CodePipeline stores every artifact as a zip).
    pub async fn read_zip(
        &self,
        artifact: &Artifact,
        max_bytes: u64,
    ) -> Result<zip::ZipArchive<Cursor<Vec<u8>>>, ArtifactError> {
        let bytes = self.read(artifact, max_bytes).await?;
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| ArtifactError::NotZip {
            name: artifact.name.clone(),
            reason: e.to_string(),
        })
    }

    /// Stores `body` as the output artifact, encrypted with the pipeline's KMS key when it has one
    /// (CodePipeline cannot read it back otherwise).
    pub async fn write(&self, artifact: &Artifact, body: Vec<u8>) -> Result<(), ArtifactError> {
        let mut put = self
            .s3
            .put_object()
            .bucket(&artifact.bucket)
            .key(&artifact.key)
            .body(ByteStream::from(body));
        if let Some(key) = &self.kms_key {
            put = put
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(key);
        }
        put.send().await.map_err(|e| {
            let (code, reason) = crate::aws_error::describe(&e);
            ArtifactError::Write {
                name: artifact.name.clone(),
                bucket: artifact.bucket.clone(),
                key: artifact.key.clone(),
                reason,
                code,
            }
        })?;
        Ok(())
    }

    /// The underlying client, for tests and for actions that need other S3 calls on the artifact bucket.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }
}

/// An S3 client configuration from `base`, for every S3 client beanswap builds (the job's artifacts,
/// package's bundles, retire's bundle deletions): a local S3 (moto) serves buckets by path, not by virtual
/// host, so path-style addressing is on whenever an endpoint is overridden.
pub(crate) fn s3_config(base: &SdkConfig) -> aws_sdk_s3::config::Builder {
    let builder = aws_sdk_s3::config::Builder::from(base);
    if base.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        builder.force_path_style(true)
    } else {
        builder
    }
}
