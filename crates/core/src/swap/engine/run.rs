//! [`run`]: one invocation of the swap sequence: observe, [`decide`], perform, until done, failed or
//! handed over.

use std::time::Duration;

use super::observe::{latest_events, observe_aws};
use super::throttle::{answered, turned_away};
use super::{
    decide, moved_back_report, Plan, Progress, State, Step, View, OUTPUT_VARIABLES, POLL_BAKE,
    POLL_CAPACITY, POLL_OBSERVE,
};
use crate::alarms::AlarmsApi;
use crate::aws_error::{polled, unless_transient, AwsError};
use crate::beanstalk::{poll_delay, BeanstalkApi, Environment, TAG_OUT_OF_SERVICE_SINCE};
use crate::clock::{rfc3339, unix_seconds, Clock};
use crate::route53::{changes_to, Record, Route53Api};
use crate::runner::ActionError;
use crate::swap::bake::{Baking, Reading, MAX_POLL};
use crate::swap::capacity::Raised;
use crate::swap::{
    weighted_records, Domain, Mode, Shift, SwapError, Verify, TAG_PREVIOUS_ENVIRONMENT,
    TAG_RESTORED_FROM,
};
use crate::Outcome;

/// The clients a swap uses.
pub struct Clients<'a, B, R, V, C, A> {
    pub eb: &'a B,
    pub r53: &'a R,
    pub verifier: &'a V,
    pub clock: &'a C,
    /// CloudWatch, for the bake's alarms (called only when the plan names some).
    pub alarms: &'a A,
}

