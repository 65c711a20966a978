//! What happens to an environment over time: its bundle is fetched from S3, unpacked and run for real
//! (the Procfile's `web:` command with `PORT`), it turns Ready/Green once the app listens and the launch
//! delay has passed, a monitor turns it Red/Severe when the process dies or its health path fails, and
//! terminate stops the process. Each step emits the events Beanstalk emits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The User-Agent of an Application Load Balancer's health checks (Elastic Load Balancing: "Health
/// checks for Application Load Balancer target groups").
pub const HEALTH_CHECKER: &str = "ELB-HealthChecker/2.0";

use tokio::process::{Child, Command};

use crate::beanstalk::{Effect, Environment, Instance, Options, Severity, Target};
use crate::state::Shared;

/// A running app; its whole process group is killed when this is dropped.
#[derive(Debug)]
pub struct AppProcess {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
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

/// Beanstalk's default deregistration timeout (`DeregistrationTimeout` 20 s, which it sets on the
/// target group instead of Elastic Load Balancing's own 300 s), which `Options::deregistration_delay`
/// stands for locally; a configured timeout is scaled by the same factor.
const DEFAULT_DEREGISTRATION: Duration = Duration::from_secs(20);

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

    async fn launch(self: Arc<Self>, env_id: &str, generation: u64) {
        let Some(env) = self.current(env_id, generation) else {
            return;
        };
        let options = self.options();
        self.event(
            env_id,
            Severity::Info,
            "Using elasticbeanstalk-us-east-1-123456789012 as Amazon S3 storage bucket for environment data.",
        );
        if options.faults.launch_fails(&env.name) {
            tokio::time::sleep(options.launch_delay / 2).await;
            self.event(
                env_id,
                Severity::Error,
                format!("Stack named 'awseb-{env_id}-stack' aborted operation. Current state: 'CREATE_FAILED'  Reason: The following resource(s) failed to create: [AWSEBAutoScalingGroup]. (local-aws fault fail_launch)"),
            );
            self.event(
                env_id,
                Severity::Error,
                "Launch of environment failed: the CloudFormation stack could not be created.",
            );
            if !self.set(env_id, generation, |e| e.status = "Terminating") {
                return;
            }
            tokio::time::sleep(options.terminate_delay).await;
            self.finish_termination(env_id, generation);
            return;
        }
        // The resources Beanstalk reports creating, in the order its events name them ("eb create"'s
        // output: FIDELITY.md, "Events").
        for message in [
            format!(
                "Created security group named: awseb-{env_id}-stack-AWSEBSecurityGroup-{}",
                env_id.trim_start_matches("e-").to_ascii_uppercase()
            ),
            format!(
                "Created target group named: {}",
                crate::beanstalk::target_group_arn(env_id)
            ),
            format!(
                "Created load balancer named: {}",
                crate::beanstalk::load_balancer_arn(env_id)
            ),
            format!(
                "Created Auto Scaling group named: {}",
                crate::beanstalk::auto_scaling_group(env_id)
            ),
            "Waiting for EC2 instances to launch. This may take a few minutes.".to_string(),
        ] {
            self.event(env_id, Severity::Info, message);
        }
        if let Err(e) = crate::lb::start(&self, env_id).await {
            tracing::error!(env_id, error = %e, "the load balancer's listener could not start");
        }
        if !self.set(env_id, generation, |e| {
            e.instance_launched = Some(SystemTime::now());
            e.desired = e.size_bounds().0;
            e.deployment_id += 1;
            e.deployment_status = "In Progress";
            e.deployment_time = Some(SystemTime::now());
        }) {
            return;
        }
        let deployed = self.start_app(&env, generation).await;
        let since_create = env.created.elapsed().unwrap_or_default();
        tokio::time::sleep(options.launch_delay.saturating_sub(since_create)).await;
        if self.current(env_id, generation).is_none() {
            return;
        }
        match deployed {
            Ok(()) => {
                self.event(
                    env_id,
                    Severity::Info,
                    "Instance deployment completed successfully.",
                );
                let targets = self.first_health_check(env_id, generation).await;
                self.event(
                    env_id,
                    Severity::Info,
                    format!("Application available at {}.", env.cname),
                );
                self.event(
                    env_id,
                    Severity::Info,
                    format!("Successfully launched environment: {}", env.name),
                );
                self.ready(env_id, generation, &env.name, "Pending", targets);
                self.monitor(env_id.to_string(), generation);
            }
            Err(reason) => {
                self.event(
                    env_id,
                    Severity::Error,
                    format!("Instance deployment failed. {reason}"),
                );
                self.instance_failure_events(env_id);
                self.event(
                    env_id,
                    Severity::Error,
                    "Create environment operation is complete, but with errors. For more information, see troubleshooting documentation.",
                );
                self.set(env_id, generation, |e| {
                    e.status = "Ready";
                    e.health = "Red";
                    e.health_status = "Severe";
                    e.deployment_status = "Failed";
                    e.deployment_time = Some(SystemTime::now());
                    e.causes = vec!["Instance deployment failed.".into()];
                });
                self.event(
                    env_id,
                    Severity::Warn,
                    "Environment health has transitioned from Pending to Severe. Instance deployment failed.",
                );
            }
        }
    }

