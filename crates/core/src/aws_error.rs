//! AWS SDK errors in words for a pipeline console. Every SDK crate re-exports the same `SdkError`, so
//! one formatter serves Elastic Beanstalk, S3, Route 53 and CodePipeline alike.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The AWS error code, when AWS answered, and a message: `Code: message` as AWS put it, or the whole
/// error chain when no answer came (timeout, DNS, TLS, refused connection), since that chain is then
/// the only clue to the cause.
pub fn describe<E, R>(e: &SdkError<E, R>) -> (Option<String>, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().map(str::to_string);
    let message = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(e).to_string(),
    };
    (code, message)
}

/// Whether an AWS error code means the caller lacks a permission (a role's policy, a bucket policy, a
/// KMS key), whatever the service calls it: such a failure is the pipeline's setup, and CodePipeline is
/// told so with PermissionError.
pub fn is_permission_denied(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "AccessDenied"
                | "AccessDeniedException"
                | "AllAccessDisabled"
                | "Forbidden"
                | "InsufficientPrivilegesException"
                | "UnauthorizedOperation"
                | "KMS.AccessDeniedException"
        )
    )
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
    }
}
