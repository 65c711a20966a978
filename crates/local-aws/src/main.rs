//! `local-aws`: the stand-in as a process, for running the pipeline by hand or from another language.
//!
//! Prints one JSON line with its endpoints once it listens, then serves until Ctrl-C or SIGTERM, and
//! stops every app it started before exiting.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use local_aws::beanstalk::Options;
use local_aws::faults::Faults;
use local_aws::LocalAws;

#[derive(Debug, Parser)]
#[command(
    name = "local-aws",
    about = "Local Elastic Beanstalk + CodePipeline job API that runs each environment's bundle for real"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// API port (AWS_ENDPOINT_URL_ELASTIC_BEANSTALK / _CODEPIPELINE); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Router port: requests with `Host: <environment CNAME>` reach that environment's app.
    #[arg(long, default_value_t = 0)]
    router_port: u16,
    /// Where bundles are unpacked and app logs kept (a temporary directory if not given).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Launching -> Ready (e.g. `3s`, `5m` to simulate real Beanstalk).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    launch_delay: Duration,
    /// Updating -> Ready.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    update_delay: Duration,
    /// Terminating -> Terminated.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    terminate_delay: Duration,
    /// How often apps' processes and health paths are checked.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    health_interval: Duration,
    /// What Beanstalk's 60 s CNAME TTL becomes locally (every DNS TTL is scaled alike).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    dns_ttl: Duration,
    /// What Beanstalk's 20 s deregistration timeout becomes locally.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    deregistration_delay: Duration,
    /// Concurrent requests one instance serves before it answers 503.
    #[arg(long, default_value_t = 200)]
    instance_capacity: usize,
    /// How long an app may take to listen on $PORT.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    app_start_timeout: Duration,
    /// S3 endpoint for source bundles (moto); defaults to $AWS_ENDPOINT_URL_S3.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Route 53 endpoint (moto) the router resolves custom domains with; defaults to
    /// $AWS_ENDPOINT_URL_ROUTE_53.
    #[arg(long)]
    route53_endpoint: Option<String>,
    /// Application versions allowed before TooManyApplicationVersionsException.
    #[arg(long, default_value_t = 1000)]
    max_application_versions: usize,
    /// Faults as JSON, or @file: {"throttle":[{"operation":"DescribeEvents","first":3}],
    /// "delay_ms":{"DescribeEnvironments":500},"fail_launch":["shop-b"],"red_after_seconds":{"*":30}}
    #[arg(long)]
    faults: Option<String>,
}

fn parse_faults(arg: &str) -> Result<Faults, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("--faults {path}: {e}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| format!("--faults: {e}"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let faults = match args.faults.as_deref().map(parse_faults).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("local-aws: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let options = Options {
        max_application_versions: args.max_application_versions,
        launch_delay: args.launch_delay,
        update_delay: args.update_delay,
        terminate_delay: args.terminate_delay,
        health_interval: args.health_interval,
        app_start_timeout: args.app_start_timeout,
        dns_ttl: args.dns_ttl,
        deregistration_delay: args.deregistration_delay,
        instance_capacity: args.instance_capacity,
        state_dir: args.state_dir,
        s3_endpoint: args.s3_endpoint,
        route53_endpoint: args.route53_endpoint,
        faults,
        ..Options::default()
    };
    let local = match LocalAws::start_with_router(
        SocketAddr::new(args.host, args.port),
        SocketAddr::new(args.host, args.router_port),
        options,
    )
    .await
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("local-aws: could not listen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "{}",
        serde_json::json!({"endpoint": local.endpoint(), "router": local.router_endpoint()})
    );
    wait_for_stop().await;
    drop(local);
    std::process::ExitCode::SUCCESS
}

async fn wait_for_stop() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
