//! Elastic Beanstalk as the actions see it: environments found by CNAME and by beanswap's tags (never by
//! guessing from names), events read with a time cursor, and errors that name the call and the code.
//!
//! This is the only module that speaks to the Beanstalk SDK client for environments, so every action
//! shares one understanding of "the live environment" and of what counts as healthy.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata;
use aws_sdk_elasticbeanstalk::primitives::DateTime;
use aws_sdk_elasticbeanstalk::types::{EnvironmentDescription, EventDescription};
use aws_sdk_elasticbeanstalk::Client;

use crate::aws_error::{AwsError, HttpStatus, Service};
pub use crate::health_figures::HealthFigures;

/// Tags beanswap puts on the environments it creates; retire only ever considers environments with them.
pub const TAG_APPLICATION: &str = "beanswap:application";
/// The version label the environment was created with.
pub const TAG_VERSION: &str = "beanswap:version";
/// When the environment stopped serving production (RFC 3339), set by swap; retire's grace period
/// counts from it.
pub const TAG_OUT_OF_SERVICE_SINCE: &str = "beanswap:out-of-service-since";

fn eb_error<E, R>(
    operation: &'static str,
    e: aws_sdk_elasticbeanstalk::error::SdkError<E, R>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    AwsError::from_sdk(Service::ElasticBeanstalk, operation, e)
}

/// Declares an enum of the names Beanstalk gives a field, with `Other` for a name a newer API might
/// add (kept as given, never an error): parsed from and shown as Beanstalk spells them, and comparable
/// with those spellings.
macro_rules! beanstalk_names {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub enum $name {
            $($variant,)+
            /// A name this version does not know, as Beanstalk gave it (empty when absent).
            #[default]
            Unknown,
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                    $name::Unknown => "",
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $(stringify!($variant) => $name::$variant,)+
                    "" => $name::Unknown,
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

beanstalk_names!(
    /// An environment's status (EnvironmentStatus in the Elastic Beanstalk API reference).
    Status {
        Aborting,
        Launching,
        Updating,
        LinkingFrom,
        LinkingTo,
        Ready,
        Terminating,
        Terminated,
    }
);

beanstalk_names!(
    /// An environment's health colour (EnvironmentHealth in the Elastic Beanstalk API reference): Grey
    /// while it launches or updates, then Green, Yellow or Red.
    Health { Green, Yellow, Red, Grey }
);

/// The least health an action accepts: `Green`, or `Yellow` (some instances impaired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum HealthGate {
    #[default]
    Green,
    Yellow,
}

impl HealthGate {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthGate::Green => "Green",
            HealthGate::Yellow => "Yellow",
        }
    }

    /// Whether `health` is at least this good (`Green` passes a `Yellow` gate; `Grey` passes nothing).
    pub fn passes(self, health: &Health) -> bool {
        matches!(
            (self, health),
            (_, Health::Green) | (HealthGate::Yellow, Health::Yellow)
        )
    }
}

impl std::fmt::Display for HealthGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment, reduced to what the actions decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub id: String,
    pub name: String,
    pub application: String,
    pub version_label: Option<String>,
    /// Full CNAME (`shop-prod.us-east-1.elasticbeanstalk.com`).
    pub cname: String,
    pub status: Status,
    pub health: Health,
    /// Enhanced health (`Ok`, `Warning`, `Degraded`, `Severe`, ...), when reported.
    pub health_status: Option<String>,
    pub arn: String,
    pub created: Option<SystemTime>,
}

