//! The one AWS error type every action uses, and the one rule that classifies it.
//!
//! Every SDK crate re-exports the same `SdkError`, so one constructor serves Elastic Beanstalk, S3,
//! Route 53 and CodePipeline alike, and one classification ([`AwsError::class`]) decides for all of
//! them what is transient (waited out by the action that polls), what is the pipeline's setup
//! (permission, configuration) and what is a failed deployment. [`failure_kind`] is the only mapping
//! from that class to CodePipeline's failure types.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::outcome::FailureKind;
use crate::runner::ActionError;

/// The AWS service that answered (or did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    ElasticBeanstalk,
    S3,
    Route53,
    CodePipeline,
    Rds,
    CloudWatch,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::ElasticBeanstalk => "Elastic Beanstalk",
            Service::S3 => "S3",
            Service::Route53 => "Route 53",
            Service::CodePipeline => "CodePipeline",
            Service::Rds => "RDS",
            Service::CloudWatch => "CloudWatch",
        })
    }
}

/// For a progress summary: the transient trouble being waited out (empty when there is none).
pub fn waiting_out(transient: &str) -> String {
    if transient.is_empty() {
        String::new()
    } else {
        format!(" (AWS: {transient}; waiting it out)")
    }
}

/// What kind of trouble an AWS error is, by the one rule in [`AwsError::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// AWS asked us to slow down (Throttling, SlowDown, ...): wait and try again.
    Throttled,
    /// AWS did not answer, or answered with a server error (5xx, InternalFailure, a timeout): a later
    /// attempt may succeed.
    Unavailable,
    /// The environment is busy with another operation ("is in an invalid state for this operation.
    /// Must be Ready.", OperationInProgressFailure): it will be Ready again.
    Busy,
    /// The caller lacks a permission (a role's policy, a bucket policy, a KMS key).
    PermissionDenied,
    /// AWS refused a parameter or a missing resource that the pipeline's setup names.
    Configuration,
    /// Anything else: the deployment went wrong.
    Failed,
}

impl ErrorClass {
    /// Trouble that passes by itself: an action that is waiting anyway skips the attempt, backs off
    /// and goes on waiting, instead of turning it into a verdict.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorClass::Throttled | ErrorClass::Unavailable | ErrorClass::Busy
        )
    }
}

/// CodePipeline's failure type for an error of this class, when it does end a job: throttling and
/// unavailability that outlast an action's own waiting are SystemUnavailable (a retry may help); a busy
/// environment that stays busy is the deployment's trouble (someone else is changing it).
pub fn failure_kind(class: ErrorClass) -> FailureKind {
    match class {
        ErrorClass::Throttled | ErrorClass::Unavailable => FailureKind::SystemUnavailable,
        ErrorClass::PermissionDenied => FailureKind::PermissionError,
        ErrorClass::Configuration => FailureKind::ConfigurationError,
        ErrorClass::Busy | ErrorClass::Failed => FailureKind::JobFailed,
    }
}

