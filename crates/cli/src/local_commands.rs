//! The beanswap binary's local commands (part of main.rs, not of the library): a pipeline run with its
//! stop signals and report, one action invoked as CodePipeline would, and what they need (the function
//! binaries beside this one, a generated job event). Built with the `local` feature.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use beanswap_cli::local::{Endpoints, RunningLocalAws};
use beanswap_cli::pipeline::{Approval, Ui};
use beanswap_cli::run::Settings;
use local_aws::lambda::{Function, Invocation};
use local_aws::LocalAws;
use serde_json::{json, Value};

use super::{CliError, RunArgs};

/// Waits for Ctrl-C, SIGTERM or SIGHUP and names it.
pub(super) async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
        _ = hup.recv() => "hung up",
    }
}

pub(super) async fn pipeline_run(
    args: RunArgs,
    sources: Vec<PathBuf>,
    title: &str,
) -> Result<ExitCode, CliError> {
    let mut parameters = beanswap_cli::run::local_parameters();
    for p in &args.parameters {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Local(format!("--parameter {p}: expected NAME=VALUE")))?;
        parameters.insert(k.to_string(), v.to_string());
    }
    let ui = Ui { json: args.json };
    let settings = Settings {
        root: std::env::current_dir().unwrap_or_default(),
        template: args.template,
        sources,
        parameters,
        approval: if args.approve {
            Approval::Auto
        } else {
            Approval::Ask
        },
        json: args.json,
        bin_dir: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default(),
        launch_delay: args.launch_delay,
        probe_rate: args.probe_rate,
        report_dir: args.report_dir,
        continuation_pause: args.continuation_pause,
        endpoints: Endpoints {
            moto: args.moto_url,
            local_aws: args
                .endpoint_url
                .zip(args.router_url)
                .map(|(endpoint, router)| RunningLocalAws { endpoint, router }),
        },
        domain: args.domain,
        title: title.to_string(),
        now: args.now,
    };
    // Ctrl-C (or SIGTERM, SIGHUP) ends the run; dropping it stops local-aws, moto and every app they
    // started, which a plain exit would leave running.
    let outcome = tokio::select! {
        r = beanswap_cli::run::run(&settings, &ui) => r.map_err(CliError::Local)?,
        signal = stop_signal() => {
            eprintln!("beanswap: {signal}; stopping everything it started");
            return Ok(ExitCode::from(130));
        }
    };
    if !args.json {
        println!("{}", outcome.report);
    }
    if args.open {
        open(&outcome.html, &ui);
    }
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Opens the report for a person: with the desktop's opener when there is a display, else says where it
/// is.
pub(super) fn open(report: &Path, ui: &Ui) {
    let display = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let opener = beanswap_cli::run::opener(
        std::env::consts::OS,
        display("DISPLAY") || display("WAYLAND_DISPLAY"),
    );
    let path = report
        .canonicalize()
        .unwrap_or_else(|_| report.to_path_buf());
    match opener {
        Some(program) => match std::process::Command::new(program)
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(_) => ui.line(&format!("opened {} with {program}", path.display())),
            Err(e) => ui.line(&format!(
                "could not open the report with {program} ({e}); it is at {}",
                path.display()
            )),
        },
        None => ui.line(&format!(
            "no display to open the report on; it is at {}",
            path.display()
        )),
    }
    ui.event(json!({"event": "open", "path": path.display().to_string(), "with": opener}));
}

pub(super) async fn invoke(
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
pub(super) fn sibling_binary(name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    dir.join(name)
}

/// A job event as CodePipeline sends it, with no artifacts (nothing to read from S3 locally).
pub(super) fn generated_event(function: &str, user_parameters: &str) -> Value {
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