impl Environment {
    pub fn is_ready(&self) -> bool {
        self.status == Status::Ready
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.status, Status::Terminated | Status::Terminating)
    }

    /// The CNAME's first label, e.g. `shop-prod`.
    pub fn cname_prefix(&self) -> &str {
        self.cname.split('.').next().unwrap_or_default()
    }

    /// Whether this environment holds the production CNAME given as a prefix (`shop-prod`) or in full.
    pub fn holds_cname(&self, production: &str) -> bool {
        let production = production.trim().trim_end_matches('.').to_ascii_lowercase();
        let cname = self.cname.to_ascii_lowercase();
        if production.contains('.') {
            cname == production
        } else {
            self.cname_prefix().eq_ignore_ascii_case(&production)
                && cname.ends_with(".elasticbeanstalk.com")
        }
    }

    /// `http://<cname>/`, the environment's own URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.cname)
    }

    /// From the SDK's description; also what tests compare against, so they read environments as the
    /// actions do.
    pub fn from_sdk(e: &EnvironmentDescription) -> Self {
        Environment {
            id: e.environment_id().unwrap_or_default().to_string(),
            name: e.environment_name().unwrap_or_default().to_string(),
            application: e.application_name().unwrap_or_default().to_string(),
            version_label: e.version_label().map(str::to_string),
            cname: e.cname().unwrap_or_default().to_string(),
            status: e
                .status()
                .map(|s| Status::from(s.as_str()))
                .unwrap_or_default(),
            health: e
                .health()
                .map(|h| Health::from(h.as_str()))
                .unwrap_or_default(),
            health_status: e.health_status().map(|h| h.as_str().to_string()),
            arn: e.environment_arn().unwrap_or_default().to_string(),
            created: e.date_created().and_then(to_system_time),
        }
    }
}

/// One Beanstalk event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub date: SystemTime,
    /// `TRACE` .. `FATAL`.
    pub severity: String,
    pub message: String,
    pub environment: Option<String>,
}

impl Event {
    pub fn is_error(&self) -> bool {
        matches!(self.severity.as_str(), "ERROR" | "FATAL")
    }

    /// `12:01:02 ERROR message`, for summaries and failure messages.
    pub fn line(&self) -> String {
        let time = humantime::format_rfc3339_seconds(self.date).to_string();
        let clock = time.get(11..19).unwrap_or(&time).to_string();
        format!("{clock} {} {}", self.severity, self.message)
    }

    fn from_sdk(e: &EventDescription) -> Option<Self> {
        Some(Event {
            date: e.event_date().and_then(to_system_time)?,
            severity: e
                .severity()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "INFO".into()),
            message: e.message().unwrap_or_default().to_string(),
            environment: e.environment_name().map(str::to_string),
        })
    }
}

fn to_system_time(d: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*d).ok()
}

/// What an environment's load balancer served lately, as enhanced health reports it
/// (DescribeEnvironmentHealth's ApplicationMetrics): `requests` (RequestCount) over the last `window`
/// (Duration, 10 s on AWS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    pub window: Duration,
}

