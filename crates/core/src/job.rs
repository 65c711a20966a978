//! The CodePipeline job event, parsed into a validated [`Job`].
//!
//! CodePipeline invokes a Lambda action with `{"CodePipeline.job": {...}}`. We deserialize our own structs
//! rather than `aws_lambda_events`' because that one has no `encryptionKey` and makes every field optional,
//! which would push validation into every action.

use std::fmt;

/// Longest UserParameters string CodePipeline accepts; anything longer cannot have come from a pipeline.
pub const MAX_USER_PARAMETERS: usize = 1000;
/// CodePipeline passes at most five input and five output artifacts.
pub const MAX_ARTIFACTS: usize = 5;

/// Why an event could not be turned into a [`Job`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("the event is not a CodePipeline job: it has no \"CodePipeline.job\" object")]
    NotAJob,
    #[error("the CodePipeline job event is malformed at `{path}`: {reason}")]
    Malformed { path: String, reason: String },
    #[error("the job id `{0}` is not a UUID")]
    BadJobId(String),
    #[error("UserParameters is {len} characters long; CodePipeline allows at most {MAX_USER_PARAMETERS}")]
    UserParametersTooLong { len: usize },
    #[error(
        "the job has {count} {direction} artifacts; CodePipeline allows at most {MAX_ARTIFACTS}"
    )]
    TooManyArtifacts {
        direction: &'static str,
        count: usize,
    },
    #[error("artifact `{name}` is stored in `{kind}`, but only S3 artifacts are supported")]
    UnsupportedArtifactLocation { name: String, kind: String },
    #[error("encryption key `{id}` has type `{kind}`, but CodePipeline only uses KMS keys")]
    UnsupportedEncryptionKey { id: String, kind: String },
}

/// A validated CodePipeline job: what an action may rely on without checking again.
#[derive(Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub account_id: Option<String>,
    /// The action's UserParameters, raw; see [`crate::params`] to type them.
    pub user_parameters: Option<String>,
    pub input_artifacts: Vec<Artifact>,
    pub output_artifacts: Vec<Artifact>,
    pub artifact_credentials: Option<ArtifactCredentials>,
    /// Set when this invocation continues an earlier one of the same job.
    pub continuation_token: Option<String>,
    /// The KMS key output artifacts must be encrypted with, when the pipeline's artifact store has one.
    pub encryption_key: Option<String>,
    /// When Lambda stops this invocation (from the runtime, not the event; `None` outside Lambda), so an
    /// action that polls can hand back a continuation token in time instead of being cut off.
    pub deadline: Option<std::time::SystemTime>,
}

impl fmt::Debug for Job {
    // Hand-written so that a `{:?}` in a log line can never print the artifact credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("user_parameters", &self.user_parameters)
            .field("input_artifacts", &self.input_artifacts)
            .field("output_artifacts", &self.output_artifacts)
            .field(
                "artifact_credentials",
                &self.artifact_credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("continuation_token", &self.continuation_token)
            .field("encryption_key", &self.encryption_key)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// An input or output artifact: a zip object in the pipeline's artifact bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    pub revision: Option<String>,
    pub bucket: String,
    pub key: String,
}

/// Temporary credentials CodePipeline hands the action for its artifact bucket only.
#[derive(Clone, PartialEq, Eq)]
pub struct ArtifactCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for ArtifactCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// `root` and the path serde_path_to_error found below it, as a person would write it: its path of the
/// object itself is `.`, which would read `CodePipeline.job..`.
fn field_path(root: &str, below: &str) -> String {
    match below.trim_start_matches('.') {
        "" => root.to_string(),
        rest if rest.starts_with('[') => format!("{root}{rest}"),
        rest => format!("{root}.{rest}"),
    }
}

/// Kept back from the Lambda deadline by an action that waits: time for its last AWS calls and the
/// report to CodePipeline after it stops waiting.
pub const LAMBDA_RESERVE: std::time::Duration = std::time::Duration::from_secs(15);

impl Job {
    /// How long this invocation may keep waiting: [`Job::time_left`] less [`LAMBDA_RESERVE`].
    pub fn waiting_budget(&self) -> Option<std::time::Duration> {
        self.time_left(LAMBDA_RESERVE)
    }

    /// Parses and validates a Lambda payload.
    pub fn from_event(event: &serde_json::Value) -> Result<Self, EventError> {
        let raw = event.get("CodePipeline.job").ok_or(EventError::NotAJob)?;
        let wire: wire::Job =
            serde_path_to_error::deserialize(raw).map_err(|e| EventError::Malformed {
                path: field_path("CodePipeline.job", &e.path().to_string()),
                reason: e.inner().to_string(),
            })?;
        Self::validate(wire)
    }

