//! What every function does with one event (beanswap-lambda feeds it from Lambda): event in, exactly
//! one report out.
//!
//! Whatever happens inside an action (a bad event, bad UserParameters, an AWS error, a panic, running out
//! of Lambda time) ends in PutJobSuccessResult or PutJobFailureResult, because a Lambda action that does not
//! report leaves the pipeline hanging until CodePipeline's own timeout, with no message at all.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use tracing::{error, info, warn, Instrument};

use crate::artifacts::ArtifactError;
use crate::aws_error::AwsError;
use crate::job::{EventError, Job};
use crate::outcome::{
    check_variables, decode_state, encode_state, FailureKind, Outcome, StateError,
};
use crate::params::{self, ParamsError, UserParameters};
use crate::report::{Report, ReportError, Reporter};

/// Time kept back from the Lambda deadline to send the report after an action overruns.
const REPORT_RESERVE: Duration = Duration::from_secs(10);

/// Why an action stopped; carries how CodePipeline should classify it, and the AWS error behind it when
/// there was one (so a caller that is waiting anyway can tell transient trouble from a verdict).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub kind: FailureKind,
    pub message: String,
    #[source]
    pub aws: Option<Box<AwsError>>,
}

impl ActionError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ActionError {
            kind,
            message: message.into(),
            aws: None,
        }
    }
    /// The deployment went wrong.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(FailureKind::JobFailed, message)
    }
    /// The pipeline is set up wrong.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(FailureKind::ConfigurationError, message)
    }
    /// Trouble that passes by itself (throttling, AWS unavailable, a busy environment): an action that
    /// can wait hands over with a continuation token instead of failing.
    pub fn is_transient(&self) -> bool {
        self.aws.as_ref().is_some_and(|e| e.is_transient())
    }
}

impl From<ParamsError> for ActionError {
    fn from(e: ParamsError) -> Self {
        ActionError::config(e.to_string())
    }
}
impl From<EventError> for ActionError {
    fn from(e: EventError) -> Self {
        ActionError::config(e.to_string())
    }
}
impl From<StateError> for ActionError {
    fn from(e: StateError) -> Self {
        ActionError::failed(e.to_string())
    }
}
impl From<ArtifactError> for ActionError {
    fn from(e: ArtifactError) -> Self {
        // S3's trouble by the one rule (a SlowDown is SystemUnavailable here as in package).
        let kind = match (&e, e.class()) {
            (_, Some(class)) => crate::aws_error::failure_kind(class),
            (ArtifactError::TooLarge { .. } | ArtifactError::NotZip { .. }, None) => {
                FailureKind::ConfigurationError
            }
            (_, None) => FailureKind::JobFailed,
        };
        ActionError::new(kind, e.to_string())
    }
}

/// One pipeline action. Implementations keep their SDK clients (built once per cold start) in `self`.
pub trait Action: Send + Sync + 'static {
    /// The action's UserParameters.
    type Params: UserParameters + Send;
    /// What it carries between invocations in the continuation token; `()` for one-shot actions.
    type State: Serialize + DeserializeOwned + Send;

    /// Does one invocation's worth of work. `state` is `None` on the first invocation of a job.
    fn run(
        &self,
        job: &Job,
        params: Self::Params,
        state: Option<Self::State>,
    ) -> impl Future<Output = Result<Outcome<Self::State>, ActionError>> + Send;
}

/// The action plus what it reports to; the part of the Lambda handler that tests call directly.
pub struct Runner<A> {
    action: A,
    reporter: Reporter,
}

impl<A: Action> Runner<A> {
    pub fn new(action: A, reporter: Reporter) -> Self {
        Runner { action, reporter }
    }

    /// Handles one event and reports it. `Err` only when the event had no job id (there is nobody to
    /// report to) or the report itself could not be sent; Lambda then records the invocation as failed.
    pub async fn handle(
        &self,
        event: serde_json::Value,
        deadline: Option<SystemTime>,
    ) -> Result<Report, ReportError> {
        let Some(job_id) = Job::id_of(&event).map(str::to_owned) else {
            error!("event has no CodePipeline.job.id; nothing to report to");
            return Err(ReportError {
                job_id: "(none)".into(),
                reason: "the event carries no job id".into(),
            });
        };
        let span = tracing::info_span!("job", job_id = %job_id);
        async {
            let report = self.decide(&event, deadline).await;
            match &report {
                Report::Success {
                    continuation_token: Some(_),
                    percent,
                    summary,
                    ..
                } => {
                    info!(percent = ?percent, summary = %summary, "job continues")
                }
                Report::Success { summary, .. } => info!(summary = %summary, "job succeeded"),
                // Not `message = ...`: that is the event's own message field, and JSON logs would
                // carry two "message" keys, the failure text overwriting "job failed".
                Report::Failure { kind, message } => {
                    warn!(kind = kind.as_str(), failure = %message, "job failed")
                }
            }
            self.reporter.send(&job_id, &report).await?;
            Ok(report)
        }
        .instrument(span)
        .await
    }

