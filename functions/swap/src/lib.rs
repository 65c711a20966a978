//! swap: moves production traffic from the live environment to the staged one, verifies that production
//! serves the new version, and moves it back when it does not.
//!
//! Modes: `cname` (SwapEnvironmentCNAMEs), `route53` (the custom domain's record, alias or CNAME),
//! `weighted` (Route 53 weighted records shifted in steps with a bake time, across invocations through
//! continuation tokens) and `rollback` (production back to the previous environment). This crate is the
//! parameters; the sequence is `beanswap_core::swap::engine`, shared with `beanswap swap`/`rollback`.

use std::time::Duration;

use aws_config::SdkConfig;
use beanswap_core::alarms::CloudWatch;
use beanswap_core::beanstalk::{Beanstalk, HealthGate};
use beanswap_core::clock::SystemClock;
use beanswap_core::params::ApplicationName;
use beanswap_core::route53::Route53;
use beanswap_core::swap::bake::{Bake, MAX_POLL};
use beanswap_core::swap::engine::{self, Clients, Plan, State, VerifySpec};
use beanswap_core::swap::{validate_steps, Domain, Mode, RecordType, Verify, DEFAULT_STEPS};
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::Deserialize;

pub use beanswap_core::swap::engine::OUTPUT_VARIABLES;
pub use beanswap_core::swap::HttpVerifier;

/// UserParameters of swap.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The Beanstalk application.
    pub application: ApplicationName,
    /// The environment to put into production (`#{Stage.EnvironmentName}`); in rollback mode, optional:
    /// the environment to return to (else the live one's previous).
    #[serde(default)]
    pub staged_environment: Option<String>,
    /// Production's CNAME, as a prefix (`shop-prod`) or in full; required in cname mode.
    #[serde(default)]
    pub production_cname: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// The hosted zone of `domain` (route53, weighted).
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// The custom domain production is served under (route53, weighted).
    #[serde(default)]
    pub domain: Option<String>,
    /// `alias` (A alias record, the default) or `cname`.
    #[serde(default)]
    pub record_type: RecordType,
    /// TTL of CNAME records, seconds.
    #[serde(default = "default_ttl")]
    pub ttl: i64,
    /// Weighted mode: percent of traffic on the new environment after each step.
    #[serde(default)]
    pub steps: Option<Vec<u8>>,
    /// Weighted mode: how long each step runs, healthy, before the next one.
    #[serde(default = "default_bake")]
    pub bake_seconds: u64,
    /// The HTTP version check of production after the move (and of the new environment between steps).
    #[serde(default)]
    pub verify: Option<VerifyParams>,
    /// Reach every checked host at this address (`ip:port`) instead of resolving it, like curl --resolve:
    /// for private setups and for tests through a local router.
    #[serde(default)]
    pub resolve: Option<String>,
    /// The staged environment's health must be at least this now: `Green` (default) or `Yellow`.
    #[serde(default)]
    pub min_health: HealthGate,
    /// How long to wait for the CNAME swap or a Route 53 change to show.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// After production moved, watch it this long (minutes, fractions allowed) and move it back on
    /// a breach; 0 (the default): no bake.
    #[serde(default)]
    pub bake_minutes: f64,
    /// The bake reads enhanced health (and the alarms) this often, seconds (1 to 10).
    #[serde(default = "default_bake_poll")]
    pub bake_poll_seconds: u64,
    /// How long clients keep production's DNS answers (the template passes DnsTtlSeconds): a bake lasts
    /// at least this (and passes on a reading taken after its end), because until cached answers expire
    /// few requests reach the new version and a shorter bake would judge almost nothing. 0 (the
    /// default): no floor.
    #[serde(default)]
    pub dns_ttl_seconds: u64,
    /// A larger share of 5xx answers than this (percent, over enhanced health's last 10 s) is a breach.
    #[serde(default = "default_max_5xx")]
    pub bake_max_5xx_percent: u32,
    /// A P99 latency above this (milliseconds) is a breach; none by default.
    #[serde(default)]
    pub bake_max_p99_ms: Option<u64>,
    /// The 5xx share and latency are judged only over at least this many requests.
    #[serde(default = "default_min_requests")]
    pub bake_min_requests: u64,
    /// CloudWatch alarms (names) that must not be in ALARM during the bake.
    #[serde(default)]
    pub bake_alarms: Vec<String>,
    /// Before the move, make the staged environment run as many healthy instances as the live one runs
    /// now (its MinSize raised for the move, restored after the bake). On by default.
    #[serde(default = "beanswap_core::params::yes")]
    pub match_capacity: bool,
}

