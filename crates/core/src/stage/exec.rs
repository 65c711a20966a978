//! stage's I/O half: one invocation begins (finds production, creates or adopts the environment) or
//! resumes (polls with backoff, streams events) and asks [`assess`] what each poll means.
//!
//! The sequence runs over [`BeanstalkApi`] on an injected [`Clock`] ([`run_on`]; [`run`] is it with
//! the SDK's client and the system clock), so it is tested on the in-memory fakes (`sequence_tests.rs`).

use super::*;
use crate::aws_error::{AwsError, ErrorClass};
use crate::beanstalk::{LaunchFrom, NewEnvironment};
use crate::clock::Clock;

/// One invocation of the stage action: begins (finds production, creates or adopts the environment)
/// when nothing has begun yet, then polls until a verdict or the poll budget is spent.
///
/// Transient AWS trouble (throttling, AWS unavailable) is never a verdict while staging can wait: a
/// begin that meets it hands over with a token that begins again (begin is idempotent: it adopts what
/// an earlier attempt created), and a poll that meets it is skipped with backoff. Only the staging
/// timeout ends the wait.
pub async fn run(
    eb: &Beanstalk,
    r53: &crate::route53::Route53,
    plan: &Plan,
    state: Option<State>,
) -> Result<Outcome<State>, ActionError> {
    run_on(eb, r53, plan, state, &crate::clock::SystemClock).await
}

/// [`run`] over any [`BeanstalkApi`] and [`Route53Api`], on `clock`.
pub async fn run_on<B: BeanstalkApi, R: Route53Api, C: Clock>(
    eb: &B,
    r53: &R,
    plan: &Plan,
    state: Option<State>,
    clock: &C,
) -> Result<Outcome<State>, ActionError> {
    let state = match state {
        Some(state) if state.begun() => state,
        earlier => match begin(eb, r53, plan, clock.now()).await {
            Ok(Outcome::InProgress { state, .. }) => state,
            Ok(other) => return Ok(other),
            Err(e) if e.is_transient() => {
                let mut state = earlier.unwrap_or_else(|| State {
                    started_ms: unix_millis(clock.now()),
                    ..State::default()
                });
                let elapsed = clock.since(from_unix_millis(state.started_ms));
                if elapsed >= plan.timeout {
                    return Err(ActionError::new(
                        e.kind,
                        format!(
                            "Staging version {} could not begin within {}: AWS kept refusing for a moment ({})",
                            plan.version_label,
                            humantime::format_duration(Duration::from_secs(plan.timeout.as_secs())),
                            e.message
                        ),
                    ));
                }
                state.attempt += 1;
                state.transient = e.message.clone();
                return Ok(Outcome::InProgress {
                    summary: format!(
                        "Waiting to begin staging version {}: {} (trying again)",
                        plan.version_label, e.message
                    ),
                    percent: 1,
                    state,
                });
            }
            Err(e) => return Err(e),
        },
    };
    resume(eb, plan, state, clock).await
}

/// The environment production is served by: the target of the production record when the plan has
/// one and it exists, else the holder of the production CNAME (or the environment so named).
async fn live_environment<R: Route53Api>(
    r53: &R,
    plan: &Plan,
    environments: &[Environment],
) -> Result<Option<Environment>, ActionError> {
    if let Some(record) = &plan.production_record {
        let records: Vec<_> = r53
            .records(&record.zone, &record.name)
            .await?
            .into_iter()
            .map(|e| e.record)
            .collect();
        if !records.is_empty() {
            return crate::swap::serving_environment(&records, environments, None)
                .map(|live| live.cloned())
                .map_err(|target| {
                    ActionError::config(format!(
                        "the production record {} (zone {}) points at {target}, which is no environment of {}; stage clones the live environment's configuration and will not guess it",
                        record.name, record.zone, plan.application
                    ))
                });
        }
    }
    Ok(
        match (&plan.production_cname, &plan.production_environment) {
            (Some(cname), _) => environments.iter().find(|e| e.holds_cname(cname)).cloned(),
            (None, Some(name)) => environments.iter().find(|e| &e.name == name).cloned(),
            (None, None) => None,
        },
    )
}

