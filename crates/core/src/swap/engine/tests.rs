//! Every path of the swap sequence without a server: [`decide`] table by table, and [`run`] against
//! the in-memory fakes (tag changes make environments busy, as on AWS) on a clock that never sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::*;
use crate::aws_error::{AwsError, Service};
use crate::beanstalk::{HealthFigures, TAG_OUT_OF_SERVICE_SINCE};
use crate::clock::{unix_seconds, FakeClock};
use crate::fakes::{environment, figures, FakeAlarms, FakeBeanstalk, FakeRoute53, FakeVerifier};
use crate::route53::{Pointer, Record};
use crate::swap::{Check, RecordType, TAG_PREVIOUS_ENVIRONMENT, TAG_RESTORED_FROM};
use crate::{FailureKind, Outcome};

const PROD: &str = "shop-prod.us-east-1.elasticbeanstalk.com";

fn t0() -> SystemTime {
    FakeClock::default().now()
}

use crate::clock::Clock as _;

fn plan(mode: Mode) -> Plan {
    Plan {
        application: "shop".into(),
        mode,
        staged: (mode != Mode::Rollback).then(|| "shop-b".to_string()),
        production_cname: Some("shop-prod".into()),
        domain: matches!(mode, Mode::Route53 | Mode::Weighted).then(|| Domain {
            zone: "Z1".into(),
            name: "shop.example.com".into(),
            record_type: RecordType::Alias,
            ttl: 60,
        }),
        steps: vec![10, 50, 100],
        step_bake: Duration::from_secs(60),
        bake: None,
        match_capacity: false,
        verify: None,
        resolve: None,
        min_health: crate::beanstalk::HealthGate::Green,
        timeout: Duration::from_secs(300),
    }
}

fn verifying(mut p: Plan) -> Plan {
    p.verify = Some(VerifySpec {
        path: "/version".into(),
        expected: None,
        timeout: Duration::from_secs(5),
    });
    p
}

fn live_a() -> Environment {
    environment("shop", "shop-a", "shop-prod", "v1")
}
fn staged_b() -> Environment {
    environment("shop", "shop-b", "shop-b", "v2")
}

fn state() -> State {
    State {
        started: unix_seconds(t0()),
        ..State::default()
    }
}

/// A cname-mode view: `a` live, `b` staged, `b` tagged as `tags` says.
fn view(a: Environment, b: Environment, tags: &[(&str, &str)]) -> View {
    let live = [&a, &b].into_iter().find(|e| e.cname == PROD).cloned();
    View {
        environments: vec![a, b.clone()],
        staged: Some(b),
        staged_tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        live,
        live_tags: BTreeMap::new(),
        records: None,
    }
}

fn with(env: Environment, change: impl FnOnce(&mut Environment)) -> Environment {
    let mut env = env;
    change(&mut env);
    env
}

