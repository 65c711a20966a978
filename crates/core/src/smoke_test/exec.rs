//! smoke-test against the environment: runs rounds of checks through [`Checker`], asks the decisions in
//! [`super`] what each means, waits when they say so, and returns the outcome. Used by the smoke-test
//! Lambda; [`run_with`] takes the HTTP side and the clock as parameters, so the sequence is tested
//! against scripted rounds and a clock that never sleeps.

use std::future::Future;

use tracing::info;

use super::{after_attempt, next_round, verdict, Attempt, Budget, Plan, WarmingUp};
use crate::clock::{Clock, SystemClock};
use crate::http_check::{eval, Checker, HttpCheckError, Round};
use crate::runner::ActionError;
use crate::Outcome;

/// Runs one round of every check: [`Checker`] over HTTP.
pub trait Probe: Sync {
    /// Every check once; `number` is the round's (1-based).
    fn round(&self, number: u32) -> impl Future<Output = Round> + Send;
}

impl Probe for Checker {
    fn round(&self, number: u32) -> impl Future<Output = Round> + Send {
        Checker::round(self, number)
    }
}

/// One invocation of the smoke-test action: builds the HTTP client for `plan` and runs [`run_with`].
pub async fn run(plan: &Plan, state: Option<WarmingUp>) -> Result<Outcome<WarmingUp>, ActionError> {
    let clock = SystemClock;
    let checker = Checker::new(
        &plan.base,
        &plan.checks,
        plan.version.as_ref(),
        &plan.options,
    )
    .map_err(start_error)?;
    let staged = run_with(&checker, &clock, plan, state).await;
    match (&staged, plan.live.as_ref()) {
        (Outcome::Succeeded { .. }, Some(live)) => match &live.base {
            Some(base) => {
                let live_checker =
                    Checker::new(base, &live.checks, None, &plan.options).map_err(start_error)?;
                Ok(check_live(&live_checker, live, staged).await)
            }
            None => Ok(staged),
        },
        _ => Ok(staged),
    }
}

/// The version in production, once the staged environment passed: one round of the checks against
/// it (it serves production, so it must answer now: no warm-up), judged by [`super::live_verdict`].
pub async fn check_live(
    probe: &impl Probe,
    live: &super::Live,
    staged: Outcome<WarmingUp>,
) -> Outcome<WarmingUp> {
    let round = probe.round(1).await;
    info!(table = %eval::summary_table(std::slice::from_ref(&round)), "live environment round");
    super::live_verdict(live, staged, &round)
}

/// Warm-up attempts (round 1 until the environment answers, or this invocation hands over), then the
/// other rounds; every way out is an [`Outcome`].
pub async fn run_with(
    probe: &impl Probe,
    clock: &impl Clock,
    plan: &Plan,
    state: Option<WarmingUp>,
) -> Outcome<WarmingUp> {
    let began = clock.now();
    let mut warm = state.unwrap_or_else(|| WarmingUp::starting(clock.now()));
    let mut budget = Budget::new(&plan.warmup);
    let first = loop {
        let round = probe.round(1).await;
        warm.attempts += 1;
        match after_attempt(plan, &warm, budget, &round, clock.now(), clock.since(began)) {
            Attempt::Answered => break round,
            Attempt::Retry { pause, budget: b } => {
                budget = b;
                clock.sleep(pause).await;
            }
            Attempt::Report(outcome) => {
                if let Outcome::InProgress { summary, .. } = &outcome {
                    info!(attempts = warm.attempts, %summary, "environment not answering yet");
                }
                return outcome;
            }
        }
    };
    let mut rounds = vec![first];
    while let Some(number) = next_round(plan, &rounds) {
        rounds.push(probe.round(number).await);
    }
    info!(table = %eval::summary_table(&rounds), "smoke test rounds");
    verdict(plan, &warm, &rounds, clock.now(), clock.since(began))
}

