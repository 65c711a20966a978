//! Running the app on an instance for real: the bundle fetched from S3 and unpacked, the deployment's
//! steps (`.ebextensions` commands, environment properties and secrets), the Procfile's `web:` command
//! started with `PORT` in its own process group, and the output kept for the events that say why it
//! failed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::process::Command;

use super::{AppProcess, AppSpec, Runtime};
use crate::beanstalk::{Environment, Instance, Severity, Target};

impl Runtime {
    /// Fetches, unpacks and starts the environment's version on each of its instances (the Auto
    /// Scaling group's desired capacity, within MinSize..=MaxSize), replacing whatever they ran before.
    /// An environment without a version runs no process (its load balancer serves a sample page).
    pub(super) async fn start_app(&self, env: &Environment, generation: u64) -> Result<(), String> {
        {
            let mut state = self.shared.lock();
            drop(state.processes.remove(&env.id));
            state.app_specs.remove(&env.id);
        }
        self.set(&env.id, generation, |e| {
            let (min, max) = e.size_bounds();
            e.desired = e.desired.clamp(min, max);
            let count = e.desired;
            e.instances = (0..count)
                .map(|n| {
                    let id = crate::deploy::instance_id(e, n);
                    let launched = e
                        .instances
                        .iter()
                        .find(|i| i.id == id)
                        .map(|i| i.launched)
                        .unwrap_or_else(SystemTime::now);
                    let mut i = Instance::new(id);
                    i.launched = launched;
                    i
                })
                .collect();
        });
        let Some(env) = self.current(&env.id, generation) else {
            return Err("The environment changed while deploying.".into());
        };
        let env = &env;
        let Some(label) = env.version_label.clone() else {
            return Ok(());
        };
        let version = self
            .shared
            .lock()
            .beanstalk
            .versions
            .get(&(env.application.clone(), label.clone()))
            .cloned()
            .ok_or_else(|| format!("Application version {label} no longer exists."))?;
        let (Some(bucket), Some(key)) = (version.bucket, version.key) else {
            return Ok(());
        };
        let bundle = std::sync::Arc::new(self.download(&bucket, &key).await?);
        let dir = self.dir.join(&env.id).join(format!("deploy-{generation}"));
        let app_dir = dir.join("app");
        let unpack_dir = app_dir.clone();
        let unpacked = bundle.clone();
        tokio::task::spawn_blocking(move || unpack(&unpacked, &unpack_dir))
            .await
            .map_err(|e| format!("Unpacking the source bundle failed: {e}"))?
            .map_err(|e| {
                format!("The source bundle s3://{bucket}/{key} could not be unpacked: {e}")
            })?;
        // The environment properties and secrets, then the bundle's hooks and container commands on
        // every instance, before the web process starts (crate::deploy).
        let vars = self.deployment_variables(env).await?;
        self.deploy_steps(env, &dir, &app_dir, bundle, &vars, false)
            .await?;
        let command = web_command(&app_dir)?;
        let spec = AppSpec {
            generation,
            command,
            app_dir: app_dir.clone(),
            vars: vars.clone(),
        };
        let mut started = BTreeMap::new();
        for (n, instance) in env.instances.iter().enumerate() {
            // Each instance runs from its own staging directory (the leader's is the app directory).
            let cwd = if n == 0 {
                app_dir.clone()
            } else {
                dir.join(&instance.id).join("staging")
            };
            let process = self.start_web(env, &instance.id, &spec, &cwd).await?;
            started.insert(instance.id.clone(), process);
        }
        self.deploy_steps(env, &dir, &app_dir, std::sync::Arc::default(), &vars, true)
            .await?;
        let mut state = self.shared.lock();
        if state.stopped {
            return Err("local-aws is stopping".into());
        }
        match state.beanstalk.environments.get_mut(&env.id) {
            Some(e) if e.generation == generation => {
                // Registered with the target group; not routed to until their first health check.
                for i in &mut e.instances {
                    i.port = started.get(&i.id).map(|p| p.port);
                    i.target = Target::Initial;
                }
            }
            _ => return Err("The environment changed while deploying.".into()),
        }
        state.processes.insert(env.id.clone(), started);
        state.app_specs.insert(env.id.clone(), spec);
        Ok(())
    }