/// The first invocation, at `now`: find production, then create (or adopt) the new environment.
pub async fn begin<B: BeanstalkApi, R: Route53Api>(
    eb: &B,
    r53: &R,
    plan: &Plan,
    now: SystemTime,
) -> Result<Outcome<State>, ActionError> {
    let environments = eb.environments(&plan.application).await?;
    let live = live_environment(r53, plan, &environments).await?;
    let started = now;

    // Idempotency: the name is derived from the version, so an earlier invocation's environment is
    // found by name; its tags say whether beanswap made it for this version.
    if let Some(existing) = environments
        .iter()
        .find(|e| e.name == plan.environment_name)
    {
        let tags = eb.tags(&existing.arn).await?;
        let ours = tags.get(TAG_APPLICATION) == Some(&plan.application)
            && tags.get(TAG_VERSION) == Some(&plan.version_label);
        if !ours {
            return Err(ActionError::config(format!(
                "an environment named {} already exists and beanswap did not create it for version {} (tags {TAG_APPLICATION}/{TAG_VERSION} missing or different); choose another `environment_name` template",
                existing.name, plan.version_label
            )));
        }
        // It holds production when an earlier invocation launched the first environment on the
        // production CNAME, or when this version is already live. Either way it is judged like an
        // environment this invocation created: polled until it is Ready with the health gate, or its
        // launch fails (a retry after a crash, or a Retry pressed after a Red verdict, must never
        // pass an environment that is still Launching, or Red, off as staged).
        let holds_production = live.as_ref().is_some_and(|l| l.id == existing.id);
        // The earlier invocation, cloning the live configuration, made the configuration template
        // before CreateEnvironment and may have died before deleting it: remember it so the end of
        // staging deletes it like any clone's (cleanup tolerates its absence).
        let template = (live.is_some() && plan.clone_live && !holds_production)
            .then(|| clone_template_name(plan));
        return Ok(Outcome::InProgress {
            summary: format!(
                "{} for version {} already exists (an earlier invocation created it{}); it is {} / {}, checking it like a new launch",
                existing.name,
                plan.version_label,
                if holds_production { ", and it holds production" } else { "" },
                existing.status,
                existing.health
            ),
            percent: 10,
            state: State {
                env_id: existing.id.clone(),
                env_name: existing.name.clone(),
                live_cname: live.as_ref().map(|l| l.cname.clone()),
            live: live.map(|l| l.name),
                cursor_ms: adopted_cursor(existing, &tags, plan, started),
                started_ms: unix_millis(started),
                attempt: 0,
                template,
                ..State::default()
            },
        });
    }

    // CNAME: the first environment takes the production CNAME itself, so there is nothing to swap;
    // later ones take a free prefix of their own.
    let cname_prefix = match (&live, &plan.production_cname) {
        (None, Some(cname)) if !cname.contains('.') => {
            if !eb.cname_available(cname).await? {
                return Err(ActionError::config(format!(
                    "no environment of {} holds the production CNAME {cname}, yet it is taken (by another application or account?); check `production_cname`",
                    plan.application
                )));
            }
            Some(cname.clone())
        }
        _ => {
            let prefix = plan.environment_name.to_ascii_lowercase();
            eb.cname_available(&prefix).await?.then_some(prefix)
        }
    };

    // Configuration: clone the live one, or the named source for a first deployment.
    let mut template = None;
    let source = match (&live, plan.clone_live, &plan.first_source) {
        (Some(_), true, _) => Source::CloneLive,
        (_, _, Some(source)) => source.clone(),
        (None, _, None) => {
            return Err(ActionError::config(format!(
                "no live environment found for {} (by {}), so this is a first deployment: give `solution_stack`, `platform_arn` or `template_name` to create it",
                plan.application,
                describe_production(plan)
            )))
        }
        (Some(_), false, None) => {
            return Err(ActionError::config(
                "`clone_live` is false but no `solution_stack`, `platform_arn` or `template_name` says what to create instead",
            ))
        }
    };
    let from = match source {
        Source::CloneLive => {
            let Some(live) = &live else {
                return Err(ActionError::failed(
                    "internal: clone without a live environment",
                ));
            };
            let name = clone_template_name(plan);
            let made = eb
                .create_configuration_template(
                    &plan.application,
                    &name,
                    &live.id,
                    &format!(
                        "beanswap: configuration of {} cloned for {}",
                        live.name, plan.environment_name
                    ),
                )
                .await;
            match made {
                Ok(()) => {}
                // A retried first invocation made it already: use it.
                Err(e) if e.message.contains("already exists") => {}
                Err(e) => return Err(e.into()),
            }
            template = Some(name.clone());
            LaunchFrom::Template(name)
        }
        Source::Template(name) => LaunchFrom::Template(name),
        Source::SolutionStack(stack) => LaunchFrom::SolutionStack(stack),
        Source::PlatformArn(arn) => LaunchFrom::PlatformArn(arn),
    };
    let mut tags: BTreeMap<String, String> = plan.tags.clone();
    tags.insert(TAG_APPLICATION.into(), plan.application.clone());
    tags.insert(TAG_VERSION.into(), plan.version_label.clone());
    if let Some(execution) = &plan.pipeline_execution {
        tags.insert(TAG_PIPELINE_EXECUTION.into(), execution.clone());
    }
    let (env_id, cname) = eb
        .create_environment(&NewEnvironment {
            application: plan.application.clone(),
            name: plan.environment_name.clone(),
            version_label: plan.version_label.clone(),
            description: format!("beanswap: version {}", plan.version_label),
            cname_prefix,
            from,
            option_settings: plan
                .option_settings
                .iter()
                .map(|o| (o.namespace.clone(), o.option_name.clone(), o.value.clone()))
                .collect(),
            tags,
        })
        .await?;
    Ok(Outcome::InProgress {
        summary: format!(
            "Creating {} with version {} ({}){}",
            plan.environment_name,
            plan.version_label,
            cname,
            live.as_ref()
                .map(|l| format!(", configuration cloned from {}", l.name))
                .unwrap_or_else(|| " as the first environment, on the production CNAME".into())
        ),
        percent: 5,
        state: State {
            env_id,
            env_name: plan.environment_name.clone(),
            live_cname: live.as_ref().map(|l| l.cname.clone()),
            live: live.map(|l| l.name),
            cursor_ms: unix_millis(started).saturating_sub(1000),
            started_ms: unix_millis(started),
            attempt: 0,
            template,
            ..State::default()
        },
    })
}

