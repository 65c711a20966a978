//! The swap decisions carried out against Elastic Beanstalk and Route 53, and the `rollback` operation
//! the CLI and swap's rollback mode share.

use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;

use crate::beanstalk::{event_lines, poll_delay, Beanstalk, Environment, TAG_OUT_OF_SERVICE_SINCE};
use crate::route53::{changes_to, Existing, Pointer, Record, Route53};

use super::{
    check_health, check_preconditions, rollback_target, serving_environment, simple_record,
    weighted_records, Domain, RecordType, SwapError, TAG_PREVIOUS_ENVIRONMENT, TAG_RESTORED_FROM,
};

/// Now as RFC 3339 (seconds), the format of [`TAG_OUT_OF_SERVICE_SINCE`].
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Now in Unix seconds.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// What [`Swapper::move_cname`] did.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // made once per swap: boxing would only add indirection
pub enum Moved {
    /// The staged environment already held production (an earlier invocation moved it): nothing changed.
    Already(Environment),
    /// Production moved: `live` (the staged environment, as it reads now) from `previous`.
    Swapped {
        live: Environment,
        previous: Environment,
    },
}

/// The clients a swap needs, built once per cold start.
#[derive(Clone, Debug)]
pub struct Swapper {
    pub eb: Beanstalk,
    pub r53: Route53,
}

impl Swapper {
    pub fn new(config: &SdkConfig) -> Self {
        Swapper {
            eb: Beanstalk::new(config),
            r53: Route53::new(config),
        }
    }

    /// The staged environment, by name, in the application.
    pub async fn staged(&self, application: &str, name: &str) -> Result<Environment, SwapError> {
        self.eb
            .environment_named(application, name)
            .await?
            .ok_or_else(|| SwapError::StagedMissing {
                application: application.to_string(),
                name: name.to_string(),
            })
    }

    /// The environment holding the production CNAME.
    pub async fn live_by_cname(
        &self,
        application: &str,
        production: &str,
    ) -> Result<Environment, SwapError> {
        self.eb
            .live(application, production)
            .await?
            .ok_or_else(|| SwapError::NoLive {
                application: application.to_string(),
                production: production.to_string(),
            })
    }

