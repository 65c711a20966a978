//! beanswap: the command line. For now it runs one action locally exactly as CodePipeline would: the
//! function binary under a local Lambda Runtime API, its CodePipeline calls answered by local-aws.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use local_aws::lambda::{Function, Invocation};
use local_aws::LocalAws;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "beanswap",
    version,
    about = "Zero-downtime blue/green deployment to AWS Elastic Beanstalk"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one action's function locally as a CodePipeline job and print what it reported.
    Invoke {
        /// The function's binary name, e.g. `check-config` (built into the same target directory).
        function: String,
        /// The action's UserParameters (JSON).
        #[arg(long, default_value = "{}")]
        user_parameters: String,
        /// A whole CodePipeline job event (JSON file) instead of the generated one.
        #[arg(long)]
        event: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("no function binary at {0}; build it first: cargo build -p {1}")]
    NoBinary(PathBuf, String),
    #[error("could not read the event file {0}: {1}")]
    Event(PathBuf, String),
    #[error("{0}")]
    Local(String),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Invoke {
            function,
            user_parameters,
            event,
        } => invoke(&function, &user_parameters, event.as_deref()).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("beanswap: {e}");
            ExitCode::from(2)
        }
    }
}

async fn invoke(
    function: &str,
    user_parameters: &str,
    event: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let binary = sibling_binary(function);
    if !binary.exists() {
        return Err(CliError::NoBinary(binary, function.to_string()));
    }
    let event = match event {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Event(path.into(), e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| CliError::Event(path.into(), e.to_string()))?
        }
        None => generated_event(function, user_parameters),
    };
    let local = LocalAws::start(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| CliError::Local(format!("could not start local-aws: {e}")))?;
    let mut running = Function::start(
        &binary,
        &[("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint())],
    )
    .await
    .map_err(|e| CliError::Local(e.to_string()))?;
    let invocation = running
        .invoke(event)
        .await
        .map_err(|e| CliError::Local(e.to_string()))?;
    let results = local.job_results();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!(results)).unwrap_or_default()
    );
    let failed = results.iter().any(|r| r.operation == "PutJobFailureResult");
    match invocation {
        Invocation::Error(e) => {
            eprintln!("beanswap: the invocation failed: {e}");
            Ok(ExitCode::from(1))
        }
        Invocation::Response(_) if failed || results.is_empty() => Ok(ExitCode::from(1)),
        Invocation::Response(_) => Ok(ExitCode::SUCCESS),
    }
}

/// Function binaries are built into the same target directory as this CLI.
fn sibling_binary(name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    dir.join(name)
}

/// A job event as CodePipeline sends it, with no artifacts (nothing to read from S3 locally).
fn generated_event(function: &str, user_parameters: &str) -> Value {
    json!({"CodePipeline.job": {
        "id": uuid::Uuid::new_v4().to_string(),
        "accountId": "111111111111",
        "data": {
            "actionConfiguration": {"configuration": {"FunctionName": function, "UserParameters": user_parameters}},
            "inputArtifacts": [],
            "outputArtifacts": []
        }
    }})
}