/// A failed AWS call, worded for a pipeline console: the service, the operation, what it was called
/// on, and AWS's code and message (or, when no answer came, the whole error chain).
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation}{} failed: {message}", on.as_deref().map(|o| format!(" on {o}")).unwrap_or_default())]
pub struct AwsError {
    pub service: Service,
    pub operation: &'static str,
    /// What the call was about, when it helps the reader: `s3://bucket/key`, a hosted zone.
    pub on: Option<String>,
    /// AWS's error code (`InvalidParameterValue`, `Throttling`, `AccessDenied`, ...), when it answered.
    pub code: Option<String>,
    /// `Code: message` as AWS put it, or the error chain when there was no answer.
    pub message: String,
    /// The HTTP status of AWS's answer, when there was one.
    pub status: Option<u16>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl AwsError {
    /// From any SDK client's error.
    pub fn from_sdk<E, R>(service: Service, operation: &'static str, e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + HttpStatus + Send + Sync + 'static,
    {
        let (code, message) = describe(&e);
        let status = e.raw_response().and_then(HttpStatus::http_status);
        AwsError {
            service,
            operation,
            on: None,
            code,
            message,
            status,
            source: Some(Box::new(e)),
        }
    }

    /// An error with no SDK error behind it (a request that could not be built, a body that broke off).
    pub fn other(service: Service, operation: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            service,
            operation,
            on: None,
            code: None,
            message: message.into(),
            status: None,
            source: None,
        }
    }

    /// An answer AWS gave with `code` (and HTTP 400, as most refusals come): what in-memory fakes and
    /// tests build.
    pub fn answered(
        service: Service,
        operation: &'static str,
        code: &str,
        message: impl AsRef<str>,
    ) -> Self {
        let status = match classify(Some(code), message.as_ref(), None) {
            ErrorClass::PermissionDenied => 403,
            ErrorClass::Unavailable => 500,
            _ => 400,
        };
        AwsError {
            service,
            operation,
            on: None,
            code: Some(code.to_string()),
            message: format!("{code}: {}", message.as_ref()),
            status: Some(status),
            source: None,
        }
    }

    /// Names what the call was about in the message.
    pub fn on(mut self, what: impl Into<String>) -> Self {
        self.on = Some(what.into());
        self
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The one classification rule, for every service.
    pub fn class(&self) -> ErrorClass {
        classify(self.code(), &self.message, self.status)
    }

    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }

    /// Beanstalk's answer to an operation on an environment that is busy (Launching, Updating,
    /// Terminating).
    pub fn is_busy(&self) -> bool {
        self.class() == ErrorClass::Busy
    }
}

impl From<AwsError> for ActionError {
    fn from(e: AwsError) -> Self {
        ActionError {
            kind: failure_kind(e.class()),
            message: e.to_string(),
            aws: Some(Box::new(e)),
        }
    }
}

/// A poll's answer, or `None` when AWS only asked the poller to wait (throttling, a moment's
/// unavailability, a busy environment): the poll is skipped and the poller's backoff goes on. Every
/// action that polls goes through this, so a transient error during a wait is never a verdict.
pub fn unless_transient<T>(answer: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "transient AWS trouble while polling; skipping this poll");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A poll's answer (`Ok`), or the transient error that turned it away (`Err`, to be skipped like
/// [`unless_transient`] does); the outer error is a verdict. For a poller that bounds how long it
/// waits transient trouble out and then names the call that kept failing.
pub fn polled<T>(answer: Result<T, AwsError>) -> Result<Result<T, AwsError>, AwsError> {
    match answer {
        Ok(value) => Ok(Ok(value)),
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "transient AWS trouble while polling; skipping this poll");
            Ok(Err(e))
        }
        Err(e) => Err(e),
    }
}

/// The HTTP status of a raw response, for the SDK's response types (the unit type in tests has none).
pub trait HttpStatus {
    fn http_status(&self) -> Option<u16>;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn http_status(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
}

impl HttpStatus for () {
    fn http_status(&self) -> Option<u16> {
        None
    }
}

/// Codes AWS services use for "slow down", across Beanstalk (Throttling), the JSON services
/// (ThrottlingException), EC2-style APIs (RequestLimitExceeded), S3 (SlowDown, 503) and Route 53
/// (Throttling, PriorRequestNotComplete: "the previous request has not yet completed").
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
];

/// Codes for a server-side failure that a later attempt may not meet.
const UNAVAILABLE: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Codes that mean the caller lacks a permission, whatever the service calls it.
const PERMISSION_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "Forbidden",
    "InsufficientPrivilegesException",
    "UnauthorizedOperation",
    "KMS.AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

/// Codes that name a parameter or resource the pipeline's setup gives: retrying will not help.
const CONFIGURATION: &[&str] = &[
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
    "S3LocationNotInServiceRegionException",
    "NoSuchBucket",
    "NoSuchHostedZone",
    "InvalidChangeBatch",
    "InvalidInput",
    "InvalidDomainName",
    // RDS: the pipeline names an instance that does not exist (DescribeDBSnapshots, CreateDBSnapshot).
    "DBInstanceNotFound",
];

