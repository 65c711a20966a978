//! swap: moves production traffic from the live environment to the staged one, verifies that production
//! serves the new version, and moves it back when it does not.
//!
//! Modes: `cname` (SwapEnvironmentCNAMEs), `route53` (the custom domain's record, alias or CNAME),
//! `weighted` (Route 53 weighted records shifted in steps with a bake time, across invocations through
//! continuation tokens) and `rollback` (production back to the previous environment). The decisions
//! live in `beanswap_core::swap`; this crate reads the parameters and sequences the steps.

use std::time::Duration;

use aws_config::SdkConfig;
use beanswap_core::beanstalk::Environment;
use beanswap_core::swap::ops::{now_unix, rollback, Moved, RollbackRequest, Swapper};
use beanswap_core::swap::{
    bake_left, next_step, serving_environment, share_of, simple_record, validate_steps,
    weighted_records, Check, Domain, Mode, RecordType, Shift, SwapError, Verify, DEFAULT_STEPS,
};
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::Deserialize;

pub use beanswap_core::swap::HttpVerifier;

/// The output variables a final success sets.
pub const OUTPUT_VARIABLES: &[&str] = &["LiveEnvironmentName", "PreviousEnvironmentName", "Mode"];

/// UserParameters of swap.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The Beanstalk application.
    pub application: String,
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
    #[serde(default = "default_min_health")]
    pub min_health: String,
    /// How long to wait for the CNAME swap or a Route 53 change to show.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
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
fn default_min_health() -> String {
    "Green".into()
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

fn field(field: &str, reason: impl Into<String>) -> ParamsError {
    ParamsError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

impl UserParameters for Params {
    const EXAMPLE: &'static str = r##"{"application":"shop","staged_environment":"#{Stage.EnvironmentName}","production_cname":"shop-prod","mode":"cname"}"##;

    fn validate(&self) -> Result<(), ParamsError> {
        let len = self.application.chars().count();
        if !(1..=100).contains(&len) {
            return Err(field(
                "application",
                format!("must be 1 to 100 characters, got {len}"),
            ));
        }
        let staged = self.staged_environment.as_deref().map(str::trim);
        if self.mode != Mode::Rollback && staged.is_none_or(str::is_empty) {
            return Err(field(
                "staged_environment",
                format!(
                    "required in {} mode: the environment to put into production, e.g. \"#{{Stage.EnvironmentName}}\"",
                    self.mode.as_str()
                ),
            ));
        }
        let has_domain = self.domain.is_some() || self.hosted_zone_id.is_some();
        if has_domain && (self.domain.is_none() || self.hosted_zone_id.is_none()) {
            let missing = if self.domain.is_none() {
                "domain"
            } else {
                "hosted_zone_id"
            };
            return Err(field(missing, "`domain` and `hosted_zone_id` go together"));
        }
        match self.mode {
            Mode::Cname if self.production_cname.is_none() => return Err(field(
                "production_cname",
                "required in cname mode: the CNAME prefix (or full CNAME) production is served by",
            )),
            Mode::Route53 | Mode::Weighted if !has_domain => {
                return Err(field(
                    "domain",
                    format!(
                        "required in {} mode, with `hosted_zone_id`",
                        self.mode.as_str()
                    ),
                ))
            }
            Mode::Rollback if !has_domain && self.production_cname.is_none() => {
                return Err(field(
                    "production_cname",
                    "rollback needs the production CNAME, or `domain` and `hosted_zone_id`",
                ))
            }
            _ => {}
        }
        if let Some(steps) = &self.steps {
            if self.mode != Mode::Weighted {
                return Err(field("steps", "only used in weighted mode"));
            }
            validate_steps(steps).map_err(|e| field("steps", e))?;
        }
        if !matches!(self.min_health.as_str(), "Green" | "Yellow") {
            return Err(field(
                "min_health",
                format!("must be \"Green\" or \"Yellow\", got {:?}", self.min_health),
            ));
        }
        if !(0..=86_400).contains(&self.ttl) {
            return Err(field(
                "ttl",
                format!("must be 0 to 86400, got {}", self.ttl),
            ));
        }
        if !(1..=840).contains(&self.timeout_seconds) {
            return Err(field(
                "timeout_seconds",
                format!(
                    "must be 1 to 840 (one invocation), got {}",
                    self.timeout_seconds
                ),
            ));
        }
        if self.bake_seconds > 86_400 {
            return Err(field("bake_seconds", "must be at most 86400"));
        }
        if let Some(v) = &self.verify {
            if !v.path.starts_with('/') {
                return Err(field(
                    "verify.path",
                    format!("must start with /, got {:?}", v.path),
                ));
            }
            if !(1..=600).contains(&v.timeout_seconds) {
                return Err(field("verify.timeout_seconds", "must be 1 to 600"));
            }
        }
        if let Some(r) = &self.resolve {
            r.parse::<std::net::SocketAddr>()
                .map_err(|e| field("resolve", format!("expected ip:port, got {r:?} ({e})")))?;
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

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
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

    fn steps(&self) -> Vec<u8> {
        self.steps.clone().unwrap_or_else(|| DEFAULT_STEPS.to_vec())
    }

    fn staged_name(&self) -> &str {
        self.staged_environment
            .as_deref()
            .unwrap_or_default()
            .trim()
    }

    /// The version check of `host`, expecting `env`'s version unless the parameters name one.
    fn check(&self, host: &str, env: &Environment) -> Option<Check> {
        let v = self.verify.as_ref()?;
        Some(Check {
            base: format!("http://{}", host.trim_end_matches('.')),
            path: v.path.clone(),
            resolve: self.resolve.clone(),
            expected: v
                .expected
                .clone()
                .or_else(|| env.version_label.clone())
                .unwrap_or_default(),
            timeout: Duration::from_secs(v.timeout_seconds),
        })
    }
}

/// Kept back from Lambda's deadline for the last calls and the report.
const LAMBDA_RESERVE: Duration = Duration::from_secs(15);

/// The swap action.
pub struct SwapAction<V> {
    swapper: Swapper,
    verifier: V,
}

impl SwapAction<HttpVerifier> {
    pub fn new(config: &SdkConfig) -> Self {
        SwapAction {
            swapper: Swapper::new(config),
            verifier: HttpVerifier::new(),
        }
    }
}

impl<V: Verify> SwapAction<V> {
    pub fn with_verifier(config: &SdkConfig, verifier: V) -> Self {
        SwapAction {
            swapper: Swapper::new(config),
            verifier,
        }
    }
}

fn done(
    summary: String,
    live: &str,
    previous: &str,
    mode: Mode,
) -> Result<Outcome<Shift>, ActionError> {
    Ok(Outcome::succeeded(summary)
        .with_variable("LiveEnvironmentName", live)
        .with_variable("PreviousEnvironmentName", previous)
        .with_variable("Mode", mode.as_str()))
}

impl<V: Verify + 'static> Action for SwapAction<V> {
    type Params = Params;
    type State = Shift;

    async fn run(
        &self,
        job: &Job,
        params: Params,
        state: Option<Shift>,
    ) -> Result<Outcome<Shift>, ActionError> {
        let params = params.within(job.time_left(LAMBDA_RESERVE));
        match (params.mode, state) {
            (Mode::Weighted, Some(shift)) => self.weighted_continue(&params, shift).await,
            (Mode::Weighted, None) => self.weighted_start(&params).await,
            (Mode::Cname, _) => self.cname(&params).await,
            (Mode::Route53, _) => self.route53(&params).await,
            (Mode::Rollback, _) => self.rollback(&params).await,
        }
    }
}

impl<V: Verify> SwapAction<V> {
    /// Runs the check if there is one: `Ok(note for the summary)` or `Err(what it saw)`.
    async fn verified(&self, check: Option<Check>) -> Result<String, String> {
        match check {
            None => Ok("not verified over HTTP (no `verify` in UserParameters)".into()),
            Some(check) => self
                .verifier
                .verify(&check)
                .await
                .map(|seen| format!("verified: {seen}")),
        }
    }

    /// A re-invocation after the move completed: report success without moving anything back.
    async fn already_done(
        &self,
        params: &Params,
        staged: &Environment,
        host: &str,
    ) -> Result<Outcome<Shift>, ActionError> {
        let previous = self.swapper.previous_of(staged).await?;
        // Without the tag a swap writes before it moves anything, nothing was ever moved to it: it
        // is the first environment, which stage launched on the production CNAME itself.
        let how = match &previous {
            Some(from) => format!("an earlier invocation moved it there from `{from}`"),
            None => "it was launched on the production CNAME as the first environment, so there was nothing to move".to_string(),
        };
        let previous = previous.unwrap_or_default();
        let note = self
            .verified(params.check(host, staged))
            .await
            .map_err(|seen| {
                ActionError::failed(format!(
                    "`{}` already serves production ({how}; nothing was changed now), but the version check failed: {seen}",
                    staged.name
                ))
            })?;
        done(
            format!(
                "`{}` already serves production ({how}); nothing changed; {note}",
                staged.name
            ),
            &staged.name,
            &previous,
            params.mode,
        )
    }

    /// The first deployment to a custom domain: stage launched the environment on the production CNAME,
    /// so there is nothing to swap, but the domain has no record yet; it gets one pointing at it (the
    /// template cannot make it: the environment does not exist when the stack is created).
    async fn first_record(
        &self,
        params: &Params,
        domain: &Domain,
        staged: &Environment,
    ) -> Result<Outcome<Shift>, ActionError> {
        let sw = &self.swapper;
        sw.preconditions(staged, staged, &params.application, &params.min_health)
            .await?;
        sw.point(
            domain,
            &[simple_record(domain, staged)?],
            &format!(
                "beanswap: first deployment, {} serves the domain",
                staged.name
            ),
            params.timeout(),
        )
        .await?;
        let note = self
            .verified(params.check(&domain.name, staged))
            .await
            .map_err(|seen| {
                ActionError::failed(format!(
                    "created `{}` pointing at `{}` (the first deployment: no record existed), but the version check failed: {seen}",
                    domain.name, staged.name
                ))
            })?;
        done(
            format!(
                "first deployment: created `{}` pointing at `{}`, in sync; {note}",
                domain.name, staged.name
            ),
            &staged.name,
            "",
            params.mode,
        )
    }

    async fn cname(&self, params: &Params) -> Result<Outcome<Shift>, ActionError> {
        let sw = &self.swapper;
        let production = params.production_cname.clone().unwrap_or_default();
        let moved = sw
            .move_cname(
                &params.application,
                &production,
                params.staged_name(),
                &params.min_health,
                params.timeout(),
            )
            .await?;
        let (staged, live) = match moved {
            Moved::Already(staged) => {
                return self.already_done(params, &staged, &staged.cname).await
            }
            Moved::Swapped { live, previous } => (live, previous),
        };
        let host = staged.cname.clone();
        match self.verified(params.check(&host, &staged)).await {
            Ok(note) => {
                sw.handed_over(&live).await?;
                done(
                    format!(
                        "swapped CNAMEs: `{}` now serves `{host}` (was `{}`); {note}",
                        staged.name, live.name
                    ),
                    &staged.name,
                    &live.name,
                    Mode::Cname,
                )
            }
            Err(seen) => {
                let back = sw
                    .move_cname_back(&staged, &live, &production, params.timeout())
                    .await;
                Err(ActionError::failed(match back {
                    Ok(()) => format!(
                        "verification failed after the CNAME swap: {seen}. Swapped back: `{}` serves `{host}` again and `{}` is out of service",
                        live.name, staged.name
                    ),
                    Err(e) => format!(
                        "verification failed after the CNAME swap: {seen}. Swapping back FAILED ({e}): production is still on `{}`; run `beanswap rollback`",
                        staged.name
                    ),
                }))
            }
        }
    }

    /// The environments, the staged one, the domain's records and the one they serve now.
    async fn domain_view(
        &self,
        params: &Params,
        domain: &Domain,
    ) -> Result<DomainView, ActionError> {
        let sw = &self.swapper;
        let app = &params.application;
        let staged = sw.staged(app, params.staged_name()).await?;
        let environments = sw.eb.environments(app).await?;
        let records: Vec<_> = sw
            .records(domain)
            .await?
            .into_iter()
            .map(|e| e.record)
            .collect();
        let serving = serving_environment(&records, &environments, Some(&staged.cname))
            .map_err(|target| SwapError::UnknownTarget {
                domain: domain.name.clone(),
                target,
                application: app.clone(),
            })?
            .cloned();
        let live = match (serving, &params.production_cname) {
            (Some(env), _) => env,
            // No record yet: production is whatever holds the production CNAME.
            (None, Some(production)) if records.is_empty() => {
                sw.live_by_cname(app, production).await?
            }
            (None, _) if share_of(&records, &staged.cname) > 0 => staged.clone(),
            (None, _) => Err(SwapError::NoRecord {
                domain: domain.name.clone(),
                zone: domain.zone.clone(),
            })?,
        };
        let staged_share = share_of(&records, &staged.cname);
        Ok(DomainView {
            staged,
            live,
            staged_share,
            no_record: records.is_empty(),
        })
    }

    async fn route53(&self, params: &Params) -> Result<Outcome<Shift>, ActionError> {
        let sw = &self.swapper;
        let domain = params.domain().ok_or_else(|| {
            ActionError::config("route53 mode needs `domain` and `hosted_zone_id`")
        })?;
        let before = sw.records(&domain).await?;
        let view = self.domain_view(params, &domain).await?;
        let (staged, live) = (&view.staged, &view.live);
        if view.no_record && live.id == staged.id {
            return self.first_record(params, &domain, staged).await;
        }
        if view.staged_share >= 100 || live.id == staged.id {
            return self.already_done(params, staged, &domain.name).await;
        }
        let staged = &sw.ready(staged, params.timeout()).await?;
        sw.preconditions(staged, live, &params.application, &params.min_health)
            .await?;
        let staged = &sw.prepare(live, staged, params.timeout()).await?;
        sw.point(
            &domain,
            &[simple_record(&domain, staged)?],
            &format!("beanswap swap: {} -> {}", live.name, staged.name),
            params.timeout(),
        )
        .await?;
        match self.verified(params.check(&domain.name, staged)).await {
            Ok(note) => {
                sw.handed_over(live).await?;
                done(
                    format!(
                        "`{}` now points at `{}` (was `{}`), in sync; {note}",
                        domain.name, staged.name, live.name
                    ),
                    &staged.name,
                    &live.name,
                    Mode::Route53,
                )
            }
            Err(seen) => {
                let previous: Vec<_> = before.into_iter().map(|e| e.record).collect();
                let back = async {
                    if previous.is_empty() {
                        sw.point(
                            &domain,
                            &[simple_record(&domain, live)?],
                            "beanswap: restore",
                            params.timeout(),
                        )
                        .await?;
                    } else {
                        sw.point(
                            &domain,
                            &previous,
                            "beanswap: restore previous records",
                            params.timeout(),
                        )
                        .await?;
                    }
                    sw.handed_over(staged).await
                }
                .await;
                Err(ActionError::failed(match back {
                    Ok(()) => format!(
                        "verification failed after pointing `{}` at `{}`: {seen}. Restored the previous records: `{}` serves `{}` again and `{}` is out of service",
                        domain.name, staged.name, live.name, domain.name, staged.name
                    ),
                    Err(e) => format!(
                        "verification failed after pointing `{}` at `{}`: {seen}. Restoring the previous records FAILED ({e}); run `beanswap rollback`",
                        domain.name, staged.name
                    ),
                }))
            }
        }
    }

    async fn weighted_start(&self, params: &Params) -> Result<Outcome<Shift>, ActionError> {
        let sw = &self.swapper;
        let domain = params.domain().ok_or_else(|| {
            ActionError::config("weighted mode needs `domain` and `hosted_zone_id`")
        })?;
        let view = self.domain_view(params, &domain).await?;
        let (staged, live) = (&view.staged, &view.live);
        if view.no_record && live.id == staged.id {
            return self.first_record(params, &domain, staged).await;
        }
        if view.staged_share >= 100 || live.id == staged.id {
            return self.already_done(params, staged, &domain.name).await;
        }
        let staged = &sw.ready(staged, params.timeout()).await?;
        sw.preconditions(staged, live, &params.application, &params.min_health)
            .await?;
        let staged = &sw.prepare(live, staged, params.timeout()).await?;
        let steps = params.steps();
        let percent = next_step(&steps, view.staged_share).unwrap_or(100);
        self.shift_to(params, &domain, live, staged, percent).await
    }

    /// Applies one step; the last one finishes the job.
    async fn shift_to(
        &self,
        params: &Params,
        domain: &Domain,
        old: &Environment,
        new: &Environment,
        percent: u8,
    ) -> Result<Outcome<Shift>, ActionError> {
        let sw = &self.swapper;
        sw.point(
            domain,
            &weighted_records(domain, old, new, percent)?,
            &format!("beanswap weighted: {percent}% on {}", new.name),
            params.timeout(),
        )
        .await?;
        if percent < 100 {
            return Ok(Outcome::InProgress {
                summary: format!(
                    "{percent}% of `{}` on `{}`, {}% on `{}`; baking {}s",
                    domain.name,
                    new.name,
                    100 - percent,
                    old.name,
                    params.bake_seconds
                ),
                percent,
                state: Shift {
                    old: old.name.clone(),
                    new: new.name.clone(),
                    percent,
                    since: now_unix(),
                },
            });
        }
        match self.verified(params.check(&domain.name, new)).await {
            Ok(note) => {
                sw.handed_over(old).await?;
                done(
                    format!(
                        "all of `{}` on `{}` (was `{}`), in steps {:?}; {note}",
                        domain.name,
                        new.name,
                        old.name,
                        params.steps()
                    ),
                    &new.name,
                    &old.name,
                    Mode::Weighted,
                )
            }
            Err(seen) => Err(self
                .shift_back(
                    params,
                    domain,
                    old,
                    new,
                    &format!("verification failed at 100%: {seen}"),
                )
                .await),
        }
    }

    /// Gives all weight back to `old` and words the failure.
    async fn shift_back(
        &self,
        params: &Params,
        domain: &Domain,
        old: &Environment,
        new: &Environment,
        reason: &str,
    ) -> ActionError {
        let sw = &self.swapper;
        let back = async {
            sw.point(
                domain,
                &weighted_records(domain, new, old, 100)?,
                &format!("beanswap weighted: shift back to {}", old.name),
                params.timeout(),
            )
            .await?;
            sw.handed_over(new).await
        }
        .await;
        ActionError::failed(match back {
            Ok(()) => format!(
                "{reason}. Shifted all weight back: `{}` has 100% of `{}` again, `{}` 0% and out of service",
                old.name, domain.name, new.name
            ),
            Err(e) => format!(
                "{reason}. Shifting the weight back FAILED ({e}); run `beanswap rollback`"
            ),
        })
    }

    async fn weighted_continue(
        &self,
        params: &Params,
        shift: Shift,
    ) -> Result<Outcome<Shift>, ActionError> {
        let sw = &self.swapper;
        let app = &params.application;
        let domain = params.domain().ok_or_else(|| {
            ActionError::config("weighted mode needs `domain` and `hosted_zone_id`")
        })?;
        let environments = sw.eb.environments(app).await?;
        let find = |name: &str| environments.iter().find(|e| e.name == name).cloned();
        let (Some(old), Some(new)) = (find(&shift.old), find(&shift.new)) else {
            return Err(ActionError::failed(format!(
                "weighted shift from `{}` to `{}` at {}%: one of them no longer exists; records left as they are",
                shift.old, shift.new, shift.percent
            )));
        };
        // Between steps: the new environment must stay healthy and serve the new version.
        let fresh = sw.eb.environment(&new.id).await?.unwrap_or(new.clone());
        if let Err(e) = sw.require_healthy(&fresh, &params.min_health).await {
            let reason = match e {
                SwapError::Unhealthy {
                    health,
                    detail,
                    gate,
                    events,
                    ..
                } => format!(
                    "at {}% `{}` turned unhealthy: health {health}{detail} (at least {gate} required){events}",
                    shift.percent, new.name
                ),
                e => format!("at {}% on `{}`: {e}", shift.percent, new.name),
            };
            return Err(self.shift_back(params, &domain, &old, &new, &reason).await);
        }
        if let Err(seen) = self.verified(params.check(&new.cname, &new)).await {
            let reason = format!(
                "at {}% the version check of `{}` failed: {seen}",
                shift.percent, new.name
            );
            return Err(self.shift_back(params, &domain, &old, &new, &reason).await);
        }
        let left = bake_left(&shift, Duration::from_secs(params.bake_seconds), now_unix());
        if left > 0 {
            return Ok(Outcome::InProgress {
                summary: format!(
                    "{}% of `{}` on `{}`, healthy; {left}s of baking left",
                    shift.percent, domain.name, new.name
                ),
                percent: shift.percent,
                state: shift,
            });
        }
        let percent = next_step(&params.steps(), i64::from(shift.percent)).unwrap_or(100);
        self.shift_to(params, &domain, &old, &new, percent).await
    }

    async fn rollback(&self, params: &Params) -> Result<Outcome<Shift>, ActionError> {
        let request = RollbackRequest {
            application: params.application.clone(),
            production_cname: params.production_cname.clone(),
            domain: params.domain(),
            to: params
                .staged_environment
                .clone()
                .filter(|s| !s.trim().is_empty()),
            timeout: params.timeout(),
        };
        let done_ = rollback(&self.swapper, &request).await?;
        let host = match &request.domain {
            Some(d) => d.name.clone(),
            None => done_.live.cname.clone(),
        };
        let note = self
            .verified(params.check(&host, &done_.live))
            .await
            .map_err(|seen| {
                ActionError::failed(format!(
                    "{}; but the version check failed: {seen}",
                    done_.summary
                ))
            })?;
        done(
            format!("{}; {note}", done_.summary),
            &done_.live.name,
            &done_.previous.name,
            Mode::Rollback,
        )
    }
}

struct DomainView {
    staged: Environment,
    live: Environment,
    /// Percent of the domain the staged environment has now.
    staged_share: i64,
    /// The domain has no record in the zone yet (the first deployment).
    no_record: bool,
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