    /// The load balancer's first health check of freshly deployed instances: each target turns healthy
    /// or unhealthy, and from then on the load balancer sends it requests ("Health checks for
    /// Application Load Balancer target groups": a target must pass one check to be healthy; with none
    /// healthy, an ALB fails open).
    async fn first_health_check(&self, env_id: &str, generation: u64) -> Vec<(String, Target)> {
        let Some(env) = self.current(env_id, generation) else {
            return vec![];
        };
        let mut targets = vec![];
        for instance in &env.instances {
            let target = match instance.port {
                Some(port) => match self.check_health(port, &env.health_path()).await {
                    Ok(()) => Target::Healthy,
                    Err(_) => Target::Unhealthy,
                },
                // The sample application: Beanstalk's own, always healthy.
                None if env.version_label.is_none() => Target::Healthy,
                None => Target::None,
            };
            targets.push((instance.id.clone(), target));
        }
        self.set(env_id, generation, |e| {
            e.deployment_status = "Deployed";
            e.deployment_time = Some(SystemTime::now());
        });
        targets
    }

    async fn update(self: Arc<Self>, env_id: &str, generation: u64) {
        let Some(env) = self.current(env_id, generation) else {
            return;
        };
        let options = self.options();
        let started = Instant::now();
        self.event(
            env_id,
            Severity::Info,
            "Deploying new version to instance(s).",
        );
        self.set(env_id, generation, |e| {
            e.deployment_id += 1;
            e.deployment_status = "In Progress";
            e.deployment_time = Some(SystemTime::now());
        });
        let deployed = self.start_app(&env, generation).await;
        tokio::time::sleep(options.update_delay.saturating_sub(started.elapsed())).await;
        if self.current(env_id, generation).is_none() {
            return;
        }
        match deployed {
            Ok(()) => {
                self.event(
                    env_id,
                    Severity::Info,
                    "Instance deployment completed successfully.",
                );
                let targets = self.first_health_check(env_id, generation).await;
                self.event(
                    env_id,
                    Severity::Info,
                    "New application version was deployed to running EC2 instances.",
                );
                self.event(
                    env_id,
                    Severity::Info,
                    "Environment update completed successfully.",
                );
                self.ready(env_id, generation, &env.name, env.health_status, targets);
                self.monitor(env_id.to_string(), generation);
            }
            Err(reason) => {
                self.event(
                    env_id,
                    Severity::Error,
                    format!("Instance deployment failed. {reason}"),
                );
                self.instance_failure_events(env_id);
                self.event(env_id, Severity::Error, "Failed to deploy application.");
                self.set(env_id, generation, |e| {
                    e.status = "Ready";
                    e.health = "Red";
                    e.health_status = "Severe";
                    e.deployment_status = "Failed";
                    e.deployment_time = Some(SystemTime::now());
                    e.causes = vec!["Instance deployment failed.".into()];
                });
                if env.health_status != "Severe" {
                    self.event(
                        env_id,
                        Severity::Warn,
                        format!(
                            "Environment health has transitioned from {} to Severe. Instance deployment failed.",
                            env.health_status
                        ),
                    );
                }
            }
        }
    }

