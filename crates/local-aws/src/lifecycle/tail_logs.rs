//! RequestEnvironmentInfo's tail logs: the last lines of every instance's logs put in the environment's
//! S3 bucket, each behind a presigned URL.

use super::Runtime;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

impl Runtime {
    /// RequestEnvironmentInfo (tail): the last 100 lines of every log of every instance, one object
    /// per instance in the environment's S3 bucket, each entry a presigned URL valid 15 minutes
    /// (EnvironmentInfoDescription: "Currently contains a presigned Amazon S3 URL. The files are
    /// deleted after 15 minutes.").
    pub(crate) async fn compile_tail(self: Arc<Self>, env_id: &str) {
        let Some(env) = self
            .shared
            .lock()
            .beanstalk
            .environments
            .get(env_id)
            .cloned()
        else {
            return;
        };
        let Some(s3) = self.s3.as_ref() else {
            return;
        };
        let bucket = format!(
            "elasticbeanstalk-{}-{}",
            crate::beanstalk::REGION,
            crate::beanstalk::ACCOUNT
        );
        if s3.head_bucket().bucket(&bucket).send().await.is_err() {
            let _ = s3.create_bucket().bucket(&bucket).send().await;
        }
        let env_dir = self.dir.join(env_id);
        let mut entries = vec![];
        for instance in crate::deploy::instance_ids(&env) {
            let text = crate::deploy::tail(&env_dir, &instance, 100);
            let sampled = SystemTime::now();
            let key = format!(
                "resources/environments/logs/tail/{env_id}/{instance}/TailLogs-{}.out",
                sampled
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default()
            );
            if s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(text.into_bytes().into())
                .send()
                .await
                .is_err()
            {
                continue;
            }
            let Ok(config) =
                aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(900))
            else {
                continue;
            };
            if let Ok(url) = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .presigned(config)
                .await
            {
                entries.push(crate::beanstalk::InfoEntry {
                    instance,
                    sampled,
                    url: url.uri().to_string(),
                });
            }
        }
        self.shared
            .lock()
            .beanstalk
            .tail_logs
            .insert(env_id.to_string(), entries);
    }
}
