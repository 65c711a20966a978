//! Reading input artifacts and writing output artifacts with the job's own credentials.
//!
//! CodePipeline gives each job short-lived credentials that reach only its artifact bucket; the function's
//! role usually cannot read that bucket at all, so every access goes through a client built from them.
//!
//! An input artifact is never held in memory: it is streamed from S3 into a temporary file chunk by chunk
//! (hashed on the way, [`crate::bundle::Spool`]) and read from there. A build output is easily larger than
//! the function's memory, and Lambda kills a function that runs out of memory before it can report.

use std::fmt::Display;
use std::fs::File;
use std::io::BufReader;

use aws_config::SdkConfig;
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::{ByteStream, ByteStreamError};
use aws_sdk_s3::types::ServerSideEncryption;
use futures_util::{Stream, TryStreamExt};

use crate::aws_error::{classify, ErrorClass, HttpStatus};
use crate::bundle::{BundleError, Spool, Spooled, MAX_BUNDLE_BYTES};
use crate::job::{Artifact, Job};

/// Largest input artifact we read: Elastic Beanstalk's own source bundle limit.
pub const MAX_ARTIFACT_BYTES: u64 = MAX_BUNDLE_BYTES;

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
        /// The HTTP status of S3's answer, when there was one (503 SlowDown may come without a code).
        status: Option<u16>,
    },
    #[error("artifact `{name}` is {size} bytes; the limit is {max} bytes")]
    TooLarge { name: String, size: u64, max: u64 },
    #[error("artifact `{name}` is not a zip file: {reason}")]
    NotZip { name: String, reason: String },
    /// This machine's disk, not the artifact: the temporary file could not be made, written or read.
    #[error("could not {action} the temporary file for artifact `{name}`: {reason}")]
    TempFile {
        name: String,
        action: &'static str,
        reason: String,
    },
    #[error("could not write artifact `{name}` (s3://{bucket}/{key}): {reason}")]
    Write {
        name: String,
        bucket: String,
        key: String,
        reason: String,
        code: Option<String>,
        status: Option<u16>,
    },
}

impl ArtifactError {
    fn read(
        artifact: &Artifact,
        code: Option<String>,
        status: Option<u16>,
        reason: String,
    ) -> Self {
        ArtifactError::Read {
            name: artifact.name.clone(),
            bucket: artifact.bucket.clone(),
            key: artifact.key.clone(),
            reason,
            code,
            status,
        }
    }

    /// What kind of trouble S3's answer (or its absence) was, by the one rule every AWS error goes
    /// through ([`crate::aws_error::classify`]); `None` when S3 was not the trouble.
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            ArtifactError::Read {
                code,
                reason,
                status,
                ..
            }
            | ArtifactError::Write {
                code,
                reason,
                status,
                ..
            } => Some(classify(code.as_deref(), reason, *status)),
            _ => None,
        }
    }

    /// What went wrong with the spool file, said of the artifact.
    fn spool(artifact: &Artifact, e: BundleError) -> Self {
        let name = artifact.name.clone();
        match e {
            BundleError::TooLarge { size, max } => ArtifactError::TooLarge { name, size, max },
            BundleError::NotZip { reason } => ArtifactError::NotZip { name, reason },
            BundleError::Io { action, reason } => ArtifactError::TempFile {
                name,
                action,
                reason,
            },
            // The spool and its zip fail only as above; any other verdict is still on the content.
            other => ArtifactError::NotZip {
                name,
                reason: other.to_string(),
            },
        }
    }
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

    /// The artifact in a temporary file, with its size and SHA-256: streamed from S3 one chunk at a time,
    /// so memory stays at a chunk whatever the artifact's size. Refuses an artifact larger than
    /// `max_bytes` before downloading it, and stops downloading once past it if S3 did not say its size.
    pub async fn spool(
        &self,
        artifact: &Artifact,
        max_bytes: u64,
    ) -> Result<Spooled, ArtifactError> {
        let object = self
            .s3
            .get_object()
            .bucket(&artifact.bucket)
            .key(&artifact.key)
            .send()
            .await
            .map_err(|e| {
                let (code, reason) = crate::aws_error::describe(&e);
                let status = e.raw_response().and_then(HttpStatus::http_status);
                ArtifactError::read(artifact, code, status, reason)
            })?;
        let size = object.content_length().unwrap_or(0).max(0) as u64;
        if size > max_bytes {
            return Err(ArtifactError::TooLarge {
                name: artifact.name.clone(),
                size,
                max: max_bytes,
            });
        }
        let chunks = futures_util::stream::try_unfold(object.body, |mut body: ByteStream| async {
            Ok::<_, ByteStreamError>(body.try_next().await?.map(|chunk| (chunk, body)))
        });
        spool_chunks(artifact, chunks, max_bytes).await
    }

    /// The artifact opened as a zip archive (CodePipeline stores every artifact as a zip), read from its
    /// temporary file: only the zip's central directory is in memory.
    pub async fn read_zip(
        &self,
        artifact: &Artifact,
        max_bytes: u64,
    ) -> Result<zip::ZipArchive<BufReader<File>>, ArtifactError> {
        let spooled = self.spool(artifact, max_bytes).await?;
        spooled.zip().map_err(|e| ArtifactError::spool(artifact, e))
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
            let status = e.raw_response().and_then(HttpStatus::http_status);
            ArtifactError::Write {
                name: artifact.name.clone(),
                bucket: artifact.bucket.clone(),
                key: artifact.key.clone(),
                reason,
                code,
                status,
            }
        })?;
        Ok(())
    }

    /// The underlying client, for tests and for actions that need other S3 calls on the artifact bucket.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }
}

