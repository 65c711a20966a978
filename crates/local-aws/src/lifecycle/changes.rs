//! What follows a change to a running environment: UpdateEnvironment redeploys (or, for a MinSize/MaxSize
//! change alone, resizes), a tag change is an update that settles the same way, TerminateEnvironment
//! drains and stops the instances; and an application version's processing.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::launch::Concluded;
use super::Runtime;
use crate::beanstalk::{Severity, Target};

impl Runtime {
    pub(super) async fn update(self: Arc<Self>, env_id: &str, generation: u64) {
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
        let outcome = Concluded {
            succeeded: [
                "New application version was deployed to running EC2 instances.".into(),
                "Environment update completed successfully.".into(),
            ],
            failed: "Failed to deploy application.",
            health_before: env.health_status,
        };
        self.conclude_deployment(env_id, generation, &env.name, deployed, outcome)
            .await;
    }

    /// A tag change: the environment's stack is updated with the new tags (the app keeps running and
    /// serving, as on AWS), then it is Ready again with the health it had.
    pub(super) async fn update_tags(self: Arc<Self>, env_id: &str, generation: u64) {
        self.settle_update(env_id, generation).await;
    }

    /// An update that redeploys nothing: Updating for the update delay, then Ready again, watched by
    /// the monitor (health checks, Auto Scaling), which looks at Ready environments only.
    pub(super) async fn settle_update(self: &Arc<Self>, env_id: &str, generation: u64) {
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
    pub(super) async fn resize(self: Arc<Self>, env_id: &str, generation: u64) {
        self.set(env_id, generation, |e| {
            let (min, max) = e.size_bounds();
            e.desired = e.desired.clamp(min, max);
        });
        self.settle_update(env_id, generation).await;
    }

    /// Beanstalk's processing checks that the bundle can be fetched and is a valid zip.
    pub(super) async fn process_version(self: Arc<Self>, application: &str, label: &str) {
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
}

/// Beanstalk's default deregistration timeout (`DeregistrationTimeout` 20 s, which it sets on the
/// target group instead of Elastic Load Balancing's own 300 s), which `Options::deregistration_delay`
/// stands for locally; a configured timeout is scaled by the same factor.
pub(super) const DEFAULT_DEREGISTRATION: Duration = Duration::from_secs(20);

impl Runtime {
    /// TerminateEnvironment: the targets deregister (the load balancer refuses new requests and lets
    /// those in flight finish, for at most the deregistration delay), then the instances stop and the
    /// load balancer is deleted, so its address stops answering and its names stop resolving.
    pub(super) async fn terminate(self: Arc<Self>, env_id: &str, generation: u64) {
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

    pub(super) fn finish_termination(&self, env_id: &str, generation: u64) {
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
}