fn name(step: &Step) -> String {
    match step {
        Step::AwaitReady { waiting_for } => format!("await {}", waiting_for.join(",")),
        Step::Prepare { staged, from } => format!("prepare {} from {from}", staged.name),
        Step::SwapCnames { from, to } => format!("swap {} -> {}", from.name, to.name),
        Step::Point { records, .. } => format!(
            "point {}",
            records
                .iter()
                .map(|r| format!("{}={:?}", r.target(), r.weight))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Step::MoveBack {
            from, to, records, ..
        } => format!(
            "back {} -> {}{}",
            from.name,
            to.name,
            if records.is_some() { " (records)" } else { "" }
        ),
        Step::Shift { percent, .. } => format!("shift {percent}"),
        Step::Verify(c) => format!("verify {}{} {}", c.base, c.path, c.expected),
        Step::MarkOutOfService(e) => format!("mark {}", e.name),
        Step::TagRestored { env, from } => format!("restored {} from {from}", env.name),
        Step::HandOver { summary, .. } => format!("hand over: {summary}"),
        Step::StartBake { previous } => format!("start bake (back to {previous})"),
        Step::ReadCapacity { .. } => "read capacity".into(),
        Step::RaiseCapacity {
            staged, min, max, ..
        } => {
            format!("raise {} to {min}..{max}", staged.name)
        }
        Step::AwaitCapacity { summary } => format!("await capacity: {summary}"),
        Step::RestoreCapacity { env, min, max } => format!("restore {} to {min}..{max}", env.name),
        Step::Watch(env) => format!("watch {}", env.name),
        Step::BakeWait { left, .. } => format!("bake wait {}s", left.as_secs()),
        Step::Done { summary, .. } => format!("done: {summary}"),
        Step::Fail(m) => format!("fail: {m}"),
        Step::Unhealthy { message, .. } => format!("unhealthy: {message}"),
    }
}

fn prepared() -> Vec<(&'static str, &'static str)> {
    vec![(TAG_PREVIOUS_ENVIRONMENT, "shop-a")]
}

/// Every way the move to the staged environment begins, ends before it, or waits.
#[test]
fn the_forward_modes_decide_every_case_before_the_move() {
    let later = t0() + Duration::from_secs(301);
    let updating = |e: Environment| with(e, |e| e.status = "Updating".into());
    let cases: Vec<(&str, Plan, View, SystemTime, &str)> = vec![
        (
            "the staged environment does not exist",
            plan(Mode::Cname),
            View {
                staged: None,
                ..view(live_a(), staged_b(), &[])
            },
            t0(),
            "fail: the staged environment `shop-b` does not exist",
        ),
        (
            "nothing holds the production CNAME",
            plan(Mode::Cname),
            view(
                with(live_a(), |e| {
                    e.cname = "shop-x.us-east-1.elasticbeanstalk.com".into()
                }),
                staged_b(),
                &[],
            ),
            t0(),
            "fail: no environment of application `shop` holds the production CNAME `shop-prod`",
        ),
        (
            "the staged environment is busy for a moment",
            plan(Mode::Cname),
            view(live_a(), updating(staged_b()), &[]),
            t0(),
            "await shop-b",
        ),
        (
            "both are busy",
            plan(Mode::Cname),
            view(updating(live_a()), updating(staged_b()), &[]),
            t0(),
            "await shop-b,shop-a",
        ),
        (
            "busy for longer than the timeout",
            plan(Mode::Cname),
            view(live_a(), updating(staged_b()), &[]),
            later,
            "fail: the staged environment `shop-b` is still Updating after 300s, not Ready",
        ),
        (
            "the staged environment is launching, not busy",
            plan(Mode::Cname),
            view(
                live_a(),
                with(staged_b(), |e| e.status = "Launching".into()),
                &[],
            ),
            t0(),
            "fail: the staged environment `shop-b` is Launching, not Ready",
        ),
        (
            "the staged environment is Red",
            plan(Mode::Cname),
            view(live_a(), with(staged_b(), |e| e.health = "Red".into()), &[]),
            t0(),
            "unhealthy: the staged environment `shop-b` is not healthy now: health Red",
        ),
        (
            "another application's environment",
            plan(Mode::Cname),
            view(
                live_a(),
                with(staged_b(), |e| e.application = "blog".into()),
                &[],
            ),
            t0(),
            "fail: the staged environment `shop-b` belongs to application `blog`",
        ),
        (
            "not yet tagged with where it comes from",
            plan(Mode::Cname),
            view(live_a(), staged_b(), &[]),
            t0(),
            "prepare shop-b from shop-a",
        ),
        (
            "still marked out of service from an earlier life",
            plan(Mode::Cname),
            view(
                live_a(),
                staged_b(),
                &[
                    (TAG_PREVIOUS_ENVIRONMENT, "shop-a"),
                    (TAG_OUT_OF_SERVICE_SINCE, "x"),
                ],
            ),
            t0(),
            "prepare shop-b from shop-a",
        ),
        (
            "prepared: a CNAME swap",
            plan(Mode::Cname),
            view(live_a(), staged_b(), &prepared()),
            t0(),
            "swap shop-a -> shop-b",
        ),
        (
            "prepared, route53: the domain points at the staged environment",
            plan(Mode::Route53),
            View {
                records: Some(vec![alias(&live_a(), None)]),
                ..view(live_a(), staged_b(), &prepared())
            },
            t0(),
            "point shop-b.us-east-1.elasticbeanstalk.com=None",
        ),
        (
            "prepared, weighted: the first step",
            plan(Mode::Weighted),
            View {
                records: Some(vec![alias(&live_a(), None)]),
                ..view(live_a(), staged_b(), &prepared())
            },
            t0(),
            "shift 10",
        ),
    ];
    for (what, plan, view, now, expected) in cases {
        let step = decide(&plan, &view, &Progress::default(), &state(), now);
        assert!(name(&step).starts_with(expected), "{what}: {}", name(&step));
    }
    // Tags written now that do not read back are never written again in a loop.
    let p = Progress {
        prepared: true,
        ..Progress::default()
    };
    let step = decide(
        &plan(Mode::Cname),
        &view(live_a(), staged_b(), &[]),
        &p,
        &state(),
        t0(),
    );
    assert!(
        name(&step).starts_with("fail: the tags of `shop-b` do not read back"),
        "{}",
        name(&step)
    );
}

fn alias(env: &Environment, weight: Option<i64>) -> Record {
    Record {
        name: "shop.example.com.".into(),
        pointer: Pointer::Alias {
            dns_name: env.cname.clone(),
            zone_id: "Z117KPS5GTRQ2G".into(),
        },
        set_identifier: weight.map(|_| env.name.clone()),
        weight,
    }
}

/// Production on the staged environment: judged the same way however it got there.
#[test]
fn production_on_the_staged_environment_is_verified_then_settled_or_moved_back() {
    let moved = with(staged_b(), |e| e.cname = PROD.into());
    let old = with(live_a(), |e| {
        e.cname = "shop-b.us-east-1.elasticbeanstalk.com".into()
    });
    let settled = view(old.clone(), moved.clone(), &prepared());
    // The only environment: launched on the production CNAME by stage, never swapped to.
    let first = View {
        environments: vec![moved.clone()],
        live: Some(moved.clone()),
        staged_tags: BTreeMap::new(),
        ..settled.clone()
    };
    let now = |p: Progress| Progress {
        moved_from: Some(live_a()),
        ..p
    };
    let ok = |p: Progress| Progress {
        verified: Some(Ok("GET answered `v2`".into())),
        ..p
    };
    let bad = |p: Progress| Progress {
        verified: Some(Err("wrong version".into())),
        ..p
    };
    let cases: Vec<(&str, Plan, View, Progress, &str)> = vec![
        (
            "moved now, checked next",
            verifying(plan(Mode::Cname)),
            settled.clone(),
            now(Progress::default()),
            "verify http://shop-prod.us-east-1.elasticbeanstalk.com/version v2",
        ),
        (
            "moved now and verified: the old one is marked out of service",
            verifying(plan(Mode::Cname)),
            settled.clone(),
            now(ok(Progress::default())),
            "mark shop-a",
        ),
        (
            "moved now, verified and marked",
            verifying(plan(Mode::Cname)),
            settled.clone(),
            now(ok(Progress {
                marked: true,
                ..Progress::default()
            })),
            "done: swapped CNAMEs: `shop-b` now serves `shop-prod.us-east-1.elasticbeanstalk.com` (was `shop-a`); verified: GET answered `v2`",
        ),
        (
            "moved now, the check failed: production goes back",
            verifying(plan(Mode::Cname)),
            settled.clone(),
            now(bad(Progress::default())),
            "back shop-b -> shop-a",
        ),
        (
            "moved by an earlier invocation, no check asked",
            plan(Mode::Cname),
            settled.clone(),
            Progress::default(),
            "done: `shop-b` already serves production (an earlier invocation moved it there from `shop-a`)",
        ),
        (
            "moved by an earlier invocation, the check fails: judged like a move made now",
            verifying(plan(Mode::Cname)),
            settled.clone(),
            bad(Progress::default()),
            "back shop-b -> shop-a",
        ),
        (
            "the first environment: nothing was ever moved",
            plan(Mode::Cname),
            first.clone(),
            Progress::default(),
            "done: `shop-b` already serves production (it was launched on the production CNAME as the first environment",
        ),
        (
            "the first environment fails its check: nowhere to go back to",
            verifying(plan(Mode::Cname)),
            first,
            bad(Progress::default()),
            "fail: `shop-b` serves production at `shop-prod.us-east-1.elasticbeanstalk.com`, but the version check failed: wrong version; there is no Ready environment to move production back to",
        ),
        (
            "moved back now: the staged one is marked, then the report",
            verifying(plan(Mode::Cname)),
            view(live_a(), staged_b(), &prepared()),
            Progress {
                moved_back: Some("it went wrong".into()),
                ..Progress::default()
            },
            "mark shop-b",
        ),
        (
            "moved back and marked",
            verifying(plan(Mode::Cname)),
            view(live_a(), staged_b(), &prepared()),
            Progress {
                moved_back: Some("it went wrong".into()),
                marked: true,
                ..Progress::default()
            },
            "fail: it went wrong",
        ),
    ];
    for (what, plan, view, progress, expected) in cases {
        let step = decide(&plan, &view, &progress, &state(), t0());
        assert!(name(&step).starts_with(expected), "{what}: {}", name(&step));
    }
}

/// A custom domain: the first deployment creates its record; a failed check restores the records as
/// they were.
#[test]
fn a_domain_gets_its_first_record_and_its_old_records_back() {
    let moved = with(staged_b(), |e| e.cname = PROD.into());
    let first = View {
        records: Some(vec![]),
        live: Some(moved.clone()),
        ..view(live_a(), moved.clone(), &[])
    };
    let step = decide(
        &plan(Mode::Route53),
        &first,
        &Progress::default(),
        &state(),
        t0(),
    );
    assert_eq!(name(&step), format!("point {PROD}=None"));
    let step = decide(
        &plan(Mode::Route53),
        &View {
            records: Some(vec![alias(&moved, None)]),
            ..first.clone()
        },
        &Progress {
            before: Some(vec![]),
            ..Progress::default()
        },
        &state(),
        t0(),
    );
    assert!(
        name(&step)
            .starts_with("done: first deployment: created `shop.example.com` pointing at `shop-b`"),
        "{}",
        name(&step)
    );

    // Pointed now, the check failed: exactly the records from before come back.
    let pointed = View {
        records: Some(vec![alias(&staged_b(), None)]),
        live: Some(staged_b()),
        ..view(live_a(), staged_b(), &prepared())
    };
    let step = decide(
        &verifying(plan(Mode::Route53)),
        &pointed,
        &Progress {
            moved_from: Some(live_a()),
            before: Some(vec![alias(&live_a(), None)]),
            verified: Some(Err("wrong".into())),
            ..Progress::default()
        },
        &state(),
        t0(),
    );
    match step {
        Step::MoveBack {
            records, reason, ..
        } => {
            assert_eq!(records, Some(vec![alias(&live_a(), None)]));
            assert_eq!(
                reason,
                "verification failed after pointing `shop.example.com` at `shop-b`: wrong"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Weighted mode between steps: bake, check health and version, next step, or all weight back.
#[test]
fn weighted_steps_bake_and_are_judged_before_the_next() {
    let p = verifying(plan(Mode::Weighted));
    let shifting = |percent: u8, since: SystemTime| State {
        started: unix_seconds(t0()),
        shift: Some(Shift {
            old: "shop-a".into(),
            new: "shop-b".into(),
            percent,
            since: unix_seconds(since),
        }),
        baking: None,
        raised: None,
        throttled: None,
    };
    let records = Some(vec![
        alias(&live_a(), Some(90)),
        alias(&staged_b(), Some(10)),
    ]);
    let v = View {
        records,
        ..view(live_a(), staged_b(), &prepared())
    };
    let ok = Progress {
        verified: Some(Ok("v2".into())),
        ..Progress::default()
    };
    let red = View {
        environments: vec![live_a(), with(staged_b(), |e| e.health = "Red".into())],
        ..v.clone()
    };
    let after_bake = t0() + Duration::from_secs(61);
    let cases: Vec<(&str, View, Progress, State, SystemTime, &str)> = vec![
        (
            "a step applied now bakes first",
            v.clone(),
            Progress {
                shifted: Some(10),
                ..Progress::default()
            },
            shifting(10, t0()),
            t0(),
            "hand over: 10% of `shop.example.com` on `shop-b`, 90% on `shop-a`; baking 60s",
        ),
        (
            "the next invocation checks the new environment's version",
            v.clone(),
            Progress::default(),
            shifting(10, t0()),
            t0(),
            "verify http://shop-b.us-east-1.elasticbeanstalk.com/version v2",
        ),
        (
            "healthy and right, still baking",
            v.clone(),
            ok.clone(),
            shifting(10, t0()),
            t0() + Duration::from_secs(20),
            "hand over: 10% of `shop.example.com` on `shop-b`, healthy; 40s of baking left",
        ),
        (
            "baked: the next step",
            v.clone(),
            ok.clone(),
            shifting(10, t0()),
            after_bake,
            "shift 50",
        ),
        (
            "turned Red: all weight back",
            red,
            Progress::default(),
            shifting(10, t0()),
            t0(),
            "back shop-b -> shop-a (records)",
        ),
        (
            "wrong version: all weight back",
            v.clone(),
            Progress {
                verified: Some(Err("wrong".into())),
                ..Progress::default()
            },
            shifting(10, t0()),
            t0(),
            "back shop-b -> shop-a (records)",
        ),
        (
            "an environment vanished",
            View {
                environments: vec![live_a()],
                ..v.clone()
            },
            Progress::default(),
            shifting(10, t0()),
            t0(),
            "fail: weighted shift from `shop-a` to `shop-b` at 10%: one of them no longer exists",
        ),
        (
            "the last step is applied: production is checked",
            v.clone(),
            Progress::default(),
            shifting(100, t0()),
            t0(),
            "verify http://shop.example.com/version v2",
        ),
    ];
    for (what, view, progress, state, now, expected) in cases {
        let step = decide(&p, &view, &progress, &state, now);
        assert!(name(&step).starts_with(expected), "{what}: {}", name(&step));
    }
}

/// Rollback: back to the previous environment once, and a second rollback changes nothing.
#[test]
fn rollback_decides_every_case() {
    let p = verifying(plan(Mode::Rollback));
    // b serves production (it came from a); a is out of service.
    let b_live = with(staged_b(), |e| e.cname = PROD.into());
    let a_out = with(live_a(), |e| {
        e.cname = "shop-b.us-east-1.elasticbeanstalk.com".into()
    });
    let base = View {
        environments: vec![a_out.clone(), b_live.clone()],
        staged: None,
        staged_tags: BTreeMap::new(),
        live: Some(b_live.clone()),
        live_tags: BTreeMap::from([(TAG_PREVIOUS_ENVIRONMENT.to_string(), "shop-a".to_string())]),
        records: None,
    };
    let back_on_a = View {
        live: Some(with(live_a(), |e| e.cname = PROD.into())),
        live_tags: BTreeMap::from([(TAG_RESTORED_FROM.to_string(), "shop-b".to_string())]),
        ..base.clone()
    };
    let moved = |p: Progress| Progress {
        moved_from: Some(b_live.clone()),
        ..p
    };
    let cases: Vec<(&str, View, Progress, &str)> = vec![
        (
            "nothing serves production",
            View {
                live: None,
                ..base.clone()
            },
            Progress::default(),
            "fail: rollback: no environment serves production",
        ),
        ("back to where it came from", base.clone(), Progress::default(), "swap shop-b -> shop-a"),
        (
            "the previous one is busy for a moment",
            View {
                environments: vec![with(a_out.clone(), |e| e.status = "Updating".into()), b_live.clone()],
                ..base.clone()
            },
            Progress::default(),
            "await shop-a",
        ),
        (
            "the previous one is gone",
            View {
                environments: vec![b_live.clone()],
                ..base.clone()
            },
            Progress::default(),
            "fail: rollback: the previous environment `shop-a` no longer exists",
        ),
        (
            "no tag says where it came from",
            View {
                live_tags: BTreeMap::new(),
                ..base.clone()
            },
            Progress::default(),
            "fail: rollback: `shop-b` serves production but has no `beanswap:previous-environment` tag",
        ),
        (
            "moved: the restored one says so first",
            back_on_a.clone(),
            moved(Progress::default()),
            "restored shop-a from shop-b",
        ),
        (
            "then the one left is marked",
            back_on_a.clone(),
            moved(Progress {
                restored_tagged: true,
                ..Progress::default()
            }),
            "mark shop-b",
        ),
        (
            "then production is checked",
            back_on_a.clone(),
            moved(Progress {
                restored_tagged: true,
                marked: true,
                ..Progress::default()
            }),
            "verify http://shop-prod.us-east-1.elasticbeanstalk.com/version v1",
        ),
        (
            "and reported",
            back_on_a.clone(),
            moved(Progress {
                restored_tagged: true,
                marked: true,
                verified: Some(Ok("v1".into())),
                ..Progress::default()
            }),
            "done: rolled production back from `shop-b` to `shop-a` (CNAME swap: `shop-a` holds `shop-prod` again)",
        ),
        (
            "a second rollback finds it already back",
            back_on_a,
            Progress::default(),
            "done: production is already back on `shop-a` (rolled back from `shop-b`); nothing changed",
        ),
    ];
    for (what, view, progress, expected) in cases {
        let step = decide(&p, &view, &progress, &state(), t0());
        assert!(name(&step).starts_with(expected), "{what}: {}", name(&step));
    }
}

// --- run() against the fakes ---------------------------------------------------------------------

/// The fake Beanstalk with `a` on the production CNAME and `b` staged.
fn fake_eb() -> FakeBeanstalk {
    FakeBeanstalk::with(vec![live_a(), staged_b()])
}

/// A verifier that answers the version of whichever environment holds the checked name.
fn version_of<'a>(
    eb: &'a FakeBeanstalk,
    broken: &'a [&'a str],
) -> impl Fn(&Check) -> Result<String, String> + Send + Sync + 'a {
    move |check: &Check| {
        let host = check.base.trim_start_matches("http://");
        let served = eb
            .holder(host)
            .and_then(|e| e.version_label)
            .map(|v| {
                if broken.contains(&v.as_str()) {
                    format!("{v}-broken")
                } else {
                    v
                }
            })
            .unwrap_or_default();
        if served == check.expected {
            Ok(format!("answered `{served}`"))
        } else {
            Err(format!(
                "wrong version: expected `{}`, the app serves `{served}`",
                check.expected
            ))
        }
    }
}

async fn run_once(
    eb: &FakeBeanstalk,
    r53: &FakeRoute53,
    verifier: &impl crate::swap::Verify,
    clock: &FakeClock,
    plan: &Plan,
    state: Option<State>,
) -> Result<Outcome<State>, crate::ActionError> {
    let clients = Clients {
        eb,
        r53,
        verifier,
        clock,
        alarms: &FakeAlarms::default(),
    };
    run(&clients, plan, state, Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_cname_swap_waits_out_its_own_tag_change_then_verifies_and_marks_the_old_one() {
    let eb = fake_eb();
    let r53 = FakeRoute53::default();
    let verifier = FakeVerifier::new(version_of(&eb, &[]));
    let clock = FakeClock::default();
    let out = run_once(
        &eb,
        &r53,
        &verifier,
        &clock,
        &verifying(plan(Mode::Cname)),
        None,
    )
    .await
    .unwrap();
    let Outcome::Succeeded { summary, variables } = out else {
        panic!("{out:?}")
    };
    assert!(
        summary.starts_with("swapped CNAMEs: `shop-b` now serves `shop-prod.us-east-1.elasticbeanstalk.com` (was `shop-a`); verified: answered `v2`"),
        "{summary}"
    );
    assert_eq!(variables["LiveEnvironmentName"], "shop-b");
    assert_eq!(variables["PreviousEnvironmentName"], "shop-a");
    assert_eq!(eb.env("shop-b").cname, PROD);
    assert_eq!(eb.tags_of("shop-b")[TAG_PREVIOUS_ENVIRONMENT], "shop-a");
    assert!(eb.tags_of("shop-a").contains_key(TAG_OUT_OF_SERVICE_SINCE));
    // The tag change was waited out (the fake refuses a swap while shop-b is Updating).
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 1);
    assert_eq!(eb.count("UpdateTagsForResource"), 2);
    assert!(!clock.slept().is_empty());
}

#[tokio::test]
async fn a_failed_check_moves_production_back_and_marks_the_staged_one() {
    let eb = fake_eb();
    let verifier = FakeVerifier::new(version_of(&eb, &["v2"]));
    let clock = FakeClock::default();
    let err = run_once(
        &eb,
        &FakeRoute53::default(),
        &verifier,
        &clock,
        &verifying(plan(Mode::Cname)),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, FailureKind::JobFailed);
    assert!(err.message.starts_with("verification failed after the CNAME swap: wrong version: expected `v2`, the app serves `v2-broken`. Swapped back: `shop-a` serves `shop-prod.us-east-1.elasticbeanstalk.com` again and `shop-b` is out of service"), "{}", err.message);
    assert_eq!(eb.env("shop-a").cname, PROD);
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 2);
    assert!(eb.tags_of("shop-b").contains_key(TAG_OUT_OF_SERVICE_SINCE));
}

#[tokio::test]
async fn a_retry_after_the_move_is_judged_like_the_first_invocation() {
    let eb = fake_eb();
    let verifier = FakeVerifier::new(version_of(&eb, &[]));
    let clock = FakeClock::default();
    let p = verifying(plan(Mode::Cname));
    run_once(&eb, &FakeRoute53::default(), &verifier, &clock, &p, None)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    let again = run_once(&eb, &FakeRoute53::default(), &verifier, &clock, &p, None)
        .await
        .unwrap();
    let Outcome::Succeeded { summary, .. } = again else {
        panic!("{again:?}")
    };
    assert!(summary.contains("already serves production (an earlier invocation moved it there from `shop-a`); nothing changed; verified"), "{summary}");
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 1);
}

#[tokio::test]
async fn throttling_is_waited_out_and_a_permission_refusal_is_reported_as_one() {
    let eb = fake_eb();
    let throttled = || {
        AwsError::answered(
            Service::ElasticBeanstalk,
            "DescribeEnvironments",
            "Throttling",
            "Rate exceeded",
        )
    };
    eb.fail_next("DescribeEnvironments", throttled());
    eb.fail_next("DescribeEnvironments", throttled());
    let verifier = FakeVerifier::new(version_of(&eb, &[]));
    let clock = FakeClock::default();
    let out = run_once(
        &eb,
        &FakeRoute53::default(),
        &verifier,
        &clock,
        &plan(Mode::Cname),
        None,
    )
    .await
    .unwrap();
    assert!(matches!(out, Outcome::Succeeded { .. }), "{out:?}");

    let eb = fake_eb();
    eb.fail_next(
        "UpdateTagsForResource",
        AwsError::answered(
            Service::ElasticBeanstalk,
            "UpdateTagsForResource",
            "InsufficientPrivilegesException",
            "not authorized to perform elasticbeanstalk:AddTags",
        ),
    );
    let err = run_once(
        &eb,
        &FakeRoute53::default(),
        &verifier,
        &clock,
        &plan(Mode::Cname),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, FailureKind::PermissionError);
    assert!(
        err.message.contains("elasticbeanstalk:AddTags"),
        "{}",
        err.message
    );
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 0, "nothing moved");
}

