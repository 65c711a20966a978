//! Solution stacks and platform versions: a fixed catalogue of Elastic Beanstalk platform branches (current,
//! deprecated and retired), ListAvailableSolutionStacks, ListPlatformVersions, ListPlatformBranches, the
//! rule by which CreateEnvironment accepts a platform, and each platform's default option settings.
//!
//! Sources (FIDELITY.md, "Platforms"): "About Elastic Beanstalk platforms" (AWS Elastic Beanstalk
//! Platforms guide): the recommended version of a supported branch can always be launched, a previous
//! version only by an account that used it in an environment in the last 30 days, a retired branch only by
//! existing environments for 90 days after its retirement; "Elastic Beanstalk platforms glossary" for the
//! lifecycle states; the platform history pages for the version numbers; "Release: Elastic Beanstalk
//! Node.js 18 on AL2023 and AL2 platform branches retired on August 11, 2025" (release notes).
//!
//! The List operations are in `list`; this file holds the catalogue and the rules on it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{OptionKey, Store, REGION};
use crate::query::QueryError;

mod list;

pub use list::{list_branches, list_stacks, list_versions};

/// A platform branch of the catalogue, with its versions newest first.
pub struct Branch {
    /// The runtime as the branch names it: `Python 3.11`, `Docker`, `Node.js 22`.
    pub runtime: &'static str,
    /// The platform's name (`PlatformName`, `PlatformCategory`): `Python`, `Docker`, `Node.js`.
    pub platform: &'static str,
    /// `ProgrammingLanguageName` filter value (the platform for languages, `Docker` for Docker).
    pub language: &'static str,
    pub os_name: &'static str,
    pub os_version: &'static str,
    /// Versions, newest (the recommended one) first.
    pub versions: &'static [&'static str],
    /// When the branch was deprecated (`YYYY-MM-DD`), if it was.
    pub deprecated_on: Option<&'static str>,
    /// When it was retired (`YYYY-MM-DD`), if it was.
    pub retired_on: Option<&'static str>,
    pub file_types: &'static [&'static str],
    /// `BranchOrder`: higher first among one platform's branches.
    pub order: u32,
}

/// A supported branch on Amazon Linux 2023 that takes zip bundles: what most of the catalogue's branches
/// share, each entry naming only what differs.
const AL2023: Branch = Branch {
    runtime: "",
    platform: "",
    language: "",
    os_name: "Amazon Linux 2023",
    os_version: "2023",
    versions: &[],
    deprecated_on: None,
    retired_on: None,
    file_types: &["zip"],
    order: 0,
};

/// The catalogue. Version numbers are ones Elastic Beanstalk published (the platform history pages and
/// public templates using them); not every branch or version AWS offers, and not one day's list.
pub const CATALOGUE: &[Branch] = &[
    Branch {
        runtime: "Python 3.13",
        platform: "Python",
        language: "Python",
        versions: &["4.5.2", "4.5.1", "4.5.0"],
        order: 40,
        ..AL2023
    },
    Branch {
        runtime: "Python 3.12",
        platform: "Python",
        language: "Python",
        versions: &["4.5.2", "4.5.1", "4.5.0"],
        order: 30,
        ..AL2023
    },
    Branch {
        runtime: "Python 3.11",
        platform: "Python",
        language: "Python",
        versions: &["4.5.2", "4.5.1", "4.5.0", "4.3.0"],
        order: 20,
        ..AL2023
    },
    Branch {
        runtime: "Python 3.9",
        platform: "Python",
        language: "Python",
        versions: &["4.5.2", "4.5.1", "4.5.0"],
        order: 10,
        ..AL2023
    },
    Branch {
        runtime: "Node.js 22",
        platform: "Node.js",
        language: "Node.js",
        versions: &["6.6.4", "6.5.1"],
        order: 30,
        ..AL2023
    },
    Branch {
        runtime: "Node.js 20",
        platform: "Node.js",
        language: "Node.js",
        versions: &["6.6.4", "6.5.1"],
        order: 20,
        ..AL2023
    },
    Branch {
        runtime: "Node.js 18",
        platform: "Node.js",
        language: "Node.js",
        versions: &["6.5.1"],
        deprecated_on: Some("2025-04-30"),
        retired_on: Some("2025-08-11"),
        order: 10,
        ..AL2023
    },
    Branch {
        runtime: "Docker",
        platform: "Docker",
        language: "Docker",
        versions: &["4.5.2", "4.5.0"],
        file_types: &["zip", "json"],
        order: 20,
        ..AL2023
    },
    Branch {
        runtime: "Corretto 8",
        platform: "Java",
        language: "Java",
        versions: &["4.5.2"],
        file_types: &["jar", "zip"],
        order: 10,
        ..AL2023
    },
];

