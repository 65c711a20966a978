//! The decisions, table style: every way a warm-up attempt, the choice of the next round and the verdict
//! can go.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use super::*;
use crate::http_check::{CheckResult, Observed, Transport, TransportKind};

/// How one check of a scripted round went.
#[derive(Debug, Clone, Copy)]
enum S {
    Ok,
    Http(u16),
    Refused,
    Timeout,
    Tls,
}

use S::{Http, Refused, Timeout, Tls};

/// A check result as the engine makes it: a gateway status or a refused connection is "not answering".
fn result(i: usize, s: S) -> CheckResult {
    let url = format!("http://h.example/{i}");
    let observed = |status: u16| Observed {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: if status < 300 { "ok" } else { "down" }.into(),
        body_truncated: false,
        final_url: url.clone(),
        unfollowed_redirect: None,
    };
    let transport = |kind: TransportKind, message: &str| Transport {
        kind,
        message: message.into(),
    };
    let response = match s {
        S::Ok => Ok(observed(200)),
        Http(status) => Ok(observed(status)),
        Refused => Err(transport(TransportKind::Connect, "Connection refused")),
        Timeout => Err(transport(
            TransportKind::Timeout,
            "no complete answer within the request timeout of 10000 ms",
        )),
        Tls => Err(transport(TransportKind::Tls, "invalid peer certificate")),
    };
    let problems = match &response {
        Ok(o) if o.status < 300 => vec![],
        Ok(o) => vec![format!("status {}, expected 2xx", o.status)],
        Err(t) => vec![t.short()],
    };
    CheckResult {
        name: format!("GET /{i}"),
        method: "GET".into(),
        url,
        latency: Duration::from_millis(7),
        response,
        problems,
        not_answering: matches!(s, Refused | Http(502..=504)),
    }
}

fn round(number: u32, checks: &[S]) -> Round {
    Round {
        number,
        results: checks
            .iter()
            .enumerate()
            .map(|(i, s)| result(i, *s))
            .collect(),
    }
}

/// Rounds numbered from 1.
fn rounds(each: &[&[S]]) -> Vec<Round> {
    each.iter()
        .zip(1..)
        .map(|(checks, n)| round(n, checks))
        .collect()
}

fn plan(rounds: u32, window_s: u64) -> Plan {
    Plan {
        base: Url::parse("http://h.example/").unwrap(),
        checks: CheckSpec::default_set(),
        version: None,
        rounds,
        warmup: Warmup {
            window: Duration::from_secs(window_s),
            retries: 3,
            backoff: Duration::from_secs(2),
        },
        live: None,
        options: Options::default(),
    }
}

fn since() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn warm(attempts: u32) -> WarmingUp {
    WarmingUp {
        since: since(),
        attempts,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What a case expects of [`after_attempt`].
#[derive(Debug)]
enum Then {
    Answered,
    /// Pause, then the budget left: retries, next backoff.
    Retry(Duration, u32, Duration),
    /// A continuation token: percent, state's attempts, summary parts.
    Waiting(u8, u32, &'static [&'static str]),
    /// A JobFailed message's parts.
    Fails(&'static [&'static str]),
}

struct AttemptCase {
    what: &'static str,
    round: &'static [S],
    /// Attempts so far, this one included.
    attempts: u32,
    /// Since the first attempt.
    waited: Duration,
    /// Retries left and the next backoff.
    budget: (u32, Duration),
    /// This invocation's time so far.
    spent: Duration,
    window: u64,
    then: Then,
}