/// One invocation: observe, decide, perform, until done, failed or handed over. `budget` is how long
/// this invocation may keep waiting for busy environments before it hands over.
pub async fn run<B, R, V, C, A>(
    clients: &Clients<'_, B, R, V, C, A>,
    plan: &Plan,
    state: Option<State>,
    budget: Duration,
) -> Result<Outcome<State>, ActionError>
where
    B: BeanstalkApi,
    R: Route53Api,
    V: Verify,
    C: Clock,
    A: AlarmsApi,
{
    let Clients {
        eb,
        r53,
        verifier,
        clock,
        alarms,
    } = clients;
    let began = clock.now();
    let mut state = state.unwrap_or_else(|| State {
        started: unix_seconds(began),
        ..State::default()
    });
    let mut progress = Progress::default();
    let mut attempt = 0u32;
    // Far more than any sequence needs; only a bug could loop forever, and a job must always report.
    // What AWS shows, kept up to date by the steps that know what they changed; `None` when it must be
    // read again. Fewer calls than reading everything before every step (AWS throttles Beanstalk).
    // A poll AWS turned away is not a step: the invocation's budget bounds those, and the plan's
    // timeout bounds a run of them across invocations.
    let mut known: Option<View> = None;
    let mut steps = 0u32;
    loop {
        let observed = match known.take() {
            Some(view) => Ok(Ok(view)),
            None => polled(observe_aws(*eb, *r53, plan, &state).await)?,
        };
        let mut view = match observed {
            Ok(view) => {
                answered(&mut state, POLL_OBSERVE);
                view?
            }
            Err(e) => {
                turned_away(
                    &mut state,
                    POLL_OBSERVE,
                    e,
                    clock.now(),
                    plan,
                    "the swap could not read its environments",
                )?;
                attempt += 1;
                if clock.since(began) + poll_delay(attempt) > budget {
                    return Ok(Outcome::InProgress {
                        summary: "AWS asked us to slow down; looking again shortly".into(),
                        percent: 1,
                        state,
                    });
                }
                clock.sleep(poll_delay(attempt)).await;
                continue;
            }
        };
        let step = decide(plan, &view, &progress, &state, clock.now());
        tracing::debug!(?step, "swap step");
        match step {
            Step::Done {
                summary,
                live,
                previous,
                bake,
            } => {
                return Ok(Outcome::succeeded(summary)
                    .with_variable(OUTPUT_VARIABLES[0], live)
                    .with_variable(OUTPUT_VARIABLES[1], previous)
                    .with_variable(OUTPUT_VARIABLES[2], plan.mode.as_str())
                    .with_variable(OUTPUT_VARIABLES[3], bake))
            }
            Step::ReadCapacity { live, staged } => {
                let read = async {
                    Ok::<_, crate::aws_error::AwsError>((
                        eb.capacity(&live).await?,
                        eb.capacity(&staged).await?,
                    ))
                };
                match polled(read.await).map_err(SwapError::from)? {
                    Ok(sizes) => {
                        answered(&mut state, POLL_CAPACITY);
                        progress.sizes = Some(sizes);
                    }
                    Err(e) => {
                        turned_away(
                            &mut state,
                            POLL_CAPACITY,
                            e,
                            clock.now(),
                            plan,
                            &format!(
                                "the swap could not read the capacity of `{}` and `{}`; nothing was swapped",
                                live.name, staged.name
                            ),
                        )?;
                        attempt += 1;
                        let delay = poll_delay(attempt).min(Duration::from_secs(5));
                        if clock.since(began) + delay > budget {
                            return Ok(Outcome::InProgress {
                                summary: format!(
                                    "reading the capacity of `{}` and `{}`; AWS asked us to slow down, looking again shortly",
                                    live.name, staged.name
                                ),
                                percent: 5,
                                state,
                            });
                        }
                        clock.sleep(delay).await;
                        known = Some(view);
                        continue;
                    }
                }
                known = Some(view);
            }
            Step::RaiseCapacity {
                staged,
                min,
                max,
                configured,
            } => {
                eb.set_size(&staged, min, max)
                    .await
                    .map_err(SwapError::from)?;
                tracing::info!(environment = %staged.name, min, max, "raised for the move");
                state.raised = Some(Raised {
                    environment: staged.name.clone(),
                    min: configured.0,
                    max: configured.1,
                    target: min,
                });
                progress.sizes = None;
                view.update(Environment {
                    status: "Updating".into(),
                    ..staged
                });
                known = Some(view);
            }
            Step::AwaitCapacity { summary } => {
                attempt += 1;
                let delay = poll_delay(attempt).min(Duration::from_secs(10));
                if clock.since(began) + delay > budget {
                    return Ok(Outcome::InProgress {
                        summary,
                        percent: 10,
                        state,
                    });
                }
                clock.sleep(delay).await;
                progress.sizes = None;
                known = None;
            }
            Step::RestoreCapacity { env, min, max } => {
                // Production is settled: a failure here is reported, never a reason to undo the move.
                progress.size_restored =
                    Some(eb.set_size(&env, min, max).await.map_err(|e| e.to_string()));
                known = Some(view);
            }
            Step::StartBake { previous } => {
                let seconds = plan.bake.as_ref().map_or(0, |b| b.duration.as_secs());
                state.baking = Some(Baking {
                    since: unix_seconds(clock.now()),
                    from: previous.clone(),
                    ..Baking::default()
                });
                // Hand over as the bake begins, so CodePipeline's console (and a local run's report)
                // shows that production is baking, and since when: a bake that fits in one invocation
                // would otherwise never be reported. The bake counts from `since`, not from the next
                // invocation.
                return Ok(Outcome::InProgress {
                    summary: format!(
                        "production moved from `{previous}`; baking {seconds} s, back to `{previous}` on a breach"
                    ),
                    percent: 50,
                    state,
                });
            }
            Step::Watch(env) => {
                let Some(bake) = &plan.bake else {
                    return Err(ActionError::failed(
                        "internal: a bake reading without a bake",
                    ));
                };
                let read = async {
                    let figures = eb.enhanced_health(&env.id).await?;
                    let found = if bake.alarms.is_empty() {
                        Vec::new()
                    } else {
                        alarms.alarms(&bake.alarms).await?
                    };
                    Ok::<_, AwsError>((figures, found))
                };
                let (figures, found) = match polled(read.await).map_err(SwapError::from)? {
                    Ok(read) => {
                        answered(&mut state, POLL_BAKE);
                        read
                    }
                    // AWS asked us to slow down: this reading is skipped, the bake's clock goes on, and
                    // the next reading comes after the poll interval. The bake passes only on a
                    // reading taken after its end, so one that AWS throttles to its end is waited out
                    // (bounded by the plan's timeout), never passed unseen.
                    Err(e) => {
                        let what = format!(
                            "the bake of `{}` could not take a reading; production stays on it and `{}` stays in service: watch it, or run `beanswap rollback`",
                            env.name,
                            state.baking.as_ref().map(|b| b.from.as_str()).unwrap_or("the previous environment")
                        );
                        turned_away(&mut state, POLL_BAKE, e, clock.now(), plan, &what)?;
                        if let Some(baking) = state.baking.as_mut() {
                            baking.skipped += 1;
                        }
                        if clock.since(began) + bake.poll > budget {
                            return Ok(Outcome::InProgress {
                                summary: "baking; AWS asked us to slow down, looking again shortly"
                                    .into(),
                                percent: 50,
                                state,
                            });
                        }
                        clock.sleep(bake.poll).await;
                        continue;
                    }
                };
                let reading = Reading {
                    at: clock.now(),
                    figures,
                    alarms: found,
                };
                if let Some(baking) = state.baking.as_mut() {
                    baking.count(&reading);
                }
                tracing::info!(environment = %env.name, figures = %reading.figures.line(), "bake reading");
                progress.reading = Some(reading);
                known = Some(view);
            }
            Step::BakeWait {
                summary,
                percent,
                left,
            } => {
                let poll = plan
                    .bake
                    .as_ref()
                    .map_or(MAX_POLL, |b| b.poll)
                    .min(left)
                    .max(Duration::from_millis(100));
                if clock.since(began) + poll > budget {
                    return Ok(Outcome::InProgress {
                        summary,
                        percent,
                        state,
                    });
                }
                clock.sleep(poll).await;
                progress.reading = None;
                // Look at everything again: health, and whether production is still where it was.
                known = None;
            }
            Step::Fail(message) => return Err(ActionError::failed(message)),
            Step::HandOver { summary, percent } => {
                return Ok(Outcome::InProgress {
                    summary,
                    percent,
                    state,
                })
            }
            Step::AwaitReady { waiting_for } => {
                attempt += 1;
                let delay = poll_delay(attempt).min(Duration::from_secs(5));
                if clock.since(began) + delay > budget {
                    return Ok(Outcome::InProgress {
                        summary: format!(
                            "waiting for {} to be Ready again (busy for a moment: an update or a tag change is being applied)",
                            waiting_for.join(" and ")
                        ),
                        percent: 5,
                        state,
                    });
                }
                clock.sleep(delay).await;
                // Read only the environments waited for, not everything again.
                for name in &waiting_for {
                    let Some(id) = view.named(name).map(|e| e.id.clone()) else {
                        continue;
                    };
                    if let Some(Some(now)) = unless_transient(eb.environment(&id).await)? {
                        view.update(now);
                    }
                }
                known = Some(view);
            }
            Step::Prepare { staged, from } => {
                eb.retag(
                    &staged.arn,
                    &[(TAG_PREVIOUS_ENVIRONMENT, from.clone())],
                    &[TAG_OUT_OF_SERVICE_SINCE],
                )
                .await
                .map_err(SwapError::from)?;
                progress.prepared = true;
                // What was written, and what it does: an environment update (FIDELITY.md).
                view.staged_tags
                    .insert(TAG_PREVIOUS_ENVIRONMENT.to_string(), from);
                view.staged_tags.remove(TAG_OUT_OF_SERVICE_SINCE);
                view.update(Environment {
                    status: "Updating".into(),
                    ..staged
                });
                known = Some(view);
            }
            Step::Unhealthy { message, env } => {
                let events = match latest_events(*eb, &env).await {
                    Ok(events) => events,
                    // The role may not read them: that is what needs fixing first, never skipped.
                    Err(e) if e.class() == crate::aws_error::ErrorClass::PermissionDenied => {
                        let mut error = ActionError::from(e);
                        error.message = format!(
                            "{message}; reading its latest events was refused: {}",
                            error.message
                        );
                        return Err(error);
                    }
                    Err(_) => String::new(),
                };
                let events = if events.is_empty() {
                    events
                } else {
                    format!(". Latest events:\n{events}")
                };
                return Err(ActionError::failed(format!("{message}{events}")));
            }
            Step::SwapCnames { from, to } => {
                let production = match plan.mode {
                    Mode::Rollback => from.cname.clone(),
                    _ => plan
                        .production_cname
                        .clone()
                        .unwrap_or_else(|| from.cname.clone()),
                };
                let now_to =
                    swap_cnames(*eb, *clock, &from, &to, &production, plan.timeout).await?;
                // The two CNAMEs changed places; nothing else did.
                view.update(Environment {
                    cname: to.cname.clone(),
                    ..from.clone()
                });
                view.update(now_to.clone());
                view.live = Some(now_to);
                progress.moved_from = Some(from);
                known = Some(view);
            }
            Step::Point { records, comment } => {
                let Some(domain) = &plan.domain else {
                    return Err(ActionError::failed(
                        "internal: a record change without a domain",
                    ));
                };
                let before = view.records.clone().unwrap_or_default();
                point(*r53, domain, &records, &comment, plan.timeout).await?;
                if progress.before.is_none() {
                    progress.before = Some(before);
                }
                if plan.mode == Mode::Rollback {
                    progress.moved_from = view.live.clone();
                } else if let (Some(live), Some(staged)) = (&view.live, &view.staged) {
                    if live.id != staged.id {
                        progress.moved_from = Some(live.clone());
                    }
                }
            }
            Step::MoveBack {
                from,
                to,
                reason,
                records,
            } => {
                let moved = match (&records, &plan.domain) {
                    (Some(records), Some(domain)) => {
                        let comment = format!("beanswap: back to {}", to.name);
                        point(*r53, domain, records, &comment, plan.timeout).await
                    }
                    _ => {
                        let production = from.cname.clone();
                        swap_cnames(*eb, *clock, &from, &to, &production, plan.timeout)
                            .await
                            .map(|_| ())
                    }
                };
                if let Err(e) = moved {
                    let what = match (plan.mode, &plan.domain) {
                        (Mode::Cname, _) | (_, None) => format!(
                            "Swapping back FAILED ({e}): production is still on `{}`",
                            from.name
                        ),
                        (Mode::Weighted, _) => format!("Shifting the weight back FAILED ({e})"),
                        _ => format!("Restoring the previous records FAILED ({e})"),
                    };
                    return Err(ActionError::failed(format!(
                        "{reason}. {what}; run `beanswap rollback`"
                    )));
                }
                progress.moved_back = Some(moved_back_report(plan, &reason, &from, &to));
            }
            Step::Shift { old, new, percent } => {
                let Some(domain) = &plan.domain else {
                    return Err(ActionError::failed(
                        "internal: a weighted shift without a domain",
                    ));
                };
                let records = weighted_records(domain, &old, &new, percent)?;
                point(
                    *r53,
                    domain,
                    &records,
                    &format!("beanswap weighted: {percent}% on {}", new.name),
                    plan.timeout,
                )
                .await?;
                state.shift = Some(Shift {
                    old: old.name.clone(),
                    new: new.name.clone(),
                    percent,
                    since: unix_seconds(clock.now()),
                });
                progress.shifted = Some(percent);
                progress.verified = None;
                known = Some(view);
            }
            Step::Verify(check) => {
                progress.verified = Some(verifier.verify(&check).await);
                known = Some(view);
            }
            Step::MarkOutOfService(env) => {
                // After the move: nothing that moves production waits on it. Best effort when
                // production was moved back (the move back is what matters).
                let marked = eb
                    .retag(
                        &env.arn,
                        &[(TAG_OUT_OF_SERVICE_SINCE, rfc3339(clock.now()))],
                        &[],
                    )
                    .await;
                match marked {
                    Ok(()) => {}
                    Err(e) if progress.moved_back.is_some() => {
                        tracing::warn!(error = %e, environment = %env.name, "could not mark the environment moved away from as out of service");
                    }
                    Err(e) => return Err(SwapError::from(e).into()),
                }
                progress.marked = true;
                known = Some(view);
            }
            Step::TagRestored { env, from } => {
                eb.retag(
                    &env.arn,
                    &[(TAG_RESTORED_FROM, from)],
                    &[TAG_PREVIOUS_ENVIRONMENT, TAG_OUT_OF_SERVICE_SINCE],
                )
                .await
                .map_err(SwapError::from)?;
                progress.restored_tagged = true;
                known = Some(view);
            }
        }
        // Far more than any sequence needs; only a bug could loop forever, and a job must always report.
        steps += 1;
        if steps >= 200 {
            return Err(ActionError::failed(
                "internal: the swap sequence did not settle within 200 steps; nothing more was changed",
            ));
        }
    }
}