/// What production must serve after the move.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    #[serde(default = "default_path")]
    pub path: String,
    /// The version the body must be; the staged environment's version label when left out.
    #[serde(default)]
    pub expected: Option<String>,
    /// Retry this long (DNS caches, resolvers that hold the old answer).
    #[serde(default = "default_verify_timeout")]
    pub timeout_seconds: u64,
}

fn default_ttl() -> i64 {
    60
}
fn default_bake() -> u64 {
    300
}
fn default_bake_poll() -> u64 {
    MAX_POLL.as_secs()
}
fn default_max_5xx() -> u32 {
    1
}
fn default_min_requests() -> u64 {
    10
}
fn default_timeout() -> u64 {
    300
}
fn default_path() -> String {
    "/version".into()
}
fn default_verify_timeout() -> u64 {
    120
}

impl UserParameters for Params {
    const EXAMPLE: &'static str = r##"{"application":"shop","staged_environment":"#{Stage.EnvironmentName}","production_cname":"shop-prod","mode":"cname"}"##;

    fn validate(&self) -> Result<(), ParamsError> {
        let staged = self.staged_environment.as_deref().map(str::trim);
        if self.mode != Mode::Rollback && staged.is_none_or(str::is_empty) {
            return Err(ParamsError::field(
                "staged_environment",
                format!(
                    "required in {} mode: the environment to put into production, e.g. \"#{{Stage.EnvironmentName}}\"",
                    self.mode.as_str()
                ),
            ));
        }
        let has_domain =
            beanswap_core::params::production_record(&self.hosted_zone_id, &self.domain)?.is_some();
        match self.mode {
            Mode::Cname if self.production_cname.is_none() => return Err(ParamsError::field(
                "production_cname",
                "required in cname mode: the CNAME prefix (or full CNAME) production is served by",
            )),
            Mode::Route53 | Mode::Weighted if !has_domain => {
                return Err(ParamsError::field(
                    "domain",
                    format!(
                        "required in {} mode, with `hosted_zone_id`",
                        self.mode.as_str()
                    ),
                ))
            }
            Mode::Rollback if !has_domain && self.production_cname.is_none() => {
                return Err(ParamsError::field(
                    "production_cname",
                    "rollback needs the production CNAME, or `domain` and `hosted_zone_id`",
                ))
            }
            _ => {}
        }
        if let Some(steps) = &self.steps {
            if self.mode != Mode::Weighted {
                return Err(ParamsError::field("steps", "only used in weighted mode"));
            }
            validate_steps(steps).map_err(|e| ParamsError::field("steps", e))?;
        }
        if !(0..=86_400).contains(&self.ttl) {
            return Err(ParamsError::field(
                "ttl",
                format!("must be 0 to 86400, got {}", self.ttl),
            ));
        }
        if !(1..=840).contains(&self.timeout_seconds) {
            return Err(ParamsError::field(
                "timeout_seconds",
                format!(
                    "must be 1 to 840 (one invocation), got {}",
                    self.timeout_seconds
                ),
            ));
        }
        if self.bake_seconds > 86_400 {
            return Err(ParamsError::field("bake_seconds", "must be at most 86400"));
        }
        if let Some(v) = &self.verify {
            if !v.path.starts_with('/') {
                return Err(ParamsError::field(
                    "verify.path",
                    format!("must start with /, got {:?}", v.path),
                ));
            }
            if !(1..=600).contains(&v.timeout_seconds) {
                return Err(ParamsError::field(
                    "verify.timeout_seconds",
                    "must be 1 to 600",
                ));
            }
        }
        if !(0.0..=1440.0).contains(&self.bake_minutes) {
            return Err(ParamsError::field(
                "bake_minutes",
                format!("must be 0 to 1440, got {}", self.bake_minutes),
            ));
        }
        if !(1..=MAX_POLL.as_secs()).contains(&self.bake_poll_seconds) {
            return Err(ParamsError::field(
                "bake_poll_seconds",
                format!(
                    "must be 1 to {} (a breach must be seen quickly), got {}",
                    MAX_POLL.as_secs(),
                    self.bake_poll_seconds
                ),
            ));
        }
        if self.dns_ttl_seconds > 86_400 {
            return Err(ParamsError::field(
                "dns_ttl_seconds",
                "must be at most 86400",
            ));
        }
        if self.bake_max_5xx_percent > 100 {
            return Err(ParamsError::field(
                "bake_max_5xx_percent",
                "must be 0 to 100",
            ));
        }
        if let Some(empty) = self.bake_alarms.iter().find(|a| a.trim().is_empty()) {
            return Err(ParamsError::field(
                "bake_alarms",
                format!("alarm names must not be empty, got {empty:?}"),
            ));
        }
        if self.bake_alarms.len() > 100 {
            return Err(ParamsError::field("bake_alarms", "at most 100 alarms"));
        }
        if let Some(r) = &self.resolve {
            r.parse::<std::net::SocketAddr>().map_err(|e| {
                ParamsError::field("resolve", format!("expected ip:port, got {r:?} ({e})"))
            })?;
        }
        Ok(())
    }
}

