//! What the stand-in remembers of Elastic Beanstalk: applications, versions, configuration templates,
//! environments with their instances, events, tags, tail logs, all in one [`Store`] behind the
//! server's lock, and the few rules on them every operation shares (finding a live environment,
//! numbering events).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{
    environment_arn, health, Options, Severity, ENV_NAMESPACE, HEALTHCHECK_NAMESPACE,
    HEALTHCHECK_OPTION,
};
use crate::query::QueryError;

#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub description: Option<String>,
    pub created: SystemTime,
    pub updated: SystemTime,
}

#[derive(Debug, Clone)]
pub struct ApplicationVersion {
    pub application: String,
    pub label: String,
    pub description: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub status: &'static str,
    pub created: SystemTime,
    pub updated: SystemTime,
    /// Creation order, for newest-first listing even within one clock tick.
    pub sequence: u64,
}

/// An option setting's identity: (namespace, option name).
pub type OptionKey = (String, String);

/// A saved configuration.
#[derive(Debug, Clone)]
pub struct Template {
    pub application: String,
    pub name: String,
    pub description: Option<String>,
    pub solution_stack: Option<String>,
    pub platform_arn: Option<String>,
    pub settings: BTreeMap<OptionKey, String>,
    pub created: SystemTime,
    pub updated: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub id: String,
    pub name: String,
    pub application: String,
    pub version_label: Option<String>,
    pub solution_stack: Option<String>,
    pub platform_arn: Option<String>,
    pub template_name: Option<String>,
    pub description: Option<String>,
    pub cname: String,
    pub endpoint_url: String,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub status: &'static str,
    pub health: &'static str,
    pub health_status: &'static str,
    pub tier_name: String,
    pub tier_type: String,
    pub settings: BTreeMap<OptionKey, String>,
    /// When it reached Terminated (for IncludedDeletedBackTo).
    pub terminated_at: Option<SystemTime>,
    /// Bumped by every operation, so a lifecycle task of an older operation knows to stop.
    pub generation: u64,
    /// The Auto Scaling group's instances, each running the app on its own port (FIDELITY.md,
    /// "Instances and load balancer"); empty until the launch starts them.
    pub instances: Vec<Instance>,
    /// The Auto Scaling group's desired capacity: MinSize at launch, moved by the scaling trigger
    /// within MinSize..=MaxSize.
    pub desired: usize,
    /// When the first instances were launched.
    pub instance_launched: Option<SystemTime>,
    /// Why the health is what it is (enhanced health's causes), newest state only.
    pub causes: Vec<String>,
    /// The last deployment to the instance: its id (one more per deployment), status and time.
    pub deployment_id: u64,
    pub deployment_status: &'static str,
    pub deployment_time: Option<SystemTime>,
    pub sequence: u64,
}

/// An instance's state in the load balancer's target group ("Health checks for Application Load
/// Balancer target groups"): none registered, registered and not yet checked, checked, or draining
/// (deregistered: no new requests, those in flight finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    None,
    Initial,
    Healthy,
    Unhealthy,
    Draining,
}

/// One EC2 instance of an environment.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub launched: SystemTime,
    /// The app's port on 127.0.0.1 while it runs; `None` for the sample application (Beanstalk's own
    /// page) and before the app listens.
    pub port: Option<u16>,
    pub target: Target,
    /// Consecutive health checks with the same verdict (passed?, how many), for the target group's
    /// healthy and unhealthy thresholds.
    pub streak: (bool, u32),
    /// Why its last health check failed (enhanced health's per-instance cause).
    pub problem: Option<String>,
}

impl Instance {
    pub fn new(id: String) -> Instance {
        Instance {
            id,
            launched: SystemTime::now(),
            port: None,
            target: Target::None,
            streak: (true, 0),
            problem: None,
        }
    }
}