/// Writes every chunk of `body` to a spool file as it arrives, holding none of them past its write.
async fn spool_chunks<C, E>(
    artifact: &Artifact,
    body: impl Stream<Item = Result<C, E>>,
    max_bytes: u64,
) -> Result<Spooled, ArtifactError>
where
    C: AsRef<[u8]>,
    E: Display,
{
    let mut body = std::pin::pin!(body);
    let mut spool = Spool::new(max_bytes).map_err(|e| ArtifactError::spool(artifact, e))?;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| ArtifactError::read(artifact, None, None, e.to_string()))?
    {
        spool
            .push(chunk.as_ref())
            .map_err(|e| ArtifactError::spool(artifact, e))?;
    }
    spool
        .finish()
        .map_err(|e| ArtifactError::spool(artifact, e))
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use sha2::{Digest, Sha256};

    use super::*;

    fn artifact() -> Artifact {
        Artifact {
            name: "BuildOutput".into(),
            revision: None,
            bucket: "codepipeline-artifacts".into(),
            key: "shop-pipeline/BuildOutpu/abc123".into(),
        }
    }

    /// What the body's consumer did: chunks pulled, chunks alive now, most chunks alive at once.
    #[derive(Default)]
    struct Tally {
        pulled: AtomicUsize,
        live: AtomicUsize,
        most_live: AtomicUsize,
    }

    /// A chunk of the body that counts itself alive until the consumer drops it.
    struct Chunk {
        bytes: Vec<u8>,
        tally: Arc<Tally>,
    }

    impl Chunk {
        fn new(bytes: Vec<u8>, tally: &Arc<Tally>) -> Chunk {
            tally.pulled.fetch_add(1, Ordering::SeqCst);
            let live = tally.live.fetch_add(1, Ordering::SeqCst) + 1;
            tally.most_live.fetch_max(live, Ordering::SeqCst);
            Chunk {
                bytes,
                tally: tally.clone(),
            }
        }
    }

    impl Drop for Chunk {
        fn drop(&mut self) {
            self.tally.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl AsRef<[u8]> for Chunk {
        fn as_ref(&self) -> &[u8] {
            &self.bytes
        }
    }

    const CHUNK: usize = 64 * 1024;

    fn chunk_bytes(i: usize) -> Vec<u8> {
        vec![(i % 251) as u8; CHUNK]
    }

    /// A body of `count` chunks, each made only when the consumer asks for the next one (as S3's
    /// body arrives from the network), failing at chunk `fail_at` if given.
    fn body(
        count: usize,
        fail_at: Option<usize>,
        tally: &Arc<Tally>,
    ) -> impl Stream<Item = Result<Chunk, String>> {
        let tally = tally.clone();
        futures_util::stream::iter((0..count).map(move |i| {
            if Some(i) == fail_at {
                return Err("connection reset by peer".to_string());
            }
            Ok(Chunk::new(chunk_bytes(i), &tally))
        }))
    }

    #[tokio::test]
    async fn an_artifact_is_spooled_one_chunk_at_a_time_never_whole_in_memory() {
        // 4 MiB in 64 chunks: 16 times the spool's read buffer, so no single buffer could hold it.
        let count = 64;
        let tally = Arc::default();
        let spooled = spool_chunks(&artifact(), body(count, None, &tally), u64::MAX)
            .await
            .unwrap();
        assert_eq!(tally.pulled.load(Ordering::SeqCst), count);
        assert_eq!(
            tally.most_live.load(Ordering::SeqCst),
            1,
            "each chunk is written out and dropped before the next is asked for"
        );
        assert_eq!(tally.live.load(Ordering::SeqCst), 0);

        let mut hasher = Sha256::new();
        (0..count).for_each(|i| hasher.update(chunk_bytes(i)));
        assert_eq!(spooled.size, (count * CHUNK) as u64);
        assert_eq!(spooled.sha256, hex::encode(hasher.finalize()));
        // The whole body is in the file, in order.
        let mut reader = spooled.reader().unwrap();
        let mut buf = vec![0u8; CHUNK];
        for i in 0..count {
            reader.read_exact(&mut buf).unwrap();
            assert!(buf == chunk_bytes(i), "chunk {i} differs in the spool file");
        }
        assert_eq!(reader.read(&mut buf).unwrap(), 0, "nothing past the body");
    }

    #[tokio::test]
    async fn an_artifact_past_the_limit_stops_the_download_and_names_the_artifact() {
        // S3 may not say the size up front: the spool stops at the first chunk past the limit and
        // leaves the rest of the body unread.
        let tally = Arc::default();
        let max = (10 * CHUNK) as u64;
        let err = spool_chunks(&artifact(), body(100_000, None, &tally), max)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "artifact `BuildOutput` is {} bytes; the limit is {max} bytes",
                11 * CHUNK
            )
        );
        assert!(matches!(err, ArtifactError::TooLarge { .. }), "{err:?}");
        assert_eq!(tally.pulled.load(Ordering::SeqCst), 11);
    }

    #[tokio::test]
    async fn a_download_cut_short_names_the_artifact_and_its_object() {
        let tally = Arc::default();
        let err = spool_chunks(&artifact(), body(10, Some(3), &tally), u64::MAX)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "could not read artifact `BuildOutput` (s3://codepipeline-artifacts/shop-pipeline/BuildOutpu/abc123): connection reset by peer"
        );
        assert!(
            matches!(&err, ArtifactError::Read { code: None, .. }),
            "{err:?}"
        );
    }
}