/// The Elastic Beanstalk calls the sequences in this crate make, narrow enough that an in-memory fake
/// ([`crate::fakes::FakeBeanstalk`]) stands in for AWS in unit tests; [`Beanstalk`] makes them with the
/// SDK. Every answer is ours ([`Environment`], [`Event`]), every error the one [`AwsError`].
pub trait BeanstalkApi: Send + Sync {
    /// The application's environments that are not terminated, following every page.
    fn environments(
        &self,
        application: &str,
    ) -> impl Future<Output = Result<Vec<Environment>, AwsError>> + Send;
    /// An environment by id, terminated ones included.
    fn environment(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Environment>, AwsError>> + Send;
    /// A live (not terminated) environment of the application by name.
    fn environment_named(
        &self,
        application: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Environment>, AwsError>> + Send;
    /// Events of one environment since `since` (every page), oldest first; the newest `max` without.
    fn events_since(
        &self,
        environment_id: &str,
        since: Option<SystemTime>,
        max: i32,
    ) -> impl Future<Output = Result<Vec<Event>, AwsError>> + Send;
    fn tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, AwsError>> + Send;
    /// One tag change (see [`Beanstalk::retag`]): on an environment, an environment update.
    fn retag(
        &self,
        arn: &str,
        add: &[(&str, String)],
        remove: &[&str],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// SwapEnvironmentCNAMEs; both must be Ready.
    fn swap_cnames(
        &self,
        source_id: &str,
        destination_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The instances an environment runs and how many are healthy (DescribeInstancesHealth), and its
    /// Auto Scaling bounds (DescribeConfigurationSettings, `aws:autoscaling:asg`).
    fn capacity(
        &self,
        env: &Environment,
    ) -> impl Future<Output = Result<crate::swap::capacity::Capacity, AwsError>> + Send;
    /// UpdateEnvironment of MinSize and MaxSize (an environment update: Updating until it is done).
    fn set_size(
        &self,
        env: &Environment,
        min: u32,
        max: u32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// DescribeEnvironmentHealth (AttributeNames All): enhanced health's figures now, what the bake
    /// judges and, through [`HealthFigures::traffic`], what retire's idle rule counts. With enhanced
    /// health off, AWS answers InvalidRequestException.
    fn enhanced_health(
        &self,
        environment_id: &str,
    ) -> impl Future<Output = Result<HealthFigures, AwsError>> + Send;
}

impl BeanstalkApi for Beanstalk {
    async fn environments(&self, application: &str) -> Result<Vec<Environment>, AwsError> {
        Ok(self
            .live_descriptions(application)
            .await?
            .iter()
            .map(Environment::from_sdk)
            .collect())
    }

    async fn environment(&self, id: &str) -> Result<Option<Environment>, AwsError> {
        Ok(self
            .description_by_id(id)
            .await?
            .as_ref()
            .map(Environment::from_sdk))
    }

    async fn environment_named(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Option<Environment>, AwsError> {
        let page = self
            .client
            .describe_environments()
            .application_name(application)
            .environment_names(name)
            .include_deleted(false)
            .send()
            .await
            .map_err(|e| eb_error("DescribeEnvironments", e))?;
        Ok(page
            .environments()
            .iter()
            .map(Environment::from_sdk)
            .find(|e| !e.is_terminated()))
    }

    async fn events_since(
        &self,
        environment_id: &str,
        since: Option<SystemTime>,
        max: i32,
    ) -> Result<Vec<Event>, AwsError> {
        /// Far beyond any burst between two polls; only a misbehaving endpoint repeats tokens forever.
        const MAX_PAGES: usize = 50;
        let mut events: Vec<Event> = vec![];
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut request = self
                .client
                .describe_events()
                .environment_id(environment_id)
                .max_records(max.clamp(1, 1000))
                .set_next_token(token.take());
            if let Some(since) = since {
                request = request.start_time(DateTime::from(since));
            }
            let page = request
                .send()
                .await
                .map_err(|e| eb_error("DescribeEvents", e))?;
            events.extend(page.events().iter().filter_map(Event::from_sdk));
            token = page.next_token().map(str::to_string);
            if since.is_none() || token.is_none() {
                break;
            }
        }
        events.reverse();
        Ok(events)
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let out = self
            .client
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| eb_error("ListTagsForResource", e))?;
        Ok(out
            .resource_tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect())
    }

    async fn retag(
        &self,
        arn: &str,
        add: &[(&str, String)],
        remove: &[&str],
    ) -> Result<(), AwsError> {
        let mut request = self.client.update_tags_for_resource().resource_arn(arn);
        for (key, value) in add {
            request = request.tags_to_add(
                aws_sdk_elasticbeanstalk::types::Tag::builder()
                    .key(*key)
                    .value(value)
                    .build(),
            );
        }
        for key in remove {
            request = request.tags_to_remove(*key);
        }
        request
            .send()
            .await
            .map_err(|e| eb_error("UpdateTagsForResource", e))?;
        Ok(())
    }

    async fn swap_cnames(&self, source_id: &str, destination_id: &str) -> Result<(), AwsError> {
        self.client
            .swap_environment_cnames()
            .source_environment_id(source_id)
            .destination_environment_id(destination_id)
            .send()
            .await
            .map_err(|e| eb_error("SwapEnvironmentCNAMEs", e))?;
        Ok(())
    }

    async fn capacity(
        &self,
        env: &Environment,
    ) -> Result<crate::swap::capacity::Capacity, AwsError> {
        use crate::swap::capacity::{Capacity, ASG_NAMESPACE, DEFAULT_MAX, DEFAULT_MIN};
        use aws_sdk_elasticbeanstalk::types::InstancesHealthAttribute;
        let mut instances = 0u32;
        let mut healthy = 0u32;
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_instances_health()
                .environment_id(&env.id)
                .attribute_names(InstancesHealthAttribute::Color)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| eb_error("DescribeInstancesHealth", e))?;
            for i in out.instance_health_list() {
                instances += 1;
                if i.color() == Some("Green") {
                    healthy += 1;
                }
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let settings = self.option_settings(&env.application, &env.name).await?;
        let option = |name: &str, default: u32| {
            settings
                .get(&(ASG_NAMESPACE.to_string(), name.to_string()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Ok(Capacity {
            instances,
            healthy,
            min: option("MinSize", DEFAULT_MIN),
            max: option("MaxSize", DEFAULT_MAX),
        })
    }

    async fn set_size(&self, env: &Environment, min: u32, max: u32) -> Result<(), AwsError> {
        use crate::swap::capacity::ASG_NAMESPACE;
        self.update_option_settings(
            &env.id,
            &[
                (ASG_NAMESPACE, "MinSize", min.to_string()),
                (ASG_NAMESPACE, "MaxSize", max.to_string()),
            ],
        )
        .await
    }

    async fn enhanced_health(&self, environment_id: &str) -> Result<HealthFigures, AwsError> {
        let out = self
            .client
            .describe_environment_health()
            .environment_id(environment_id)
            .attribute_names(aws_sdk_elasticbeanstalk::types::EnvironmentHealthAttribute::All)
            .send()
            .await
            .map_err(|e| eb_error("DescribeEnvironmentHealth", e))?;
        Ok(HealthFigures::from_sdk(&out))
    }
}

/// The Beanstalk calls the actions make, with the SDK.
#[derive(Clone, Debug)]
pub struct Beanstalk {
    client: Client,
}

impl Beanstalk {
    pub fn new(config: &SdkConfig) -> Self {
        Beanstalk {
            client: Client::new(config),
        }
    }

    /// Around a client built elsewhere (tests aim theirs at local-aws).
    pub fn from_client(client: Client) -> Self {
        Beanstalk { client }
    }

    /// The SDK client, for calls this module does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// DescribeEnvironments for the application, every page, without the terminated ones (Beanstalk lists
    /// an environment as Terminated for a while even with IncludeDeleted=false).
    async fn live_descriptions(
        &self,
        application: &str,
    ) -> Result<Vec<EnvironmentDescription>, AwsError> {
        let mut out: Vec<EnvironmentDescription> = vec![];
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_environments()
                .application_name(application)
                .include_deleted(false)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| eb_error("DescribeEnvironments", e))?;
            out.extend(page.environments().iter().cloned());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.retain(|e| e.status().map(|s| s.as_str()) != Some("Terminated"));
        Ok(out)
    }

    /// DescribeEnvironments for one id, terminated ones included.
    async fn description_by_id(
        &self,
        id: &str,
    ) -> Result<Option<EnvironmentDescription>, AwsError> {
        let page = self
            .client
            .describe_environments()
            .environment_ids(id)
            .include_deleted(true)
            .send()
            .await
            .map_err(|e| eb_error("DescribeEnvironments", e))?;
        Ok(page.environments().first().cloned())
    }

    /// The environment serving production: the one holding the production CNAME. `None` before the
    /// first deployment.
    pub async fn live(
        &self,
        application: &str,
        production_cname: &str,
    ) -> Result<Option<Environment>, AwsError> {
        Ok(self
            .environments(application)
            .await?
            .into_iter()
            .find(|e| !e.is_terminated() && e.holds_cname(production_cname)))
    }

    /// Polls the environment until it is Ready (or terminated, or `timeout` passes), skipping polls
    /// AWS throttles: what every write that can make an environment busy (a tag change, an update) is
    /// followed by before an operation that needs Ready.
    pub async fn wait_ready(
        &self,
        env: &Environment,
        timeout: Duration,
    ) -> Result<Environment, AwsError> {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let mut last = env.clone();
        loop {
            if let Some(now) = crate::aws_error::unless_transient(self.environment(&env.id).await)?
            {
                match now {
                    Some(e) if e.is_ready() || e.is_terminated() => return Ok(e),
                    Some(e) => last = e,
                    None => return Ok(last),
                }
            }
            if started.elapsed() >= timeout {
                return Ok(last);
            }
            tokio::time::sleep(poll_delay(attempt).min(Duration::from_secs(5))).await;
            attempt += 1;
        }
    }

    /// Whether `prefix` is free to become a new environment's CNAME.
    pub async fn cname_available(&self, prefix: &str) -> Result<bool, AwsError> {
        let out = self
            .client
            .check_dns_availability()
            .cname_prefix(prefix)
            .send()
            .await
            .map_err(|e| eb_error("CheckDNSAvailability", e))?;
        Ok(out.available().unwrap_or(false))
    }

    pub async fn terminate(&self, id: &str) -> Result<(), AwsError> {
        self.client
            .terminate_environment()
            .environment_id(id)
            .send()
            .await
            .map_err(|e| eb_error("TerminateEnvironment", e))?;
        Ok(())
    }

    /// Wraps any other SDK call's error the same way.
    pub fn error<E, R>(
        operation: &'static str,
        e: aws_sdk_elasticbeanstalk::error::SdkError<E, R>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
    {
        eb_error(operation, e)
    }
}

/// An application version, reduced to what pruning decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationVersion {
    pub label: String,
    pub created: Option<SystemTime>,
    /// `Processed`, `Unprocessed`, `Failed`, `Processing`, `Building`.
    pub status: String,
    /// Where the source bundle is: (bucket, key).
    pub bundle: Option<(String, String)>,
}

/// An environment with what DescribeEnvironments tells beyond [`Environment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentDetails {
    pub environment: Environment,
    /// DateUpdated.
    pub updated: Option<SystemTime>,
    /// EndpointURL: the load balancer's DNS name (the instance's address without one).
    pub endpoint_url: Option<String>,
}

impl EnvironmentDetails {
    fn from_sdk(e: &EnvironmentDescription) -> Self {
        EnvironmentDetails {
            environment: Environment::from_sdk(e),
            updated: e.date_updated().and_then(to_system_time),
            endpoint_url: e.endpoint_url().map(str::to_string),
        }
    }
}

impl Beanstalk {
    /// The application's environments that are not terminated, with their details, following every
    /// page. Same call as [`Beanstalk::environments`].
    pub async fn environments_detailed(
        &self,
        application: &str,
    ) -> Result<Vec<EnvironmentDetails>, AwsError> {
        Ok(self
            .live_descriptions(application)
            .await?
            .iter()
            .map(EnvironmentDetails::from_sdk)
            .collect())
    }

    /// One environment by id with its details, terminated ones included.
    pub async fn environment_detailed(
        &self,
        id: &str,
    ) -> Result<Option<EnvironmentDetails>, AwsError> {
        Ok(self
            .description_by_id(id)
            .await?
            .as_ref()
            .map(EnvironmentDetails::from_sdk))
    }

    /// Every version of the application, `page_size` per DescribeApplicationVersions call (1..=1000),
    /// following NextToken.
    pub async fn application_versions(
        &self,
        application: &str,
        page_size: i32,
    ) -> Result<Vec<ApplicationVersion>, AwsError> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_application_versions()
                .application_name(application)
                .max_records(page_size.clamp(1, 1000))
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| eb_error("DescribeApplicationVersions", e))?;
            out.extend(page.application_versions().iter().map(|v| {
                ApplicationVersion {
                    label: v.version_label().unwrap_or_default().to_string(),
                    created: v.date_created().and_then(to_system_time),
                    status: v
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    bundle: v
                        .source_bundle()
                        .and_then(|b| Some((b.s3_bucket()?.to_string(), b.s3_key()?.to_string()))),
                }
            }));
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes a version from Beanstalk only; its source bundle stays in S3.
    pub async fn delete_application_version(
        &self,
        application: &str,
        label: &str,
    ) -> Result<(), AwsError> {
        self.client
            .delete_application_version()
            .application_name(application)
            .version_label(label)
            .delete_source_bundle(false)
            .send()
            .await
            .map_err(|e| eb_error("DeleteApplicationVersion", e))?;
        Ok(())
    }

    /// An environment's option settings, keyed by (namespace, option name).
    pub async fn option_settings(
        &self,
        application: &str,
        environment_name: &str,
    ) -> Result<BTreeMap<(String, String), String>, AwsError> {
        let out = self
            .client
            .describe_configuration_settings()
            .application_name(application)
            .environment_name(environment_name)
            .send()
            .await
            .map_err(|e| eb_error("DescribeConfigurationSettings", e))?;
        Ok(out
            .configuration_settings()
            .iter()
            .flat_map(|c| c.option_settings())
            .filter_map(|o| {
                Some((
                    (o.namespace()?.to_string(), o.option_name()?.to_string()),
                    o.value().unwrap_or_default().to_string(),
                ))
            })
            .collect())
    }

    /// UpdateEnvironment with option settings only: (namespace, option name, value).
    pub async fn update_option_settings(
        &self,
        id: &str,
        settings: &[(&str, &str, String)],
    ) -> Result<(), AwsError> {
        let mut request = self.client.update_environment().environment_id(id);
        for (namespace, option, value) in settings {
            request = request.option_settings(
                aws_sdk_elasticbeanstalk::types::ConfigurationOptionSetting::builder()
                    .namespace(*namespace)
                    .option_name(*option)
                    .value(value)
                    .build(),
            );
        }
        request
            .send()
            .await
            .map_err(|e| eb_error("UpdateEnvironment", e))?;
        Ok(())
    }
}

/// The last `n` events as lines, newest last, for a failure message.
pub fn event_lines(events: &[Event], n: usize) -> String {
    let start = events.len().saturating_sub(n);
    events[start..]
        .iter()
        .map(Event::line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Backoff for polling Beanstalk: quick at first (tests, fast launches), then every 10 s, the interval of
/// the usual polling tools, so a failure is never noticed later than with them.
pub fn poll_delay(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.min(6));
    Duration::from_millis(ms.min(10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(cname: &str) -> Environment {
        Environment {
            id: "e-1".into(),
            name: "shop-a".into(),
            application: "shop".into(),
            version_label: None,
            cname: cname.into(),
            status: "Ready".into(),
            health: "Green".into(),
            health_status: None,
            arn: String::new(),
            created: None,
        }
    }

    #[test]
    fn finds_production_by_cname_prefix_or_full_name() {
        let e = env("shop-prod.us-east-1.elasticbeanstalk.com");
        assert!(e.holds_cname("shop-prod"));
        assert!(e.holds_cname("SHOP-PROD"));
        assert!(e.holds_cname("shop-prod.us-east-1.elasticbeanstalk.com."));
        assert!(!e.holds_cname("shop"));
        assert!(!e.holds_cname("shop-prod-2"));
        assert!(!e.holds_cname("shop-prod.eu-west-1.elasticbeanstalk.com"));
    }

    #[test]
    fn health_gate() {
        for (health, gate, passes) in [
            (Health::Green, HealthGate::Green, true),
            (Health::Green, HealthGate::Yellow, true),
            (Health::Yellow, HealthGate::Yellow, true),
            (Health::Yellow, HealthGate::Green, false),
            (Health::Red, HealthGate::Yellow, false),
            (Health::Grey, HealthGate::Yellow, false),
            (Health::Unknown, HealthGate::Yellow, false),
        ] {
            assert_eq!(gate.passes(&health), passes, "{health} vs {gate}");
        }
        assert_eq!(Status::from("Ready"), Status::Ready);
        assert_eq!(Status::from("Rebooting").as_str(), "Rebooting");
        assert_eq!(Health::from("Red"), Health::Red);
    }

    #[test]
    fn polling_backs_off_to_a_ceiling() {
        assert_eq!(poll_delay(0), Duration::from_millis(500));
        assert_eq!(poll_delay(2), Duration::from_secs(2));
        assert_eq!(poll_delay(30), Duration::from_secs(10));
    }
}