impl Target {
    /// Whether the load balancer sends it requests: healthy ones, and unhealthy ones when no target is
    /// healthy (an ALB fails open); never one still in its initial checks.
    pub fn routable(self) -> bool {
        matches!(self, Target::Healthy | Target::Unhealthy)
    }
}

impl Environment {
    pub fn arn(&self) -> String {
        environment_arn(&self.application, &self.name)
    }

    /// The load balancer's health check path: `Application Healthcheck URL` when set (Beanstalk applies it
    /// to the default process), else the default process's HealthCheckPath (`/` unless changed).
    pub fn health_path(&self) -> String {
        self.settings
            .get(&(HEALTHCHECK_NAMESPACE.into(), HEALTHCHECK_OPTION.into()))
            .filter(|v| !v.is_empty())
            .or_else(|| {
                self.settings.get(&(
                    "aws:elasticbeanstalk:environment:process:default".into(),
                    "HealthCheckPath".into(),
                ))
            })
            .cloned()
            .unwrap_or_else(|| "/".into())
    }

    /// An option setting's value.
    pub fn setting(&self, namespace: &str, option: &str) -> Option<&str> {
        self.settings
            .get(&(namespace.to_string(), option.to_string()))
            .map(String::as_str)
    }

    /// Whether enhanced health reporting is on (`aws:elasticbeanstalk:healthreporting:system`).
    pub fn enhanced_health(&self) -> bool {
        self.setting("aws:elasticbeanstalk:healthreporting:system", "SystemType")
            .is_none_or(|t| t == "enhanced")
    }

    /// The app's environment variables from the option settings.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .filter(|((ns, _), _)| ns == ENV_NAMESPACE)
            .map(|((_, name), value)| (name.clone(), value.clone()))
            .collect()
    }

    pub fn is_live(&self) -> bool {
        self.status != "Terminated"
    }

    /// The Auto Scaling group's bounds: `aws:autoscaling:asg` MinSize and MaxSize, Beanstalk's defaults
    /// 1 and 4 for a load-balanced environment, 1 and 1 for a single-instance one (EB DG: "Auto Scaling
    /// group for your Elastic Beanstalk environment"). Capped at [`MAX_LOCAL_INSTANCES`]: each is a
    /// process on this machine.
    pub fn size_bounds(&self) -> (usize, usize) {
        if self.setting("aws:elasticbeanstalk:environment", "EnvironmentType")
            == Some("SingleInstance")
        {
            return (1, 1);
        }
        let read = |name: &str, default: usize| {
            self.setting("aws:autoscaling:asg", name)
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(default)
                .clamp(1, MAX_LOCAL_INSTANCES)
        };
        let min = read("MinSize", 1);
        (min, read("MaxSize", 4).max(min))
    }

    /// The target group's health check thresholds (`aws:elasticbeanstalk:environment:process:default`
    /// HealthyThresholdCount 3 and UnhealthyThresholdCount 5 by default: EB DG, "Application Load
    /// Balancer" namespace table).
    pub fn thresholds(&self) -> (u32, u32) {
        let read = |name: &str, default: u32| {
            self.setting("aws:elasticbeanstalk:environment:process:default", name)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(default)
                .max(1)
        };
        (
            read("HealthyThresholdCount", 3),
            read("UnhealthyThresholdCount", 5),
        )
    }

    /// Instances with a running app or a checked target, counted for reports.
    pub fn running(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.target != Target::None)
            .count()
    }
}

/// The most instances local-aws runs for one environment, whatever MaxSize says.
pub const MAX_LOCAL_INSTANCES: usize = 10;

/// One entry of DescribeEvents.
#[derive(Debug, Clone)]
pub struct Event {
    pub date: SystemTime,
    pub severity: Severity,
    pub message: String,
    pub application: String,
    pub environment: Option<String>,
    pub environment_id: Option<String>,
    pub version_label: Option<String>,
    pub template: Option<String>,
    pub request_id: Option<String>,
    pub sequence: u64,
}