/// Why the checks could not start: a field no validation caught is the pipeline's mistake; a client
/// that cannot be built is the function's.
fn start_error(e: HttpCheckError) -> ActionError {
    match e {
        HttpCheckError::Field { field, reason } => {
            ActionError::config(format!("UserParameters field `{field}`: {reason}"))
        }
        HttpCheckError::Client(reason) => {
            ActionError::failed(format!("the smoke test could not start: {reason}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::http_check::{CheckResult, Observed, Options, Transport, TransportKind};
    use crate::smoke_test::Warmup;
    use crate::FailureKind;

    /// Rounds as scripted: each a list of statuses (or `None`: refused connection), one per check.
    struct Script {
        rounds: Mutex<VecDeque<Vec<Option<u16>>>>,
        asked: Mutex<Vec<u32>>,
    }

    impl Script {
        fn new(rounds: &[&[Option<u16>]]) -> Self {
            Script {
                rounds: Mutex::new(rounds.iter().map(|r| r.to_vec()).collect()),
                asked: Mutex::new(vec![]),
            }
        }
        fn asked(&self) -> Vec<u32> {
            self.asked.lock().unwrap().clone()
        }
    }

    fn result(i: usize, status: Option<u16>) -> CheckResult {
        let name = format!("GET /{i}");
        CheckResult {
            url: format!("http://h.example/{i}"),
            method: "GET".into(),
            latency: Duration::from_millis(3),
            response: match status {
                Some(s) => Ok(Observed {
                    status: s,
                    headers: vec![],
                    body: String::new(),
                    body_truncated: false,
                    final_url: format!("http://h.example/{i}"),
                    unfollowed_redirect: None,
                }),
                None => Err(Transport {
                    kind: TransportKind::Connect,
                    message: "Connection refused".into(),
                }),
            },
            problems: match status {
                Some(s) if (200..300).contains(&s) => vec![],
                Some(s) => vec![format!("status {s}, expected 2xx")],
                None => vec!["could not connect: Connection refused".into()],
            },
            not_answering: matches!(status, None | Some(502..=504)),
            name,
        }
    }

    impl Probe for Script {
        async fn round(&self, number: u32) -> Round {
            self.asked.lock().unwrap().push(number);
            let statuses = self
                .rounds
                .lock()
                .unwrap()
                .pop_front()
                .expect("a round more than the script has");
            Round {
                number,
                results: statuses
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| result(i, s))
                    .collect(),
            }
        }
    }

    use crate::clock::FakeClock;
    use std::time::{Duration, SystemTime};

    fn plan(rounds: u32, window: u64, retries: u32, backoff_ms: u64) -> Plan {
        Plan {
            base: url::Url::parse("http://h.example/").unwrap(),
            checks: vec![],
            version: None,
            rounds,
            warmup: Warmup {
                window: Duration::from_secs(window),
                retries,
                backoff: Duration::from_millis(backoff_ms),
            },
            options: Options::default(),
            live: None,
        }
    }

    const T0: Duration = Duration::from_secs(1_700_000_000);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + T0
    }

    /// Warming up since `t0()`, `attempts` made.
    fn warm(attempts: u32) -> WarmingUp {
        WarmingUp {
            since: t0(),
            attempts,
        }
    }

    const OK: Option<u16> = Some(200);
    const REFUSED: Option<u16> = None;
    const GATEWAY: Option<u16> = Some(503);

    #[tokio::test]
    async fn a_warm_up_retries_with_a_doubling_pause_then_runs_every_round() {
        let script = Script::new(&[&[REFUSED], &[GATEWAY], &[OK], &[OK], &[OK]]);
        let clock = FakeClock::at(t0());
        let outcome = run_with(&script, &clock, &plan(3, 600, 3, 2000), None).await;
        assert_eq!(script.asked(), [1, 1, 1, 2, 3]);
        assert_eq!(
            clock.slept(),
            [Duration::from_secs(2), Duration::from_secs(4)]
        );
        let Outcome::Succeeded { variables, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            variables["Summary"].starts_with("smoke test passed: 1 checks x 3 rounds against http://h.example/ in 6000 ms; it answered after 2 warm-up attempts over 6 s"),
            "{variables:?}"
        );
    }

    #[tokio::test]
    async fn an_invocation_hands_over_when_its_retries_are_spent_and_the_next_carries_on() {
        let script = Script::new(&[&[REFUSED], &[REFUSED], &[REFUSED], &[OK]]);
        let clock = FakeClock::at(t0());
        let p = plan(1, 600, 2, 1000);
        let outcome = run_with(&script, &clock, &p, None).await;
        let Outcome::InProgress { state, percent, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(state, warm(3));
        assert_eq!(percent, 0);
        assert_eq!(
            clock.slept(),
            [Duration::from_secs(1), Duration::from_secs(2)]
        );

        // CodePipeline invokes again a while later with the token.
        let later = FakeClock::at(t0() + Duration::from_secs(30));
        let outcome = run_with(&script, &later, &p, Some(state)).await;
        let Outcome::Succeeded { variables, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            variables["Summary"].contains("; it answered after 3 warm-up attempts over 30 s"),
            "{variables:?}"
        );
        assert_eq!(script.asked(), [1, 1, 1, 1]);
    }

    #[tokio::test]
    async fn after_the_window_not_answering_is_a_failure() {
        let script = Script::new(&[&[REFUSED]]);
        let clock = FakeClock::at(t0() + Duration::from_secs(601));
        let state = warm(9);
        let outcome = run_with(&script, &clock, &plan(1, 600, 3, 2000), Some(state)).await;
        let Outcome::Failed { kind, message } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(kind, FailureKind::JobFailed);
        assert!(
            message.starts_with("the environment at http://h.example/ did not answer within the warm-up window of 600 s (10 attempts over 601 s)"),
            "{message}"
        );
        assert!(clock.slept().is_empty());
    }

    #[tokio::test]
    async fn the_rounds_stop_at_the_first_that_fails() {
        let script = Script::new(&[&[OK, OK], &[OK, Some(500)], &[OK, OK]]);
        let clock = FakeClock::at(t0());
        let outcome = run_with(&script, &clock, &plan(3, 600, 3, 2000), None).await;
        assert_eq!(script.asked(), [1, 2]);
        let Outcome::Failed { message, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            message.starts_with(
                "smoke test failed in round 2 of 3 against http://h.example/ (rounds 1 to 1 passed"
            ),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_app_error_is_judged_at_once_without_a_warm_up() {
        let script = Script::new(&[&[Some(500)]]);
        let clock = FakeClock::at(t0());
        let outcome = run_with(&script, &clock, &plan(3, 600, 3, 2000), None).await;
        assert_eq!(script.asked(), [1]);
        assert!(clock.slept().is_empty());
        assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
    }

    fn live(snapshot: Option<&str>) -> crate::smoke_test::Live {
        crate::smoke_test::Live {
            base: Some(url::Url::parse("http://shop-prod.example/").unwrap()),
            checks: vec![],
            migration: Some("v2".into()),
            snapshot: snapshot.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn the_version_in_production_is_checked_against_the_migrated_database() {
        let clock = FakeClock::at(t0());
        let p = plan(1, 600, 3, 2000);
        // The staged environment passes, then the live one fails: the pipeline stops, naming the
        // migration and the snapshot.
        let staged = run_with(&Script::new(&[&[OK]]), &clock, &p, None).await;
        let live_probe = Script::new(&[&[Some(500)]]);
        let outcome = check_live(&live_probe, &live(Some("beanswap-shop-1a2b3c4d")), staged).await;
        let Outcome::Failed { kind, message } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(kind, FailureKind::JobFailed);
        assert!(message.starts_with("the migration broke the version in production: http://shop-prod.example/ (the live environment, still on the old version) fails the smoke test against the database as the migrations of v2 left it"), "{message}");
        assert!(
            message.contains("before the approval and the swap"),
            "{message}"
        );
        assert!(
            message.contains("restore the database from snapshot beanswap-shop-1a2b3c4d"),
            "{message}"
        );
        assert!(
            message.contains("beanswap restore --snapshot beanswap-shop-1a2b3c4d"),
            "{message}"
        );
        assert_eq!(
            live_probe.asked(),
            [1],
            "production gets one round, no warm-up"
        );

        // Both pass: the summary says the live one passed too.
        let staged = run_with(&Script::new(&[&[OK]]), &clock, &p, None).await;
        let outcome = check_live(&Script::new(&[&[OK]]), &live(None), staged).await;
        let Outcome::Succeeded { variables, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            variables["Summary"].contains(
                "the version in production passed the same checks at http://shop-prod.example/"
            ),
            "{variables:?}"
        );
        let first_line = variables["Summary"].lines().next().unwrap().to_string();
        assert!(
            first_line
                .ends_with("; the version in production passed them too, on the migrated database"),
            "{first_line}"
        );

        // First deployment: nothing else serves production.
        let staged = run_with(&Script::new(&[&[OK]]), &clock, &p, None).await;
        let mut first = live(None);
        first.base = None;
        let outcome = crate::smoke_test::live_verdict(
            &first,
            staged,
            &crate::http_check::Round {
                number: 1,
                results: vec![],
            },
        );
        assert!(matches!(outcome, Outcome::Succeeded { .. }));
    }

    #[test]
    fn checks_that_cannot_start_are_named() {
        let cases = [
            (
                HttpCheckError::Field {
                    field: "checks[0].path".into(),
                    reason: "bad".into(),
                },
                FailureKind::ConfigurationError,
                "UserParameters field `checks[0].path`: bad",
            ),
            (
                HttpCheckError::Client("no TLS".into()),
                FailureKind::JobFailed,
                "the smoke test could not start: no TLS",
            ),
        ];
        for (error, kind, message) in cases {
            let e = start_error(error);
            assert_eq!((e.kind, e.message.as_str()), (kind, message));
        }
    }
}
