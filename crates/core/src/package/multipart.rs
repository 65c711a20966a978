//! The streamed upload: whatever a bundle writer produces goes to S3 as it is written, as one PutObject
//! when it fits in a part and as a multipart upload otherwise, with at most three parts in memory
//! ([`PartWriter`] hands the parts over from the writer's blocking thread). Apart because it is the one
//! place where a blocking producer and async S3 calls meet.

use std::io::Write;

use tokio::sync::mpsc;

use super::s3::Stored;
use super::{BundleStore, PackageError, Packager};
use crate::bundle::{BundleError, Written};

/// Multipart upload part size: three of these in flight is the upload's whole memory.
pub(super) const PART_BYTES: usize = 8 * 1024 * 1024;

impl<B, C, S: BundleStore> Packager<B, C, S> {
    /// Streams what `produce` writes to s3://bucket/key: one PutObject when it fits in a part, a
    /// multipart upload otherwise, never more than three parts in memory. `produce` runs on a blocking
    /// thread; the upload is completed only when it succeeded.
    pub(super) async fn upload<F>(
        &self,
        bucket: &str,
        key: &str,
        sha256: &str,
        produce: F,
    ) -> Result<Stored, PackageError>
    where
        F: FnOnce(&mut dyn Write) -> Result<Written, BundleError> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
        let producer = tokio::task::spawn_blocking(move || {
            let mut parts = PartWriter {
                tx,
                buf: Vec::with_capacity(PART_BYTES),
            };
            let written = produce(&mut parts)?;
            parts.finish()?;
            Ok::<_, BundleError>(written)
        });
        let produced = |r: Result<Result<Written, BundleError>, tokio::task::JoinError>| match r {
            Ok(Ok(w)) => Ok(w),
            Ok(Err(e)) => Err(PackageError::Internal(format!(
                "could not write the bundle for s3://{bucket}/{key}: {e}"
            ))),
            Err(e) => Err(PackageError::Internal(format!(
                "the bundle writer for s3://{bucket}/{key} stopped: {e}"
            ))),
        };
        let first = rx.recv().await;
        let second = match first {
            Some(_) => rx.recv().await,
            None => None,
        };
        let (first, second) = match (first, second) {
            (Some(first), Some(second)) => (first, second),
            (first, _) => {
                let written = produced(producer.await)?;
                self.s3
                    .upload_whole(bucket, key, sha256, first.unwrap_or_default())
                    .await?;
                return Ok(Stored::Uploaded(written));
            }
        };
        let upload_id = self.s3.start_multipart(bucket, key, sha256).await?;
        let result = async {
            let mut completed = vec![];
            let mut next = Some(first);
            let mut queued = Some(second);
            while let Some(body) = next.take() {
                let number = completed.len() as i32 + 1;
                let e_tag = self
                    .s3
                    .upload_multipart_part(bucket, key, &upload_id, number, body)
                    .await?;
                completed.push((number, e_tag));
                next = match queued.take() {
                    Some(b) => Some(b),
                    None => rx.recv().await,
                };
            }
            Ok::<_, PackageError>(completed)
        }
        .await;
        drop(rx);
        let written = produced(producer.await);
        let completed = match (result, written) {
            (Ok(parts), Ok(written)) => (parts, written),
            (Err(e), _) | (_, Err(e)) => {
                // Best effort: the failure reported is the one that stopped the upload.
                let _ = self.s3.abort_multipart(bucket, key, &upload_id).await;
                return Err(e);
            }
        };
        self.s3
            .complete_multipart(bucket, key, &upload_id, completed.0)
            .await?;
        Ok(Stored::Uploaded(completed.1))
    }
}

/// Cuts what is written into parts and hands them to the uploader, waiting while it is busy.
pub(super) struct PartWriter {
    pub(super) tx: mpsc::Sender<Vec<u8>>,
    pub(super) buf: Vec<u8>,
}

impl PartWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_BYTES));
        self.tx
            .blocking_send(part)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    pub(super) fn finish(mut self) -> Result<(), BundleError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send().map_err(|e| BundleError::Io {
            action: "upload",
            reason: e.to_string(),
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = PART_BYTES - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