/// The day the catalogue describes, when no other is set (`Options::platform_date`): two weeks after
/// Node.js 18's retirement, inside its 90-day grace period.
pub const CATALOGUE_DATE: &str = "2025-08-25";

/// How long after its retirement a branch can still be launched by accounts running it.
const RETIREMENT_GRACE: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long a superseded version stays launchable for an account that used it.
const PREVIOUS_VERSION_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn date(day: &str) -> SystemTime {
    humantime::parse_rfc3339(&format!("{day}T00:00:00Z")).unwrap_or(SystemTime::UNIX_EPOCH)
}

impl Branch {
    /// `Python 3.11 running on 64bit Amazon Linux 2023`.
    pub fn name(&self) -> String {
        format!("{} running on 64bit {}", self.runtime, self.os_name)
    }

    pub fn stack(&self, version: &str) -> String {
        format!("64bit {} v{version} running {}", self.os_name, self.runtime)
    }

    pub fn arn(&self, version: &str) -> String {
        format!(
            "arn:aws:elasticbeanstalk:{REGION}::platform/{}/{version}",
            self.name()
        )
    }

    /// `Supported`, `Deprecated` or `Retired` on `today`.
    pub fn state(&self, today: SystemTime) -> &'static str {
        if self.retired_on.is_some_and(|d| today >= date(d)) {
            "Retired"
        } else if self.deprecated_on.is_some_and(|d| today >= date(d)) {
            "Deprecated"
        } else {
            "Supported"
        }
    }
}

/// One platform version of the catalogue.
#[derive(Clone, Copy)]
pub struct Platform {
    pub branch: &'static Branch,
    pub version: &'static str,
}

impl Platform {
    pub fn stack(&self) -> String {
        self.branch.stack(self.version)
    }
    pub fn arn(&self) -> String {
        self.branch.arn(self.version)
    }
    pub fn recommended(&self) -> bool {
        self.branch.versions.first() == Some(&self.version)
    }
}

fn all() -> impl Iterator<Item = Platform> {
    CATALOGUE.iter().flat_map(|branch| {
        branch
            .versions
            .iter()
            .map(move |version| Platform { branch, version })
    })
}

pub fn by_stack(stack: &str) -> Option<Platform> {
    all().find(|p| p.stack() == stack)
}

pub fn by_arn(arn: &str) -> Option<Platform> {
    all().find(|p| p.arn() == arn)
}

/// Whether this account (the store) has used the platform in an environment that is running, or ended
/// less than `window` ago, or was told it runs it elsewhere (`Options::account_platforms`).
fn account_uses(
    store: &Store,
    platform: &Platform,
    window: Option<Duration>,
    same_branch: bool,
) -> bool {
    let matches = |arn: &str| match by_arn(arn) {
        Some(p) if same_branch => std::ptr::eq(p.branch, platform.branch),
        Some(p) => p.arn() == platform.arn(),
        None => false,
    };
    let now = SystemTime::now();
    store.options.account_platforms.iter().any(|a| matches(a))
        || store.environments.values().any(|e| {
            e.platform_arn.as_deref().is_some_and(matches)
                && match (e.terminated_at, window) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(at), Some(window)) => now.duration_since(at).unwrap_or_default() < window,
                }
        })
}

/// Whether the account may launch `platform` now: the recommended version of a branch that is not
/// retired always; a previous version if the account used it in the last 30 days; a retired branch only
/// while the account runs it, for 90 days after the retirement.
pub fn launchable(store: &Store, platform: &Platform) -> bool {
    let today = store.options.platform_date;
    if let Some(retired) = platform.branch.retired_on.map(date) {
        if today >= retired {
            return today.duration_since(retired).unwrap_or_default() < RETIREMENT_GRACE
                && account_uses(store, platform, None, true)
                && (platform.recommended() || account_uses(store, platform, None, false));
        }
    }
    platform.recommended() || account_uses(store, platform, Some(PREVIOUS_VERSION_WINDOW), false)
}

/// The platform a request names by solution stack or ARN, if the account may launch it; refused as
/// Beanstalk refuses a stack it does not offer (`No Solution Stack named '...' found.`).
pub fn resolve(
    store: &Store,
    stack: Option<&str>,
    arn: Option<&str>,
) -> Result<Platform, QueryError> {
    match (stack, arn) {
        (Some(stack), _) => by_stack(stack)
            .filter(|p| launchable(store, p))
            .ok_or_else(|| {
                QueryError::invalid(format!("No Solution Stack named '{stack}' found."))
            }),
        (None, Some(arn)) => by_arn(arn)
            .filter(|p| launchable(store, p))
            .ok_or_else(|| QueryError::invalid(format!("No Platform named '{arn}' found."))),
        (None, None) => Err(QueryError::invalid(
            "No Solution Stack, Platform ARN or Configuration Template specified.",
        )),
    }
}