/// A staged environment that is not healthy fails the swap with its latest events; when the role may
/// not read them, the failure is the PermissionError naming the action, never a message without them.
#[tokio::test]
async fn an_unhealthy_staged_environment_whose_events_are_refused_is_a_permission_error() {
    let eb = FakeBeanstalk::with(vec![
        live_a(),
        with(staged_b(), |e| e.health = "Red".into()),
    ]);
    eb.fail_next(
        "DescribeEvents",
        AwsError::answered(
            Service::ElasticBeanstalk,
            "DescribeEvents",
            "InsufficientPrivilegesException",
            "not authorized to perform: elasticbeanstalk:DescribeEvents",
        ),
    );
    let verifier = FakeVerifier::new(version_of(&eb, &[]));
    let err = run_once(
        &eb,
        &FakeRoute53::default(),
        &verifier,
        &FakeClock::default(),
        &plan(Mode::Cname),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, FailureKind::PermissionError, "{}", err.message);
    assert!(
        err.message.contains("is not healthy now")
            && err.message.contains("elasticbeanstalk:DescribeEvents"),
        "{}",
        err.message
    );
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 0, "nothing moved");
}

#[tokio::test]
async fn an_environment_busy_past_the_invocation_hands_over_and_the_next_goes_on() {
    let eb = fake_eb();
    eb.set("shop-a", |e| e.status = "Updating".into());
    let verifier = FakeVerifier::new(version_of(&eb, &[]));
    let clock = FakeClock::default();
    let clients = Clients {
        eb: &eb,
        r53: &FakeRoute53::default(),
        verifier: &verifier,
        clock: &clock,
        alarms: &FakeAlarms::default(),
    };
    let first = run(&clients, &plan(Mode::Cname), None, Duration::from_secs(10))
        .await
        .unwrap();
    let Outcome::InProgress { state, summary, .. } = first else {
        panic!("{first:?}")
    };
    assert!(
        summary.contains("waiting for shop-a to be Ready again"),
        "{summary}"
    );
    eb.set("shop-a", |e| e.status = "Ready".into());
    let second = run(
        &clients,
        &plan(Mode::Cname),
        Some(state),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(matches!(second, Outcome::Succeeded { .. }), "{second:?}");
}

#[tokio::test]
async fn weighted_mode_shifts_in_steps_across_invocations_and_back_on_a_bad_version() {
    let domain = plan(Mode::Weighted).domain.unwrap();
    for broken in [false, true] {
        let eb = fake_eb();
        let r53 = FakeRoute53::default();
        r53.set_records(&domain.zone, &domain.name, vec![alias(&live_a(), None)]);
        let bad: &[&str] = if broken { &["v2"] } else { &[] };
        let verifier = FakeVerifier::new(move |c: &Check| {
            if c.expected == "v2" && !bad.is_empty() {
                Err("wrong version".into())
            } else {
                Ok(format!("answered `{}`", c.expected))
            }
        });
        let clock = FakeClock::default();
        let p = verifying(plan(Mode::Weighted));
        let mut state = None;
        let mut percents = vec![];
        let end = loop {
            match run_once(&eb, &r53, &verifier, &clock, &p, state.clone()).await {
                Ok(Outcome::InProgress {
                    state: s, percent, ..
                }) => {
                    percents.push(percent);
                    state = Some(s);
                    clock.advance(Duration::from_secs(61));
                }
                other => break other,
            }
        };
        if broken {
            let err = end.unwrap_err();
            assert!(err.message.starts_with("at 10% the version check of `shop-b` failed: wrong version. Shifted all weight back: `shop-a` has 100% of `shop.example.com` again, `shop-b` 0% and out of service"), "{}", err.message);
            assert_eq!(percents, vec![10]);
            let records = r53.records_of(&domain.zone, &domain.name);
            assert_eq!(share_of(&records, &live_a().cname), 100, "{records:?}");
        } else {
            let Ok(Outcome::Succeeded { summary, .. }) = end else {
                panic!("{end:?}")
            };
            assert!(
                summary.starts_with(
                    "all of `shop.example.com` on `shop-b` (was `shop-a`), in steps [10, 50, 100]"
                ),
                "{summary}"
            );
            assert_eq!(percents, vec![10, 50]);
            assert!(eb.tags_of("shop-a").contains_key(TAG_OUT_OF_SERVICE_SINCE));
        }
    }
}

#[tokio::test]
async fn rollback_returns_once_and_a_second_one_changes_nothing() {
    let eb = fake_eb();
    let verifier = FakeVerifier::new(version_of(&eb, &[]));
    let clock = FakeClock::default();
    run_once(
        &eb,
        &FakeRoute53::default(),
        &verifier,
        &clock,
        &plan(Mode::Cname),
        None,
    )
    .await
    .unwrap();
    let back = verifying(plan(Mode::Rollback));
    let out = run_once(&eb, &FakeRoute53::default(), &verifier, &clock, &back, None)
        .await
        .unwrap();
    let Outcome::Succeeded { summary, .. } = out else {
        panic!("{out:?}")
    };
    assert!(
        summary.starts_with("rolled production back from `shop-b` to `shop-a`"),
        "{summary}"
    );
    assert_eq!(eb.env("shop-a").cname, PROD);
    assert_eq!(eb.tags_of("shop-a")[TAG_RESTORED_FROM], "shop-b");
    let again = run_once(&eb, &FakeRoute53::default(), &verifier, &clock, &back, None)
        .await
        .unwrap();
    let Outcome::Succeeded { summary, .. } = again else {
        panic!("{again:?}")
    };
    assert!(summary.contains("already back on `shop-a`"), "{summary}");
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 2);
}