#[test]
fn a_warm_up_attempt_is_judged_retried_handed_over_or_failed() {
    let cases = [
        AttemptCase {
            what: "every check passed",
            round: &[S::Ok, S::Ok],
            attempts: 1,
            waited: secs(0),
            budget: (3, secs(2)),
            spent: ms(20),
            window: 600,
            then: Then::Answered,
        },
        AttemptCase {
            what: "a 500 is the app speaking: judged at once",
            round: &[S::Ok, Http(500)],
            attempts: 1,
            waited: secs(0),
            budget: (3, secs(2)),
            spent: ms(20),
            window: 600,
            then: Then::Answered,
        },
        AttemptCase {
            what: "a request timeout is a verdict, not a warm-up",
            round: &[Timeout],
            attempts: 1,
            waited: secs(0),
            budget: (3, secs(2)),
            spent: secs(10),
            window: 600,
            then: Then::Answered,
        },
        AttemptCase {
            what: "a TLS failure is a verdict",
            round: &[Tls],
            attempts: 1,
            waited: secs(0),
            budget: (3, secs(2)),
            spent: ms(5),
            window: 600,
            then: Then::Answered,
        },
        AttemptCase {
            what: "one check refused and another 500: the app answers, wrongly",
            round: &[Refused, Http(500)],
            attempts: 1,
            waited: secs(0),
            budget: (3, secs(2)),
            spent: ms(5),
            window: 600,
            then: Then::Answered,
        },
        AttemptCase {
            what: "refused: retried after the backoff, which doubles",
            round: &[Refused],
            attempts: 1,
            waited: secs(0),
            budget: (3, secs(2)),
            spent: ms(5),
            window: 600,
            then: Then::Retry(secs(2), 2, secs(4)),
        },
        AttemptCase {
            what: "a load balancer's 503 everywhere: retried",
            round: &[Http(503), Http(502)],
            attempts: 2,
            waited: secs(2),
            budget: (2, secs(4)),
            spent: secs(2),
            window: 600,
            then: Then::Retry(secs(4), 1, secs(8)),
        },
        AttemptCase {
            what: "the backoff doubles up to 15 s",
            round: &[Refused],
            attempts: 4,
            waited: secs(14),
            budget: (1, secs(10)),
            spent: secs(14),
            window: 600,
            then: Then::Retry(secs(10), 0, secs(15)),
        },
        AttemptCase {
            what: "a first backoff above 15 s is used once, then the cap",
            round: &[Refused],
            attempts: 1,
            waited: secs(0),
            budget: (3, secs(60)),
            spent: secs(0),
            window: 600,
            then: Then::Retry(secs(60), 2, secs(15)),
        },
        AttemptCase {
            what: "the pause ends at the window's end",
            round: &[Refused],
            attempts: 40,
            waited: ms(599_500),
            budget: (3, secs(2)),
            spent: secs(1),
            window: 600,
            then: Then::Retry(ms(500), 2, secs(4)),
        },
        AttemptCase {
            what: "no retries left: a continuation token carrying the attempts",
            round: &[Refused],
            attempts: 4,
            waited: secs(300),
            budget: (0, secs(15)),
            spent: secs(14),
            window: 600,
            then: Then::Waiting(
                50,
                4,
                &[
                    "waiting for http://h.example/ to answer: attempt 4 after 300 s of a 600 s warm-up window; ",
                    "GET http://h.example/0: could not connect: Connection refused",
                ],
            ),
        },
        AttemptCase {
            what: "the pause would pass the invocation's 60 s: hand over instead",
            round: &[Http(504)],
            attempts: 3,
            waited: secs(50),
            budget: (2, secs(15)),
            spent: secs(50),
            window: 600,
            then: Then::Waiting(8, 3, &["GET http://h.example/0: status 504, expected 2xx"]),
        },
        AttemptCase {
            what: "a pause that ends exactly at 60 s is still taken",
            round: &[Refused],
            attempts: 3,
            waited: secs(45),
            budget: (2, secs(15)),
            spent: secs(45),
            window: 600,
            then: Then::Retry(secs(15), 1, secs(15)),
        },
        AttemptCase {
            what: "the window has passed: the last attempt is the failure",
            round: &[Refused, S::Ok],
            attempts: 12,
            waited: secs(601),
            budget: (3, secs(2)),
            spent: secs(1),
            window: 600,
            then: Then::Fails(&[
                "the environment at http://h.example/ did not answer within the warm-up window of 600 s (12 attempts over 601 s); the last attempt:\ncheck `GET /0` failed: could not connect: Connection refused\n",
                "\nchecks:\ncheck   passed",
                "GET /0  0/1     no connection",
                "GET /1  1/1     200",
            ]),
        },
        AttemptCase {
            what: "exactly at the window's end is past it",
            round: &[Http(503)],
            attempts: 5,
            waited: secs(600),
            budget: (3, secs(2)),
            spent: secs(0),
            window: 600,
            then: Then::Fails(&["(5 attempts over 600 s)", "status 503, expected 2xx"]),
        },
        AttemptCase {
            what: "a window of 0: no waiting at all",
            round: &[Refused],
            attempts: 1,
            waited: secs(0),
            budget: (3, secs(2)),
            spent: ms(3),
            window: 0,
            then: Then::Fails(&["did not answer within the warm-up window of 0 s (1 attempts over 0 s)"]),
        },
    ];
    for case in cases {
        let what = case.what;
        let plan = plan(1, case.window);
        let warm = warm(case.attempts);
        let budget = Budget {
            retries_left: case.budget.0,
            backoff: case.budget.1,
        };
        let got = after_attempt(
            &plan,
            &warm,
            budget,
            &round(1, case.round),
            since() + case.waited,
            case.spent,
        );
        match (case.then, got) {
            (Then::Answered, Attempt::Answered) => {}
            (Then::Retry(pause, retries_left, backoff), got) => assert_eq!(
                got,
                Attempt::Retry {
                    pause,
                    budget: Budget {
                        retries_left,
                        backoff
                    }
                },
                "{what}"
            ),
            (
                Then::Waiting(percent, attempts, parts),
                Attempt::Report(Outcome::InProgress {
                    state,
                    summary,
                    percent: got,
                }),
            ) => {
                assert_eq!((got, state.clone()), (percent, warm.clone()), "{what}");
                assert_eq!(state.attempts, attempts, "{what}");
                for part in parts {
                    assert!(summary.contains(part), "{what}: {part:?} in {summary:?}");
                }
            }
            (
                Then::Fails(parts),
                Attempt::Report(Outcome::Failed {
                    kind: FailureKind::JobFailed,
                    message,
                }),
            ) => {
                for part in parts {
                    assert!(message.contains(part), "{what}: {part:?} in:\n{message}");
                }
            }
            (then, got) => panic!("{what}: expected {then:?}, got {got:?}"),
        }
    }
}

