//! [`RdsApi`] with the AWS SDK: the four RDS calls the backup makes, every error through the one
//! [`AwsError`].

use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::{DbSnapshot, Tag};
use aws_sdk_rds::Client;
use beanswap_core::aws_error::{AwsError, HttpStatus, Service};
use beanswap_core::backup::{RdsApi, Snapshot};

/// RDS through the SDK.
#[derive(Debug, Clone)]
pub struct Rds {
    client: Client,
}

impl Rds {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Rds {
            client: Client::new(config),
        }
    }
}

fn rds_error<E, R>(operation: &'static str, e: aws_sdk_rds::error::SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    AwsError::from_sdk(Service::Rds, operation, e)
}

fn from_sdk(s: &DbSnapshot) -> Snapshot {
    Snapshot {
        id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
        instance: s.db_instance_identifier().unwrap_or_default().to_string(),
        status: s.status().unwrap_or_default().to_string(),
        kind: s.snapshot_type().unwrap_or_default().to_string(),
        created: s
            .snapshot_create_time()
            .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
        percent: s.percent_progress(),
        arn: s.db_snapshot_arn().unwrap_or_default().to_string(),
        tags: s
            .tag_list()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
    }
}

impl RdsApi for Rds {
    async fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, AwsError> {
        match self
            .client
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_snapshots().first().map(from_sdk)),
            Err(e) if e.code() == Some("DBSnapshotNotFound") => Ok(None),
            Err(e) => Err(rds_error("DescribeDBSnapshots", e).on(id.to_string())),
        }
    }

    async fn create_snapshot(
        &self,
        instance: &str,
        id: &str,
        tags: &[(String, String)],
    ) -> Result<Snapshot, AwsError> {
        let mut request = self
            .client
            .create_db_snapshot()
            .db_instance_identifier(instance)
            .db_snapshot_identifier(id);
        for (key, value) in tags {
            request = request.tags(Tag::builder().key(key).value(value).build());
        }
        let out = request
            .send()
            .await
            .map_err(|e| rds_error("CreateDBSnapshot", e).on(instance.to_string()))?;
        Ok(out.db_snapshot().map(from_sdk).unwrap_or(Snapshot {
            id: id.to_string(),
            instance: instance.to_string(),
            status: "creating".into(),
            kind: "manual".into(),
            created: None,
            percent: None,
            arn: String::new(),
            tags: tags.iter().cloned().collect(),
        }))
    }

    async fn snapshots_of(&self, instance: &str) -> Result<Vec<Snapshot>, AwsError> {
        let mut out = vec![];
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_db_snapshots()
                .db_instance_identifier(instance)
                .snapshot_type("manual")
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| rds_error("DescribeDBSnapshots", e).on(instance.to_string()))?;
            out.extend(page.db_snapshots().iter().map(from_sdk));
            marker = page.marker().map(str::to_string);
            if marker.is_none() {
                return Ok(out);
            }
        }
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), AwsError> {
        self.client
            .delete_db_snapshot()
            .db_snapshot_identifier(id)
            .send()
            .await
            .map_err(|e| rds_error("DeleteDBSnapshot", e).on(id.to_string()))?;
        Ok(())
    }
}
