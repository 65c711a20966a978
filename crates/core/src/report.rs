//! Sending an [`Outcome`](crate::outcome::Outcome) to CodePipeline as PutJobSuccessResult or
//! PutJobFailureResult.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType};

use crate::outcome::{limits, truncate, FailureKind};

/// What is sent, already within CodePipeline's limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Success {
        summary: String,
        /// Set while the job goes on; CodePipeline then invokes the action again with it.
        continuation_token: Option<String>,
        percent: Option<u8>,
        variables: BTreeMap<String, String>,
    },
    Failure {
        kind: FailureKind,
        message: String,
    },
}

impl Report {
    pub fn failure(kind: FailureKind, message: impl AsRef<str>) -> Self {
        Report::Failure {
            kind,
            message: truncate(message.as_ref(), limits::FAILURE_MESSAGE),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not report job {job_id} to CodePipeline: {reason}")]
pub struct ReportError {
    pub job_id: String,
    pub reason: String,
}

/// The CodePipeline client, built once per cold start.
#[derive(Clone, Debug)]
pub struct Reporter {
    client: aws_sdk_codepipeline::Client,
}

impl Reporter {
    pub fn new(client: aws_sdk_codepipeline::Client) -> Self {
        Reporter { client }
    }

    pub async fn send(&self, job_id: &str, report: &Report) -> Result<(), ReportError> {
        let fail = |reason: String| ReportError {
            job_id: job_id.to_string(),
            reason,
        };
        match report {
            Report::Success {
                summary,
                continuation_token,
                percent,
                variables,
            } => {
                let details = ExecutionDetails::builder()
                    .summary(truncate(summary, limits::SUMMARY))
                    .set_percent_complete(percent.map(|p| i32::from(p.min(100))))
                    .build();
                // Output variables are only accepted on the final result.
                let variables = match continuation_token {
                    None if !variables.is_empty() => Some(
                        variables
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<HashMap<_, _>>(),
                    ),
                    _ => None,
                };
                let sent = self
                    .client
                    .put_job_success_result()
                    .job_id(job_id)
                    .set_continuation_token(continuation_token.clone())
                    .execution_details(details)
                    .set_output_variables(variables)
                    .send()
                    .await;
                if let Err(e) = sent {
                    let refused = crate::aws_error::AwsError::from_sdk(
                        crate::aws_error::Service::CodePipeline,
                        "PutJobSuccessResult",
                        e,
                    );
                    // A role that may not report success (codepipeline:PutJobSuccessResult) may still
                    // report failure: the job then fails as a PermissionError naming what is missing,
                    // instead of hanging until CodePipeline's timeout.
                    if refused.class() == crate::aws_error::ErrorClass::PermissionDenied {
                        let report = Report::failure(
                            crate::outcome::FailureKind::PermissionError,
                            refused.to_string(),
                        );
                        return Box::pin(self.send(job_id, &report)).await;
                    }
                    return Err(fail(refused.message));
                }
            }
            Report::Failure { kind, message } => {
                let details = FailureDetails::builder()
                    .r#type(FailureType::from(kind.as_str()))
                    .message(truncate(message, limits::FAILURE_MESSAGE))
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                self.client
                    .put_job_failure_result()
                    .job_id(job_id)
                    .failure_details(details)
                    .send()
                    .await
                    .map_err(|e| fail(crate::aws_error::describe(&e).1))?;
            }
        }
        Ok(())
    }
}