#[test]
fn a_clock_that_went_back_counts_as_no_time_waited() {
    let got = after_attempt(
        &plan(1, 600),
        &warm(2),
        Budget {
            retries_left: 1,
            backoff: secs(2),
        },
        &round(1, &[Refused]),
        since() - secs(30),
        secs(1),
    );
    assert_eq!(
        got,
        Attempt::Retry {
            pause: secs(2),
            budget: Budget {
                retries_left: 0,
                backoff: secs(4)
            }
        }
    );
}

/// The checks of each round that ran.
type Ran = &'static [&'static [S]];

#[test]
fn rounds_go_on_while_they_pass_up_to_the_number_asked() {
    let cases: &[(u32, Ran, Option<u32>)] = &[
        (3, &[], None),
        (3, &[&[S::Ok]], Some(2)),
        (3, &[&[S::Ok], &[S::Ok]], Some(3)),
        (3, &[&[S::Ok], &[S::Ok], &[S::Ok]], None),
        (3, &[&[Http(500)]], None),
        (3, &[&[S::Ok], &[S::Ok, Timeout]], None),
        (1, &[&[S::Ok]], None),
        (10, &[&[S::Ok] as &[S]; 9], Some(10)),
    ];
    for (asked, ran, next) in cases {
        assert_eq!(
            next_round(&plan(*asked, 600), &rounds(ran)),
            *next,
            "{asked} rounds asked, {} ran",
            ran.len()
        );
    }
}