    /// A tag change: the environment's stack is updated with the new tags (the app keeps running and
    /// serving, as on AWS), then it is Ready again with the health it had.
    async fn update_tags(self: Arc<Self>, env_id: &str, generation: u64) {
        self.settle_update(env_id, generation).await;
    }

    /// An update that redeploys nothing: Updating for the update delay, then Ready again, watched by
    /// the monitor (health checks, Auto Scaling), which looks at Ready environments only.
    async fn settle_update(self: &Arc<Self>, env_id: &str, generation: u64) {
        tokio::time::sleep(self.options().update_delay).await;
        let back = self.set(env_id, generation, |e| {
            if e.status == "Updating" {
                e.status = "Ready";
            }
        });
        if back {
            self.event(
                env_id,
                Severity::Info,
                "Environment update completed successfully.",
            );
            self.monitor(env_id.to_string(), generation);
        }
    }

    /// A size change: the group's desired capacity moves into the new bounds and the monitor's Auto
    /// Scaling step launches or drains instances toward it, one per step; the running instances keep
    /// serving throughout (nothing is redeployed).
    async fn resize(self: Arc<Self>, env_id: &str, generation: u64) {
        self.set(env_id, generation, |e| {
            let (min, max) = e.size_bounds();
            e.desired = e.desired.clamp(min, max);
        });
        self.settle_update(env_id, generation).await;
    }

    /// A deployment went well: Ready and Green/Ok, or Yellow/Warning under the `yellow` fault, with the
    /// event enhanced health writes when the status changes ("Environment health has transitioned from
    /// Pending to Ok.").
    /// The instances' targets turn routable in the same step, so nothing answers on a Launching
    /// environment's CNAME.
    fn ready(
        &self,
        env_id: &str,
        generation: u64,
        name: &str,
        before: &str,
        targets: Vec<(String, Target)>,
    ) {
        let (health, status) = healthy(&self.options(), name);
        let set = self.set(env_id, generation, |e| {
            e.status = "Ready";
            for (id, target) in &targets {
                if let Some(i) = e.instances.iter_mut().find(|i| &i.id == id) {
                    i.target = *target;
                    i.streak = (*target == Target::Healthy, 1);
                }
            }
            e.health = health;
            e.health_status = status;
            e.causes = if health == "Yellow" {
                vec!["1 out of 2 instances are impaired (local-aws fault yellow).".into()]
            } else {
                vec![]
            };
        });
        if !set || before == status {
            return;
        }
        let (severity, why) = if health == "Yellow" {
            (
                Severity::Warn,
                " 1 out of 2 instances are impaired (local-aws fault yellow).",
            )
        } else {
            (Severity::Info, "")
        };
        self.event(
            env_id,
            severity,
            format!("Environment health has transitioned from {before} to {status}.{why}"),
        );
    }