/// The one rule: transient trouble first (so a busy environment's InvalidParameterValue is not read
/// as a bad parameter), then permissions, then configuration; no answer at all is Unavailable.
pub fn classify(code: Option<&str>, message: &str, status: Option<u16>) -> ErrorClass {
    let Some(code) = code else {
        return match status {
            Some(429) => ErrorClass::Throttled,
            Some(403) => ErrorClass::PermissionDenied,
            Some(s) if s < 500 => ErrorClass::Failed,
            // A 5xx without a code, a timeout, a refused connection, DNS, TLS.
            _ => ErrorClass::Unavailable,
        };
    };
    if THROTTLED.contains(&code) {
        return ErrorClass::Throttled;
    }
    // "Environment named X is in an invalid state for this operation. Must be Ready." comes as
    // InvalidParameterValue (UpdateEnvironment, SwapEnvironmentCNAMEs, TerminateEnvironment) or as
    // OperationInProgressFailure.
    // RDS refuses a snapshot while the instance is not `available` (modifying, backing up, ...) with
    // InvalidDBInstanceState (RDS API Reference, CreateDBSnapshot, Errors): it will be available again.
    if code == "OperationInProgressFailure"
        || code == "InvalidDBInstanceState"
        || (code == "InvalidParameterValue" && message.contains("invalid state"))
    {
        return ErrorClass::Busy;
    }
    if UNAVAILABLE.contains(&code) || status.is_some_and(|s| s >= 500) {
        return ErrorClass::Unavailable;
    }
    if PERMISSION_DENIED.contains(&code) {
        return ErrorClass::PermissionDenied;
    }
    if CONFIGURATION.contains(&code) {
        return ErrorClass::Configuration;
    }
    ErrorClass::Failed
}

/// The AWS error code, when AWS answered, and a message: `Code: message` as AWS put it, or the whole
/// error chain when no answer came (timeout, DNS, TLS, refused connection), since that chain is then
/// the only clue to the cause.
pub fn describe<E, R>(e: &SdkError<E, R>) -> (Option<String>, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let code = e.code().map(str::to_string);
    let message = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(e).to_string(),
    };
    (code, message)
}