/// One compiled tail log of an instance (RetrieveEnvironmentInfo's EnvironmentInfoDescription).
#[derive(Debug, Clone)]
pub struct InfoEntry {
    pub instance: String,
    pub sampled: SystemTime,
    /// A presigned S3 URL of the log.
    pub url: String,
}

/// Everything Elastic Beanstalk holds for one region.
#[derive(Debug, Default)]
pub struct Store {
    pub options: Options,
    pub applications: BTreeMap<String, Application>,
    /// Keyed by (application, version label).
    pub versions: BTreeMap<(String, String), ApplicationVersion>,
    /// Keyed by (application, template name).
    pub templates: BTreeMap<(String, String), Template>,
    /// Keyed by environment id.
    pub environments: BTreeMap<String, Environment>,
    pub events: Vec<Event>,
    pub next_sequence: u64,
    /// Tags per resource ARN.
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    /// What the router saw: one record per request it answered, newest last (FIDELITY.md, "Health").
    pub requests: health::Requests,
    /// The latest compiled tail logs per environment id.
    pub tail_logs: BTreeMap<String, Vec<InfoEntry>>,
}

impl Store {
    pub fn sequence(&mut self) -> u64 {
        self.next_sequence += 1;
        self.next_sequence
    }

    /// Begins an operation on an environment, as the API call that starts it does: `edit` applies the
    /// request's changes, the status becomes `status` with a new generation (so work of an earlier
    /// operation still running sees it is stale), and the event Beanstalk logs for the start is written
    /// with the request's id. Returns the environment as it now is and its generation; `None` if it is
    /// gone.
    pub fn begin_operation(
        &mut self,
        env_id: &str,
        status: &'static str,
        started: &str,
        request_id: &str,
        edit: impl FnOnce(&mut Environment),
    ) -> Option<(Environment, u64)> {
        let e = self.environments.get_mut(env_id)?;
        edit(e);
        e.status = status;
        e.generation += 1;
        e.updated = SystemTime::now();
        let begun = (e.clone(), e.generation);
        self.env_event(env_id, Severity::Info, started, Some(request_id));
        Some(begun)
    }

    /// Records an event about an environment.
    pub fn env_event(
        &mut self,
        env_id: &str,
        severity: Severity,
        message: impl Into<String>,
        request_id: Option<&str>,
    ) {
        let Some(env) = self.environments.get(env_id) else {
            return;
        };
        let event = Event {
            date: SystemTime::now(),
            severity,
            message: message.into(),
            application: env.application.clone(),
            environment: Some(env.name.clone()),
            environment_id: Some(env.id.clone()),
            version_label: env.version_label.clone(),
            template: env.template_name.clone(),
            request_id: request_id.map(str::to_string),
            sequence: 0,
        };
        self.push_event(event);
    }

    pub fn push_event(&mut self, mut event: Event) {
        event.sequence = self.sequence();
        self.events.push(event);
    }

    /// The environment a request names by id or name (ids win, as in Beanstalk), not yet terminated.
    pub fn find_env(
        &self,
        id: Option<&str>,
        name: Option<&str>,
    ) -> Result<&Environment, QueryError> {
        let found = match (id, name) {
            (Some(id), _) => self.environments.get(id).filter(|e| e.is_live()),
            (None, Some(name)) => self
                .environments
                .values()
                .find(|e| e.name == name && e.is_live()),
            (None, None) => {
                return Err(QueryError::invalid(
                    "You must specify either the EnvironmentId or the EnvironmentName.",
                ))
            }
        };
        found.ok_or_else(|| match (id, name) {
            (Some(id), _) => {
                QueryError::invalid(format!("No Environment found for EnvironmentId = '{id}'."))
            }
            (None, name) => QueryError::invalid(format!(
                "No Environment found for EnvironmentName = '{}'.",
                name.unwrap_or_default()
            )),
        })
    }
}
