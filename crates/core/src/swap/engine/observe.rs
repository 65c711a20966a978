//! What the swap sequence reads before each decision: [`observe`] gathers the [`View`] (environments,
//! the domain's records, tags) and [`live_of`] says which environment serves production in it. No
//! writes here; [`super::run`] performs the steps.

use std::collections::BTreeMap;

use super::{Plan, State, View};
use crate::aws_error::AwsError;
use crate::beanstalk::{event_lines, BeanstalkApi, Environment};
use crate::route53::{Record, Route53Api};
use crate::swap::{serving_environment, share_of, Mode, SwapError};

/// Reads what [`decide`] needs.
pub async fn observe<B: BeanstalkApi, R: Route53Api>(
    eb: &B,
    r53: &R,
    plan: &Plan,
    state: &State,
) -> Result<View, SwapError> {
    let environments = eb.environments(&plan.application).await?;
    let records = match &plan.domain {
        Some(d) => Some(
            r53.records(&d.zone, &d.name)
                .await?
                .into_iter()
                .map(|e| e.record)
                .collect::<Vec<_>>(),
        ),
        None => None,
    };
    let staged = match plan.mode {
        Mode::Rollback => None,
        _ => plan
            .staged
            .as_deref()
            .and_then(|n| environments.iter().find(|e| e.name == n))
            .cloned(),
    };
    let live = live_of(
        plan,
        &environments,
        records.as_deref(),
        staged.as_ref(),
        state,
    )?;
    let staged_tags = match &staged {
        Some(s) => eb.tags(&s.arn).await?,
        None => BTreeMap::new(),
    };
    let live_tags = match (&live, plan.mode) {
        (Some(l), Mode::Rollback) => eb.tags(&l.arn).await?,
        _ => BTreeMap::new(),
    };
    Ok(View {
        environments,
        staged,
        staged_tags,
        live,
        live_tags,
        records,
    })
}

/// The environment serving production. By the CNAME without a domain; with one, by the records: the
/// largest share other than the staged environment's (the staged one when it has all of it); before the
/// domain has any record, the production CNAME's holder.
pub fn live_of(
    plan: &Plan,
    environments: &[Environment],
    records: Option<&[Record]>,
    staged: Option<&Environment>,
    state: &State,
) -> Result<Option<Environment>, SwapError> {
    let by_cname = || {
        plan.production_cname.as_deref().and_then(|p| {
            environments
                .iter()
                .find(|e| !e.is_terminated() && e.holds_cname(p))
                .cloned()
        })
    };
    let (Some(records), Some(domain)) = (records, &plan.domain) else {
        return Ok(by_cname());
    };
    if records.is_empty() {
        return Ok(by_cname());
    }
    // While shifting, the old environment stays "live" until the last step.
    let except = match (&state.shift, staged) {
        (Some(_), _) => None,
        (None, Some(s)) if share_of(records, &s.cname) < 100 => Some(s.cname.as_str()),
        _ => None,
    };
    let serving = serving_environment(records, environments, except).map_err(|target| {
        SwapError::UnknownTarget {
            domain: domain.name.clone(),
            target,
            application: plan.application.clone(),
        }
    })?;
    Ok(serving.cloned())
}

/// [`observe`], its errors kept as AWS errors so transient ones can be told apart.
pub(super) async fn observe_aws<B: BeanstalkApi, R: Route53Api>(
    eb: &B,
    r53: &R,
    plan: &Plan,
    state: &State,
) -> Result<Result<View, SwapError>, crate::aws_error::AwsError> {
    match observe(eb, r53, plan, state).await {
        Err(SwapError::Aws(e)) => Err(e),
        other => Ok(other),
    }
}

/// The staged environment's recent events, for a failure message about its health.
pub async fn latest_events<B: BeanstalkApi>(eb: &B, env: &Environment) -> Result<String, AwsError> {
    eb.events_since(&env.id, None, 20)
        .await
        .map(|e| event_lines(&e, 5))
}