    /// Fails with the health and the environment's latest events unless it passes `min_health`.
    pub async fn require_healthy(
        &self,
        env: &Environment,
        min_health: &str,
    ) -> Result<(), SwapError> {
        match check_health(env, min_health) {
            Ok(()) => Ok(()),
            Err(SwapError::Unhealthy {
                name,
                health,
                detail,
                gate,
                ..
            }) => {
                let events = self
                    .eb
                    .events_since(&env.id, None, 20)
                    .await
                    .map(|e| event_lines(&e, 5))
                    .unwrap_or_default();
                let events = if events.is_empty() {
                    events
                } else {
                    format!(". Latest events:\n{events}")
                };
                Err(SwapError::Unhealthy {
                    name,
                    health,
                    detail,
                    gate,
                    events,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// [`check_preconditions`], with the staged environment's latest events when its health fails.
    pub async fn preconditions(
        &self,
        staged: &Environment,
        live: &Environment,
        application: &str,
        min_health: &str,
    ) -> Result<(), SwapError> {
        match check_preconditions(staged, live, application, min_health) {
            Err(SwapError::Unhealthy { .. }) => self.require_healthy(staged, min_health).await,
            other => other,
        }
    }

    /// The environment `env` took production over from, per its tag.
    pub async fn previous_of(&self, env: &Environment) -> Result<Option<String>, SwapError> {
        Ok(self
            .eb
            .tags(&env.arn)
            .await?
            .get(TAG_PREVIOUS_ENVIRONMENT)
            .cloned())
    }

    /// Waits (within `timeout`) until `env` is Ready: an environment busy for a moment (a tag change,
    /// an update someone else started) is waited out, never a verdict. What it is after the wait is
    /// returned; the caller's preconditions judge it.
    pub async fn ready(
        &self,
        env: &Environment,
        timeout: Duration,
    ) -> Result<Environment, SwapError> {
        if env.is_ready() {
            return Ok(env.clone());
        }
        Ok(self.eb.wait_ready(env, timeout).await?)
    }

    /// Before moving traffic: `to` remembers where it came from (so a rollback and a re-invocation
    /// know) and loses any out-of-service mark, in one tag change, and the move waits until the tag
    /// change has made `to` Ready again (Beanstalk applies tags as an environment update; a CNAME swap
    /// or a second tag change meanwhile is refused with "invalid state ... Must be Ready").
    pub async fn prepare(
        &self,
        from: &Environment,
        to: &Environment,
        timeout: Duration,
    ) -> Result<Environment, SwapError> {
        self.eb
            .retag(
                &to.arn,
                &[(TAG_PREVIOUS_ENVIRONMENT, from.name.clone())],
                &[TAG_OUT_OF_SERVICE_SINCE],
            )
            .await?;
        let to = self.eb.wait_ready(to, timeout).await?;
        if !to.is_ready() {
            return Err(SwapError::NotReady {
                role: "staged",
                name: to.name.clone(),
                status: format!(
                    "{} (still, {}s after its tags changed)",
                    to.status,
                    timeout.as_secs()
                ),
            });
        }
        Ok(to)
    }

    /// After production moved from `from` (and the move was verified): `from` is out of service since
    /// now; retire's grace period counts from it. Written after the move, so nothing that moves
    /// production waits on it.
    pub async fn handed_over(&self, from: &Environment) -> Result<(), SwapError> {
        self.eb
            .retag(&from.arn, &[(TAG_OUT_OF_SERVICE_SINCE, now_rfc3339())], &[])
            .await?;
        Ok(())
    }

    /// The `cname` move, as the swap action and `beanswap swap` make it: the staged environment and the
    /// one holding `production`, each waited for until Ready, the preconditions, the staged one's tags
    /// (then Ready again), SwapEnvironmentCNAMEs until it shows. What is verified after, whether to move
    /// back, and marking the old one out of service ([`Swapper::handed_over`]) are the caller's.
    pub async fn move_cname(
        &self,
        application: &str,
        production: &str,
        staged: &str,
        min_health: &str,
        timeout: Duration,
    ) -> Result<Moved, SwapError> {
        let staged = self.staged(application, staged).await?;
        let live = self.live_by_cname(application, production).await?;
        if live.id == staged.id {
            return Ok(Moved::Already(staged));
        }
        let staged = self.ready(&staged, timeout).await?;
        let live = self.ready(&live, timeout).await?;
        self.preconditions(&staged, &live, application, min_health)
            .await?;
        let staged = self.prepare(&live, &staged, timeout).await?;
        let now_live = self
            .swap_cnames(&live, &staged, production, timeout)
            .await?;
        Ok(Moved::Swapped {
            live: now_live,
            previous: live,
        })
    }

    /// Undoes [`Swapper::move_cname`]: production back on `previous`; `live` is then marked out of
    /// service (after the move back, best effort: the move is what matters).
    pub async fn move_cname_back(
        &self,
        live: &Environment,
        previous: &Environment,
        production: &str,
        timeout: Duration,
    ) -> Result<(), SwapError> {
        let live = self.ready(live, timeout).await?;
        let previous = self.ready(previous, timeout).await?;
        self.swap_cnames(&live, &previous, production, timeout)
            .await?;
        if let Err(e) = self.handed_over(&live).await {
            tracing::warn!(error = %e, environment = %live.name, "could not mark the environment moved away from as out of service");
        }
        Ok(())
    }

    /// SwapEnvironmentCNAMEs, then polls until DescribeEnvironments shows `production` on `to`.
    pub async fn swap_cnames(
        &self,
        from: &Environment,
        to: &Environment,
        production: &str,
        timeout: Duration,
    ) -> Result<Environment, SwapError> {
        self.eb.swap_cnames(&from.id, &to.id).await?;
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let now = crate::aws_error::unless_transient(self.eb.environment(&to.id).await)?;
            if let Some(env) = now.flatten().filter(|e| e.holds_cname(production)) {
                return Ok(env);
            }
            if started.elapsed() >= timeout {
                let holder = self
                    .eb
                    .live(&to.application, production)
                    .await?
                    .map(|e| e.name)
                    .unwrap_or_else(|| "no environment".into());
                return Err(SwapError::SwapNotVisible {
                    production: production.to_string(),
                    holder,
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(poll_delay(attempt).min(Duration::from_secs(5))).await;
            attempt += 1;
        }
    }

    /// The domain's A (alias) and CNAME records.
    pub async fn records(&self, domain: &Domain) -> Result<Vec<Existing>, SwapError> {
        Ok(self.r53.records(&domain.zone, &domain.name).await?)
    }

    /// Makes the domain's records exactly `desired` in one batch and waits for INSYNC.
    pub async fn point(
        &self,
        domain: &Domain,
        desired: &[Record],
        comment: &str,
        timeout: Duration,
    ) -> Result<(), SwapError> {
        let existing = self.records(domain).await?;
        let planned = changes_to(&existing, desired);
        let change = self
            .r53
            .apply(&domain.zone, &existing, &planned, comment)
            .await?;
        if !self.r53.wait_in_sync(&change, timeout).await? {
            return Err(SwapError::NotInSync {
                change,
                domain: domain.name.clone(),
                seconds: timeout.as_secs(),
            });
        }
        Ok(())
    }
}

/// What `rollback` should do.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    pub application: String,
    /// The production CNAME (prefix or full), for CNAME-swapped production.
    pub production_cname: Option<String>,
    /// The custom domain, for Route 53 production (simple or weighted records).
    pub domain: Option<Domain>,
    /// Return here instead of the live environment's previous one.
    pub to: Option<String>,
    /// How long to wait for the swap or the Route 53 change to show.
    pub timeout: Duration,
}

/// What a rollback did.
#[derive(Debug, Clone)]
pub struct RolledBack {
    /// Serving production now.
    pub live: Environment,
    /// Moved away from.
    pub previous: Environment,
    /// `false` when production was already back (a repeated rollback): nothing was changed.
    pub changed: bool,
    pub summary: String,
}

/// Returns production to the environment it came from (the live one's
/// [`TAG_PREVIOUS_ENVIRONMENT`], or `request.to`), while that environment still exists: a CNAME swap back,
/// or the domain's records pointed back (weighted records get all weight back). Marks the environment
/// moved away from out of service. A repeated rollback finds production already back and changes nothing.
pub async fn rollback(
    swapper: &Swapper,
    request: &RollbackRequest,
) -> Result<RolledBack, SwapError> {
    let app = &request.application;
    let environments = swapper.eb.environments(app).await?;
    let (live, records) = match (&request.domain, &request.production_cname) {
        (Some(domain), _) => {
            let existing = swapper.records(domain).await?;
            let records: Vec<Record> = existing.into_iter().map(|e| e.record).collect();
            let live = serving_environment(&records, &environments, None)
                .map_err(|target| SwapError::UnknownTarget {
                    domain: domain.name.clone(),
                    target,
                    application: app.clone(),
                })?
                .cloned()
                .ok_or_else(|| SwapError::NoRecord {
                    domain: domain.name.clone(),
                    zone: domain.zone.clone(),
                })?;
            (live, Some(records))
        }
        (None, Some(production)) => (swapper.live_by_cname(app, production).await?, None),
        (None, None) => {
            return Err(SwapError::NoRollbackTarget(
                "give the production CNAME or the domain (hosted zone and name) production is served by".into(),
            ))
        }
    };
    let tags = swapper.eb.tags(&live.arn).await?;
    // Already rolled back (a retried job, a second click): the restored environment says so.
    if request.to.is_none() && !tags.contains_key(TAG_PREVIOUS_ENVIRONMENT) {
        if let Some(from) = tags.get(TAG_RESTORED_FROM) {
            if let Some(previous) = environments.iter().find(|e| &e.name == from) {
                return Ok(RolledBack {
                    live: live.clone(),
                    previous: previous.clone(),
                    changed: false,
                    summary: format!(
                        "production is already back on `{}` (rolled back from `{from}`); nothing changed",
                        live.name
                    ),
                });
            }
        }
    }
    let target = rollback_target(
        &live,
        tags.get(TAG_PREVIOUS_ENVIRONMENT).map(String::as_str),
        request.to.as_deref(),
        &environments,
    )?
    .clone();
    // Either may be busy for a moment (the swap's own tag change on the old live one, minutes ago):
    // waited out, since a CNAME swap needs both Ready.
    let live = swapper.ready(&live, request.timeout).await?;
    let target = swapper.ready(&target, request.timeout).await?;
    if !target.is_ready() {
        return Err(SwapError::NoRollbackTarget(format!(
            "the previous environment `{}` is still {} after {}s, not Ready; production stays on `{}`",
            target.name,
            target.status,
            request.timeout.as_secs(),
            live.name
        )));
    }
    let mut restored = target.clone();
    let how = match (&request.domain, records) {
        (Some(domain), Some(records)) => {
            // Keep the record type production already has (an alias stays an alias, a CNAME a CNAME).
            let mut domain = domain.clone();
            match records.first().map(|r| &r.pointer) {
                Some(Pointer::Cname { ttl, .. }) => {
                    domain.record_type = RecordType::Cname;
                    domain.ttl = *ttl;
                }
                Some(Pointer::Alias { .. }) => domain.record_type = RecordType::Alias,
                None => {}
            }
            let domain = &domain;
            let weighted = records.iter().any(|r| r.weight.is_some());
            let desired = if weighted {
                weighted_records(domain, &live, &target, 100)?
            } else {
                vec![simple_record(domain, &target)?]
            };
            swapper
                .point(
                    domain,
                    &desired,
                    &format!("beanswap rollback: {} -> {}", live.name, target.name),
                    request.timeout,
                )
                .await?;
            if weighted {
                format!(
                    "`{}` weighted records: all weight on `{}`",
                    domain.name, target.name
                )
            } else {
                format!("`{}` points at `{}` again", domain.name, target.name)
            }
        }
        _ => {
            let production = request.production_cname.clone().unwrap_or_default();
            restored = swapper
                .swap_cnames(&live, &target, &production, request.timeout)
                .await?;
            format!("CNAME swap: `{}` holds `{production}` again", target.name)
        }
    };
    // Production has moved back; now the tags say so, one change per environment. The restored one's
    // tags are what makes a repeated rollback a no-op, so that change waits out a busy environment.
    swapper.handed_over(&live).await?;
    let restored_env = swapper.ready(&target, request.timeout).await?;
    swapper
        .eb
        .retag(
            &restored_env.arn,
            &[(TAG_RESTORED_FROM, live.name.clone())],
            &[TAG_PREVIOUS_ENVIRONMENT, TAG_OUT_OF_SERVICE_SINCE],
        )
        .await?;
    Ok(RolledBack {
        summary: format!(
            "rolled production back from `{}` to `{}` ({how}); `{}` is out of service since now",
            live.name, target.name, live.name
        ),
        live: restored,
        previous: live,
        changed: true,
    })
}