impl Params {
    fn domain(&self) -> Option<Domain> {
        Some(Domain {
            zone: self.hosted_zone_id.clone()?,
            name: self.domain.clone()?,
            record_type: self.record_type,
            ttl: self.ttl,
        })
    }

    /// Shrinks the waits, in proportion, until the worst case of one invocation fits in `left`: the move
    /// (`timeout_seconds`), the version check and the move back (`timeout_seconds` again). A function cut
    /// off by Lambda's timeout would leave production moved but neither verified nor moved back.
    fn within(mut self, left: Option<Duration>) -> Self {
        let Some(left) = left else { return self };
        let verify = self.verify.as_ref().map_or(0, |v| v.timeout_seconds);
        let worst = 2 * self.timeout_seconds + verify;
        let left = left.as_secs();
        if worst <= left {
            return self;
        }
        let scale = |seconds: u64| (seconds * left / worst).max(1);
        self.timeout_seconds = scale(self.timeout_seconds);
        if let Some(v) = self.verify.as_mut() {
            v.timeout_seconds = scale(v.timeout_seconds);
        }
        self
    }

    /// The validated plan core's swap sequence runs.
    pub fn plan(&self) -> Plan {
        Plan {
            application: self.application.to_string(),
            mode: self.mode,
            staged: self
                .staged_environment
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            production_cname: self.production_cname.clone(),
            domain: self.domain(),
            steps: self.steps.clone().unwrap_or_else(|| DEFAULT_STEPS.to_vec()),
            step_bake: Duration::from_secs(self.bake_seconds),
            bake: (self.bake_minutes > 0.0).then(|| Bake {
                duration: Duration::from_secs_f64(self.bake_minutes * 60.0)
                    .max(Duration::from_secs(self.dns_ttl_seconds)),
                poll: Duration::from_secs(self.bake_poll_seconds),
                max_server_errors_percent: self.bake_max_5xx_percent,
                min_requests: self.bake_min_requests,
                max_p99: self.bake_max_p99_ms.map(Duration::from_millis),
                alarms: self.bake_alarms.clone(),
            }),
            match_capacity: self.match_capacity,
            verify: self.verify.as_ref().map(|v| VerifySpec {
                path: v.path.clone(),
                expected: v.expected.clone(),
                timeout: Duration::from_secs(v.timeout_seconds),
            }),
            resolve: self.resolve.clone(),
            min_health: self.min_health,
            timeout: Duration::from_secs(self.timeout_seconds),
        }
    }
}

/// The swap action: its clients, built once per cold start.
pub struct SwapAction<V> {
    eb: Beanstalk,
    r53: Route53,
    alarms: CloudWatch,
    verifier: V,
}

impl SwapAction<HttpVerifier> {
    pub fn new(config: &SdkConfig) -> Self {
        Self::with_verifier(config, HttpVerifier::new())
    }
}

impl<V: Verify> SwapAction<V> {
    pub fn with_verifier(config: &SdkConfig, verifier: V) -> Self {
        SwapAction {
            eb: Beanstalk::new(config),
            r53: Route53::new(config),
            alarms: CloudWatch::new(config),
            verifier,
        }
    }
}