/// The option settings every environment of `platform` starts with, as DescribeConfigurationSettings
/// lists them. Values are the defaults of "General options for all environments" and the platform's own
/// options page (FIDELITY.md, "Configuration").
pub fn default_settings(platform: &Platform) -> BTreeMap<OptionKey, String> {
    let mut settings: BTreeMap<OptionKey, String> = BTreeMap::new();
    let mut set = |ns: &str, option: &str, value: &str| {
        settings.insert((ns.to_string(), option.to_string()), value.to_string());
    };
    set("aws:autoscaling:asg", "MinSize", "1");
    set("aws:autoscaling:asg", "MaxSize", "4");
    set("aws:autoscaling:asg", "Availability Zones", "Any");
    set("aws:autoscaling:asg", "Cooldown", "360");
    set(
        "aws:elasticbeanstalk:environment",
        "EnvironmentType",
        "LoadBalanced",
    );
    set(
        "aws:elasticbeanstalk:environment",
        "LoadBalancerType",
        "application",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "HealthCheckPath",
        "/",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "Port",
        "80",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "Protocol",
        "HTTP",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "HealthCheckInterval",
        "15",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "HealthCheckTimeout",
        "5",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "HealthyThresholdCount",
        "3",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "UnhealthyThresholdCount",
        "5",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "MatcherHTTPCode",
        "200",
    );
    set(
        "aws:elasticbeanstalk:environment:process:default",
        "DeregistrationTimeout",
        "20",
    );
    set(
        "aws:elasticbeanstalk:command",
        "DeploymentPolicy",
        "AllAtOnce",
    );
    set("aws:elasticbeanstalk:command", "Timeout", "600");
    set(
        "aws:elasticbeanstalk:command",
        "BatchSizeType",
        "Percentage",
    );
    set("aws:elasticbeanstalk:command", "BatchSize", "100");
    set("aws:elasticbeanstalk:command", "IgnoreHealthCheck", "false");
    set(
        "aws:elasticbeanstalk:healthreporting:system",
        "SystemType",
        "enhanced",
    );
    set(
        "aws:elasticbeanstalk:healthreporting:system",
        "HealthCheckSuccessThreshold",
        "Ok",
    );
    set(
        "aws:elasticbeanstalk:cloudwatch:logs",
        "StreamLogs",
        "false",
    );
    set(
        "aws:elasticbeanstalk:cloudwatch:logs",
        "RetentionInDays",
        "7",
    );
    if platform.branch.platform == "Python" {
        set(
            "aws:elasticbeanstalk:container:python",
            "WSGIPath",
            "application",
        );
        set("aws:elasticbeanstalk:container:python", "NumProcesses", "1");
        set("aws:elasticbeanstalk:container:python", "NumThreads", "15");
    }
    if platform.branch.platform != "Docker" {
        set(
            "aws:elasticbeanstalk:environment:proxy",
            "ProxyServer",
            "nginx",
        );
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::list::compare;
    use super::*;

    #[test]
    fn names_and_arns_follow_beanstalks_format() {
        let p = by_stack("64bit Amazon Linux 2023 v4.5.2 running Python 3.11").unwrap();
        assert_eq!(
            p.arn(),
            "arn:aws:elasticbeanstalk:us-east-1::platform/Python 3.11 running on 64bit Amazon Linux 2023/4.5.2"
        );
        assert!(p.recommended());
        assert!(
            !by_stack("64bit Amazon Linux 2023 v4.3.0 running Python 3.11")
                .unwrap()
                .recommended()
        );
        let node18 = by_arn(
            "arn:aws:elasticbeanstalk:us-east-1::platform/Node.js 18 running on 64bit Amazon Linux 2023/6.5.1",
        )
        .unwrap();
        assert_eq!(node18.branch.state(date("2025-05-01")), "Deprecated");
        assert_eq!(node18.branch.state(date("2025-08-11")), "Retired");
        assert_eq!(node18.branch.state(date("2025-01-01")), "Supported");
    }

    #[test]
    fn filters_compare_versions_numerically() {
        assert!(compare(">", "4.10.0", "4.5.2", true).unwrap());
        assert!(!compare(">", "4.10.0", "4.5.2", false).unwrap());
        assert!(compare("begins_with", "Python 3.11 running on", "Python", false).unwrap());
        assert!(compare("~", "a", "b", false).is_err());
    }
}
