//! The local default: moto's server (S3, Route 53) as a child process, local-aws (Elastic Beanstalk,
//! CodePipeline jobs, the environments' router) in this process, and a counting proxy in front of moto.
//! Everything stops when [`LocalCloud`] is dropped, children included (also on Ctrl-C: main drops it).
//! Either server may instead be one already running ([`Endpoints`]); those are left running.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use beanswap_iam::identity::{IdentitiesSpec, ADMIN_KEY};
use beanswap_iam::Identities;
use local_aws::beanstalk::Options;
use local_aws::proxy::CountingProxy;
use local_aws::{JobResult, LocalAws};
use tokio::process::{Child, Command};

/// The moto version the project tests against (requirements-dev.txt pins the same).
const MOTO: &str = "moto[server]==5.2.5";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("could not set up moto: {0}")]
    Moto(String),
    #[error("could not start local-aws: {0}")]
    LocalAws(String),
}

/// Servers already running that the run uses instead of starting its own.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// A running moto_server (S3, Route 53), e.g. `http://127.0.0.1:5000`.
    pub moto: Option<String>,
    /// A running local-aws (Elastic Beanstalk, CodePipeline jobs). It must read bundles from the
    /// same moto (`local-aws --s3-endpoint`), so it needs `moto` too.
    pub local_aws: Option<RunningLocalAws>,
}

/// Where a running local-aws listens: what `local-aws` prints when it starts.
#[derive(Debug, Clone)]
pub struct RunningLocalAws {
    /// Its API, e.g. `http://127.0.0.1:4566`.
    pub endpoint: String,
    /// Its environments' router (requests with `Host: <environment CNAME>`).
    pub router: SocketAddr,
}

/// local-aws: started in this process, or one already running that is reached over HTTP (its
/// `/_local/` admin endpoints for job results and call counts, DescribeEvents for events).
pub enum Aws {
    Started(LocalAws),
    Running(Remote),
}

pub struct Remote {
    endpoint: String,
    router: SocketAddr,
    http: reqwest::Client,
    eb: aws_sdk_elasticbeanstalk::Client,
    /// Its call counts when this run began: the report shows this run's calls only.
    baseline: BTreeMap<String, u64>,
    /// DescribeEvents calls made to show events (not the pipeline's; left out of the counts).
    own_calls: AtomicU64,
    last_poll: Mutex<Option<Instant>>,
}