/// SwapEnvironmentCNAMEs, then polls until DescribeEnvironments shows `production` on `to`.
async fn swap_cnames<B: BeanstalkApi, C: Clock>(
    eb: &B,
    clock: &C,
    from: &Environment,
    to: &Environment,
    production: &str,
    timeout: Duration,
) -> Result<Environment, SwapError> {
    eb.swap_cnames(&from.id, &to.id).await?;
    let started = clock.now();
    let mut attempt = 0;
    loop {
        let now = unless_transient(eb.environment(&to.id).await)?;
        if let Some(env) = now.flatten().filter(|e| e.holds_cname(production)) {
            return Ok(env);
        }
        if clock.since(started) >= timeout {
            let holder = eb
                .environments(&to.application)
                .await?
                .into_iter()
                .find(|e| e.holds_cname(production))
                .map(|e| e.name)
                .unwrap_or_else(|| "no environment".into());
            return Err(SwapError::SwapNotVisible {
                production: production.to_string(),
                holder,
                seconds: timeout.as_secs(),
            });
        }
        clock
            .sleep(poll_delay(attempt).min(Duration::from_secs(5)))
            .await;
        attempt += 1;
    }
}

/// Makes the domain's records exactly `desired` in one batch and waits for INSYNC.
async fn point<R: Route53Api>(
    r53: &R,
    domain: &Domain,
    desired: &[Record],
    comment: &str,
    timeout: Duration,
) -> Result<(), SwapError> {
    let existing = r53.records(&domain.zone, &domain.name).await?;
    let planned = changes_to(&existing, desired);
    let change = r53
        .apply(&domain.zone, &existing, &planned, comment)
        .await?;
    if !r53.wait_in_sync(&change, timeout).await? {
        return Err(SwapError::NotInSync {
            change,
            domain: domain.name.clone(),
            seconds: timeout.as_secs(),
        });
    }
    Ok(())
}
