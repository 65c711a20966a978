//! smoke-test: proves the staged environment works before anyone approves the swap.
//!
//! It runs every check (and the version check) against the environment's URL, in several rounds when
//! asked, so one healthy instance behind the load balancer cannot hide a broken one: all rounds must pass.
//! While the environment does not answer yet (nothing listening, or the load balancer's 502/503/504), it
//! waits with a few short retries per invocation and then hands CodePipeline a continuation token, so a
//! long warm-up costs no Lambda time.
//!
//! This crate is the action's UserParameters ([`Params`], validated into a
//! [`beanswap_core::smoke_test::Plan`]) and its [`Action`]; the sequence and its decisions are
//! `beanswap_core::smoke_test`, the checks `beanswap_core::http_check` (shared with swap).
//!
//! The binary (`main.rs`) runs [`SmokeTest`] under Lambda; the pipeline template test parses this
//! action's UserParameters with [`Params`] and checks `#{SmokeTest.*}` references against
//! [`OUTPUT_VARIABLES`].

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use beanswap_core::http_check::spec::parse_resolve;
use beanswap_core::http_check::{
    parse_base_url, CheckSpec, HttpCheckError, Options, Redirects, StatusSet, VersionCheck,
};
use beanswap_core::smoke_test::{self, Plan, WarmingUp};
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::Deserialize;

pub use beanswap_core::smoke_test::OUTPUT_VARIABLES;

const MAX_CHECKS: usize = 20;
const MAX_ROUNDS: u32 = 10;
const MAX_CONCURRENCY: usize = 16;
const MAX_TIMEOUT_MS: u64 = 60_000;
/// CodePipeline gives a Lambda action 24 hours in all.
const MAX_WINDOW_SECONDS: u64 = 24 * 3600;

/// UserParameters of smoke-test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The environment's base URL or bare CNAME (`#{Stage.Url}`); `http://` when no scheme is given.
    pub url: String,
    /// What to request; `GET /` answering 2xx or 3xx when left out.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Where the app reports its version and what it must be; run last in every round.
    #[serde(default)]
    pub version: Option<VersionCheck>,
    /// Consecutive rounds of all checks that must pass (1 to 10).
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    /// Waiting for an environment that does not answer yet.
    #[serde(default)]
    pub warmup: Warmup,
    /// Requests in flight at once (1 to 16).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per request, connecting to last body byte, in milliseconds (at most 60000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Host name -> `ip[:port]` to connect to instead of resolving it (like `curl --resolve`); the
    /// Host header and TLS name stay the URL's.
    #[serde(default)]
    pub resolve: BTreeMap<String, String>,
    /// `none`, `same-host` (the default: a redirect to another host is judged as the redirect itself)
    /// or `any`.
    #[serde(default)]
    pub redirects: Redirects,
    /// After the staged environment passes, the same checks against the environment still serving
    /// production (`#{Stage.LiveUrl}`): the new version's migrations ran on the database both share.
    #[serde(default)]
    pub live: Option<LiveParams>,
}

/// The live environment's check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// Its URL or CNAME; empty (the first deployment: nothing else serves production) skips the check.
    pub url: String,
    /// What to request there; the staged environment's checks when left out (never the version check).
    #[serde(default)]
    pub checks: Option<Vec<CheckSpec>>,
    /// What migrated the database, for the message (`#{Package.VersionLabel}`).
    #[serde(default)]
    pub migration: Option<String>,
    /// The snapshot to restore from, for the message (`#{Backup.SnapshotId}`).
    #[serde(default)]
    pub snapshot: Option<String>,
}

fn default_rounds() -> u32 {
    1
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// How long and how often to try an environment that does not answer yet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Warmup {
    /// From the first attempt; after it, not answering is a failure. 0: no waiting at all.
    pub window_seconds: u64,
    /// Extra attempts per invocation before handing back a continuation token.
    pub retries: u32,
    /// Pause before the first retry; doubles each time, up to 15 s.
    pub backoff_ms: u64,
    /// Statuses that mean "not ready yet" rather than "broken" (default 502-504, what a load balancer
    /// answers while no instance is healthy). A 500 from the app itself fails at once.
    pub statuses: StatusSet,
}