// --- the bake after the move ---------------------------------------------------------------------

fn baking(mut p: Plan, alarms: &[&str]) -> Plan {
    p.bake = Some(crate::swap::bake::Bake {
        duration: Duration::from_secs(30),
        poll: Duration::from_secs(10),
        max_server_errors_percent: 1,
        min_requests: 10,
        max_p99: Some(Duration::from_secs(2)),
        alarms: alarms.iter().map(|a| a.to_string()).collect(),
    });
    p.step_bake = Duration::from_secs(5);
    p
}

/// Runs invocations until the job ends, the clock moving on between them as CodePipeline's would.
/// Returns the end, and how many invocations handed over.
async fn run_to_end(
    eb: &FakeBeanstalk,
    r53: &FakeRoute53,
    alarms: &FakeAlarms,
    clock: &FakeClock,
    plan: &Plan,
    budget: Duration,
) -> (Result<Outcome<State>, crate::ActionError>, usize) {
    let verifier = FakeVerifier::new(|c: &Check| Ok(format!("answered `{}`", c.expected)));
    let clients = Clients {
        eb,
        r53,
        verifier: &verifier,
        clock,
        alarms,
    };
    let mut state = None;
    for handed_over in 0..50 {
        match run(&clients, plan, state.take(), budget).await {
            Ok(Outcome::InProgress { state: s, .. }) => {
                state = Some(s);
                clock.advance(Duration::from_secs(6));
            }
            end => return (end, handed_over),
        }
    }
    panic!("the job never ended");
}