/// The configuration template a clone is launched from: one per new environment, deleted once
/// staging ends.
fn clone_template_name(plan: &Plan) -> String {
    format!("beanswap-{}", plan.environment_name)
}

fn describe_production(plan: &Plan) -> String {
    match (&plan.production_cname, &plan.production_environment) {
        (Some(c), _) => format!("CNAME {c}"),
        (None, Some(n)) => format!("environment name {n}"),
        (None, None) => {
            "nothing: neither production_cname nor production_environment is set".into()
        }
    }
}

/// A later invocation: poll with backoff until a verdict or the poll budget is spent.
///
/// Each poll asks for the new events (one call) and reads the environment only when there were some,
/// when [`STATUS_EVERY`] has passed, or at the timeout: half the calls of a tool that reads both every
/// 10 s, and as quick to notice a failure, since [`poll_delay`] never waits longer than such a tool.
pub async fn resume<B: BeanstalkApi, C: Clock>(
    eb: &B,
    plan: &Plan,
    mut state: State,
    clock: &C,
) -> Result<Outcome<State>, ActionError> {
    let started = from_unix_millis(state.started_ms);
    let invocation_began = clock.now();
    let mut seen: Vec<Event> = vec![];
    loop {
        let polled = eb
            .events_since(&state.env_id, Some(from_unix_millis(state.cursor_ms)), 100)
            .await;
        let events: Vec<Event> = skip_transient(polled, &mut state)?.unwrap_or_default();
        if let Some(last) = events.last() {
            state.cursor_ms = unix_millis(last.date) + 1;
        }
        seen.extend(events.iter().cloned());
        let elapsed = clock.since(started);
        let now_ms = unix_millis(clock.now());
        let status_due = !events.is_empty()
            || now_ms.saturating_sub(state.status_checked_ms) >= STATUS_EVERY.as_millis() as u64
            || elapsed >= plan.timeout;
        let read = if status_due {
            let read = skip_transient(eb.environment(&state.env_id).await, &mut state)?;
            if read.is_none() {
                // Skipped: the events that made it due are consumed, so keep it due for the next poll.
                state.status_checked_ms = 0;
            }
            read
        } else {
            None
        };
        if status_due && read.is_none() && elapsed >= plan.timeout {
            return Err(ActionError::new(
                crate::FailureKind::SystemUnavailable,
                format!(
                    "Staging version {}: {} could not be read at the timeout ({}): {}",
                    plan.version_label,
                    state.env_name,
                    humantime::format_duration(Duration::from_secs(plan.timeout.as_secs())),
                    state.transient
                ),
            ));
        }
        if let Some(env) = read {
            let env = env.ok_or_else(|| {
                ActionError::failed(format!(
                    "environment {} ({}) no longer exists",
                    state.env_name, state.env_id
                ))
            })?;
            state.status_checked_ms = now_ms;
            state.status = env.status.to_string();
            state.health = env.health.to_string();
            match assess(&env, &events, plan.health, elapsed, plan.timeout) {
                Verdict::Healthy => {
                    if let Err(e) = cleanup_template(eb, plan, &state).await {
                        let mut error = ActionError::from(e);
                        error.message = format!(
                            "{} is staged and healthy, but deleting the configuration template cloned for it was refused: {}",
                            state.env_name, error.message
                        );
                        return Err(error);
                    }
                    return Ok(succeeded(
                        &env,
                        state.live.as_deref(),
                        state.live_cname.as_deref(),
                    ));
                }
                Verdict::Failed(reason) => {
                    return Err(fail(eb, plan, &state, &env, &reason).await);
                }
                // Beanstalk may announce a step a moment before DescribeEnvironments shows it (the
                // launch's last event before Ready): read the status again within RECHECK even if no
                // further event comes, not only after STATUS_EVERY.
                Verdict::Waiting if !events.is_empty() => {
                    state.status_checked_ms =
                        now_ms.saturating_sub((STATUS_EVERY - RECHECK).as_millis() as u64);
                }
                Verdict::Waiting => {}
            }
        }
        state.attempt += 1;
        let delay = poll_delay(state.attempt);
        if clock.since(invocation_began) + delay > plan.poll_budget {
            let percent =
                (elapsed.as_secs_f64() / plan.timeout.as_secs_f64() * 100.0).clamp(5.0, 95.0) as u8;
            let latest = if seen.is_empty() {
                "no new events".to_string()
            } else {
                event_lines(&seen, 8)
            };
            let trouble = crate::aws_error::waiting_out(&state.transient);
            return Ok(Outcome::InProgress {
                summary: format!(
                    "{} is {} / {} after {}s{trouble}\n{latest}",
                    state.env_name,
                    or_unknown(&state.status),
                    or_unknown(&state.health),
                    elapsed.as_secs()
                ),
                percent,
                state,
            });
        }
        clock.sleep(delay).await;
    }
}

