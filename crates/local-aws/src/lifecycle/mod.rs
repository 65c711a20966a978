//! What happens to an environment over time: its bundle is fetched from S3, unpacked and run for real
//! (the Procfile's `web:` command with `PORT`), it turns Ready/Green once the app listens and the launch
//! delay has passed, a monitor turns it Red/Severe when the process dies or its health path fails, and
//! terminate stops the process. Each step emits the events Beanstalk emits.
//!
//! This file holds the app process, the [`Runtime`] the tasks share and how an effect of an API call
//! becomes a task; one file per stage of an environment's life: `launch`, `changes` (update, tags,
//! resize, terminate, version processing), `monitor` (health checks, Auto Scaling), `app` (running the
//! app on an instance), `tail_logs`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::SystemTime;

/// The User-Agent of an Application Load Balancer's health checks (Elastic Load Balancing: "Health
/// checks for Application Load Balancer target groups").
pub const HEALTH_CHECKER: &str = "ELB-HealthChecker/2.0";

use tokio::process::Child;

use crate::beanstalk::{Effect, Environment, Severity};
use crate::state::Shared;

mod app;
mod changes;
mod launch;
mod monitor;
mod tail_logs;

pub(crate) use app::unpack;

/// A running app; its whole process group is killed when this is dropped.
#[derive(Debug)]
pub struct AppProcess {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    /// Its working directory (the instance's own).
    pub cwd: PathBuf,
}

/// How the current deployment of an environment starts a web process, kept so the Auto Scaling group
/// can start instances later with the same app.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub generation: u64,
    pub command: String,
    pub app_dir: PathBuf,
    pub vars: Vec<(String, String)>,
}

impl AppProcess {
    /// Kills the process group now (the instance's app is gone; its port stops answering).
    pub fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }

    /// `Some(why)` once the process has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown status ({e})")),
        }
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        // The Procfile command runs under `sh -c` in its own process group: kill the group, so
        // whatever it started (gunicorn workers, npm's node, ...) ends with it.
        self.kill();
    }
}

/// What the lifecycle tasks share: the store, where to unpack bundles, how to reach S3 and the apps.
pub struct Runtime {
    pub shared: Shared,
    pub dir: PathBuf,
    pub s3: Option<aws_sdk_s3::Client>,
    pub dns: crate::dns::Resolver,
    pub http: reqwest::Client,
}

impl Runtime {
    pub fn spawn(self: &Arc<Self>, effect: Effect) {
        let rt = self.clone();
        tokio::spawn(async move {
            match effect {
                Effect::Launch { env_id, generation } => rt.launch(&env_id, generation).await,
                Effect::Update { env_id, generation } => rt.update(&env_id, generation).await,
                Effect::Terminate { env_id, generation } => rt.terminate(&env_id, generation).await,
                Effect::UpdateTags { env_id, generation } => {
                    rt.update_tags(&env_id, generation).await
                }
                Effect::Resize { env_id, generation } => rt.resize(&env_id, generation).await,
                Effect::ProcessVersion { application, label } => {
                    rt.process_version(&application, &label).await
                }
                Effect::CompileTail { env_id } => rt.compile_tail(&env_id).await,
            }
        });
    }

    /// Takes a snapshot's dump (pg_dump of its instance) in the background: `creating` until it is
    /// complete, then `available` with the metadata file `beanswap restore` reads beside it.
    pub fn spawn_dump(self: &Arc<Self>, id: String) {
        let rt = self.clone();
        tokio::spawn(async move {
            let Some((instance, file)) = rt.shared.lock().rds.dump_job(&id) else {
                return;
            };
            let login = crate::postgres::Login {
                host: instance.host.clone(),
                port: instance.port,
                database: instance.database.clone(),
                user: instance.user.clone(),
                password: instance.password.clone(),
            };
            let target = file.clone();
            let result = tokio::task::spawn_blocking(move || {
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                crate::postgres::dump(&login, &target)?;
                std::fs::metadata(&target)
                    .map(|m| m.len())
                    .map_err(|e| format!("{}: {e}", target.display()))
            })
            .await
            .unwrap_or_else(|e| Err(format!("pg_dump task: {e}")));
            let mut state = rt.shared.lock();
            state.rds.dumped(&id, result);
            if let Some(meta) = state.rds.snapshot_file(&id).filter(|_| file.exists()) {
                if let Ok(text) = serde_json::to_string_pretty(&meta) {
                    let _ = std::fs::write(file.with_extension("json"), text);
                }
            }
        });
    }

    /// The environment as it is now, if this task's operation is still the current one.
    fn current(&self, env_id: &str, generation: u64) -> Option<Environment> {
        let state = self.shared.lock();
        if state.stopped {
            return None;
        }
        state
            .beanstalk
            .environments
            .get(env_id)
            .filter(|e| e.generation == generation)
            .cloned()
    }

    fn event(&self, env_id: &str, severity: Severity, message: impl Into<String>) {
        self.shared
            .lock()
            .beanstalk
            .env_event(env_id, severity, message, None);
    }

    /// Changes the environment if this task's operation is still the current one.
    fn set(&self, env_id: &str, generation: u64, change: impl FnOnce(&mut Environment)) -> bool {
        let mut state = self.shared.lock();
        match state.beanstalk.environments.get_mut(env_id) {
            Some(e) if e.generation == generation => {
                change(e);
                e.updated = SystemTime::now();
                true
            }
            _ => false,
        }
    }

    fn options(&self) -> crate::beanstalk::Options {
        self.shared.lock().beanstalk.options.clone()
    }
}

/// The health of an environment whose app runs fine: Green/Ok, or Yellow/Warning under the `yellow`
/// fault.
fn healthy(options: &crate::beanstalk::Options, name: &str) -> (&'static str, &'static str) {
    if options.faults.stays_yellow(name) {
        ("Yellow", "Warning")
    } else {
        ("Green", "Ok")
    }
}