/// The fakes for `mode`: `a` live (by CNAME, or by the domain's alias record), `b` staged.
fn bed(mode: Mode) -> (FakeBeanstalk, FakeRoute53) {
    let eb = fake_eb();
    let r53 = FakeRoute53::default();
    if let Some(d) = plan(mode).domain {
        r53.set_records(&d.zone, &d.name, vec![alias(&live_a(), None)]);
    }
    (eb, r53)
}

/// Which environment production is on now, in `mode`.
fn production(eb: &FakeBeanstalk, r53: &FakeRoute53, mode: Mode) -> String {
    match plan(mode).domain {
        Some(d) => {
            let records = r53.records_of(&d.zone, &d.name);
            if share_of(&records, &live_a().cname) == 100 {
                "shop-a".into()
            } else if share_of(&records, &staged_b().cname) == 100 {
                "shop-b".into()
            } else {
                format!("split: {records:?}")
            }
        }
        None => eb.holder(PROD).unwrap().name,
    }
}

#[tokio::test]
async fn a_quiet_bake_passes_in_every_mode_and_only_then_marks_the_old_environment() {
    for mode in [Mode::Cname, Mode::Route53, Mode::Weighted] {
        let (eb, r53) = bed(mode);
        eb.set_figures("shop-b", vec![figures(200, 0, 120), figures(300, 1, 90)]);
        let clock = FakeClock::default();
        let p = baking(plan(mode), &[]);
        let (end, _) = run_to_end(
            &eb,
            &r53,
            &FakeAlarms::default(),
            &clock,
            &p,
            Duration::from_secs(60),
        )
        .await;
        let Ok(Outcome::Succeeded { summary, variables }) = end else {
            panic!("{mode:?}: {end:?}")
        };
        assert_eq!(production(&eb, &r53, mode), "shop-b", "{mode:?}");
        assert!(
            variables["Bake"].starts_with(
                "passed: baked 30 s: 4 readings, worst 5xx 1 %, worst P99 0.120 s, no breach"
            ),
            "{mode:?}: {variables:?}"
        );
        assert!(summary.ends_with("no breach"), "{summary}");
        // The previous environment stayed in service through the bake: retire's grace period counts
        // from its end.
        let since = &eb.tags_of("shop-a")[TAG_OUT_OF_SERVICE_SINCE];
        assert_eq!(
            crate::retire::parse_time(since).map(|t| t >= t0() + Duration::from_secs(30)),
            Some(true),
            "{mode:?}: marked at {since}"
        );
        assert!(
            clock.slept().iter().all(|d| *d <= Duration::from_secs(10)),
            "readings at most 10 s apart: {:?}",
            clock.slept()
        );
    }
}