    /// How long this invocation may still run, less `reserve` (for the report); `None` without a deadline.
    pub fn time_left(&self, reserve: std::time::Duration) -> Option<std::time::Duration> {
        let left = self
            .deadline?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        Some(left.saturating_sub(reserve))
    }

    /// The job id, if the event has one at all: lets the runner report a failure even for an event that
    /// does not validate, instead of leaving the pipeline action hanging.
    pub fn id_of(event: &serde_json::Value) -> Option<&str> {
        event.get("CodePipeline.job")?.get("id")?.as_str()
    }

    fn validate(wire: wire::Job) -> Result<Self, EventError> {
        if !is_uuid(&wire.id) {
            return Err(EventError::BadJobId(wire.id));
        }
        let data = wire.data;
        let user_parameters = data
            .action_configuration
            .and_then(|c| c.configuration.user_parameters);
        if let Some(p) = &user_parameters {
            let len = p.chars().count();
            if len > MAX_USER_PARAMETERS {
                return Err(EventError::UserParametersTooLong { len });
            }
        }
        let input_artifacts = artifacts(data.input_artifacts, "input")?;
        let output_artifacts = artifacts(data.output_artifacts, "output")?;
        let encryption_key = match data.encryption_key {
            Some(k) if !k.kind.eq_ignore_ascii_case("KMS") => {
                return Err(EventError::UnsupportedEncryptionKey {
                    id: k.id,
                    kind: k.kind,
                });
            }
            Some(k) => Some(k.id),
            None => None,
        };
        Ok(Job {
            id: wire.id,
            account_id: wire.account_id,
            user_parameters,
            input_artifacts,
            output_artifacts,
            artifact_credentials: data.artifact_credentials.map(|c| ArtifactCredentials {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: c.session_token,
            }),
            continuation_token: data.continuation_token.filter(|t| !t.is_empty()),
            encryption_key,
            deadline: None,
        })
    }

    /// The input artifact with this name, or the only one when `name` is `None`.
    pub fn input_artifact(&self, name: Option<&str>) -> Option<&Artifact> {
        pick(&self.input_artifacts, name)
    }

    /// The output artifact with this name, or the only one when `name` is `None`.
    pub fn output_artifact(&self, name: Option<&str>) -> Option<&Artifact> {
        pick(&self.output_artifacts, name)
    }
}

fn pick<'a>(list: &'a [Artifact], name: Option<&str>) -> Option<&'a Artifact> {
    match name {
        Some(n) => list.iter().find(|a| a.name == n),
        None if list.len() == 1 => list.first(),
        None => None,
    }
}

fn artifacts(
    list: Vec<wire::Artifact>,
    direction: &'static str,
) -> Result<Vec<Artifact>, EventError> {
    if list.len() > MAX_ARTIFACTS {
        return Err(EventError::TooManyArtifacts {
            direction,
            count: list.len(),
        });
    }
    list.into_iter()
        .map(|a| {
            if !a.location.kind.eq_ignore_ascii_case("S3") {
                return Err(EventError::UnsupportedArtifactLocation {
                    name: a.name,
                    kind: a.location.kind,
                });
            }
            let s3 = a
                .location
                .s3_location
                .ok_or_else(|| EventError::Malformed {
                    path: format!(
                        "CodePipeline.job.data.{direction}Artifacts[{}].location.s3Location",
                        a.name
                    ),
                    reason: "missing".into(),
                })?;
            Ok(Artifact {
                name: a.name,
                revision: a.revision,
                bucket: s3.bucket_name,
                key: s3.object_key,
            })
        })
        .collect()
}

/// 8-4-4-4-12 hex digits, as CodePipeline's model requires of job ids.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The event exactly as CodePipeline sends it; only what we use, unknown keys ignored so that new fields
/// AWS adds do not break running pipelines.
mod wire {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Job {
        pub id: String,
        pub account_id: Option<String>,
        pub data: Data,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Data {
        pub action_configuration: Option<ActionConfiguration>,
        #[serde(default)]
        pub input_artifacts: Vec<Artifact>,
        #[serde(default)]
        pub output_artifacts: Vec<Artifact>,
        pub artifact_credentials: Option<Credentials>,
        pub continuation_token: Option<String>,
        pub encryption_key: Option<EncryptionKey>,
    }

    #[derive(Deserialize)]
    pub struct ActionConfiguration {
        pub configuration: Configuration,
    }

