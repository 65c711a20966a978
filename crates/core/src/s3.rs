//! [`S3Api`]: the S3 calls the sequences make outside the artifact store (today retire's deletion of a
//! pruned version's source bundle), as a narrow trait: the SDK client implements it, and
//! [`crate::fakes::FakeS3`] stands in for it in unit tests.

use std::future::Future;

use crate::aws_error::{AwsError, Service};

/// The S3 calls the sequences make, each error the one [`AwsError`].
pub trait S3Api: Send + Sync {
    /// DeleteObject of `key` in `bucket` (S3 answers success for a key that is not there).
    fn delete_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl S3Api for aws_sdk_s3::Client {
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), AwsError> {
        // The SDK's inherent `delete_object()` (inherent methods win over this trait's): written as a
        // builder chain, which is what the template test reads to check the role grants s3:DeleteObject.
        self.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(Service::S3, "DeleteObject", e))?;
        Ok(())
    }
}