#[tokio::test]
async fn a_breach_moves_production_back_in_every_mode_with_the_evidence() {
    use crate::alarms::{Alarm, AlarmState};
    let breaches: [(&str, HealthFigures, AlarmState, &str); 4] = [
        (
            "5xx",
            figures(200, 5, 100),
            AlarmState::Ok,
            "5 % of 200 requests answered 5xx over the last 10 s (threshold 1 %)",
        ),
        (
            "latency",
            figures(200, 0, 2500),
            AlarmState::Ok,
            "P99 latency 2.500 s (threshold 2.000 s)",
        ),
        (
            "alarm",
            figures(200, 0, 100),
            AlarmState::Alarm,
            "CloudWatch alarm `shop-errors` is in ALARM: Threshold Crossed",
        ),
        (
            "health",
            HealthFigures {
                color: "Red".into(),
                status: Some("Severe".into()),
                ..figures(200, 0, 100)
            },
            AlarmState::Ok,
            "health Red (Severe)",
        ),
    ];
    for mode in [Mode::Cname, Mode::Route53, Mode::Weighted] {
        for (kind, bad, alarm_state, evidence) in &breaches {
            let (eb, r53) = bed(mode);
            // Healthy at first, then the breach.
            eb.set_figures("shop-b", vec![figures(200, 0, 100), bad.clone()]);
            let alarms = FakeAlarms::default();
            let alarm = |state: AlarmState| Alarm {
                name: "shop-errors".into(),
                state,
                reason: "Threshold Crossed: 1 datapoint [12.0] was greater than 5.0".into(),
            };
            alarms.set(vec![
                vec![alarm(AlarmState::Ok)],
                vec![alarm(alarm_state.clone())],
            ]);
            let clock = FakeClock::default();
            let p = baking(plan(mode), &["shop-errors"]);
            let (end, _) =
                run_to_end(&eb, &r53, &alarms, &clock, &p, Duration::from_secs(60)).await;
            let Err(err) = end else {
                panic!("{mode:?} {kind}: {end:?}")
            };
            assert!(
                err.message.starts_with("the bake caught `shop-b` at "),
                "{mode:?} {kind}: {}",
                err.message
            );
            assert!(
                err.message.contains(evidence),
                "{mode:?} {kind}: {}",
                err.message
            );
            assert_eq!(production(&eb, &r53, mode), "shop-a", "{mode:?} {kind}");
            assert!(
                eb.tags_of("shop-b").contains_key(TAG_OUT_OF_SERVICE_SINCE),
                "the environment that failed its bake is out of service"
            );
            assert!(
                !eb.tags_of("shop-a").contains_key(TAG_OUT_OF_SERVICE_SINCE),
                "production's environment is not"
            );
        }
    }
}

