//! Waiting for Elastic Beanstalk to process a new version (`process`): the job is ended at once, or
//! handed back with a continuation token and polled again by later invocations, with backoff across them,
//! until the version is Processed, Failed or past `process_timeout`. Apart because it is the part of
//! package that spans invocations.

use std::future::Future;
use std::time::Duration;

use super::version::status_of;
use super::version::Versions;
use super::{BundleStore, PackageError, State};
use crate::aws_error::AwsError;
use crate::beanstalk::{poll_delay, BeanstalkApi};
use crate::clock::{unix_seconds, Clock};
use crate::outcome::Outcome;

impl<B: BeanstalkApi, S: BundleStore, C: Clock> Versions<'_, B, S, C> {
    /// Ends the job, or hands back a token while Beanstalk processes the version.
    pub(super) async fn settle(
        &self,
        state: State,
        status: String,
    ) -> Result<Outcome<State>, PackageError> {
        let settings = self.settings;
        if !settings.process || status == "Processed" {
            return Ok(finished(state, settings.process));
        }
        if status == "Failed" {
            return Err(self.processing_failed(&state.label, &status).await);
        }
        let summary = format!(
            "version `{}` is {status}; waiting for Elastic Beanstalk to process it",
            state.label
        );
        Ok(Outcome::InProgress {
            state,
            summary,
            percent: 50,
        })
    }

    /// A continuation: polls the version for a while, then ends the job or hands back a new token.
    pub(super) async fn wait(
        &self,
        state: State,
        budget: Duration,
    ) -> Result<Outcome<State>, PackageError> {
        let settings = self.settings;
        let label = state.label.clone();
        let poll = || async { Ok(self.version(&label).await?.map(|v| status_of(&v))) };
        let wait = Wait {
            application: &settings.application,
            timeout: settings.process_timeout,
            budget,
            clock: self.clock,
        };
        match wait.run(poll, state).await? {
            Waited::Over(outcome) => Ok(outcome),
            Waited::Failed { label, status } => Err(self.processing_failed(&label, &status).await),
        }
    }

    async fn processing_failed(&self, label: &str, status: &str) -> PackageError {
        let settings = self.settings;
        let events = match self
            .beanstalk
            .version_events(&settings.application, label, 20)
            .await
        {
            Ok(events) => {
                let lines: Vec<String> = events
                    .iter()
                    .map(|e| format!("{} {}", e.severity, e.message))
                    .collect();
                if lines.is_empty() {
                    "(no events)".to_string()
                } else {
                    lines.join("\n")
                }
            }
            Err(mut e) => {
                // The role may not read why: that is the failure to fix first, never left out.
                if e.class() == crate::aws_error::ErrorClass::PermissionDenied {
                    e.message = format!(
                        "version `{label}` of `{}` could not be processed (status {status}), and reading why was refused: {}",
                        settings.application, e.message
                    );
                    return PackageError::Aws(e);
                }
                format!("(events unavailable: {e})")
            }
        };
        PackageError::ProcessingFailed {
            application: settings.application.clone(),
            label: label.to_string(),
            status: status.to_string(),
            events,
        }
    }
}

pub(super) fn finished(state: State, processed: bool) -> Outcome<State> {
    let summary = if processed {
        format!("{}; processed by Elastic Beanstalk", state.summary)
    } else {
        state.summary
    };
    Outcome::succeeded(summary)
        .with_variable("VersionLabel", state.label)
        .with_variable("BundleBucket", state.bucket)
        .with_variable("BundleKey", state.key)
        .with_variable("BundleSha256", state.sha256)
}

/// How the processing wait ended: the job's outcome (processed, or a new token), or processing
/// Failed (the caller reads the version's events).
pub(super) enum Waited {
    Over(Outcome<State>),
    Failed { label: String, status: String },
}