impl<V: Verify + 'static> Action for SwapAction<V> {
    type Params = Params;
    type State = State;

    async fn run(
        &self,
        job: &Job,
        params: Params,
        state: Option<State>,
    ) -> Result<Outcome<State>, ActionError> {
        let left = job.waiting_budget();
        let plan = params.within(left).plan();
        let clients = Clients {
            eb: &self.eb,
            r53: &self.r53,
            verifier: &self.verifier,
            clock: &SystemClock,
            alarms: &self.alarms,
        };
        let budget = left.unwrap_or(plan.timeout).min(plan.timeout);
        engine::run(&clients, &plan, state, budget).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beanswap_core::params::parse;

    #[test]
    fn the_templates_parameters_parse() {
        for raw in [
            r#"{"application":"shop","staged_environment":"shop-b","production_cname":"shop-prod","mode":"cname"}"#,
            r#"{"application":"shop","staged_environment":"shop-b","production_cname":"shop-prod","mode":"route53","hosted_zone_id":"Z1","domain":"shop.example.com","record_type":"alias"}"#,
            r#"{"application":"shop","staged_environment":"shop-b","production_cname":"shop-prod","mode":"weighted","hosted_zone_id":"Z1","domain":"shop.example.com","record_type":"alias","steps":[10,50,100],"bake_seconds":300}"#,
            r#"{"application":"shop","production_cname":"shop-prod","mode":"rollback"}"#,
            r#"{"application":"shop","staged_environment":"shop-b","production_cname":"shop-prod","bake_minutes":0.5,"bake_poll_seconds":2,"bake_max_5xx_percent":2,"bake_max_p99_ms":1500,"bake_alarms":["shop-5xx"],"match_capacity":false}"#,
            r#"{"application":"shop","staged_environment":"shop-b","production_cname":"shop-prod","verify":{"path":"/version","expected":"v2"},"resolve":"127.0.0.1:8080"}"#,
        ] {
            parse::<Params>(Some(raw)).unwrap_or_else(|e| panic!("{raw}: {e}"));
        }
    }

    #[test]
    fn the_waits_shrink_to_fit_the_invocation_move_back_included() {
        let raw = r#"{"application":"shop","staged_environment":"b","production_cname":"p","verify":{"path":"/version"}}"#;
        let params = || parse::<Params>(Some(raw)).unwrap();
        // Defaults: 300 s for the move, 120 s for the check, 300 s for the move back: 720 s.
        let roomy = params().within(Some(Duration::from_secs(885)));
        assert_eq!(roomy.timeout_seconds, 300);
        assert_eq!(roomy.verify.as_ref().unwrap().timeout_seconds, 120);
        assert_eq!(params().within(None).timeout_seconds, 300);
        // A 300 s function: the same proportions, and all of it fits.
        let tight = params().within(Some(Duration::from_secs(285)));
        let verify = tight.verify.as_ref().unwrap().timeout_seconds;
        assert_eq!((tight.timeout_seconds, verify), (118, 47));
        assert!(2 * tight.timeout_seconds + verify <= 285);
        // Out of time: every wait still gets a second, so the calls are made and the failure reported.
        let spent = params().within(Some(Duration::ZERO));
        assert_eq!(spent.timeout_seconds, 1);
    }

    #[test]
    fn a_bake_lasts_at_least_the_dns_ttl() {
        let bake = |minutes: f64, ttl: u64| {
            let raw = format!(
                r#"{{"application":"shop","staged_environment":"b","production_cname":"p","bake_minutes":{minutes},"bake_poll_seconds":2,"dns_ttl_seconds":{ttl}}}"#
            );
            parse::<Params>(Some(&raw))
                .unwrap()
                .plan()
                .bake
                .map(|b| b.duration)
        };
        // Without a TTL, the bake is what was asked: 3 s.
        assert_eq!(bake(0.05, 0), Some(Duration::from_secs(3)));
        // With a 5 s TTL, 3 s would end before most clients' cached answers expire: 5 s.
        assert_eq!(bake(0.05, 5), Some(Duration::from_secs(5)));
        // A longer bake is kept; no bake stays no bake.
        assert_eq!(bake(10.0, 60), Some(Duration::from_secs(600)));
        assert_eq!(bake(0.0, 60), None);
    }

    #[test]
    fn bad_parameters_name_the_field() {
        let cases = [
            (
                r#"{"application":"shop","production_cname":"p"}"#,
                "field `staged_environment`: required in cname mode",
            ),
            (
                r#"{"application":"shop","staged_environment":"b"}"#,
                "field `production_cname`: required in cname mode",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","mode":"route53"}"#,
                "field `domain`: required in route53 mode",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","mode":"weighted","domain":"d.example.com"}"#,
                "field `hosted_zone_id`",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","mode":"weighted","domain":"d","hosted_zone_id":"Z","steps":[50,10]}"#,
                "field `steps`: steps must rise strictly",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","steps":[100]}"#,
                "field `steps`: only used in weighted mode",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","mode":"blue"}"#,
                "field `mode`: unknown variant `blue`",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","min_health":"Red"}"#,
                "field `min_health`",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","resolve":"localhost"}"#,
                "field `resolve`: expected ip:port",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","verify":{"path":"version"}}"#,
                "field `verify.path`: must start with /",
            ),
            (
                r#"{"application":"shop","mode":"rollback"}"#,
                "field `production_cname`: rollback needs",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","bake_minutes":-1}"#,
                "field `bake_minutes`: must be 0 to 1440",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","bake_minutes":5,"bake_poll_seconds":60}"#,
                "field `bake_poll_seconds`: must be 1 to 10",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","bake_alarms":[""]}"#,
                "field `bake_alarms`: alarm names must not be empty",
            ),
            (
                r#"{"application":"shop","staged_environment":"b","production_cname":"p","record":"a"}"#,
                "field `record`: unknown field",
            ),
        ];
        for (raw, expected) in cases {
            let err = parse::<Params>(Some(raw)).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "for {raw}: expected {expected:?} in {err:?}"
            );
        }
    }
}