#[tokio::test]
async fn a_bake_longer_than_an_invocation_continues_through_tokens() {
    let (eb, r53) = bed(Mode::Cname);
    eb.set_figures("shop-b", vec![figures(200, 0, 100)]);
    let clock = FakeClock::default();
    let p = baking(plan(Mode::Cname), &[]);
    let (end, handed_over) = run_to_end(
        &eb,
        &r53,
        &FakeAlarms::default(),
        &clock,
        &p,
        Duration::from_secs(12),
    )
    .await;
    let Ok(Outcome::Succeeded { variables, .. }) = end else {
        panic!("{end:?}")
    };
    assert!(handed_over >= 2, "{handed_over}");
    assert!(
        variables["Bake"].starts_with("passed: baked 30 s"),
        "{variables:?}"
    );
    assert_eq!(
        eb.count("SwapEnvironmentCNAMEs"),
        1,
        "moved once, never again"
    );
}

/// A bake that would fit in one invocation still hands over as it begins, so the pipeline's console
/// (and a local run's report) shows that production is baking, and since when.
#[tokio::test]
async fn the_bake_is_reported_as_it_begins_even_when_it_fits_in_one_invocation() {
    let (eb, r53) = bed(Mode::Cname);
    eb.set_figures("shop-b", vec![figures(200, 0, 100)]);
    let clock = FakeClock::default();
    let verifier = FakeVerifier::new(|c: &Check| Ok(format!("answered `{}`", c.expected)));
    let clients = Clients {
        eb: &eb,
        r53: &r53,
        verifier: &verifier,
        clock: &clock,
        alarms: &FakeAlarms::default(),
    };
    let p = baking(plan(Mode::Cname), &[]);
    let first = run(&clients, &p, None, Duration::from_secs(600))
        .await
        .unwrap();
    let Outcome::InProgress { state, summary, .. } = first else {
        panic!("{first:?}")
    };
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 1);
    assert_eq!(
        state.baking.as_ref().map(|b| b.from.as_str()),
        Some("shop-a")
    );
    assert_eq!(
        summary,
        "production moved from `shop-a`; baking 30 s, back to `shop-a` on a breach"
    );
    let second = run(&clients, &p, Some(state), Duration::from_secs(600))
        .await
        .unwrap();
    assert!(matches!(second, Outcome::Succeeded { .. }), "{second:?}");
}

#[tokio::test]
async fn the_first_deployment_has_nothing_to_bake_against() {
    let eb = FakeBeanstalk::with(vec![environment("shop", "shop-b", "shop-prod", "v2")]);
    let clock = FakeClock::default();
    let (end, _) = run_to_end(
        &eb,
        &FakeRoute53::default(),
        &FakeAlarms::default(),
        &clock,
        &baking(plan(Mode::Cname), &[]),
        Duration::from_secs(60),
    )
    .await;
    let Ok(Outcome::Succeeded { variables, .. }) = end else {
        panic!("{end:?}")
    };
    assert_eq!(variables["Bake"], "none");
    assert_eq!(eb.count("DescribeEnvironmentHealth"), 0);
}

// --- capacity before the move -------------------------------------------------------------------

#[tokio::test]
async fn a_grown_live_environment_is_matched_before_the_move_and_the_size_restored_after_the_bake()
{
    use crate::swap::capacity::Capacity;
    for mode in [Mode::Cname, Mode::Route53, Mode::Weighted] {
        let (eb, r53) = bed(mode);
        // Auto Scaling grew the live environment to 4; the clone starts at its MinSize, 2.
        eb.set_capacity(
            "shop-a",
            Capacity {
                instances: 4,
                healthy: 4,
                min: 2,
                max: 6,
            },
        );
        eb.set_capacity(
            "shop-b",
            Capacity {
                instances: 2,
                healthy: 2,
                min: 2,
                max: 6,
            },
        );
        eb.set_figures("shop-b", vec![figures(200, 0, 100)]);
        let clock = FakeClock::default();
        let mut p = baking(plan(mode), &[]);
        p.match_capacity = true;
        let (end, _) = run_to_end(
            &eb,
            &r53,
            &FakeAlarms::default(),
            &clock,
            &p,
            Duration::from_secs(60),
        )
        .await;
        let Ok(Outcome::Succeeded { summary, .. }) = end else {
            panic!("{mode:?}: {end:?}")
        };
        assert!(
            summary.contains("; `shop-b` ran 4 instances for the move, its MinSize is 2 again"),
            "{mode:?}: {summary}"
        );
        assert_eq!(production(&eb, &r53, mode), "shop-b");
        // Raised before the move (two updates: the raise, then the restore after the bake).
        let calls = eb.calls();
        let raise = calls.iter().position(|c| c == "UpdateEnvironment").unwrap();
        let moved = calls
            .iter()
            .position(|c| c == "SwapEnvironmentCNAMEs")
            .unwrap_or(usize::MAX);
        let restore = calls
            .iter()
            .rposition(|c| c == "UpdateEnvironment")
            .unwrap();
        assert!(raise < restore, "{mode:?}: {calls:?}");
        if mode == Mode::Cname {
            assert!(raise < moved && moved < restore, "{calls:?}");
        }
        let size = eb.capacity_of("shop-b");
        assert_eq!((size.min, size.max), (2, 6), "{mode:?}");
    }
}

#[tokio::test]
async fn instances_that_never_turn_healthy_stop_the_swap_before_the_move() {
    use crate::swap::capacity::Capacity;
    let (eb, r53) = bed(Mode::Cname);
    eb.set_capacity(
        "shop-a",
        Capacity {
            instances: 3,
            healthy: 3,
            min: 1,
            max: 4,
        },
    );
    // Raised already (MinSize 3), but its new instances stay unhealthy.
    eb.set_capacity(
        "shop-b",
        Capacity {
            instances: 3,
            healthy: 1,
            min: 3,
            max: 4,
        },
    );
    let clock = FakeClock::default();
    let mut p = plan(Mode::Cname);
    p.match_capacity = true;
    let (end, handed_over) = run_to_end(
        &eb,
        &r53,
        &FakeAlarms::default(),
        &clock,
        &p,
        Duration::from_secs(600),
    )
    .await;
    let err = end.unwrap_err();
    assert!(
        err.message.starts_with("the staged environment `shop-b` runs 1 healthy of the 3 instances the live `shop-a` runs, after "),
        "{}",
        err.message
    );
    assert!(
        err.message.ends_with("nothing was swapped"),
        "{}",
        err.message
    );
    assert!(handed_over > 0);
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 0);
    assert_eq!(production(&eb, &r53, Mode::Cname), "shop-a");
}