    async fn decide(&self, event: &serde_json::Value, deadline: Option<SystemTime>) -> Report {
        let job = match Job::from_event(event) {
            Ok(job) => Job { deadline, ..job },
            Err(e) => return Report::failure(FailureKind::ConfigurationError, e.to_string()),
        };
        let params = match params::parse::<A::Params>(job.user_parameters.as_deref()) {
            Ok(p) => p,
            Err(e) => return Report::failure(FailureKind::ConfigurationError, e.to_string()),
        };
        let state = match job
            .continuation_token
            .as_deref()
            .map(decode_state::<A::State>)
            .transpose()
        {
            Ok(s) => s,
            Err(e) => return Report::failure(FailureKind::JobFailed, e.to_string()),
        };
        let work = AssertUnwindSafe(self.action.run(&job, params, state)).catch_unwind();
        let result = match time_left(deadline) {
            Some(left) => match tokio::time::timeout(left, work).await {
                Ok(r) => r,
                Err(_) => {
                    return Report::failure(
                        FailureKind::JobFailed,
                        format!("the action did not finish within the Lambda time limit ({}s left when it started); raise the function's timeout or check the logs", left.as_secs()),
                    )
                }
            },
            None => work.await,
        };
        match result {
            Err(panic) => Report::failure(
                FailureKind::JobFailed,
                format!("the action panicked: {}", panic_message(&*panic)),
            ),
            Ok(Err(e)) => Report::failure(e.kind, e.message),
            Ok(Ok(outcome)) => to_report(outcome),
        }
    }
}

fn to_report<S: Serialize>(outcome: Outcome<S>) -> Report {
    match outcome {
        Outcome::Succeeded { summary, variables } => match check_variables(&variables) {
            Ok(()) => Report::Success {
                summary,
                continuation_token: None,
                percent: None,
                variables,
            },
            Err(e) => Report::failure(FailureKind::JobFailed, e),
        },
        Outcome::InProgress {
            state,
            summary,
            percent,
        } => match encode_state(&state) {
            Ok(token) => Report::Success {
                summary,
                continuation_token: Some(token),
                percent: Some(percent.min(100)),
                variables: Default::default(),
            },
            Err(e) => Report::failure(FailureKind::JobFailed, e.to_string()),
        },
        Outcome::Failed { kind, message } => Report::failure(kind, message),
    }
}

fn time_left(deadline: Option<SystemTime>) -> Option<Duration> {
    let left = deadline?
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Some(left.saturating_sub(REPORT_RESERVE))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_s3_refuses_to_hand_over_is_a_permission_error() {
        let read = |code: Option<&str>| ArtifactError::Read {
            name: "BuildOutput".into(),
            bucket: "artifacts".into(),
            key: "p/BuildOutpu/abc".into(),
            reason: "...".into(),
            code: code.map(str::to_string),
            status: None,
        };
        let kind = |e: ArtifactError| ActionError::from(e).kind;
        assert_eq!(
            kind(read(Some("AccessDenied"))),
            FailureKind::PermissionError
        );
        assert_eq!(kind(read(Some("NoSuchKey"))), FailureKind::JobFailed);
    }

    /// The artifact's S3 errors go through the one rule, as package's S3 errors do: S3 asking to
    /// slow down (SlowDown, or a bare 503 on a HEAD-like answer) or not answering is
    /// SystemUnavailable, not the deployment's failure.
    #[test]
    fn artifact_s3_errors_are_classified_by_the_one_rule() {
        use crate::aws_error::{classify, failure_kind};
        let cases: &[(Option<&str>, &str, Option<u16>, FailureKind)] = &[
            (
                Some("SlowDown"),
                "SlowDown: Please reduce your request rate.",
                Some(503),
                FailureKind::SystemUnavailable,
            ),
            (
                None,
                "service error",
                Some(503),
                FailureKind::SystemUnavailable,
            ),
            (
                None,
                "connection reset by peer",
                None,
                FailureKind::SystemUnavailable,
            ),
            (
                Some("InternalError"),
                "InternalError: We encountered an internal error.",
                Some(500),
                FailureKind::SystemUnavailable,
            ),
            (
                Some("AccessDenied"),
                "AccessDenied: Access Denied",
                Some(403),
                FailureKind::PermissionError,
            ),
            (
                Some("NoSuchBucket"),
                "NoSuchBucket: The specified bucket does not exist",
                Some(404),
                FailureKind::ConfigurationError,
            ),
            (
                Some("NoSuchKey"),
                "NoSuchKey: The specified key does not exist.",
                Some(404),
                FailureKind::JobFailed,
            ),
        ];
        for (code, reason, status, expected) in cases {
            let read = ArtifactError::Read {
                name: "BuildOutput".into(),
                bucket: "artifacts".into(),
                key: "p/BuildOutpu/abc".into(),
                reason: reason.to_string(),
                code: code.map(str::to_string),
                status: *status,
            };
            let write = ArtifactError::Write {
                name: "Out".into(),
                bucket: "artifacts".into(),
                key: "p/Out/abc".into(),
                reason: reason.to_string(),
                code: code.map(str::to_string),
                status: *status,
            };
            // The same answer as an AwsError (what package reports) gets the same failure type.
            let shared = failure_kind(classify(*code, reason, *status));
            assert_eq!(shared, *expected, "{code:?} {status:?}");
            assert_eq!(
                ActionError::from(read).kind,
                *expected,
                "{code:?} {status:?}"
            );
            assert_eq!(
                ActionError::from(write).kind,
                *expected,
                "{code:?} {status:?}"
            );
        }
    }

    #[test]
    fn artifacts_too_large_or_not_zip_are_the_builds_fault_a_full_disk_is_not() {
        let kind = |e: ArtifactError| ActionError::from(e).kind;
        let name = || "BuildOutput".to_string();
        assert_eq!(
            kind(ArtifactError::TooLarge {
                name: name(),
                size: 600,
                max: 512
            }),
            FailureKind::ConfigurationError
        );
        assert_eq!(
            kind(ArtifactError::NotZip {
                name: name(),
                reason: "invalid Zip archive".into()
            }),
            FailureKind::ConfigurationError
        );
        let full = ArtifactError::TempFile {
            name: name(),
            action: "write",
            reason: "No space left on device (os error 28)".into(),
        };
        assert_eq!(
            full.to_string(),
            "could not write the temporary file for artifact `BuildOutput`: No space left on device (os error 28)"
        );
        assert_eq!(kind(full), FailureKind::JobFailed);
    }
}
