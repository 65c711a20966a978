//! retire: the pipeline's last action. Terminates old environments of an application safely, keeps the
//! newest for rollback (optionally scaled down), and prunes old application versions.
//!
//! The decisions are beanswap-core's (`beanswap_core::retire`): this crate only turns UserParameters into
//! its settings and its report into CodePipeline's outcome.

use std::time::Duration;

use aws_config::SdkConfig;
use beanswap_core::params::ApplicationName;
use beanswap_core::retire::exec::{self, Clients, Progress, Prune, Scale, Settings};
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::Deserialize;

/// The output variables, set on the final success only: comma-separated names, or empty.
pub use exec::OUTPUT_VARIABLES;

/// UserParameters of retire.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The Beanstalk application; only environments tagged `beanswap:application` with it are candidates.
    pub application: ApplicationName,
    /// The production CNAME, as a prefix (`shop-prod`) or in full; whoever holds it is never touched.
    pub production_cname: String,
    /// With `domain`: the Route 53 record production is served by; its target is never touched either.
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    /// Previous environments kept for rollback.
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// How long an environment must have been out of production before it is terminated.
    #[serde(default)]
    pub grace_minutes: Option<u64>,
    /// The same in seconds, for tests and impatient pipelines; not together with `grace_minutes`.
    #[serde(default)]
    pub grace_seconds: Option<u64>,
    /// MinSize/MaxSize (aws:autoscaling:asg) applied to kept environments.
    #[serde(default)]
    pub scale_down_kept: Option<ScaleParams>,
    /// Prune application versions: keep the newest `keep` and every one in use.
    #[serde(default)]
    pub prune_versions: Option<PruneParams>,
    /// Report what would happen, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// How long clients keep production's DNS answers (60 when unset: Beanstalk's CNAMEs carry 60 s):
    /// past the grace period, an environment is terminated only once it has served no request for
    /// this long.
    #[serde(default)]
    pub dns_ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScaleParams {
    #[serde(default = "one")]
    pub min: u32,
    #[serde(default = "one")]
    pub max: u32,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PruneParams {
    pub keep: u32,
    #[serde(default)]
    pub delete_bundles: bool,
}

fn default_keep() -> u32 {
    1
}
fn one() -> u32 {
    1
}

/// Default grace period: covers DNS TTLs (Beanstalk CNAMEs have 60 s) and resolvers that overstay them.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10 * 60);
/// A Lambda action may continue for 24 hours in all (the pipeline template allows up to 1440 minutes).
const MAX_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Params {
    pub fn grace(&self) -> Duration {
        match (self.grace_seconds, self.grace_minutes) {
            (Some(s), _) => Duration::from_secs(s),
            (None, Some(m)) => Duration::from_secs(m.saturating_mul(60)),
            (None, None) => DEFAULT_GRACE,
        }
    }

    /// What core's retire runs with.
    pub fn settings(&self) -> Settings {
        Settings {
            application: self.application.to_string(),
            production_cname: self.production_cname.trim().to_string(),
            record: beanswap_core::params::production_record(&self.hosted_zone_id, &self.domain)
                .unwrap_or_default(),
            keep: self.keep as usize,
            grace: self.grace(),
            scale_down_kept: self.scale_down_kept.map(|s| Scale {
                min: s.min,
                max: s.max,
            }),
            prune: self.prune_versions.map(|p| Prune {
                keep: p.keep as usize,
                delete_bundles: p.delete_bundles,
            }),
            dry_run: self.dry_run,
            dns_ttl: self
                .dns_ttl_seconds
                .map_or(exec::DEFAULT_DNS_TTL, Duration::from_secs),
        }
    }
}

impl UserParameters for Params {
    const EXAMPLE: &'static str =
        r#"{"application":"shop","production_cname":"shop-prod","keep":1}"#;

    fn validate(&self) -> Result<(), ParamsError> {
        let cname = self.production_cname.trim();
        if cname.is_empty() || cname.contains(char::is_whitespace) || cname.contains('/') {
            return Err(ParamsError::field(
                "production_cname",
                "must be a CNAME prefix (shop-prod) or a full CNAME (shop-prod.us-east-1.elasticbeanstalk.com)",
            ));
        }
        beanswap_core::params::production_record(&self.hosted_zone_id, &self.domain)?;
        if self.keep > 20 {
            return Err(ParamsError::field(
                "keep",
                format!("at most 20 environments can be kept, got {}", self.keep),
            ));
        }
        if self.grace_minutes.is_some() && self.grace_seconds.is_some() {
            return Err(ParamsError::field(
                "grace_seconds",
                "give either `grace_minutes` or `grace_seconds`, not both",
            ));
        }
        if self.grace() > MAX_GRACE {
            return Err(ParamsError::field(
                if self.grace_seconds.is_some() {
                    "grace_seconds"
                } else {
                    "grace_minutes"
                },
                "must be at most 24 hours (a pipeline action may continue for 24 hours in all)",
            ));
        }
        if let Some(s) = self.scale_down_kept {
            if s.max == 0 || s.max > 10_000 || s.min > s.max {
                return Err(ParamsError::field(
                    "scale_down_kept",
                    format!(
                        "needs 0 <= min <= max, 1 <= max <= 10000; got min {}, max {}",
                        s.min, s.max
                    ),
                ));
            }
        }
        if let Some(p) = self.prune_versions {
            if !(1..=1000).contains(&p.keep) {
                return Err(ParamsError::field(
                    "prune_versions.keep",
                    format!(
                        "must be 1 to 1000 (the newest versions are never pruned, so a version being released stays), got {}",
                        p.keep
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The retire action: clients built once per cold start.
pub struct Retire {
    clients: Clients,
}

impl Retire {
    pub fn new(config: &SdkConfig) -> Self {
        Retire {
            clients: Clients::new(config),
        }
    }
}

impl Action for Retire {
    type Params = Params;
    type State = Progress;

    async fn run(
        &self,
        _job: &Job,
        params: Params,
        state: Option<Progress>,
    ) -> Result<Outcome<Progress>, ActionError> {
        exec::run(&self.clients, &params.settings(), state).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use beanswap_core::params::parse;

    #[test]
    fn parameters_parse_with_defaults_and_name_the_field_when_wrong() {
        let p: Params = parse(Some(
            r#"{"application":"shop","production_cname":"shop-prod"}"#,
        ))
        .unwrap();
        assert_eq!(p.keep, 1);
        assert_eq!(p.grace(), DEFAULT_GRACE);
        assert!(!p.dry_run);
        let s = p.settings();
        assert_eq!(
            (s.keep, s.record, s.prune, s.scale_down_kept),
            (1, None, None, None)
        );

        let full = r#"{"application":"shop","production_cname":"shop-prod","hosted_zone_id":"Z1","domain":"www.shop.example","keep":2,"grace_minutes":15,"scale_down_kept":{"min":1,"max":2},"prune_versions":{"keep":20,"delete_bundles":true},"dry_run":true}"#;
        let s = parse::<Params>(Some(full)).unwrap().settings();
        assert_eq!(s.grace, Duration::from_secs(900));
        assert_eq!(s.scale_down_kept, Some(Scale { min: 1, max: 2 }));
        assert_eq!(
            s.prune,
            Some(Prune {
                keep: 20,
                delete_bundles: true
            })
        );
        assert!(s.dry_run && s.record.is_some());

        let cases = [
            (r#"{"production_cname":"p"}"#, "field `application`"),
            (r#"{"application":"shop"}"#, "field `production_cname`"),
            (
                r#"{"application":"shop","production_cname":" "}"#,
                "field `production_cname`: must be",
            ),
            (
                r#"{"application":"shop","production_cname":"p","kep":1}"#,
                "field `kep`: unknown field",
            ),
            (
                r#"{"application":"shop","production_cname":"p","domain":"x"}"#,
                "field `hosted_zone_id`: is required",
            ),
            (
                r#"{"application":"shop","production_cname":"p","keep":-1}"#,
                "field `keep`",
            ),
            (
                r#"{"application":"shop","production_cname":"p","keep":50}"#,
                "field `keep`: at most 20",
            ),
            (
                r#"{"application":"shop","production_cname":"p","grace_minutes":1,"grace_seconds":1}"#,
                "not both",
            ),
            (
                r#"{"application":"shop","production_cname":"p","grace_minutes":100000}"#,
                "field `grace_minutes`: must be at most 24 hours",
            ),
            (
                r#"{"application":"shop","production_cname":"p","scale_down_kept":{"min":3,"max":2}}"#,
                "field `scale_down_kept`: needs 0 <= min <= max",
            ),
            (
                r#"{"application":"shop","production_cname":"p","scale_down_kept":{"min":1,"size":2}}"#,
                "unknown field `size`",
            ),
            (
                r#"{"application":"shop","production_cname":"p","prune_versions":{"keep":0}}"#,
                "field `prune_versions.keep`: must be 1 to 1000",
            ),
            (
                r#"{"application":"shop","production_cname":"p","prune_versions":{}}"#,
                "missing field `keep`",
            ),
        ];
        for (raw, expected) in cases {
            let err = parse::<Params>(Some(raw)).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{raw}: expected {expected:?} in {err:?}"
            );
        }
    }
}
