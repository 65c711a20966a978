//! Why packaging stops ([`PackageError`], [`LabelConflict`]) and the one mapping of those reasons to
//! CodePipeline's failure types. Apart so the sequence reads as steps, and the classification as one table.

use crate::aws_error::AwsError;
use crate::bundle::BundleError;
use crate::outcome::FailureKind;
use crate::runner::ActionError;

/// Why packaging stopped.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{0}")]
    Config(String),
    /// `artifact` names the input artifact and its S3 object.
    #[error("{artifact}: {source}")]
    Bundle {
        artifact: String,
        source: BundleError,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    LabelConflict(Box<LabelConflict>),
    #[error("Elastic Beanstalk refused to create version `{label}` of `{application}` because the account is at its application version limit ({message}).{pruned} Run the retire action with version pruning to delete old versions, or set UserParameters `prune_keep` so package prunes this application's oldest unused versions itself")]
    VersionLimit {
        application: String,
        label: String,
        message: String,
        pruned: String,
    },
    #[error("Elastic Beanstalk could not process version `{label}` of `{application}`: status {status}. Events:\n{events}")]
    ProcessingFailed {
        application: String,
        label: String,
        status: String,
        events: String,
    },
    #[error("version `{label}` of `{application}` is still {status} after {minutes} minutes (UserParameters `process_timeout_minutes`)")]
    ProcessingTimeout {
        application: String,
        label: String,
        status: String,
        minutes: u64,
    },
    /// The wait for processing ran past `process_timeout_minutes` without AWS answering one poll.
    #[error("version `{label}` of `{application}` could not be seen processed within {minutes} minutes (UserParameters `process_timeout_minutes`): every poll was turned away; the last: {error}")]
    ProcessingUnseen {
        application: String,
        label: String,
        minutes: u64,
        error: Box<AwsError>,
    },
    #[error("{0}")]
    Internal(String),
}

impl From<PackageError> for ActionError {
    fn from(e: PackageError) -> Self {
        if let PackageError::Aws(aws) = e {
            return aws.into();
        }
        let kind = match &e {
            // Classified by the AWS error that kept the polls away (throttling: SystemUnavailable).
            PackageError::ProcessingUnseen { error, .. } => {
                crate::aws_error::failure_kind(error.class())
            }
            PackageError::Config(_) | PackageError::LabelConflict(_) => {
                FailureKind::ConfigurationError
            }
            PackageError::Bundle { source, .. } if source.is_bundle_fault() => {
                FailureKind::ConfigurationError
            }
            _ => FailureKind::JobFailed,
        };
        ActionError::new(kind, e.to_string())
    }
}

/// A version label that already holds another bundle.
#[derive(Debug, thiserror::Error)]
#[error("version label `{label}` already exists in application `{application}` with a different bundle: the existing version's bundle s3://{existing_bucket}/{existing_key} has sha256 {existing_sha256}, this job's bundle has sha256 {sha256}. Versions are immutable: give this build another `version_label`, or delete the existing version if it is unused")]
pub struct LabelConflict {
    pub application: String,
    pub label: String,
    pub existing_bucket: String,
    pub existing_key: String,
    pub existing_sha256: String,
    pub sha256: String,
}