    #[derive(Deserialize)]
    pub struct Configuration {
        #[serde(rename = "UserParameters")]
        pub user_parameters: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Artifact {
        pub name: String,
        pub revision: Option<String>,
        pub location: Location,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Location {
        #[serde(rename = "type")]
        pub kind: String,
        pub s3_location: Option<S3Location>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct S3Location {
        pub bucket_name: String,
        pub object_key: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Credentials {
        pub access_key_id: String,
        pub secret_access_key: String,
        pub session_token: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct EncryptionKey {
        pub id: String,
        #[serde(rename = "type")]
        pub kind: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/codepipeline-job.json"
        ))
        .unwrap()
    }

    #[test]
    fn parses_the_checked_in_fixture() {
        let job = Job::from_event(&fixture()).unwrap();
        assert_eq!(job.id, "11111111-abcd-1111-abcd-111111abcdef");
        assert_eq!(job.account_id.as_deref(), Some("111111111111"));
        assert_eq!(
            job.user_parameters.as_deref(),
            Some(r#"{"application":"shop","health_path":"/health"}"#)
        );
        assert_eq!(job.input_artifacts.len(), 1);
        assert_eq!(job.input_artifacts[0].name, "BuildOutput");
        assert_eq!(job.input_artifacts[0].bucket, "codepipeline-artifacts");
        assert_eq!(
            job.input_artifacts[0].key,
            "shop-pipeline/BuildOutpu/abc123"
        );
        assert_eq!(job.output_artifacts[0].name, "AppBundle");
        assert_eq!(
            job.encryption_key.as_deref(),
            Some("arn:aws:kms:us-east-1:111111111111:key/1234abcd")
        );
        assert_eq!(job.continuation_token, None);
        let creds = job.artifact_credentials.as_ref().unwrap();
        assert_eq!(creds.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let job = Job::from_event(&fixture()).unwrap();
        let printed = format!("{job:?}");
        assert!(!printed.contains("wJalrXUtnFEMI"), "{printed}");
        assert!(!printed.contains("session-token-value"), "{printed}");
    }

    #[test]
    fn rejects_bad_events_naming_the_cause() {
        let mut no_data = fixture();
        no_data["CodePipeline.job"]
            .as_object_mut()
            .unwrap()
            .remove("data");
        let mut bad_artifact = fixture();
        bad_artifact["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"]["s3Location"]
            ["bucketName"] = json!(42);
        let mut bad_id = fixture();
        bad_id["CodePipeline.job"]["id"] = json!("not-a-uuid");
        let mut long_params = fixture();
        long_params["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]
            ["UserParameters"] = json!("x".repeat(1001));
        let mut six = fixture();
        let one = six["CodePipeline.job"]["data"]["inputArtifacts"][0].clone();
        six["CodePipeline.job"]["data"]["inputArtifacts"] = json!(vec![one; 6]);
        let mut codecommit = fixture();
        codecommit["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"]["type"] =
            json!("CodeCommit");

        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!({"Records": []}), "no \"CodePipeline.job\" object"),
            (
                no_data,
                "malformed at `CodePipeline.job`: missing field `data`",
            ),
            (
                bad_artifact,
                "CodePipeline.job.data.inputArtifacts[0].location.s3Location.bucketName",
            ),
            (bad_id, "`not-a-uuid` is not a UUID"),
            (long_params, "1001 characters long"),
            (six, "6 input artifacts"),
            (codecommit, "stored in `CodeCommit`"),
        ];
        for (event, expected) in cases {
            let err = Job::from_event(&event).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
            assert!(!err.contains(".."), "a path reads as words: {err}");
        }
    }

    #[test]
    fn field_paths_read_as_written() {
        assert_eq!(field_path("CodePipeline.job", "."), "CodePipeline.job");
        assert_eq!(
            field_path("CodePipeline.job", "data.x"),
            "CodePipeline.job.data.x"
        );
        assert_eq!(field_path("CodePipeline.job", "[0]"), "CodePipeline.job[0]");
    }

    #[test]
    fn a_continuation_token_and_no_artifacts_are_fine() {
        let event = json!({"CodePipeline.job": {"id": "22222222-abcd-1111-abcd-111111abcdef",
            "data": {"continuationToken": "v1:{}"}}});
        let job = Job::from_event(&event).unwrap();
        assert_eq!(job.continuation_token.as_deref(), Some("v1:{}"));
        assert!(job.input_artifacts.is_empty());
        assert_eq!(job.user_parameters, None);
    }

    #[test]
    fn id_of_works_on_events_that_do_not_validate() {
        let event = json!({"CodePipeline.job": {"id": "33333333-abcd-1111-abcd-111111abcdef"}});
        assert!(Job::from_event(&event).is_err());
        assert_eq!(
            Job::id_of(&event),
            Some("33333333-abcd-1111-abcd-111111abcdef")
        );
    }

    #[test]
    fn picks_artifacts_by_name_or_the_only_one() {
        let job = Job::from_event(&fixture()).unwrap();
        assert_eq!(job.input_artifact(None).unwrap().name, "BuildOutput");
        assert_eq!(
            job.input_artifact(Some("BuildOutput")).unwrap().name,
            "BuildOutput"
        );
        assert!(job.input_artifact(Some("Nope")).is_none());
    }
}