    /// Beanstalk's processing checks that the bundle can be fetched and is a valid zip.
    async fn process_version(self: Arc<Self>, application: &str, label: &str) {
        let id = (application.to_string(), label.to_string());
        let Some(version) = self.shared.lock().beanstalk.versions.get(&id).cloned() else {
            return;
        };
        tokio::time::sleep(self.options().update_delay / 2).await;
        let verdict = match (&version.bucket, &version.key) {
            (Some(bucket), Some(key)) => match self.download(bucket, key).await {
                Ok(bytes) => zip::ZipArchive::new(std::io::Cursor::new(bytes))
                    .map(|_| ())
                    .map_err(|e| {
                        format!(
                            "The source bundle s3://{bucket}/{key} is not a valid zip file ({e})."
                        )
                    }),
                Err(e) => Err(e),
            },
            _ => Ok(()),
        };
        let mut state = self.shared.lock();
        let store = &mut state.beanstalk;
        let Some(v) = store.versions.get_mut(&id) else {
            return;
        };
        v.updated = SystemTime::now();
        v.status = if verdict.is_ok() {
            "Processed"
        } else {
            "Failed"
        };
        if let Err(why) = verdict {
            let event = crate::beanstalk::Event {
                date: SystemTime::now(),
                severity: Severity::Error,
                message: format!("Failed to process application version {label}: {why}"),
                application: application.to_string(),
                environment: None,
                environment_id: None,
                version_label: Some(label.to_string()),
                template: None,
                request_id: None,
                sequence: 0,
            };
            store.push_event(event);
        }
    }