impl Aws {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_*`.
    pub fn endpoint(&self) -> String {
        match self {
            Aws::Started(aws) => aws.endpoint(),
            Aws::Running(r) => r.endpoint.clone(),
        }
    }

    /// Where environments are reached: send requests here with `Host: <environment CNAME>`.
    pub fn router_addr(&self) -> SocketAddr {
        match self {
            Aws::Started(aws) => aws.router_addr(),
            Aws::Running(r) => r.router,
        }
    }

    pub fn router_endpoint(&self) -> String {
        format!("http://{}", self.router_addr())
    }
}

pub struct LocalCloud {
    pub aws: Aws,
    /// moto behind the counting proxy: what the functions are pointed at.
    pub proxy: CountingProxy,
    /// The moto_server this run started (none when it uses a running one).
    moto: Option<Child>,
    moto_endpoint: String,
}

impl LocalCloud {
    /// Starts moto (installing it into `<root>/.venv` on first use) and local-aws.
    pub async fn start(
        root: &Path,
        options: Options,
        log: &dyn Fn(&str),
    ) -> Result<LocalCloud, LocalError> {
        Self::start_using(root, options, &Endpoints::default(), log).await
    }

    /// Like [`LocalCloud::start`], but uses the servers `endpoints` names instead of starting them
    /// (`options` then apply only to a local-aws it starts).
    pub async fn start_using(
        root: &Path,
        options: Options,
        endpoints: &Endpoints,
        log: &dyn Fn(&str),
    ) -> Result<LocalCloud, LocalError> {
        if endpoints.local_aws.is_some() && endpoints.moto.is_none() {
            return Err(LocalError::LocalAws(
                "a running local-aws needs the moto it reads bundles from (its S3 endpoint) too"
                    .into(),
            ));
        }
        let (moto, moto_endpoint) = match &endpoints.moto {
            Some(endpoint) => (None, endpoint.trim_end_matches('/').to_string()),
            None => {
                let (child, endpoint) = start_moto(root, log).await?;
                (Some(child), endpoint)
            }
        };
        let proxy = CountingProxy::start(&moto_endpoint)
            .await
            .map_err(|e| LocalError::Moto(format!("counting proxy: {e}")))?;
        let aws = match &endpoints.local_aws {
            Some(running) => Aws::Running(Remote::connect(running).await?),
            None => Aws::Started(
                LocalAws::start_with(
                    ([127, 0, 0, 1], 0).into(),
                    Options {
                        s3_endpoint: Some(moto_endpoint.clone()),
                        route53_endpoint: Some(moto_endpoint.clone()),
                        ..options
                    },
                )
                .await
                .map_err(|e| LocalError::LocalAws(e.to_string()))?,
            ),
        };
        Ok(LocalCloud {
            aws,
            proxy,
            moto,
            moto_endpoint,
        })
    }

    pub fn moto_endpoint(&self) -> &str {
        &self.moto_endpoint
    }

    /// The environment a function or SDK client needs to reach this cloud.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_CODEPIPELINE", self.aws.endpoint()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", self.aws.endpoint()),
            ("AWS_ENDPOINT_URL_S3", self.proxy.endpoint()),
            ("AWS_ENDPOINT_URL_ROUTE_53", self.proxy.endpoint()),
            ("AWS_ENDPOINT_URL_RDS", self.aws.endpoint()),
            ("AWS_ENDPOINT_URL_CLOUDWATCH", self.aws.endpoint()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.proxy.endpoint()),
            // The administrator, as for the runner's own calls; a function's process is given its
            // role's key over this (pipeline/actions.rs).
            ("AWS_ACCESS_KEY_ID", ADMIN_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", "local".into()),
            ("AWS_REGION", crate::template::REGION.into()),
        ]
    }

    /// Registers the run's database as an RDS instance of local-aws (in this process, or through a
    /// running one's `/_local/rds/instances`).
    pub async fn add_db_instance(&self, instance: local_aws::rds::Instance) -> Result<(), String> {
        match &self.aws {
            Aws::Started(aws) => {
                aws.add_db_instance(instance);
                Ok(())
            }
            Aws::Running(remote) => {
                let url = format!("{}/_local/rds/instances", remote.endpoint);
                remote
                    .http
                    .put(&url)
                    .json(&instance)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map(|_| ())
                    .map_err(|e| format!("PUT {url}: {e}"))
            }
        }
    }

    /// Holds every call to S3, Route 53 (the proxy), Elastic Beanstalk, CodePipeline and RDS (local-aws)
    /// to these identities' policies from now on. A policy the evaluator does not understand is the
    /// error, naming it: the run stops before any function runs.
    pub async fn enforce(&self, spec: &IdentitiesSpec) -> Result<(), String> {
        let identities = Identities::from_spec(spec).map_err(|e| e.to_string())?;
        match &self.aws {
            Aws::Started(aws) => aws.set_identities(Some(identities.clone())),
            Aws::Running(remote) => {
                let url = format!("{}/_local/iam", remote.endpoint);
                let answer = remote
                    .http
                    .put(&url)
                    .json(spec)
                    .send()
                    .await
                    .map_err(|e| format!("PUT {url}: {e}"))?;
                if !answer.status().is_success() {
                    let status = answer.status();
                    let text = answer.text().await.unwrap_or_default();
                    return Err(format!("PUT {url}: {status}: {}", text.trim()));
                }
            }
        }
        self.proxy.set_identities(Some(identities));
        Ok(())
    }

    /// SDK settings pointed at this cloud for the CLI's own calls: the administrator's identity
    /// ([`ADMIN_KEY`]), since these are the runner's setup (the stand-ins for Source and Build, buckets,
    /// zones, the application), never a function's.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        local_sdk_config().await
    }

    pub fn s3(&self, config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .endpoint_url(self.proxy.endpoint())
                .force_path_style(true)
                .build(),
        )
    }

    /// moto's Route 53, through the counting proxy like S3.
    pub fn route53(&self, config: &aws_config::SdkConfig) -> aws_sdk_route53::Client {
        aws_sdk_route53::Client::from_conf(
            aws_sdk_route53::config::Builder::from(config)
                .endpoint_url(self.proxy.endpoint())
                .build(),
        )
    }

    /// local-aws's CloudWatch alarms (moto cannot answer the SDK's CloudWatch protocol: FIDELITY.md).
    pub fn cloudwatch(&self, config: &aws_config::SdkConfig) -> beanswap_core::alarms::CloudWatch {
        beanswap_core::alarms::CloudWatch::from_client(aws_sdk_cloudwatch::Client::from_conf(
            aws_sdk_cloudwatch::config::Builder::from(config)
                .endpoint_url(self.aws.endpoint())
                .build(),
        ))
    }

    pub fn beanstalk(&self, config: &aws_config::SdkConfig) -> aws_sdk_elasticbeanstalk::Client {
        beanstalk_client(config, &self.aws.endpoint())
    }

    /// Calls per `Service.Operation` across Beanstalk, CodePipeline, S3 and Route 53 — for a
    /// local-aws this run started; with a running one, S3 and Route 53 only ([`LocalCloud::calls`]
    /// covers both).
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = match &self.aws {
            Aws::Started(aws) => aws.call_counts(),
            Aws::Running(_) => BTreeMap::new(),
        };
        counts.extend(self.proxy.counts());
        counts
    }

    /// Calls per `Service.Operation` this run made, across Beanstalk, CodePipeline, S3 and Route 53.
    pub async fn calls(&self) -> Result<BTreeMap<String, u64>, String> {
        let Aws::Running(remote) = &self.aws else {
            return Ok(self.call_counts());
        };
        let mut counts = remote.counts().await?;
        for (k, v) in &remote.baseline {
            if let Some(n) = counts.get_mut(k) {
                *n = n.saturating_sub(*v);
            }
        }
        if let Some(n) = counts.get_mut("ElasticBeanstalk.DescribeEvents") {
            *n = n.saturating_sub(remote.own_calls.load(Ordering::Relaxed));
        }
        counts.retain(|_, n| *n > 0);
        counts.extend(self.proxy.counts());
        Ok(counts)
    }

    /// The result a function reported for `job_id`, if any yet.
    pub async fn job_result(&self, job_id: &str) -> Result<Option<JobResult>, String> {
        let results = match &self.aws {
            Aws::Started(aws) => aws.job_results(),
            Aws::Running(remote) => remote.job_results().await?,
        };
        Ok(results.into_iter().find(|r| r.job_id == job_id))
    }

    /// Where [`LocalCloud::events_after`] starts so that only events from now on are shown.
    pub async fn event_cursor(&self) -> u64 {
        match &self.aws {
            Aws::Started(aws) => aws.events_after(0).last().map(|e| e.0).unwrap_or(0),
            Aws::Running(_) => epoch_millis(SystemTime::now()),
        }
    }

    /// Beanstalk events after `cursor`, oldest first: `(cursor, severity, environment, message)`.
    /// In-process: read from local-aws's store (no API call). A running local-aws: DescribeEvents at
    /// most once a second, the cursor being the event's time in milliseconds.
    pub async fn events_after(&self, cursor: u64) -> Vec<(u64, String, String, String)> {
        match &self.aws {
            Aws::Started(aws) => aws.events_after(cursor),
            Aws::Running(remote) => remote.events_after(cursor).await,
        }
    }
}

impl Remote {
    async fn connect(running: &RunningLocalAws) -> Result<Remote, LocalError> {
        let config = local_sdk_config().await;
        let endpoint = running.endpoint.trim_end_matches('/').to_string();
        let mut remote = Remote {
            eb: beanstalk_client(&config, &endpoint),
            endpoint,
            router: running.router,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| LocalError::LocalAws(e.to_string()))?,
            baseline: BTreeMap::new(),
            own_calls: AtomicU64::new(0),
            last_poll: Mutex::new(None),
        };
        remote.baseline = remote.counts().await.map_err(|e| {
            LocalError::LocalAws(format!(
                "{} does not answer as local-aws: {e}",
                remote.endpoint
            ))
        })?;
        Ok(remote)
    }

    async fn admin<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let url = format!("{}/_local/{path}", self.endpoint);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("GET {url}: {e}"))?;
        response.json().await.map_err(|e| format!("GET {url}: {e}"))
    }

    async fn counts(&self) -> Result<BTreeMap<String, u64>, String> {
        self.admin("calls").await
    }

    async fn job_results(&self) -> Result<Vec<JobResult>, String> {
        let values: Vec<serde_json::Value> = self.admin("job-results").await?;
        Ok(values
            .into_iter()
            .map(|v| JobResult {
                job_id: crate::template::text(&v["jobId"]),
                operation: crate::template::text(&v["operation"]),
                request: v["request"].clone(),
            })
            .collect())
    }

    async fn events_after(&self, cursor: u64) -> Vec<(u64, String, String, String)> {
        {
            let Ok(mut last) = self.last_poll.lock() else {
                return vec![];
            };
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return vec![];
            }
            *last = Some(Instant::now());
        }
        self.own_calls.fetch_add(1, Ordering::Relaxed);
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(cursor);
        let Ok(answer) = self
            .eb
            .describe_events()
            .start_time(aws_sdk_elasticbeanstalk::primitives::DateTime::from(since))
            .send()
            .await
        else {
            return vec![];
        };
        let mut events: Vec<(u64, String, String, String)> = answer
            .events()
            .iter()
            .filter_map(|e| {
                let at = SystemTime::try_from(*e.event_date()?).ok()?;
                Some((
                    epoch_millis(at),
                    e.severity()
                        .map(|s| s.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    e.environment_name().unwrap_or_default().to_string(),
                    e.message().unwrap_or_default().to_string(),
                ))
            })
            .filter(|e| e.0 > cursor)
            .collect();
        events.sort_by_key(|e| e.0);
        events
    }
}

fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The administrator's SDK settings: the runner's own calls (see [`LocalCloud::sdk_config`]).
async fn local_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(crate::template::REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ADMIN_KEY,
            "local",
            None,
            None,
            "beanswap-admin",
        ))
        .load()
        .await
}

fn beanstalk_client(
    config: &aws_config::SdkConfig,
    endpoint: &str,
) -> aws_sdk_elasticbeanstalk::Client {
    aws_sdk_elasticbeanstalk::Client::from_conf(
        aws_sdk_elasticbeanstalk::config::Builder::from(config)
            .endpoint_url(endpoint)
            .build(),
    )
}

/// Starts moto_server on a loopback port and waits until it says it listens.
async fn start_moto(root: &Path, log: &dyn Fn(&str)) -> Result<(Child, String), LocalError> {
    let binary = moto_binary(root, log).await?;
    let spawned = local_aws::moto::spawn(&binary)
        .await
        .map_err(LocalError::Moto)?;
    let endpoint = spawned.endpoint();
    Ok((spawned.child, endpoint))
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        if let Some(moto) = &mut self.moto {
            let _ = moto.start_kill();
        }
    }
}

/// `$MOTO_SERVER`, `<root>/.venv/bin/moto_server`, `moto_server` on PATH, or a fresh install into
/// `<root>/.venv`.
async fn moto_binary(root: &Path, log: &dyn Fn(&str)) -> Result<PathBuf, LocalError> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let venv = root.join(".venv");
    let in_venv = venv.join("bin/moto_server");
    if in_venv.exists() {
        return Ok(in_venv);
    }
    if let Some(on_path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("moto_server"))
            .find(|p| p.exists())
    }) {
        return Ok(on_path);
    }
    log(&format!(
        "installing {MOTO} into {} (first run only)",
        venv.display()
    ));
    let run = |program: PathBuf, args: Vec<String>| async move {
        let out = Command::new(&program)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| LocalError::Moto(format!("{}: {e}", program.display())))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(LocalError::Moto(format!(
                "{} {} failed: {}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    if !venv.join("bin/pip").exists() {
        run(
            PathBuf::from("python3"),
            vec!["-m".into(), "venv".into(), venv.display().to_string()],
        )
        .await?;
    }
    run(
        venv.join("bin/pip"),
        vec!["install".into(), "--quiet".into(), MOTO.into()],
    )
    .await?;
    Ok(in_venv)
}
