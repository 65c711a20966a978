//! A Ready environment over time: the load balancer's health checks of each instance, enhanced
//! health's colour from them, and the Auto Scaling trigger adding and removing instances.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::app::tail;
use super::{healthy, AppProcess, Runtime, HEALTH_CHECKER};
use crate::beanstalk::{Environment, Instance, Options, Severity, Target};

impl Runtime {
    /// Watches a Ready environment until its operation changes: every health interval each instance's
    /// process and health path are checked. The load balancer takes a target out after
    /// UnhealthyThresholdCount failed checks in a row and puts it back after HealthyThresholdCount
    /// passed ones; enhanced health turns Red/Severe when every instance fails (process exit, health
    /// path, the `red_after_seconds` fault), Yellow/Warning when some do, and Green (or, under the
    /// `yellow` fault, Yellow) again on recovery. The Auto Scaling trigger runs in the same beat.
    pub(super) fn monitor(self: &Arc<Self>, env_id: String, generation: u64) {
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
    pub(super) async fn autoscale(
        self: &Arc<Self>,
        env_id: &str,
        generation: u64,
        options: &Options,
    ) {
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
    pub(super) async fn add_instance(
        self: &Arc<Self>,
        env_id: &str,
        generation: u64,
        env: &Environment,
    ) {
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
    pub(super) fn remove_instance(self: &Arc<Self>, env_id: &str, generation: u64, id: String) {
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

    pub(super) async fn check_health(&self, port: u16, path: &str) -> Result<(), String> {
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