/// Whether an AWS error code means the caller lacks a permission: the same rule as [`classify`], for
/// errors that only kept their code.
pub fn is_permission_denied(code: Option<&str>) -> bool {
    code.is_some_and(|c| classify(Some(c), "", None) == ErrorClass::PermissionDenied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_smithy_types::error::ErrorMetadata;

    fn answered(code: &str, message: Option<&str>) -> SdkError<GetObjectError, ()> {
        let mut meta = ErrorMetadata::builder().code(code);
        if let Some(m) = message {
            meta = meta.message(m);
        }
        SdkError::service_error(GetObjectError::generic(meta.build()), ())
    }

    #[test]
    fn an_answer_reads_as_code_and_message() {
        let (code, message) = describe(&answered("NoSuchKey", Some("The key does not exist")));
        assert_eq!(code.as_deref(), Some("NoSuchKey"));
        assert_eq!(message, "NoSuchKey: The key does not exist");
    }

    #[test]
    fn an_answer_without_a_message_reads_as_its_code() {
        // S3 answers HEAD requests with a status and no body, so there is no message to show.
        assert_eq!(describe(&answered("NotFound", None)).1, "NotFound");
    }

    #[test]
    fn no_answer_shows_the_whole_chain() {
        let e: SdkError<GetObjectError, ()> =
            SdkError::timeout_error("operation timed out after 3s");
        let (code, message) = describe(&e);
        assert_eq!(code, None);
        assert!(
            message.contains("operation timed out after 3s"),
            "{message}"
        );
        let e = AwsError::from_sdk(Service::S3, "GetObject", e).on("s3://b/k");
        assert_eq!(e.class(), ErrorClass::Unavailable);
        assert!(
            e.to_string()
                .starts_with("S3 GetObject on s3://b/k failed: "),
            "{e}"
        );
        assert!(
            std::error::Error::source(&e).is_some(),
            "the SDK error is kept as the source"
        );
    }

    /// Every code the issue names as throttling, every service's permission code, and the busy
    /// environment, each with the failure type CodePipeline is told when it does end a job.
    #[test]
    fn one_rule_classifies_every_services_errors() {
        use ErrorClass::*;
        /// Code, message, HTTP status; the class; the failure type.
        type Case<'a> = (
            Option<&'a str>,
            &'a str,
            Option<u16>,
            ErrorClass,
            FailureKind,
        );
        let cases: &[Case] = &[
            (Some("Throttling"), "Rate exceeded", Some(400), Throttled, FailureKind::SystemUnavailable),
            (Some("ThrottlingException"), "Rate exceeded", Some(400), Throttled, FailureKind::SystemUnavailable),
            (Some("RequestLimitExceeded"), "", Some(503), Throttled, FailureKind::SystemUnavailable),
            (Some("TooManyRequests"), "", Some(429), Throttled, FailureKind::SystemUnavailable),
            (Some("SlowDown"), "Please reduce your request rate.", Some(503), Throttled, FailureKind::SystemUnavailable),
            (Some("PriorRequestNotComplete"), "", Some(400), Throttled, FailureKind::SystemUnavailable),
            (None, "", Some(429), Throttled, FailureKind::SystemUnavailable),
            (Some("InternalFailure"), "", Some(500), Unavailable, FailureKind::SystemUnavailable),
            (None, "dispatch failure: connection refused", None, Unavailable, FailureKind::SystemUnavailable),
            (Some("SomethingNew"), "", Some(502), Unavailable, FailureKind::SystemUnavailable),
            (
                Some("InvalidParameterValue"),
                "Environment named shop-a is in an invalid state for this operation. Must be Ready.",
                Some(400),
                Busy,
                FailureKind::JobFailed,
            ),
            (Some("OperationInProgressFailure"), "", Some(400), Busy, FailureKind::JobFailed),
            (Some("InsufficientPrivilegesException"), "", Some(403), PermissionDenied, FailureKind::PermissionError),
            (Some("AccessDenied"), "", Some(403), PermissionDenied, FailureKind::PermissionError),
            (Some("AccessDeniedException"), "", Some(400), PermissionDenied, FailureKind::PermissionError),
            (None, "", Some(403), PermissionDenied, FailureKind::PermissionError),
            (
                Some("InvalidParameterValue"),
                "No Application Version named 'v9' found.",
                Some(400),
                Configuration,
                FailureKind::ConfigurationError,
            ),
            (Some("NoSuchHostedZone"), "", Some(404), Configuration, FailureKind::ConfigurationError),
            (Some("NoSuchBucket"), "", Some(404), Configuration, FailureKind::ConfigurationError),
            (Some("NoSuchKey"), "", Some(404), Failed, FailureKind::JobFailed),
            (Some("InvalidDBInstanceState"), "", Some(400), Busy, FailureKind::JobFailed),
            (Some("DBInstanceNotFound"), "", Some(404), Configuration, FailureKind::ConfigurationError),
            (Some("SnapshotQuotaExceeded"), "", Some(400), Failed, FailureKind::JobFailed),
            (None, "", Some(404), Failed, FailureKind::JobFailed),
        ];
        for (code, message, status, class, kind) in cases {
            let got = classify(*code, message, *status);
            assert_eq!(got, *class, "{code:?} {message:?} {status:?}");
            assert_eq!(failure_kind(got), *kind, "{code:?} {message:?}");
            assert_eq!(
                got.is_transient(),
                matches!(class, Throttled | Unavailable | Busy)
            );
        }
    }

    #[test]
    fn an_error_becomes_an_action_error_by_the_same_rule() {
        let e = AwsError::from_sdk(
            Service::ElasticBeanstalk,
            "DescribeEvents",
            answered("Throttling", Some("Rate exceeded")),
        );
        let a = ActionError::from(e);
        assert_eq!(a.kind, FailureKind::SystemUnavailable);
        assert_eq!(
            a.message,
            "Elastic Beanstalk DescribeEvents failed: Throttling: Rate exceeded"
        );
    }
}