impl Default for Warmup {
    fn default() -> Self {
        Warmup {
            window_seconds: 600,
            retries: 3,
            backoff_ms: 2_000,
            statuses: StatusSet::gateway_errors(),
        }
    }
}

impl Params {
    /// The validated plan (base URL, checks, rounds, warm-up, client options), or the first mistake,
    /// named by its field. Milliseconds and seconds become [`Duration`]s here, once.
    pub fn plan(&self) -> Result<Plan, HttpCheckError> {
        let base = parse_base_url(&self.url)?;
        let checks = if self.checks.is_empty() && self.version.is_none() {
            CheckSpec::default_set()
        } else {
            self.checks.clone()
        };
        for (i, c) in checks.iter().enumerate() {
            c.validate(&format!("checks[{i}]"))?;
        }
        if let Some(v) = &self.version {
            v.validate("version")?;
        }
        let resolve = self
            .resolve
            .iter()
            .map(|(host, addr)| parse_resolve(host, addr))
            .collect::<Result<Vec<_>, _>>()?;
        let live = match &self.live {
            None => None,
            Some(l) => {
                let live_checks = l.checks.clone().unwrap_or_else(|| checks.clone());
                for (i, c) in live_checks.iter().enumerate() {
                    c.validate(&format!("live.checks[{i}]"))?;
                }
                Some(smoke_test::Live {
                    base: if l.url.trim().is_empty() {
                        None
                    } else {
                        Some(parse_base_url(&l.url)?)
                    },
                    checks: live_checks,
                    migration: l.migration.clone().filter(|m| !m.is_empty()),
                    snapshot: l.snapshot.clone().filter(|s| !s.is_empty()),
                })
            }
        };
        Ok(Plan {
            live,
            base,
            checks,
            version: self.version.clone(),
            rounds: self.rounds,
            warmup: smoke_test::Warmup {
                window: Duration::from_secs(self.warmup.window_seconds),
                retries: self.warmup.retries,
                backoff: Duration::from_millis(self.warmup.backoff_ms),
            },
            options: Options {
                timeout: Duration::from_millis(self.timeout_ms),
                concurrency: self.concurrency,
                redirects: self.redirects,
                resolve,
                not_ready: self.warmup.statuses.clone(),
            },
        })
    }
}

fn out_of_range(field: &str, got: impl std::fmt::Display, range: &str) -> ParamsError {
    ParamsError::field(field, format!("{got} is out of range; use {range}"))
}

impl UserParameters for Params {
    const EXAMPLE: &'static str = r##"{"url":"#{Stage.Url}","checks":[{"path":"/health"}],"rounds":3,"version":{"path":"/version","expected":"#{SourceVariables.CommitId}"}}"##;

