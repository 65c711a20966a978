//! Elastic Beanstalk (2010-12-01, awsQuery), following botocore's
//! `elasticbeanstalk/2010-12-01/service-2.json`: member names, list wrapping and error codes as the
//! model gives them, error messages as the service words them.
//!
//! Operations are synchronous changes to a [`Store`] behind the server's one lock. What takes time in
//! real Beanstalk (launching, deploying, terminating) is returned as an [`Effect`]; the server hands it
//! to [`crate::lifecycle`], which runs the bundle for real and moves the environment along, emitting the
//! events Beanstalk emits.

mod applications;
mod environments;
mod events;
pub mod health;
mod info;
pub mod platforms;
mod templates;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::faults::Faults;
use crate::query::{Params, QueryError};

pub use environments::{auto_scaling_group, load_balancer_arn, target_group_arn};
pub use events::Severity;

pub const NAMESPACE: &str = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/";
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";
/// Where every environment's CNAME lives: `<prefix>.us-east-1.elasticbeanstalk.com`.
pub const CNAME_SUFFIX: &str = "us-east-1.elasticbeanstalk.com";

/// The option namespace whose settings become the app's environment variables.
pub const ENV_NAMESPACE: &str = "aws:elasticbeanstalk:application:environment";
/// Where the health check path lives (`Application Healthcheck URL`).
pub const HEALTHCHECK_NAMESPACE: &str = "aws:elasticbeanstalk:application";
pub const HEALTHCHECK_OPTION: &str = "Application Healthcheck URL";

/// Settings chosen at start. Delays default short so tests run fast; the binary takes them as flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// Application versions allowed per region before TooManyApplicationVersionsException (AWS: 1000).
    pub max_application_versions: usize,
    /// Applications per region before TooManyApplicationsException (AWS quota: 75).
    pub max_applications: usize,
    /// Environments per region before TooManyEnvironmentsException (AWS quota: 200).
    pub max_environments: usize,
    /// Saved configurations per region before TooManyConfigurationTemplatesException (AWS quota: 2000).
    pub max_configuration_templates: usize,
    /// The day the platform catalogue is read at (which branches are deprecated or retired, and for how
    /// long); [`platforms::CATALOGUE_DATE`] by default.
    pub platform_date: SystemTime,
    /// Platform ARNs this account runs in environments local-aws does not hold (so it may launch a
    /// previous version, or a retired branch in its grace period, as such an account may on AWS).
    pub account_platforms: Vec<String>,
    /// Launching -> Ready, counted from CreateEnvironment (the app must also be listening by then).
    pub launch_delay: Duration,
    /// Updating -> Ready after UpdateEnvironment.
    pub update_delay: Duration,
    /// Terminating -> Terminated.
    pub terminate_delay: Duration,
    /// How often a running environment's process and health path are checked.
    pub health_interval: Duration,
    /// The time enhanced health's ApplicationMetrics cover (AWS: "usually 10 seconds"); longer only for
    /// tests on a machine too busy to ask within 10 s.
    pub health_window: Duration,
    /// How long an app may take to listen on $PORT before its deployment fails.
    pub app_start_timeout: Duration,
    /// What Beanstalk's 60 s CNAME TTL becomes locally; every DNS TTL is scaled by the same factor
    /// (crate::dns).
    pub dns_ttl: Duration,
    /// What Beanstalk's default deregistration timeout (`aws:elasticbeanstalk:environment:process:default`
    /// DeregistrationTimeout, 20 s; Elastic Load Balancing's own default is 300 s) becomes locally: how
    /// long a terminating environment's requests in flight may take before its instances stop. A
    /// configured timeout is scaled by the same factor.
    pub deregistration_delay: Duration,
    /// Concurrent requests one instance serves; beyond it the instance answers 503 (ours: a
    /// configurable stand-in for an instance's size).
    pub instance_capacity: usize,
    /// The Auto Scaling trigger (crate::lifecycle): requests per second per instance over `window`
    /// above `upper` adds an instance, below `lower` removes one, within MinSize..=MaxSize. `None`
    /// leaves the group at its desired capacity.
    pub scaling: Option<Scaling>,
    /// Where bundles are unpacked and app logs written; a temporary directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// S3 endpoint to fetch source bundles from; `AWS_ENDPOINT_URL_S3` when `None`.
    pub s3_endpoint: Option<String>,
    /// Route 53 endpoint (moto) through which the router resolves custom domains to environments;
    /// `AWS_ENDPOINT_URL_ROUTE_53` when `None`; custom domains are not routed without either.
    pub route53_endpoint: Option<String>,
    pub faults: Faults,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_application_versions: 1000,
            max_applications: 75,
            max_environments: 200,
            max_configuration_templates: 2000,
            platform_date: platforms::date(platforms::CATALOGUE_DATE),
            account_platforms: vec![],
            launch_delay: Duration::from_millis(300),
            update_delay: Duration::from_millis(200),
            terminate_delay: Duration::from_millis(200),
            health_interval: Duration::from_millis(250),
            health_window: health::WINDOW,
            app_start_timeout: Duration::from_secs(20),
            dns_ttl: Duration::from_secs(1),
            deregistration_delay: Duration::from_millis(500),
            instance_capacity: 200,
            scaling: None,
            state_dir: None,
            s3_endpoint: None,
            route53_endpoint: None,
            faults: Faults::default(),
        }
    }
}

/// A simple Auto Scaling trigger on request rate (Beanstalk's `aws:autoscaling:trigger` with
/// MeasureName RequestCount, Statistic Sum, divided by the instances: EB DG, "Auto Scaling triggers").
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    /// Requests per second per instance above which one instance is added.
    pub upper: f64,
    /// Requests per second per instance below which one instance is removed.
    pub lower: f64,
    /// The period the rate is measured over (Period x BreachDuration on AWS, 5 minutes by default;
    /// scaled down locally).
    pub window: Duration,
}

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