/// [`crate::aws_error::unless_transient`], noting the trouble in the state for the progress summary
/// (and clearing the note once a poll gets through).
fn skip_transient<T>(
    answer: Result<T, crate::aws_error::AwsError>,
    state: &mut State,
) -> Result<Option<T>, ActionError> {
    if let Err(e) = &answer {
        state.transient = crate::outcome::truncate(&e.message, 200);
    }
    let value = crate::aws_error::unless_transient(answer)?;
    if value.is_some() {
        state.transient.clear();
    }
    Ok(value)
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "not read yet"
    } else {
        s
    }
}

/// Deletes the configuration template cloned from the live environment. Best effort for what AWS may
/// answer about the template itself (a template left behind costs nothing, and the name is this
/// version's), but a permission refusal is returned: the role lacks DeleteConfigurationTemplate, and a
/// refusal is never skipped in silence.
async fn cleanup_template<B: BeanstalkApi>(
    eb: &B,
    plan: &Plan,
    state: &State,
) -> Result<(), AwsError> {
    if let Some(template) = &state.template {
        match eb
            .delete_configuration_template(&plan.application, template)
            .await
        {
            Ok(()) => {}
            // Already gone (an adopted environment's invocation deleted it, or never made it).
            Err(e) if e.message.contains("No Configuration Template") => {
                tracing::debug!(template = %template, "the cloned configuration template is already gone");
            }
            Err(e) => {
                if e.class() == ErrorClass::PermissionDenied {
                    return Err(e);
                }
                tracing::warn!(template = %template, error = %e, "could not delete the cloned configuration template");
            }
        }
    }
    Ok(())
}