/// The processing wait of one invocation, apart from the SDK: `poll` reads the version's status
/// (`None` when the version is gone).
pub(super) struct Wait<'a, C> {
    pub application: &'a str,
    /// UserParameters `process_timeout_minutes`, counted from `State::since`.
    pub timeout: Duration,
    /// How long this invocation may keep polling before it hands back a token.
    pub budget: Duration,
    /// What the wait reads the time from and sleeps on.
    pub clock: &'a C,
}

impl<C: Clock> Wait<'_, C> {
    pub(super) async fn run<P, F>(
        &self,
        mut poll: P,
        mut state: State,
    ) -> Result<Waited, PackageError>
    where
        P: FnMut() -> F,
        F: Future<Output = Result<Option<String>, PackageError>>,
    {
        let started = self.clock.now();
        loop {
            let polled = match poll().await {
                Err(PackageError::Aws(e)) => crate::aws_error::polled(Err(e))?,
                other => Ok(other?),
            };
            let status = match polled {
                Ok(status) => status,
                Err(e) => {
                    let now = unix_seconds(self.clock.now());
                    if now.saturating_sub(state.since) > self.timeout.as_secs() {
                        return Err(self.timed_out_turned_away(state, e));
                    }
                    state.polls += 1;
                    let delay = poll_delay(state.polls);
                    if self.clock.since(started) + delay > self.budget {
                        let summary = format!(
                            "version `{}`: Elastic Beanstalk asked us to slow down; still waiting for it to be processed",
                            state.label
                        );
                        return Ok(Waited::Over(Outcome::InProgress {
                            state,
                            summary,
                            percent: 50,
                        }));
                    }
                    self.clock.sleep(delay).await;
                    continue;
                }
            };
            let status = status.ok_or_else(|| {
                PackageError::Internal(format!(
                    "version `{}` of `{}` disappeared while it was being processed",
                    state.label, self.application
                ))
            })?;
            state.polls += 1;
            state.status = Some(status.clone());
            match status.as_str() {
                "Processed" => return Ok(Waited::Over(finished(state, true))),
                "Failed" => {
                    return Ok(Waited::Failed {
                        label: state.label,
                        status,
                    })
                }
                _ => {}
            }
            let waited = unix_seconds(self.clock.now()).saturating_sub(state.since);
            if waited > self.timeout.as_secs() {
                return Err(PackageError::ProcessingTimeout {
                    application: self.application.to_string(),
                    label: state.label,
                    status,
                    minutes: self.timeout.as_secs() / 60,
                });
            }
            // The backoff goes on across invocations (a long processing is polled every 10 s, not
            // quickly again after each hand-over).
            let delay = poll_delay(state.polls);
            if self.clock.since(started) + delay > self.budget {
                let summary = format!(
                    "version `{}` is {status} after {waited}s; still waiting for Elastic Beanstalk to process it",
                    state.label
                );
                let percent = 50 + (state.polls.min(45) as u8);
                return Ok(Waited::Over(Outcome::InProgress {
                    state,
                    summary,
                    percent,
                }));
            }
            self.clock.sleep(delay).await;
        }
    }

    /// The timeout passed on a poll AWS turned away. When no poll of the wait ever answered, the
    /// version's processing was never seen at all: that is AWS's trouble (SystemUnavailable for
    /// throttling, by the one rule, as stage's and backup's waits end), not a processing that took too
    /// long. When polls did answer, the version was seen not processed in time: the real timeout
    /// (JobFailed), its last status said.
    fn timed_out_turned_away(&self, state: State, e: AwsError) -> PackageError {
        let minutes = self.timeout.as_secs() / 60;
        match state.status {
            Some(status) => PackageError::ProcessingTimeout {
                application: self.application.to_string(),
                label: state.label,
                status: format!("{status} (Elastic Beanstalk throttled the last poll)"),
                minutes,
            },
            None => PackageError::ProcessingUnseen {
                application: self.application.to_string(),
                label: state.label,
                minutes,
                error: Box::new(e),
            },
        }
    }
}
