//! An environment's launch: its instances start the app, the load balancer's first health checks, and
//! Ready/Green once the launch delay has passed, then the monitor takes over; Ready but Red/Severe when
//! the deployment fails, Terminated when the launch itself fails (a fault), each with the events
//! Beanstalk emits.

use std::sync::Arc;
use std::time::SystemTime;

use super::{healthy, Runtime};
use crate::beanstalk::{Severity, Target};

/// The events and health that differ between a launch's and an update's end.
pub(super) struct Concluded {
    /// Logged after the first health check, in order.
    pub succeeded: [String; 2],
    /// Logged after the instance's failure events.
    pub failed: &'static str,
    /// The enhanced health status before the deployment (`Pending` for a launch).
    pub health_before: &'static str,
}

impl Runtime {
    pub(super) async fn launch(self: Arc<Self>, env_id: &str, generation: u64) {
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
        let outcome = Concluded {
            succeeded: [
                format!("Application available at {}.", env.cname),
                format!("Successfully launched environment: {}", env.name),
            ],
            failed: "Create environment operation is complete, but with errors. For more information, see troubleshooting documentation.",
            health_before: "Pending",
        };
        self.conclude_deployment(env_id, generation, &env.name, deployed, outcome)
            .await;
    }

    /// How a deployment (a launch's or an update's) ends once its delay has passed: on success the
    /// first health check, the success events and Ready; on failure the instance's failure events,
    /// `failed`, Red/Severe and the health transition Beanstalk logs ("Environment health has
    /// transitioned from ... to Severe").
    pub(super) async fn conclude_deployment(
        self: &Arc<Self>,
        env_id: &str,
        generation: u64,
        env_name: &str,
        deployed: Result<(), String>,
        outcome: Concluded,
    ) {
        match deployed {
            Ok(()) => {
                self.event(
                    env_id,
                    Severity::Info,
                    "Instance deployment completed successfully.",
                );
                let targets = self.first_health_check(env_id, generation).await;
                for message in outcome.succeeded {
                    self.event(env_id, Severity::Info, message);
                }
                self.ready(env_id, generation, env_name, outcome.health_before, targets);
                self.monitor(env_id.to_string(), generation);
            }
            Err(reason) => {
                self.event(
                    env_id,
                    Severity::Error,
                    format!("Instance deployment failed. {reason}"),
                );
                self.instance_failure_events(env_id);
                self.event(env_id, Severity::Error, outcome.failed);
                self.set(env_id, generation, |e| {
                    e.status = "Ready";
                    e.health = "Red";
                    e.health_status = "Severe";
                    e.deployment_status = "Failed";
                    e.deployment_time = Some(SystemTime::now());
                    e.causes = vec!["Instance deployment failed.".into()];
                });
                if outcome.health_before != "Severe" {
                    self.event(
                        env_id,
                        Severity::Warn,
                        format!(
                            "Environment health has transitioned from {} to Severe. Instance deployment failed.",
                            outcome.health_before
                        ),
                    );
                }
            }
        }
    }

    /// The load balancer's first health check of freshly deployed instances: each target turns healthy
    /// or unhealthy, and from then on the load balancer sends it requests ("Health checks for
    /// Application Load Balancer target groups": a target must pass one check to be healthy; with none
    /// healthy, an ALB fails open).
    pub(super) async fn first_health_check(
        &self,
        env_id: &str,
        generation: u64,
    ) -> Vec<(String, Target)> {
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

    /// A deployment went well: Ready and Green/Ok, or Yellow/Warning under the `yellow` fault, with the
    /// event enhanced health writes when the status changes ("Environment health has transitioned from
    /// Pending to Ok.").
    /// The instances' targets turn routable in the same step, so nothing answers on a Launching
    /// environment's CNAME.
    pub(super) fn ready(
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
}
