//! local-aws: a local, wire-compatible stand-in for the AWS APIs moto lacks: the CodePipeline job API and
//! Elastic Beanstalk, plus a Lambda Runtime API to run functions. It follows the botocore service models,
//! not beanswap's client, so a misunderstanding in beanswap-core shows up as a failing test instead of
//! being mirrored here.
//!
//! Two ports: the API ([`LocalAws::endpoint`], for `AWS_ENDPOINT_URL_CODEPIPELINE` and
//! `AWS_ENDPOINT_URL_ELASTIC_BEANSTALK`) and the router ([`LocalAws::router_endpoint`]), which forwards
//! requests by Host header to the app each environment runs. Admin endpoints under `/_local/` on the API
//! port expose what was recorded and set faults.
//!
//! This file starts and stops the servers; `api` answers the API port's calls, `auth` checks them
//! against the caller's policies, `admin` serves `/_local/`.

mod admin;
mod api;
mod auth;
pub mod beanstalk;
pub mod cloudwatch;
pub mod codepipeline;
pub mod deploy;
pub mod dns;
pub mod faults;
pub mod iam;
pub mod lambda;
pub mod lb;
pub mod lifecycle;
pub mod moto;
pub mod postgres;
pub mod proxy;
mod query;
pub mod rds;
mod router;
pub mod secrets;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::sync::oneshot;

pub use codepipeline::JobResult;
use state::Shared;

/// A running stand-in; stops when dropped, killing every app it started.
pub struct LocalAws {
    addr: SocketAddr,
    router_addr: SocketAddr,
    shared: Shared,
    stop: Vec<oneshot::Sender<()>>,
    /// Holds the temporary state directory (bundles, app logs) until the server stops.
    _state_dir: Option<tempfile::TempDir>,
}

impl LocalAws {
    /// Starts on `addr` (use `127.0.0.1:0` for a free port) in the current tokio runtime, with the
    /// router on a free port of the same address.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, beanstalk::Options::default()).await
    }

    /// Starts with chosen Elastic Beanstalk settings (delays, faults, S3 endpoint, version cap).
    pub async fn start_with(
        addr: SocketAddr,
        options: beanstalk::Options,
    ) -> std::io::Result<Self> {
        Self::start_with_router(addr, SocketAddr::new(addr.ip(), 0), options).await
    }

    /// Starts the API on `addr` and the environments' router on `router_addr`.
    pub async fn start_with_router(
        addr: SocketAddr,
        router_addr: SocketAddr,
        options: beanstalk::Options,
    ) -> std::io::Result<Self> {
        let (state_dir, dir) = match &options.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (None, dir.clone())
            }
            None => {
                let tmp = tempfile::Builder::new().prefix("local-aws-").tempdir()?;
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let s3 = s3_client(options.s3_endpoint.clone()).await;
        let dns = dns::Resolver::new(options.route53_endpoint.clone()).await;
        let shared = Shared::default();
        shared.lock().beanstalk.options = options;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let runtime = Arc::new(lifecycle::Runtime {
            shared: shared.clone(),
            dir,
            s3,
            dns,
            http,
        });
        let api = tokio::net::TcpListener::bind(addr).await?;
        let routes = tokio::net::TcpListener::bind(router_addr).await?;
        let addr = api.local_addr()?;
        let router_addr = routes.local_addr()?;
        let stop = vec![
            serve(api, api::api_router(runtime.clone())),
            serve(routes, router::router(runtime)),
        ];
        Ok(LocalAws {
            addr,
            router_addr,
            shared,
            stop,
            _state_dir: state_dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where environments are reached: send requests here with `Host: <environment CNAME>`.
    pub fn router_addr(&self) -> SocketAddr {
        self.router_addr
    }

    pub fn router_endpoint(&self) -> String {
        format!("http://{}", self.router_addr)
    }

    /// Replaces the active faults (and restarts their call counting).
    pub fn set_faults(&self, faults: faults::Faults) {
        let mut state = self.shared.lock();
        state.beanstalk.options.faults = faults;
        state.fault_calls.clear();
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_*`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every job result accepted so far.
    pub fn job_results(&self) -> Vec<JobResult> {
        self.shared.lock().job_results.clone()
    }

    /// Beanstalk events recorded after `sequence` (oldest first): `(sequence, severity, environment,
    /// message)`. Read from the store directly, so watching costs no API call (and skews no budget).
    pub fn events_after(&self, sequence: u64) -> Vec<(u64, String, String, String)> {
        let state = self.shared.lock();
        let mut events: Vec<(u64, String, String, String)> = state
            .beanstalk
            .events
            .iter()
            .filter(|e| e.sequence > sequence)
            .map(|e| {
                (
                    e.sequence,
                    e.severity.as_str().to_string(),
                    e.environment.clone().unwrap_or_default(),
                    e.message.clone(),
                )
            })
            .collect();
        events.sort_by_key(|e| e.0);
        events
    }

    /// Registers a DB instance (a real PostgreSQL database) that RDS's snapshot operations act on.
    pub fn add_db_instance(&self, instance: rds::Instance) {
        self.shared
            .lock()
            .rds
            .instances
            .insert(instance.id.to_ascii_lowercase(), instance);
    }

    /// Holds every request from now on to these identities' policies (`None`: checks nothing). The
    /// local run registers each function's role and its own administrator key.
    pub fn set_identities(&self, identities: Option<beanswap_iam::Identities>) {
        self.shared.lock().identities = identities.map(Arc::new);
    }

    /// Instances running (registered with their load balancer) per environment name, for reports of
    /// how environments grew and shrank; terminated environments are left out.
    pub fn instance_counts(&self) -> std::collections::BTreeMap<String, usize> {
        admin::instance_counts(&self.shared)
    }

    /// Kills one instance's app process (as a crashed app or a lost instance would end), leaving the
    /// load balancer to find out by its health checks. False when no such process runs.
    pub fn kill_instance(&self, instance_id: &str) -> bool {
        let mut state = self.shared.lock();
        state
            .processes
            .values_mut()
            .find_map(|by_instance| by_instance.get_mut(instance_id))
            .map(lifecycle::AppProcess::kill)
            .is_some()
    }

    /// The working directory of one instance's app process (where a test leaves the example app's
    /// fault switches), or `None` when no such process runs.
    pub fn instance_dir(&self, instance_id: &str) -> Option<std::path::PathBuf> {
        let state = self.shared.lock();
        state
            .processes
            .values()
            .find_map(|by_instance| by_instance.get(instance_id))
            .map(|p| p.cwd.clone())
    }

    /// Calls per `Service.Operation`.
    pub fn call_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.lock().calls.clone()
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        let mut state = self.shared.lock();
        state.stopped = true;
        state.processes.clear();
        state.lbs.clear();
    }
}

fn serve(listener: tokio::net::TcpListener, app: Router) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "local-aws server stopped");
        }
    });
    stop
}

/// An S3 client for source bundles: the given endpoint, else `AWS_ENDPOINT_URL_S3`; none without either.
async fn s3_client(endpoint: Option<String>) -> Option<aws_sdk_s3::Client> {
    let endpoint = endpoint.or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())?;
    let config = sdk_config(endpoint).await;
    let config = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    Some(aws_sdk_s3::Client::from_conf(config))
}

/// SDK settings for talking to moto: its endpoint, the stand-in's region, credentials from the
/// environment or dummy ones (moto accepts any).
pub(crate) async fn sdk_config(endpoint: String) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(beanstalk::REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "local".into()),
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "local".into()),
            None,
            None,
            "local-aws",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}
