//! Elastic Beanstalk (2010-12-01, awsQuery), following botocore's
//! `elasticbeanstalk/2010-12-01/service-2.json`: member names, list wrapping and error codes as the
//! model gives them, error messages as the service words them.
//!
//! Operations are synchronous changes to a [`Store`] behind the server's one lock. What takes time in
//! real Beanstalk (launching, deploying, terminating) is returned as an [`Effect`]; the server hands it
//! to [`crate::lifecycle`], which runs the bundle for real and moves the environment along, emitting the
//! events Beanstalk emits.
//!
//! This file holds the server's options, the effects and the dispatch of each operation to its module;
//! `store` what is remembered, one module per group of operations.

mod applications;
mod cnames;
mod environments;
mod events;
pub mod health;
mod info;
pub mod platforms;
mod resources;
mod store;
mod templates;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::faults::Faults;
use crate::query::{Params, QueryError};

pub use events::Severity;
pub use resources::{auto_scaling_group, load_balancer_arn, target_group_arn};
pub use store::{
    Application, ApplicationVersion, Environment, Event, InfoEntry, Instance, OptionKey, Store,
    Target, Template, MAX_LOCAL_INSTANCES,
};

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
        "SwapEnvironmentCNAMEs" => cnames::swap(store, request).map(|()| (None, vec![])),
        "CheckDNSAvailability" => plain(cnames::check_dns(store, p)),
        "DescribeEnvironmentResources" => plain(resources::resources(store, p)),
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
