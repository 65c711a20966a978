//! The Lambda side of every beanswap function: logging set up for CloudWatch, the SDK configuration and
//! clients built once per cold start, and lambda_runtime's event loop handing each event to
//! [`beanswap_core::runner::Runner`]. Kept out of beanswap-core, which the CLI shares and which knows
//! nothing of Lambda.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aws_config::{BehaviorVersion, SdkConfig};
use beanswap_core::report::{ReportError, Reporter};
use beanswap_core::runner::{Action, Runner};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

/// lambda_runtime's error type, so functions need no direct dependency on it.
pub use lambda_runtime::Error;

/// Log targets that write credentials at verbose levels, and the most verbose level each may log at,
/// whatever `RUST_LOG` asks for: lambda_runtime logs the raw event (the job's artifact credentials) at
/// TRACE; the SDK's orchestrator logs the resolved identity (the access key id) with the endpoint
/// parameters at DEBUG and with auth at TRACE; sigv4 logs the request being signed at TRACE.
const CREDENTIAL_TARGETS: [(&str, tracing::Level); 5] = [
    (
        "lambda_runtime::layers::api_response",
        tracing::Level::DEBUG,
    ),
    (
        "aws_smithy_runtime::client::orchestrator",
        tracing::Level::DEBUG,
    ),
    (
        "aws_smithy_runtime::client::orchestrator::endpoints",
        tracing::Level::INFO,
    ),
    (
        "aws_smithy_runtime::client::orchestrator::auth",
        tracing::Level::DEBUG,
    ),
    ("aws_sigv4", tracing::Level::DEBUG),
];

/// JSON logs in Lambda (CloudWatch parses them), plain text on a terminal. `RUST_LOG` sets the level,
/// except that the targets in [`CREDENTIAL_TARGETS`] never log above their cap: even a `RUST_LOG=trace`
/// set to debug a deployment writes no credentials to CloudWatch.
pub fn init_logging() {
    use tracing_subscriber::filter::{FilterExt, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let requested = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let capped = CREDENTIAL_TARGETS.iter().fold(
        Targets::new().with_default(tracing::Level::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    );
    let filter = requested.and(capped);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let result = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        let json = layer
            .json()
            .with_current_span(true)
            .without_time()
            .with_filter(filter);
        tracing_subscriber::registry().with(json).try_init()
    } else {
        tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .try_init()
    };
    // Already initialised (tests): keep the existing subscriber.
    let _ = result;
}

/// What Lambda records for an invocation whose job could not be reported (the runner reports every
/// other failure to CodePipeline itself). lambda_runtime's default names the error by its Rust type
/// (`beanswap_core::report::ReportError`), which tells a person reading the Lambda console nothing.
pub fn diagnostic(e: ReportError) -> Diagnostic {
    Diagnostic {
        error_type: "JobNotReported".into(),
        error_message: e.to_string(),
    }
}

/// The whole `main` of a function: logging, SDK config and clients once per cold start, then the Lambda
/// event loop. `make` builds the action from the shared SDK config.
pub async fn run<A, F>(make: F) -> Result<(), Error>
where
    A: Action,
    F: FnOnce(&SdkConfig) -> A,
{
    init_logging();
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let reporter = Reporter::new(aws_sdk_codepipeline::Client::new(&config));
    let runner = Arc::new(Runner::new(make(&config), reporter));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let runner = Arc::clone(&runner);
        async move {
            let deadline = UNIX_EPOCH.checked_add(Duration::from_millis(event.context.deadline));
            runner
                .handle(event.payload, deadline)
                .await
                .map(|_| serde_json::Value::Null)
                .map_err(diagnostic)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreported_job_reads_as_words_in_lambdas_console() {
        let d = diagnostic(ReportError {
            job_id: "11111111-abcd-1111-abcd-111111abcdef".into(),
            reason: "AccessDeniedException: not authorized".into(),
        });
        assert_eq!(d.error_type, "JobNotReported");
        assert!(!d.error_type.contains("::"));
        assert!(
            d.error_message
                .contains("could not report job 11111111-abcd-1111-abcd-111111abcdef")
                && d.error_message.contains("not authorized"),
            "{}",
            d.error_message
        );
    }
}