#[test]
fn without_match_capacity_no_size_is_read() {
    let p = plan(Mode::Cname);
    let step = decide(
        &p,
        &view(live_a(), staged_b(), &prepared()),
        &Progress::default(),
        &state(),
        t0(),
    );
    assert_eq!(name(&step), "swap shop-a -> shop-b");
    let mut matching = p;
    matching.match_capacity = true;
    let step = decide(
        &matching,
        &view(live_a(), staged_b(), &prepared()),
        &Progress::default(),
        &state(),
        t0(),
    );
    assert_eq!(name(&step), "read capacity");
}

// --- throttling during swap's waits (issue 16 point 4) -------------------------------------------

fn throttling(service: Service, operation: &'static str) -> AwsError {
    AwsError::answered(service, operation, "Throttling", "Rate exceeded")
}

/// `operation` on the fake Beanstalk is throttled this many times in a row.
fn throttle(eb: &FakeBeanstalk, operation: &'static str, times: usize) {
    for _ in 0..times {
        eb.fail_next(operation, throttling(Service::ElasticBeanstalk, operation));
    }
}

#[tokio::test]
async fn a_throttled_alarm_or_health_read_during_the_bake_skips_that_reading() {
    use crate::alarms::{Alarm, AlarmState};
    let (eb, r53) = bed(Mode::Cname);
    eb.set_figures("shop-b", vec![figures(200, 0, 100)]);
    let alarms = FakeAlarms::default();
    alarms.set(vec![vec![Alarm {
        name: "shop-errors".into(),
        state: AlarmState::Ok,
        reason: String::new(),
    }]]);
    // After production moved: DescribeAlarms throttled twice, DescribeEnvironmentHealth once.
    alarms.fail_next(throttling(Service::CloudWatch, "DescribeAlarms"));
    alarms.fail_next(throttling(Service::CloudWatch, "DescribeAlarms"));
    throttle(&eb, "DescribeEnvironmentHealth", 1);
    let clock = FakeClock::default();
    let p = baking(plan(Mode::Cname), &["shop-errors"]);
    let (end, _) = run_to_end(&eb, &r53, &alarms, &clock, &p, Duration::from_secs(60)).await;
    let Ok(Outcome::Succeeded { variables, .. }) = end else {
        panic!("{end:?}")
    };
    assert_eq!(production(&eb, &r53, Mode::Cname), "shop-b");
    assert!(
        variables["Bake"].contains("(3 more skipped: AWS throttled them)"),
        "{variables:?}"
    );
    assert!(
        variables["Bake"].starts_with("passed: baked 30 s"),
        "{variables:?}"
    );
}

#[tokio::test]
async fn a_bake_throttled_to_its_end_does_not_pass_it_ends_as_system_unavailable() {
    let (eb, r53) = bed(Mode::Cname);
    throttle(&eb, "DescribeEnvironmentHealth", 1000);
    let clock = FakeClock::default();
    let p = baking(plan(Mode::Cname), &[]);
    let (end, _) = run_to_end(
        &eb,
        &r53,
        &FakeAlarms::default(),
        &clock,
        &p,
        Duration::from_secs(60),
    )
    .await;
    let err = end.unwrap_err();
    assert_eq!(err.kind, FailureKind::SystemUnavailable, "{}", err.message);
    assert!(
        err.message.starts_with("the bake of `shop-b` could not take a reading; production stays on it and `shop-a` stays in service"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("(the action's timeout is 300 s); the last: Elastic Beanstalk DescribeEnvironmentHealth failed: Throttling: Rate exceeded"),
        "{}",
        err.message
    );
    assert_eq!(production(&eb, &r53, Mode::Cname), "shop-b");
    assert!(
        !eb.tags_of("shop-a").contains_key(TAG_OUT_OF_SERVICE_SINCE),
        "the previous environment stays in service: the bake never vouched for the new one"
    );
}

#[tokio::test]
async fn a_throttled_capacity_read_hands_over_within_the_budget_and_ends_at_the_timeout() {
    use crate::swap::capacity::Capacity;
    let (eb, r53) = bed(Mode::Cname);
    eb.set_capacity(
        "shop-a",
        Capacity {
            instances: 3,
            healthy: 3,
            min: 1,
            max: 4,
        },
    );
    throttle(&eb, "DescribeInstancesHealth", 1000);
    let mut p = plan(Mode::Cname);
    p.match_capacity = true;
    let clock = FakeClock::default();
    let verifier = FakeVerifier::new(version_of(&eb, &[]));
    let alarms = FakeAlarms::default();
    let clients = Clients {
        eb: &eb,
        r53: &r53,
        verifier: &verifier,
        clock: &clock,
        alarms: &alarms,
    };
    let budget = Duration::from_secs(20);
    let first = run(&clients, &p, None, budget).await.unwrap();
    let Outcome::InProgress { summary, .. } = first else {
        panic!("{first:?}")
    };
    assert!(
        summary.contains("reading the capacity of `shop-a` and `shop-b`"),
        "{summary}"
    );
    assert!(
        clock.slept().iter().sum::<Duration>() <= budget,
        "{:?}",
        clock.slept()
    );
    let (end, _) = run_to_end(&eb, &r53, &alarms, &clock, &p, budget).await;
    let err = end.unwrap_err();
    assert_eq!(err.kind, FailureKind::SystemUnavailable, "{}", err.message);
    assert!(
        err.message.starts_with("the swap could not read the capacity of `shop-a` and `shop-b`; nothing was swapped: AWS turned every attempt away for "),
        "{}",
        err.message
    );
    assert!(
        err.message
            .ends_with("DescribeInstancesHealth failed: Throttling: Rate exceeded"),
        "{}",
        err.message
    );
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 0);
}

#[tokio::test]
async fn persistent_throttling_of_the_observation_ends_at_the_actions_timeout() {
    let (eb, r53) = bed(Mode::Cname);
    throttle(&eb, "DescribeEnvironments", 1000);
    let clock = FakeClock::default();
    let (end, handed_over) = run_to_end(
        &eb,
        &r53,
        &FakeAlarms::default(),
        &clock,
        &plan(Mode::Cname),
        Duration::from_secs(60),
    )
    .await;
    let err = end.unwrap_err();
    assert!(handed_over > 0);
    assert_eq!(err.kind, FailureKind::SystemUnavailable, "{}", err.message);
    assert!(
        err.message.starts_with(
            "the swap could not read its environments: AWS turned every attempt away for "
        ),
        "{}",
        err.message
    );
    assert!(
        err.message
            .ends_with("DescribeEnvironments failed: Throttling: Rate exceeded"),
        "{}",
        err.message
    );
    assert_eq!(eb.count("SwapEnvironmentCNAMEs"), 0);
}
