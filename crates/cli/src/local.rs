//! The local default: moto's server (S3, Route 53) as a child process, local-aws (Elastic Beanstalk,
//! CodePipeline jobs, the environments' router) in this process, and a counting proxy in front of moto.
//! Everything stops when [`LocalCloud`] is dropped, children included (also on Ctrl-C: main drops it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use local_aws::beanstalk::Options;
use local_aws::proxy::CountingProxy;
use local_aws::LocalAws;
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

pub struct LocalCloud {
    pub aws: LocalAws,
    /// moto behind the counting proxy: what the functions are pointed at.
    pub proxy: CountingProxy,
    moto: Child,
    moto_endpoint: String,
}

impl LocalCloud {
    /// Starts moto (installing it into `<root>/.venv` on first use) and local-aws.
    pub async fn start(
        root: &Path,
        options: Options,
        log: &dyn Fn(&str),
    ) -> Result<LocalCloud, LocalError> {
        let binary = moto_binary(root, log).await?;
        let port = free_port().map_err(|e| LocalError::Moto(e.to_string()))?;
        let moto = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LocalError::Moto(format!("{}: {e}", binary.display())))?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(LocalError::Moto(format!(
                    "moto_server did not listen on port {port} within 60s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let moto_endpoint = format!("http://127.0.0.1:{port}");
        let proxy = CountingProxy::start(&moto_endpoint)
            .await
            .map_err(|e| LocalError::Moto(format!("counting proxy: {e}")))?;
        let aws = LocalAws::start_with(
            ([127, 0, 0, 1], 0).into(),
            Options {
                s3_endpoint: Some(moto_endpoint.clone()),
                route53_endpoint: Some(moto_endpoint.clone()),
                ..options
            },
        )
        .await
        .map_err(|e| LocalError::LocalAws(e.to_string()))?;
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
            ("AWS_ACCESS_KEY_ID", "local".into()),
            ("AWS_SECRET_ACCESS_KEY", "local".into()),
            ("AWS_REGION", crate::template::REGION.into()),
        ]
    }

    /// SDK settings pointed at this cloud (for the CLI's own calls).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(crate::template::REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "local", "local", None, None, "beanswap",
            ))
            .load()
            .await
    }

    pub fn s3(&self, config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .endpoint_url(self.proxy.endpoint())
                .force_path_style(true)
                .build(),
        )
    }

    pub fn beanstalk(&self, config: &aws_config::SdkConfig) -> aws_sdk_elasticbeanstalk::Client {
        aws_sdk_elasticbeanstalk::Client::from_conf(
            aws_sdk_elasticbeanstalk::config::Builder::from(config)
                .endpoint_url(self.aws.endpoint())
                .build(),
        )
    }

    /// Calls per `Service.Operation` across Beanstalk, CodePipeline, S3 and Route 53.
    pub fn call_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = self.aws.call_counts();
        counts.extend(self.proxy.counts());
        counts
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let _ = self.moto.start_kill();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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