/// Work an operation leaves for the lifecycle to do over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Launch (or relaunch after an update) the environment's app, then move it to Ready.
    Launch {
        env_id: String,
        generation: u64,
    },
    Update {
        env_id: String,
        generation: u64,
    },
    Terminate {
        env_id: String,
        generation: u64,
    },
    /// Only the Auto Scaling group's MinSize/MaxSize changed: Updating for the update delay, then Ready,
    /// the group launching or draining instances toward the new bounds while the others keep serving.
    Resize {
        env_id: String,
        generation: u64,
    },
    /// A tag change applied to the environment's resources: Updating for the update delay, then Ready
    /// again (FIDELITY.md, "Tag changes are environment updates").
    UpdateTags {
        env_id: String,
        generation: u64,
    },
    /// Validate a version's bundle (`Process=true`): Processing -> Processed or Failed.
    ProcessVersion {
        application: String,
        label: String,
    },
    /// RequestEnvironmentInfo (tail): compile every instance's tail logs into S3.
    CompileTail {
        env_id: String,
    },
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

/// What a request carries besides its parameters.
pub struct Request<'a> {
    pub params: &'a Params,
    pub request_id: &'a str,
}

/// Runs one operation against the store: the XML result (`None` for operations whose model has no
/// output) and the work it leaves for the lifecycle.
pub fn handle(
    store: &mut Store,
    operation: &str,
    request: &Request,
) -> Result<(Option<String>, Vec<Effect>), QueryError> {
    let p = request.params;
    let plain = |r: Result<String, QueryError>| r.map(|x| (Some(x), vec![]));
    match operation {
        "CreateApplication" => plain(applications::create_application(store, p)),
        "DescribeApplications" => plain(applications::describe_applications(store, p)),
        "CreateApplicationVersion" => applications::create_version(store, p),
        "DescribeApplicationVersions" => plain(applications::describe_versions(store, p)),
        "DeleteApplicationVersion" => {
            applications::delete_version(store, p).map(|()| (None, vec![]))
        }
        "CreateConfigurationTemplate" => plain(templates::create_template(store, p)),
        "DescribeConfigurationSettings" => plain(templates::describe_settings(store, p)),
        "DeleteConfigurationTemplate" => {
            templates::delete_template(store, p).map(|()| (None, vec![]))
        }
        "CreateEnvironment" => environments::create(store, request),
        "DescribeEnvironments" => plain(environments::describe(store, p)),
        "UpdateEnvironment" => environments::update(store, request),
        "TerminateEnvironment" => environments::terminate(store, request),
        "SwapEnvironmentCNAMEs" => environments::swap(store, request).map(|()| (None, vec![])),
        "CheckDNSAvailability" => plain(environments::check_dns(store, p)),
        "DescribeEnvironmentResources" => plain(environments::resources(store, p)),
        "DescribeEvents" => plain(events::describe(store, p)),
        "DescribeEnvironmentHealth" => plain(health::describe_environment(store, p)),
        "DescribeInstancesHealth" => plain(health::describe_instances(store, p)),
        "ListAvailableSolutionStacks" => plain(platforms::list_stacks(store)),
        "ListPlatformVersions" => plain(platforms::list_versions(store, p)),
        "ListPlatformBranches" => plain(platforms::list_branches(store, p)),
        "UpdateTagsForResource" => templates::update_tags(store, request).map(|e| (None, e)),
        "ListTagsForResource" => plain(templates::list_tags(store, p)),
        "RequestEnvironmentInfo" => info::request(store, request).map(|e| (None, e)),
        "RetrieveEnvironmentInfo" => plain(info::retrieve(store, p)),
        other => Err(QueryError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2010-12-01"),
        )),
    }
}

pub fn application_arn(name: &str) -> String {
    format!("arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:application/{name}")
}

pub fn version_arn(application: &str, label: &str) -> String {
    format!("arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:applicationversion/{application}/{label}")
}

pub fn environment_arn(application: &str, name: &str) -> String {
    format!("arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:environment/{application}/{name}")
}

pub fn template_arn(application: &str, name: &str) -> String {
    format!(
        "arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:configurationtemplate/{application}/{name}"
    )
}

/// Option settings from `Name.member.N.{Namespace,OptionName,Value}`.
pub fn option_settings(p: &Params, name: &str) -> Result<Vec<(OptionKey, String)>, QueryError> {
    p.structs(name)
        .into_iter()
        .map(|m| {
            let namespace = m.get("Namespace").cloned().ok_or_else(|| {
                QueryError::invalid(format!("{name}: every option setting needs a Namespace"))
            })?;
            let option = m.get("OptionName").cloned().ok_or_else(|| {
                QueryError::invalid(format!("{name}: every option setting needs an OptionName"))
            })?;
            Ok((
                (namespace, option),
                m.get("Value").cloned().unwrap_or_default(),
            ))
        })
        .collect()
}

/// Tags from `Tags.member.N.{Key,Value}`.
pub fn tags(p: &Params, name: &str) -> Vec<(String, String)> {
    p.structs(name)
        .into_iter()
        .filter_map(|t| {
            Some((
                t.get("Key")?.clone(),
                t.get("Value").cloned().unwrap_or_default(),
            ))
        })
        .collect()
}

/// A short random lowercase id, as Beanstalk uses in environment ids and generated names.
pub fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let more = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .chain(more.iter())
        .take(len)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}
