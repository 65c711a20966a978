//! The shapes Beanstalk's answers take in beanswap: environment status and health as enums (with room
//! for names a newer API adds), [`Environment`] and [`Event`] reduced to what the actions decide on,
//! and the SDK conversions into them. No calls here: [`super::Beanstalk`] and [`super::BeanstalkApi`]
//! make them.

use std::time::{Duration, SystemTime};

use aws_sdk_elasticbeanstalk::primitives::DateTime;
use aws_sdk_elasticbeanstalk::types::{
    ApplicationVersionDescription, EnvironmentDescription, EventDescription,
};

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

    pub(super) fn from_sdk(e: &EventDescription) -> Option<Self> {
        Some(Self::dated(e, e.event_date().and_then(to_system_time)?))
    }

    /// The event as of `date`: its own date, or what the caller puts for an answer without one.
    pub(super) fn dated(e: &EventDescription, date: SystemTime) -> Self {
        Event {
            date,
            severity: e
                .severity()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "INFO".into()),
            message: e.message().unwrap_or_default().to_string(),
            environment: e.environment_name().map(str::to_string),
        }
    }
}

pub(super) fn to_system_time(d: &DateTime) -> Option<SystemTime> {
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

impl ApplicationVersion {
    pub(super) fn from_sdk(v: &ApplicationVersionDescription) -> Self {
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
    }
}

/// A CreateApplicationVersion request: the version `label` of `application` from the bundle at
/// s3://`bucket`/`key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    pub application: String,
    pub label: String,
    pub description: Option<String>,
    pub bucket: String,
    pub key: String,
    /// Process: Beanstalk validates the bundle (status Processing, then Processed or Failed).
    pub process: bool,
    /// AutoCreateApplication: the application is made when it does not exist.
    pub auto_create_application: bool,
    /// Tags on the version, (key, value).
    pub tags: Vec<(String, String)>,
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
    pub(super) fn from_sdk(e: &EnvironmentDescription) -> Self {
        EnvironmentDetails {
            environment: Environment::from_sdk(e),
            updated: e.date_updated().and_then(to_system_time),
            endpoint_url: e.endpoint_url().map(str::to_string),
        }
    }
}

/// What a new environment is launched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchFrom {
    /// A saved configuration (configuration template) of the application.
    Template(String),
    SolutionStack(String),
    PlatformArn(String),
}

/// A CreateEnvironment request, in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvironment {
    pub application: String,
    pub name: String,
    pub version_label: String,
    pub description: String,
    /// The CNAME prefix asked for; `None` lets Beanstalk choose.
    pub cname_prefix: Option<String>,
    pub from: LaunchFrom,
    /// (namespace, option name, value).
    pub option_settings: Vec<(String, String, String)>,
    pub tags: std::collections::BTreeMap<String, String>,
}