/// How long a failure waits for Beanstalk to compile the tail logs.
const TAIL_LOGS_WAIT: Duration = Duration::from_secs(30);
/// The tail logs' share of CodePipeline's 5000-character failure message.
const TAIL_LOGS_CHARS: usize = 2400;

/// The failure message, with the environment's recent events and, when an instance's deployment failed,
/// the lines of its tail logs that say why; terminates it when asked to.
async fn fail<B: BeanstalkApi>(
    eb: &B,
    plan: &Plan,
    state: &State,
    env: &Environment,
    reason: &str,
) -> ActionError {
    let recent = eb
        .events_since(&state.env_id, Some(events_from(state, env)), 100)
        .await
        .map(|events| event_lines(&events, 15))
        .unwrap_or_else(|e| format!("(events unavailable: {e})"));
    // What the instances logged (a failed container command's output, a hook's stderr): asked for
    // only when Beanstalk reported a failed instance deployment, and only while the environment
    // still runs (a terminated one has no instances to tail).
    let instances = if recent.contains("Instance deployment failed") && !env.is_terminated() {
        match eb.tail_logs(&state.env_id, TAIL_LOGS_WAIT).await {
            Ok(logs) => {
                let mut out = String::new();
                let per_instance = TAIL_LOGS_CHARS / logs.len().max(1);
                for (instance, text) in &logs {
                    let lines = crate::tail_logs::relevant(text, per_instance);
                    if !lines.is_empty() {
                        out.push_str(&format!("\nFrom the tail logs of {instance}:\n{lines}"));
                    }
                }
                out
            }
            Err(e) => format!("\n(tail logs unavailable: {e})"),
        }
    } else {
        String::new()
    };
    let what_now = match plan.on_failure {
        // Rule 6: whatever on_failure says, stage never terminates what serves production (this
        // version already live and Red, or a first environment launched on the production CNAME),
        // nor suggests terminating it.
        _ if serves_production(plan, state, env) && !env.is_terminated() => format!(
            "{} holds the production CNAME, so stage leaves it running whatever on_failure says; deploy a version that fixes it",
            env.name
        ),
        OnFailure::Keep => format!(
            "{} was kept for inspection (on_failure: keep); terminate it when done, e.g. `aws elasticbeanstalk terminate-environment --environment-id {}`",
            env.name, env.id
        ),
        OnFailure::Terminate if env.is_terminated() => format!("{} is already terminated", env.name),
        OnFailure::Terminate => match eb.force_terminate(&env.id).await {
            Ok(()) => format!("{} is being terminated (on_failure: terminate)", env.name),
            Err(e) => format!("terminating {} failed too: {e}", env.name),
        },
    };
    let cleanup = match cleanup_template(eb, plan, state).await {
        Ok(()) => String::new(),
        Err(e) => format!(" Deleting the cloned configuration template was refused too: {e}."),
    };
    let production = if serves_production(plan, state, env) {
        format!(
            "Production is {} itself, running this failing version",
            env.name
        )
    } else {
        format!(
            "Production is unchanged{}",
            state
                .live
                .as_deref()
                .map(|l| format!(" ({l} still serves it)"))
                .unwrap_or_default()
        )
    };
    ActionError::failed(format!(
        "Staging version {} failed: {reason}. {what_now}. {production}.{cleanup}{instances}\nRecent events of {}:\n{recent}",
        plan.version_label,
        env.name
    ))
}

/// Whether `env` serves production: it was the live environment when staging began (the version is
/// already live), or it holds the production CNAME now (a first environment launched on it), or it
/// is the production environment named in the plan.
fn serves_production(plan: &Plan, state: &State, env: &Environment) -> bool {
    state.live.as_deref() == Some(env.name.as_str())
        || plan
            .production_cname
            .as_deref()
            .is_some_and(|cname| env.holds_cname(cname))
        || plan.production_environment.as_deref() == Some(env.name.as_str())
}

/// Where a failure's "Recent events" begin: this staging's start, or the environment's launch when
/// that was earlier (an adopted environment: a retry's own start would leave out the events that
/// made the verdict, and a Retry pressed after a failure would show none of them).
fn events_from(state: &State, env: &Environment) -> SystemTime {
    let mut from_ms = state.started_ms;
    if let Some(created) = env.created {
        from_ms = from_ms.min(unix_millis(created));
    }
    from_unix_millis(from_ms.saturating_sub(1000))
}