    /// Starts one instance's web process (the Procfile command with its own `PORT`, its output in the
    /// instance's `web.stdout.log`) and waits until it listens.
    pub(super) async fn start_web(
        &self,
        env: &Environment,
        instance: &str,
        spec: &AppSpec,
        cwd: &Path,
    ) -> Result<AppProcess, String> {
        let command = &spec.command;
        let port = free_port().map_err(|e| format!("No free port for the app: {e}"))?;
        let env_dir = self.dir.join(&env.id);
        let log = crate::deploy::web_log(&env_dir, instance);
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(ORPHAN_GUARD)
            .arg(command)
            .arg(std::process::id().to_string())
            .current_dir(cwd)
            .env("PORT", port.to_string())
            .envs(spec.vars.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("The web process `{command}` could not start: {e}"))?;
        let mut process = AppProcess {
            child,
            port,
            log: log.clone(),
            cwd: cwd.to_path_buf(),
        };
        let timeout = self.options().app_start_timeout;
        let started = Instant::now();
        loop {
            if let Some(status) = process.exited() {
                return Err(format!(
                    "The web process `{command}` exited ({status}) before listening on port {port}. Last output: {}",
                    tail(&log)
                ));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(process);
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "The web process `{command}` did not listen on port {port} within {}s. Last output: {}",
                    timeout.as_secs(),
                    tail(&log)
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// What the app's processes see: the environment properties, and each secret of
    /// `aws:elasticbeanstalk:application:environmentsecrets` as the whole SecretString its ARN names,
    /// fetched at deployment ("Fetching secrets and parameters to Elastic Beanstalk environment
    /// variables"). A secret that cannot be fetched fails the deployment.
    pub(super) async fn deployment_variables(
        &self,
        env: &Environment,
    ) -> Result<Vec<(String, String)>, String> {
        let mut vars = env.env_vars();
        let secrets: Vec<(String, String)> = env
            .settings
            .iter()
            .filter(|((ns, _), _)| ns == crate::deploy::SECRETS_NAMESPACE)
            .map(|((_, name), arn)| (name.clone(), arn.clone()))
            .collect();
        if secrets.is_empty() {
            return Ok(vars);
        }
        let fallback = self.options().s3_endpoint;
        let endpoint = crate::secrets::endpoint(fallback.as_deref()).ok_or_else(|| {
            "Failed to fetch the environment's secrets: local-aws has no Secrets Manager endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER, or moto's through --s3-endpoint).".to_string()
        })?;
        for (name, arn) in secrets {
            let value = crate::secrets::get_secret_value(&self.http, &endpoint, &arn)
                .await
                .map_err(|e| {
                    format!("Failed to fetch secret {arn} for environment variable {name}: {e}")
                })?;
            vars.retain(|(k, _)| k != &name);
            vars.push((name, value));
        }
        Ok(vars)
    }

    /// The bundle's deployment steps on every instance (`postdeploy`: the postdeploy hooks, once the
    /// web process runs). A failed step leaves the events Beanstalk emits for a failed instance
    /// command, and the deployment fails with `For details, see 'eb-engine.log'.`.
    pub(super) async fn deploy_steps(
        &self,
        env: &Environment,
        dir: &Path,
        app_dir: &Path,
        bundle: Arc<Vec<u8>>,
        vars: &[(String, String)],
        postdeploy: bool,
    ) -> Result<(), String> {
        let (env_c, env_dir, dir, app_dir, vars_c) = (
            env.clone(),
            self.dir.join(&env.id),
            dir.to_path_buf(),
            app_dir.to_path_buf(),
            vars.to_vec(),
        );
        let result = tokio::task::spawn_blocking(move || {
            if postdeploy {
                crate::deploy::postdeploy(&env_c, &env_dir, &app_dir, &dir, &vars_c)
            } else {
                crate::deploy::deploy_instances(&env_c, &env_dir, &dir, &app_dir, &bundle, &vars_c)
            }
        })
        .await
        .map_err(|e| format!("The deployment task failed: {e}"))?;
        let Err(failure) = result else {
            return Ok(());
        };
        let instances = crate::deploy::instance_ids(env).len();
        self.shared
            .lock()
            .deploy_failures
            .insert(env.id.clone(), (failure.instance, instances));
        Err(failure.reason)
    }

    /// The events that follow `Instance deployment failed.` when an instance's command failed.
    pub(super) fn instance_failure_events(&self, env_id: &str) {
        let Some((instance, instances)) = self.shared.lock().deploy_failures.remove(env_id) else {
            return;
        };
        self.event(
            env_id,
            Severity::Error,
            format!(
                "[Instance: {instance}] Command failed on instance. Return code: 1 Output: Engine execution has encountered an error.."
            ),
        );
        self.event(
            env_id,
            Severity::Info,
            format!(
                "Command execution completed on all instances. Summary: [Successful: {}, Failed: 1].",
                instances.saturating_sub(1)
            ),
        );
    }

    pub(super) async fn download(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let s3 = self.s3.as_ref().ok_or_else(|| {
            format!("Failed to download s3://{bucket}/{key}: local-aws has no S3 endpoint (set --s3-endpoint or AWS_ENDPOINT_URL_S3).")
        })?;
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Failed to download s3://{bucket}/{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| format!("Failed to download s3://{bucket}/{key}: {e}"))?;
        Ok(bytes.into_bytes().to_vec())
    }
}

/// Runs the Procfile command (`$0`) in the app's process group beside a watcher that kills the whole
/// group once local-aws (pid `$1`) is gone: a test killed by a timeout, or a CLI killed with -9, must
/// not leave apps running that nobody can reach any more.
const ORPHAN_GUARD: &str = r#"parent=$1; ( while kill -0 "$parent" 2>/dev/null; do sleep 1; done; kill -KILL 0 ) & exec sh -c "$0""#;

/// Unpacks a bundle; entries that would land outside `dir` are refused by the zip crate.
pub(crate) fn unpack(bundle: &[u8], dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bundle))
        .map_err(|e| format!("not a zip: {e}"))?;
    archive.extract(dir).map_err(|e| e.to_string())
}

/// The Procfile's `web:` command, as Beanstalk's platforms run it.
fn web_command(app_dir: &Path) -> Result<String, String> {
    let procfile = app_dir.join("Procfile");
    let text = std::fs::read_to_string(&procfile).map_err(|_| {
        "The source bundle has no Procfile at its root; local-aws runs the Procfile's `web:` process.".to_string()
    })?;
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim() == "web")
        .map(|(_, command)| command.trim().to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| "The Procfile has no `web:` process.".to_string())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The last lines of an app's output, for events that say why it failed.
pub(super) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(5);
    let tail = lines[start..].join(" | ");
    if tail.is_empty() {
        "(none)".into()
    } else {
        tail.chars().take(600).collect()
    }
}