    /// TerminateEnvironment: the targets deregister (the load balancer refuses new requests and lets
    /// those in flight finish, for at most the deregistration delay), then the instances stop and the
    /// load balancer is deleted, so its address stops answering and its names stop resolving.
    async fn terminate(self: Arc<Self>, env_id: &str, generation: u64) {
        let options = self.options();
        let delay = self
            .current(env_id, generation)
            .and_then(|e| {
                e.setting(
                    "aws:elasticbeanstalk:environment:process:default",
                    "DeregistrationTimeout",
                )
                .and_then(|v| v.trim().parse::<u64>().ok())
            })
            // A timeout set in seconds is scaled as the default 300 s is.
            .map(|secs| {
                options
                    .deregistration_delay
                    .mul_f64(secs as f64 / DEFAULT_DEREGISTRATION.as_secs_f64())
            })
            .unwrap_or(options.deregistration_delay);
        {
            let mut state = self.shared.lock();
            if let Some(lb) = state.lbs.get_mut(env_id) {
                lb.draining = true;
            }
        }
        self.set(env_id, generation, |e| {
            for i in &mut e.instances {
                if i.target != Target::None {
                    i.target = Target::Draining;
                }
            }
        });
        let started = Instant::now();
        while started.elapsed() < delay {
            let idle = self
                .shared
                .lock()
                .lbs
                .get(env_id)
                .is_none_or(|lb| lb.in_flight() == 0);
            if idle {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The instances stop, and the load balancer with them.
        {
            let mut state = self.shared.lock();
            drop(state.processes.remove(env_id));
            drop(state.lbs.remove(env_id));
            state.app_specs.remove(env_id);
        }
        self.set(env_id, generation, |e| {
            for i in &mut e.instances {
                i.port = None;
                i.target = Target::None;
            }
        });
        tokio::time::sleep(options.terminate_delay.saturating_sub(started.elapsed())).await;
        self.finish_termination(env_id, generation);
    }

    fn finish_termination(&self, env_id: &str, generation: u64) {
        {
            let mut state = self.shared.lock();
            drop(state.processes.remove(env_id));
            drop(state.lbs.remove(env_id));
            state.app_specs.remove(env_id);
        }
        let done = self.set(env_id, generation, |e| {
            e.status = "Terminated";
            e.health = "Grey";
            e.health_status = "Unknown";
            e.instances.clear();
            e.causes = vec![];
            e.terminated_at = Some(SystemTime::now());
        });
        if done {
            self.event(
                env_id,
                Severity::Info,
                "terminateEnvironment completed successfully.",
            );
        }
    }

    /// Fetches, unpacks and starts the environment's version on each of its instances (the Auto
    /// Scaling group's desired capacity, within MinSize..=MaxSize), replacing whatever they ran before.
    /// An environment without a version runs no process (its load balancer serves a sample page).
    async fn start_app(&self, env: &Environment, generation: u64) -> Result<(), String> {
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
    async fn start_web(
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
    async fn deployment_variables(
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
    async fn deploy_steps(
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
    fn instance_failure_events(&self, env_id: &str) {
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

    /// RequestEnvironmentInfo (tail): the last 100 lines of every log of every instance, one object
    /// per instance in the environment's S3 bucket, each entry a presigned URL valid 15 minutes
    /// (EnvironmentInfoDescription: "Currently contains a presigned Amazon S3 URL. The files are
    /// deleted after 15 minutes.").
    pub(crate) async fn compile_tail(self: Arc<Self>, env_id: &str) {
        let Some(env) = self
            .shared
            .lock()
            .beanstalk
            .environments
            .get(env_id)
            .cloned()
        else {
            return;
        };
        let Some(s3) = self.s3.as_ref() else {
            return;
        };
        let bucket = format!(
            "elasticbeanstalk-{}-{}",
            crate::beanstalk::REGION,
            crate::beanstalk::ACCOUNT
        );
        if s3.head_bucket().bucket(&bucket).send().await.is_err() {
            let _ = s3.create_bucket().bucket(&bucket).send().await;
        }
        let env_dir = self.dir.join(env_id);
        let mut entries = vec![];
        for instance in crate::deploy::instance_ids(&env) {
            let text = crate::deploy::tail(&env_dir, &instance, 100);
            let sampled = SystemTime::now();
            let key = format!(
                "resources/environments/logs/tail/{env_id}/{instance}/TailLogs-{}.out",
                sampled
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default()
            );
            if s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(text.into_bytes().into())
                .send()
                .await
                .is_err()
            {
                continue;
            }
            let Ok(config) =
                aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(900))
            else {
                continue;
            };
            if let Ok(url) = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .presigned(config)
                .await
            {
                entries.push(crate::beanstalk::InfoEntry {
                    instance,
                    sampled,
                    url: url.uri().to_string(),
                });
            }
        }
        self.shared
            .lock()
            .beanstalk
            .tail_logs
            .insert(env_id.to_string(), entries);
    }

    async fn download(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
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

    /// Watches a Ready environment until its operation changes: every health interval each instance's
    /// process and health path are checked. The load balancer takes a target out after
    /// UnhealthyThresholdCount failed checks in a row and puts it back after HealthyThresholdCount
    /// passed ones; enhanced health turns Red/Severe when every instance fails (process exit, health
    /// path, the `red_after_seconds` fault), Yellow/Warning when some do, and Green (or, under the
    /// `yellow` fault, Yellow) again on recovery. The Auto Scaling trigger runs in the same beat.
    fn monitor(self: &Arc<Self>, env_id: String, generation: u64) {
        let rt = self.clone();
        tokio::spawn(async move {
            let ready_at = Instant::now();
            // Instances whose process exited, and why: they stay failed.
            let mut exited: BTreeMap<String, String> = BTreeMap::new();
            loop {
                let options = rt.options();
                tokio::time::sleep(options.health_interval).await;
                let Some(env) = rt.current(&env_id, generation) else {
                    return;
                };
                if env.status != "Ready" {
                    return;
                }
                let red = options
                    .faults
                    .red_after(&env.name)
                    .is_some_and(|after| ready_at.elapsed() >= after);
                let mut verdicts: Vec<(String, Option<String>)> = vec![];
                for instance in &env.instances {
                    if matches!(instance.target, Target::None | Target::Draining) {
                        continue;
                    }
                    let problem = if let Some(why) = exited.get(&instance.id) {
                        Some(why.clone())
                    } else if let Some(status) = {
                        let mut state = rt.shared.lock();
                        state
                            .processes
                            .get_mut(&env_id)
                            .and_then(|p| p.get_mut(&instance.id))
                            .and_then(AppProcess::exited)
                    } {
                        let log = rt
                            .shared
                            .lock()
                            .processes
                            .get(&env_id)
                            .and_then(|p| p.get(&instance.id))
                            .map(|p| tail(&p.log))
                            .unwrap_or_default();
                        let why = if env.instances.len() == 1 {
                            format!("The web process exited ({status}); no instance is serving requests. Last output: {log}")
                        } else {
                            format!("The web process of instance {} exited ({status}). Last output: {log}", instance.id)
                        };
                        exited.insert(instance.id.clone(), why.clone());
                        Some(why)
                    } else if red {
                        Some("ELB health is failing or not available for all instances (local-aws fault red_after_seconds).".to_string())
                    } else if let Some(port) = instance.port {
                        rt.check_health(port, &env.health_path()).await.err()
                    } else {
                        None
                    };
                    verdicts.push((instance.id.clone(), problem));
                }
                let (healthy_after, unhealthy_after) = env.thresholds();
                let impaired: Vec<&String> =
                    verdicts.iter().filter_map(|(_, p)| p.as_ref()).collect();
                let (health, status, causes) = if !verdicts.is_empty()
                    && impaired.len() == verdicts.len()
                {
                    ("Red", "Severe", vec![impaired[0].clone()])
                } else if !impaired.is_empty() {
                    (
                        "Yellow",
                        "Warning",
                        vec![format!(
                            "{} out of {} instances are impaired. {}",
                            impaired.len(),
                            verdicts.len(),
                            impaired[0]
                        )],
                    )
                } else {
                    let (health, status) = healthy(&options, &env.name);
                    let causes = if health == "Yellow" {
                        vec!["1 out of 2 instances are impaired (local-aws fault yellow).".into()]
                    } else {
                        vec![]
                    };
                    (health, status, causes)
                };
                let mut transition = None;
                rt.set(&env_id, generation, |e| {
                    for (id, problem) in &verdicts {
                        let Some(i) = e.instances.iter_mut().find(|i| &i.id == id) else {
                            continue;
                        };
                        let passed = problem.is_none();
                        i.streak = if i.streak.0 == passed {
                            (passed, i.streak.1.saturating_add(1))
                        } else {
                            (passed, 1)
                        };
                        i.problem = problem.clone();
                        i.target = match (i.target, passed) {
                            (Target::Initial, true) => Target::Healthy,
                            (Target::Healthy, false) if i.streak.1 >= unhealthy_after => {
                                Target::Unhealthy
                            }
                            (Target::Unhealthy, true) if i.streak.1 >= healthy_after => {
                                Target::Healthy
                            }
                            (t, _) => t,
                        };
                    }
                    if e.health_status != status {
                        transition = Some((e.health_status, causes.join(" ")));
                    }
                    e.health = health;
                    e.health_status = status;
                    e.causes = causes.clone();
                });
                if let Some((before, why)) = transition {
                    let severity = if status == "Ok" {
                        Severity::Info
                    } else {
                        Severity::Warn
                    };
                    let why = if why.is_empty() {
                        String::new()
                    } else {
                        format!(" {why}")
                    };
                    rt.event(
                        &env_id,
                        severity,
                        format!(
                            "Environment health has transitioned from {before} to {status}.{why}"
                        ),
                    );
                }
                rt.autoscale(&env_id, generation, &options).await;
            }
        });
    }

    /// The Auto Scaling trigger and group: the requests per second per instance over the trigger's
    /// window move the desired capacity one instance at a time within MinSize..=MaxSize, then the
    /// group launches instances (the app started, registered, routed once its check passes) or
    /// terminates the newest (deregistered and drained first, as a scale-in does).
    async fn autoscale(self: &Arc<Self>, env_id: &str, generation: u64, options: &Options) {
        let Some(env) = self.current(env_id, generation) else {
            return;
        };
        let (min, max) = env.size_bounds();
        let serving = env
            .instances
            .iter()
            .filter(|i| i.target != Target::Draining)
            .count();
        let mut desired = env.desired.clamp(min, max);
        if let Some(scaling) = &options.scaling {
            let requests = {
                let mut state = self.shared.lock();
                state.beanstalk.requests.keep(scaling.window);
                state.beanstalk.requests.count(scaling.window, env_id)
            };
            let rate = requests as f64 / scaling.window.as_secs_f64() / serving.max(1) as f64;
            // One step per window: the group waits for a new instance to count before it moves again.
            let settled = env
                .instances
                .iter()
                .map(|i| i.launched)
                .max()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age >= scaling.window);
            if settled && rate > scaling.upper && desired < max {
                desired += 1;
            } else if settled && rate < scaling.lower && desired > min {
                desired -= 1;
            }
        }
        if desired != env.desired {
            let before = env.desired;
            self.set(env_id, generation, |e| e.desired = desired);
            self.event(
                env_id,
                Severity::Info,
                format!(
                    "Auto Scaling changed the desired capacity of {} from {before} to {desired}.",
                    crate::beanstalk::auto_scaling_group(env_id)
                ),
            );
        }
        if serving < desired {
            self.add_instance(env_id, generation, &env).await;
        } else if serving > desired {
            if let Some(last) = env
                .instances
                .iter()
                .rev()
                .find(|i| i.target != Target::Draining)
            {
                self.remove_instance(env_id, generation, last.id.clone());
            }
        }
    }

    /// Launches one more instance with the current deployment's app.
    async fn add_instance(self: &Arc<Self>, env_id: &str, generation: u64, env: &Environment) {
        let Some(spec) = self.shared.lock().app_specs.get(env_id).cloned() else {
            return;
        };
        let n = (0..).find(|n| {
            let id = crate::deploy::instance_id(env, *n);
            env.instances.iter().all(|i| i.id != id)
        });
        let Some(n) = n else { return };
        let id = crate::deploy::instance_id(env, n);
        match self.start_web(env, &id, &spec, &spec.app_dir).await {
            Ok(process) => {
                let port = process.port;
                let added = self.set(env_id, generation, |e| {
                    let mut i = Instance::new(id.clone());
                    i.port = Some(port);
                    i.target = Target::Initial;
                    e.instances.push(i);
                });
                if added {
                    self.shared
                        .lock()
                        .processes
                        .entry(env_id.to_string())
                        .or_default()
                        .insert(id.clone(), process);
                    self.event(
                        env_id,
                        Severity::Info,
                        format!("Added instance [{id}] to your environment."),
                    );
                }
            }
            Err(why) => self.event(
                env_id,
                Severity::Warn,
                format!("Failed to launch instance [{id}]: {why}"),
            ),
        }
    }

    /// Scales in one instance: deregistered (no new requests), drained for at most the deregistration
    /// delay, then stopped and removed.
    fn remove_instance(self: &Arc<Self>, env_id: &str, generation: u64, id: String) {
        if !self.set(env_id, generation, |e| {
            if let Some(i) = e.instances.iter_mut().find(|i| i.id == id) {
                i.target = Target::Draining;
            }
        }) {
            return;
        }
        let rt = self.clone();
        let env_id = env_id.to_string();
        tokio::spawn(async move {
            let delay = rt.options().deregistration_delay;
            let started = Instant::now();
            while started.elapsed() < delay {
                if rt
                    .shared
                    .lock()
                    .lbs
                    .get(&env_id)
                    .is_none_or(|lb| lb.in_flight_on(&id) == 0)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            {
                let mut state = rt.shared.lock();
                if let Some(p) = state.processes.get_mut(&env_id) {
                    drop(p.remove(&id));
                }
            }
            let removed = rt.set(&env_id, generation, |e| e.instances.retain(|i| i.id != id));
            if removed {
                rt.event(
                    &env_id,
                    Severity::Info,
                    format!("Removed instance [{id}] from your environment."),
                );
            }
        });
    }

    async fn check_health(&self, port: u16, path: &str) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{port}{path}");
        match self
            .http
            .get(&url)
            // As an Application Load Balancer's health checks say who they are.
            .header("user-agent", HEALTH_CHECKER)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() || r.status().is_redirection() => Ok(()),
            Ok(r) => Err(format!(
                "Health check GET {path} answered HTTP {} on all instances.",
                r.status().as_u16()
            )),
            Err(e) => Err(format!(
                "Health check GET {path} failed on all instances: {e}."
            )),
        }
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
fn tail(log: &Path) -> String {
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