    fn validate(&self) -> Result<(), ParamsError> {
        if self.checks.len() > MAX_CHECKS {
            return Err(ParamsError::field(
                "checks",
                format!("{} checks; at most {MAX_CHECKS}", self.checks.len()),
            ));
        }
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(out_of_range(
                "rounds",
                self.rounds,
                &format!("1 to {MAX_ROUNDS}"),
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(out_of_range(
                "concurrency",
                self.concurrency,
                &format!("1 to {MAX_CONCURRENCY}"),
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(out_of_range(
                "timeout_ms",
                self.timeout_ms,
                &format!("1 to {MAX_TIMEOUT_MS}"),
            ));
        }
        if self.warmup.window_seconds > MAX_WINDOW_SECONDS {
            return Err(out_of_range(
                "warmup.window_seconds",
                self.warmup.window_seconds,
                &format!("0 to {MAX_WINDOW_SECONDS} (CodePipeline's 24 hours)"),
            ));
        }
        if self.warmup.retries > 10 {
            return Err(out_of_range(
                "warmup.retries",
                self.warmup.retries,
                "0 to 10",
            ));
        }
        if !(10..=60_000).contains(&self.warmup.backoff_ms) {
            return Err(out_of_range(
                "warmup.backoff_ms",
                self.warmup.backoff_ms,
                "10 to 60000",
            ));
        }
        self.plan()?;
        Ok(())
    }
}

/// The action. It needs no AWS client: only HTTP to the environment.
#[derive(Debug, Default)]
pub struct SmokeTest;

impl SmokeTest {
    pub fn new(_aws: &SdkConfig) -> Self {
        SmokeTest
    }
}

impl Action for SmokeTest {
    type Params = Params;
    type State = WarmingUp;

    async fn run(
        &self,
        _job: &Job,
        params: Params,
        state: Option<WarmingUp>,
    ) -> Result<Outcome<WarmingUp>, ActionError> {
        let plan = params.plan().map_err(ParamsError::from)?;
        smoke_test::exec::run(&plan, state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beanswap_core::params::parse;

    #[test]
    fn the_pipeline_templates_parameters_parse() {
        let p: Params = parse(Some(r#"{"url":"shop-blue.us-east-1.elasticbeanstalk.com","checks":[{"path":"/"},{"path":"/health"}],"rounds":3,"version":{"path":"/version","expected":"abc123"}}"#)).unwrap();
        let plan = p.plan().unwrap();
        assert_eq!(
            plan.base.as_str(),
            "http://shop-blue.us-east-1.elasticbeanstalk.com/"
        );
        assert_eq!(plan.checks.len(), 2);
        assert_eq!(p.rounds, 3);
        assert_eq!(p.warmup.window_seconds, 600);
        assert_eq!(p.redirects, Redirects::SameHost);
        parse::<Params>(Some(
            Params::EXAMPLE
                .replace("#{Stage.Url}", "h.example")
                .as_str(),
        ))
        .unwrap();
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("### smoke-test").unwrap()..];
        let start = section.find("```json\n").unwrap() + "```json\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        assert!(example.len() <= 1000, "{} characters", example.len());
        let p: Params = parse(Some(&example.replace("#{Stage.Url}", "h.example"))).unwrap();
        assert_eq!((p.checks.len(), p.rounds), (3, 3));
    }

    #[test]
    fn no_checks_means_get_slash_expecting_2xx_or_3xx() {
        let p: Params = parse(Some(r#"{"url":"http://h.example"}"#)).unwrap();
        let plan = p.plan().unwrap();
        assert_eq!(plan.checks.len(), 1);
        assert_eq!(plan.checks[0].display_name(), "GET /");
        assert_eq!(
            plan.checks[0].status.as_ref().unwrap().to_string(),
            "2xx or 3xx"
        );
        // With only a version check, that is all that runs.
        let p: Params = parse(Some(r#"{"url":"h.example","version":{"expected":"v1"}}"#)).unwrap();
        assert!(p.plan().unwrap().checks.is_empty());
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (r#"{}"#, "field `url`: missing field `url`"),
            (
                r##"{"url":"#{Stage.Url}"}"##,
                "field `url`: `#{Stage.Url}` still holds an unresolved pipeline variable",
            ),
            (
                r#"{"url":"h.example","rounds":0}"#,
                "field `rounds`: 0 is out of range; use 1 to 10",
            ),
            (
                r#"{"url":"h.example","concurrency":99}"#,
                "field `concurrency`: 99 is out of range",
            ),
            (
                r#"{"url":"h.example","timeout_ms":0}"#,
                "field `timeout_ms`",
            ),
            (
                r#"{"url":"h.example","warmup":{"window_seconds":100000}}"#,
                "field `warmup.window_seconds`",
            ),
            (
                r#"{"url":"h.example","warmup":{"windows":1}}"#,
                "unknown field `windows`",
            ),
            (
                r#"{"url":"h.example","warmup":{"statuses":"9xx"}}"#,
                "`9xx` is not a status",
            ),
            (
                r#"{"url":"h.example","checks":[{"path":"/","status":"2xx","body_regex":"(("}]}"#,
                "field `checks[0].body_regex`: not a valid regular expression",
            ),
            (
                r#"{"url":"h.example","checks":[{"path":"/ok"},{"path":"nope"}]}"#,
                "field `checks[1].path`: `nope` must start with `/`",
            ),
            (
                r#"{"url":"h.example","version":{"path":"/v"}}"#,
                "missing field `expected`",
            ),
            (
                r#"{"url":"h.example","resolve":{"h.example":"not-an-ip"}}"#,
                "field `resolve.h.example`: `not-an-ip` is not an IP address",
            ),
            (
                r#"{"url":"h.example","redirects":"sometimes"}"#,
                "field `redirects`: unknown variant `sometimes`",
            ),
            (
                r#"{"url":"h.example","check":[]}"#,
                "field `check`: unknown field `check`",
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