/// What a case expects of [`verdict`].
enum Verdict {
    /// The summary's start and other parts (the `Summary` variable is the whole summary).
    Passes(&'static str, &'static [&'static str]),
    /// The message's start and other parts.
    Fails(&'static str, &'static [&'static str]),
}

#[test]
fn the_rounds_mean_a_pass_or_a_failure_naming_round_check_and_table() {
    let cases: Vec<(&str, u32, Vec<Round>, u32, Verdict)> = vec![
        (
            "one round, every check passed",
            1,
            rounds(&[&[S::Ok, S::Ok]]),
            1,
            Verdict::Passes(
                "smoke test passed: 2 checks x 1 rounds against http://h.example/ in 1234 ms\ncheck   passed  status  slowest  result\n",
                &["GET /0  1/1     200     7 ms     ok", "GET /1  1/1"],
            ),
        ),
        (
            "three rounds passed after a warm-up",
            3,
            rounds(&[&[S::Ok], &[S::Ok], &[S::Ok]]),
            4,
            Verdict::Passes(
                "smoke test passed: 1 checks x 3 rounds against http://h.example/ in 1234 ms; it answered after 3 warm-up attempts over 42 s\n",
                &["GET /0  3/3     200"],
            ),
        ),
        (
            "a status failure in the only round",
            1,
            rounds(&[&[S::Ok, Http(500)]]),
            1,
            Verdict::Fails(
                "smoke test failed in round 1 of 1 against http://h.example/:\ncheck `GET /1` failed: status 500, expected 2xx\n  request: GET http://h.example/1\n  response: 500 Internal Server Error in 7 ms\n  headers: content-type: text/plain\n  body: down\n\nchecks:\n",
                &["GET /0  1/1     200     7 ms     ok", "GET /1  0/1     500     7 ms     FAIL: status 500, expected 2xx"],
            ),
        ),
        (
            "a failure after passing rounds: some instance differs",
            3,
            rounds(&[&[S::Ok], &[S::Ok], &[Http(500)]]),
            1,
            Verdict::Fails(
                "smoke test failed in round 3 of 3 against http://h.example/ (rounds 1 to 2 passed: some instance behind the load balancer answers differently):\n",
                &["GET /0  2/3     200,500"],
            ),
        ),
        (
            "several checks failing: the first in full, the others by name",
            2,
            rounds(&[&[Http(404), S::Ok, Http(500), Http(401)]]),
            1,
            Verdict::Fails(
                "smoke test failed in round 1 of 2 against http://h.example/:\ncheck `GET /0` failed: status 404, expected 2xx\n",
                &["  also failing in this round: `GET /2`, `GET /3`\n"],
            ),
        ),
        (
            "a request timeout",
            1,
            rounds(&[&[Timeout]]),
            1,
            Verdict::Fails(
                "smoke test failed in round 1 of 1 against http://h.example/:\ncheck `GET /0` failed: no complete answer within the request timeout of 10000 ms\n  request: GET http://h.example/0\n  no response after 7 ms: no complete answer",
                &["GET /0  0/1     timeout"],
            ),
        ),
        (
            "a TLS failure",
            1,
            rounds(&[&[Tls]]),
            1,
            Verdict::Fails(
                "smoke test failed in round 1 of 1 against http://h.example/:\ncheck `GET /0` failed: TLS handshake failed: invalid peer certificate\n",
                &["GET /0  0/1     TLS error"],
            ),
        ),
        (
            "the app answered after a warm-up, wrongly: the warm-up is not mentioned",
            1,
            rounds(&[&[Http(500)]]),
            5,
            Verdict::Fails("smoke test failed in round 1 of 1", &[]),
        ),
        (
            "no round ran",
            1,
            vec![],
            1,
            Verdict::Fails("smoke test against http://h.example/: no round ran", &[]),
        ),
    ];
    for (what, asked, ran, attempts, expected) in cases {
        let got = verdict(
            &plan(asked, 600),
            &warm(attempts),
            &ran,
            since() + secs(42),
            ms(1234),
        );
        match (expected, got) {
            (Verdict::Passes(start, parts), Outcome::Succeeded { summary, variables }) => {
                assert!(summary.starts_with(start), "{what}:\n{summary}");
                for part in parts {
                    assert!(summary.contains(part), "{what}: {part:?} in:\n{summary}");
                }
                let names: Vec<&str> = variables.keys().map(String::as_str).collect();
                assert_eq!(names, OUTPUT_VARIABLES, "{what}");
                assert_eq!(variables["Passed"], "true", "{what}");
                assert_eq!(variables["Summary"], summary, "{what}");
            }
            (
                Verdict::Fails(start, parts),
                Outcome::Failed {
                    kind: FailureKind::JobFailed,
                    message,
                },
            ) => {
                assert!(message.starts_with(start), "{what}:\n{message}");
                for part in parts {
                    assert!(message.contains(part), "{what}: {part:?} in:\n{message}");
                }
                assert!(!message.contains("warm-up"), "{what}: {message}");
                assert!(message.chars().count() <= limits::FAILURE_MESSAGE, "{what}");
            }
            (_, got) => panic!("{what}: {got:?}"),
        }
    }
}

#[test]
fn a_long_summary_is_cut_for_the_console_and_kept_whole_in_the_variable() {
    let many: Vec<S> = vec![S::Ok; 200];
    let Outcome::Succeeded { summary, variables } =
        verdict(&plan(1, 600), &warm(1), &rounds(&[&many]), since(), ms(80))
    else {
        panic!("expected a pass");
    };
    assert_eq!(summary.chars().count(), limits::SUMMARY);
    assert!(summary.ends_with("…[truncated]"), "{summary}");
    assert!(variables["Summary"].contains("GET /199"));
    assert!(variables["Summary"].starts_with(&summary[..200]));
}

#[test]
fn a_long_failure_keeps_the_head_and_whole_rows_within_5000_characters() {
    let many: Vec<S> = vec![Http(500); 200];
    let Outcome::Failed { message, .. } =
        verdict(&plan(1, 600), &warm(1), &rounds(&[&many]), since(), ms(80))
    else {
        panic!("expected a failure");
    };
    assert!(message.chars().count() <= limits::FAILURE_MESSAGE);
    assert!(message.starts_with("smoke test failed in round 1 of 1"));
    assert!(message.contains("also failing in this round: `GET /1`, `GET /2`"));
    assert!(
        message.ends_with("more rows in the function's log)"),
        "{message}"
    );
}

#[test]
fn long_failure_messages_keep_the_head_and_whole_rows() {
    let head = "smoke test failed: check `GET /` ...";
    let table: String = (0..200)
        .map(|i| format!("GET /page{i:<40} 0/1 500 3 ms FAIL: status 500, expected 2xx\n"))
        .collect();
    let message = fit(head, &table);
    assert!(message.chars().count() <= limits::FAILURE_MESSAGE);
    assert!(message.starts_with(head));
    assert!(
        message.ends_with("more rows in the function's log)"),
        "{message}"
    );
    let short = fit(head, "check  passed\nGET /  1/1\n");
    assert_eq!(short, format!("{head}\nchecks:\ncheck  passed\nGET /  1/1"));
}

#[test]
fn a_round_without_failures_describes_nothing() {
    assert_eq!(describe_round(&round(1, &[S::Ok, S::Ok])), "");
}

#[test]
fn the_continuation_token_keeps_its_shape() {
    let state = WarmingUp {
        since: UNIX_EPOCH + ms(1_700_000_000_123),
        attempts: 2,
    };
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(json, r#"{"since_ms":1700000000123,"attempts":2}"#);
    assert_eq!(serde_json::from_str::<WarmingUp>(&json).unwrap(), state);
    // A window starts on a whole millisecond, so what the token carries is what was compared.
    let now = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    assert_eq!(
        WarmingUp::starting(now).since,
        UNIX_EPOCH + ms(1_700_000_000_123)
    );
}
