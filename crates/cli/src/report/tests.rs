use super::*;

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sample(at: u64, status: u16, version: Option<&str>) -> Sample {
    Sample {
        at: ms(at),
        latency: ms(5),
        status,
        version: version.map(str::to_string),
        refused: None,
    }
}

fn span(name: &str, start: u64, end: u64) -> Span {
    Span {
        name: name.into(),
        lane: name.split(" / ").nth(1).unwrap_or(name).into(),
        start: ms(start),
        end: ms(end),
        ok: true,
        invocations: 1,
        ..Span::default()
    }
}

fn event(at: u64, env: &str, message: &str) -> Event {
    Event {
        at: ms(at),
        severity: "INFO".into(),
        environment: env.into(),
        message: message.into(),
    }
}

/// Two deployments: nothing answers until 2 s, v1 until the swap at 6.1 s, one old answer after it,
/// one failure at 7 s; v1's environment terminated at 8 s.
fn two_deployments() -> Run {
    let mut samples = vec![];
    for t in (0..10_000).step_by(100) {
        let s = match t {
            0..=1_999 => sample(t, 502, None),
            7_000 => sample(t, 503, None),
            2_000..=6_099 | 6_200 => sample(t, 200, Some("v1")),
            _ => sample(t, 200, Some("v2")),
        };
        samples.push(s);
    }
    let mut swap = span("Swap / Swap", 5_900, 6_500);
    swap.summary = "swapped CNAMEs: `shop-v2` now serves ...".into();
    let deployments = vec![
        Deployment {
            label: "#1".into(),
            version: Some("v1".into()),
            start: ms(0),
            end: ms(3_000),
            actions: vec![span("Stage / Stage", 500, 2_500)],
            calls: [
                ("ElasticBeanstalk.CreateEnvironment".to_string(), 1),
                ("ElasticBeanstalk.DescribeEvents".to_string(), 4),
                ("S3.PutObject".to_string(), 2),
            ]
            .into(),
            ..Deployment::default()
        },
        Deployment {
            label: "#2".into(),
            version: Some("v2".into()),
            start: ms(3_000),
            end: ms(9_000),
            actions: vec![span("Stage / Stage", 3_100, 5_000), swap],
            ..Deployment::default()
        },
    ];
    let events = vec![
        event(
            6_100,
            "shop-v2",
            "Completed swapping CNAMEs for environments 'a' and 'b'.",
        ),
        event(8_000, "shop-v1", "terminateEnvironment is starting."),
    ];
    Run::new(
        "test",
        "http://shop/version",
        samples,
        deployments,
        events,
        ms(10_000),
    )
}

#[test]
fn requests_before_production_are_neither_requests_nor_failures() {
    let run = two_deployments();
    let totals = run.totals();
    assert_eq!((totals.before_up, totals.failures), (20, 1));
    assert_eq!(run.production_from(), Some(ms(2_000)));
    let versions = run.versions();
    assert_eq!(versions, ["v1", "v2"]);
    assert_eq!(
        run.class(&run.samples[0], &versions),
        Class::BeforeProduction
    );
    assert_eq!(run.class(&run.samples[70], &versions), Class::Failed);
    assert_eq!(
        run.class(&run.samples[25], &versions),
        Class::Version(Some(0))
    );
    // The deployments' windows cover the run: their counts add up to the run's.
    let (a, b) = (run.summary(0), run.summary(1));
    assert_eq!(a.requests + b.requests, totals.requests);
    assert_eq!(a.failures + b.failures, totals.failures);
    assert_eq!(a.before_production + b.before_production, totals.before_up);
    assert_eq!((a.requests, a.before_production), (10, 20));
}

#[test]
fn the_swap_the_old_answers_after_it_and_the_cutover_are_measured() {
    let run = two_deployments();
    let kinds: Vec<(MarkKind, &str)> = run
        .marks
        .iter()
        .map(|m| (m.kind, m.label.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (MarkKind::Swap, "swap #2"),
            (MarkKind::Termination, "terminate shop-v1")
        ]
    );
    let first = run.summary(0);
    assert_eq!(
        (first.swap_at, first.old_after_swap, first.cutover),
        (None, None, None)
    );
    assert_eq!(first.calls["ElasticBeanstalk"], 5);
    assert_eq!(first.calls["S3"], 2);
    let second = run.summary(1);
    assert_eq!(second.swap_at, Some(ms(6_100)));
    // 6.1 s (v2's first answer is at the swap) and 6.2 s (v1, once more) are after it.
    assert_eq!(second.old_after_swap, Some(1));
    // Full at 6.3 s, the first v2 answer after v1's last.
    assert_eq!(second.cutover, Some(ms(200)));
    assert_eq!(second.failures, 1);
    assert!(!run.ok());
    assert_eq!(
        run.verdict(),
        "FAIL: 1 of 80 requests failed while production was up"
    );
}

/// A swap's continuation token at `at`: weighted mode at `percent` on `b`, and baking after the move.
fn swap_state(at: u64, percent: Option<u8>, baking: bool) -> (Duration, String) {
    use beanswap_core::swap::{bake::Baking, engine::State, Shift};
    let state = State {
        started: 1,
        shift: percent.map(|percent| Shift {
            old: "a".into(),
            new: "b".into(),
            percent,
            since: 2,
        }),
        baking: baking.then(|| Baking {
            since: 3,
            from: "a".into(),
            ..Baking::default()
        }),
        ..State::default()
    };
    (
        ms(at),
        beanswap_core::outcome::encode_state(&state).unwrap(),
    )
}

#[test]
fn route53_swaps_rollbacks_and_bakes_are_marked_from_the_swap_action() {
    let mut weighted = span("Swap / Swap", 1_000, 9_000);
    weighted.lines = vec![(
        ms(2_000),
        "10% of `www` on `b`, 90% on `a`; baking 60s".into(),
    )];
    // Each step short of 100 % bakes from the first report that carries it; the bake after the move
    // from the first that carries that (whatever the reports' wording).
    weighted.states = vec![
        swap_state(2_000, Some(10), false),
        swap_state(3_000, Some(10), false),
        swap_state(4_000, Some(50), false),
        swap_state(6_000, Some(100), false),
        swap_state(7_000, Some(100), true),
        swap_state(8_000, Some(100), true),
    ];
    weighted.summary = "all of `www` on `b` (was `a`), in steps [10, 50, 100]; verified".into();
    let mut back = span("Swap / Swap", 10_000, 12_000);
    back.ok = false;
    back.summary = "verification failed at 100%: 500. Shifted all weight back: ...".into();
    let mut first = span("Swap / Swap", 100, 200);
    first.summary = "`a` already serves production (...); nothing changed; verified".into();
    let d = |label: &str, actions| Deployment {
        label: label.into(),
        actions,
        ..Deployment::default()
    };
    let marks = marks(
        &[
            d("#1", vec![first]),
            d("#2", vec![weighted]),
            d("#3", vec![back]),
        ],
        &[],
    );
    let got: Vec<(MarkKind, Duration, &str)> = marks
        .iter()
        .map(|m| (m.kind, m.at, m.label.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (MarkKind::Bake, ms(2_000), "bake #2"),
            (MarkKind::Bake, ms(4_000), "bake #2"),
            // Production had moved by the first report of the bake after the move.
            (MarkKind::Swap, ms(7_000), "swap #2"),
            (MarkKind::Bake, ms(7_000), "bake #2"),
            (MarkKind::Rollback, ms(12_000), "rollback #3"),
        ]
    );
    // The step's own line is the marker's detail when one came with it.
    assert_eq!(
        marks[0].detail,
        "10% of `www` on `b`, 90% on `a`; baking 60s"
    );
}

/// A Route 53 move whose bake caught a breach and moved production back failed the action, yet
/// production had moved: the swap is marked when the bake after the move began, then the rollback.
#[test]
fn a_route53_move_the_bake_moved_back_is_still_a_swap() {
    let mut swap = span("Swap / Swap", 1_000, 9_000);
    swap.states = vec![
        swap_state(1_500, None, false),
        swap_state(3_000, None, true),
        swap_state(6_000, None, true),
    ];
    swap.ok = false;
    swap.summary =
        "JobFailed: the bake caught `b` ... Restored the previous records: `a` serves `www` again"
            .into();
    let deployment = Deployment {
        label: "#2".into(),
        actions: vec![swap],
        ..Deployment::default()
    };
    let got: Vec<(MarkKind, Duration)> = marks(&[deployment], &[])
        .iter()
        .map(|m| (m.kind, m.at))
        .collect();
    assert_eq!(
        got,
        [
            (MarkKind::Swap, ms(3_000)),
            (MarkKind::Bake, ms(3_000)),
            (MarkKind::Rollback, ms(9_000)),
        ]
    );
}

/// cname and route53 modes bake after the move too ("...; baking, N s left" as they word it), and a
/// breach moves production back: a bake marker, then the rollback.
#[test]
fn the_bake_after_a_cname_swap_is_marked_and_so_is_the_rollback_it_makes() {
    let swapped = "Completed swapping CNAMEs for environments 'a' and 'b'.";
    let mut swap = span("Swap / Swap", 1_000, 9_000);
    // The swap's events were seen (polled) after the report that production was baking.
    swap.states = vec![
        swap_state(1_500, None, false),
        swap_state(2_500, None, true),
        swap_state(3_500, None, true),
    ];
    swap.ok = false;
    swap.summary = "JobFailed: the bake caught `b` ... Swapped back: `a` serves production".into();
    let deployment = Deployment {
        label: "#3".into(),
        actions: vec![swap],
        ..Deployment::default()
    };
    let got: Vec<(MarkKind, Duration)> = marks(
        &[deployment],
        &[
            event(2_700, "a", swapped),
            event(2_701, "b", swapped),
            event(8_000, "a", swapped),
            event(8_002, "b", swapped),
        ],
    )
    .iter()
    .map(|m| (m.kind, m.at))
    .collect();
    assert_eq!(
        got,
        [
            (MarkKind::Swap, ms(2_500)),
            (MarkKind::Bake, ms(2_500)),
            (MarkKind::Rollback, ms(8_000)),
        ]
    );
}

#[test]
fn a_cname_swap_recorded_for_both_environments_is_one_swap_and_a_second_one_a_rollback() {
    let swapped = "Completed swapping CNAMEs for environments 'a' and 'b'.";
    let mut swap = span("Swap / Swap", 1_000, 9_000);
    let d = |actions| Deployment {
        label: "#2".into(),
        actions,
        ..Deployment::default()
    };
    let once = [event(2_000, "a", swapped), event(2_004, "b", swapped)];
    let got: Vec<MarkKind> = marks(&[d(vec![swap.clone()])], &once)
        .iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(got, [MarkKind::Swap]);
    // Moved, verified badly, moved back: two swaps, the second a rollback.
    swap.ok = false;
    let twice = [
        event(2_000, "a", swapped),
        event(2_004, "b", swapped),
        event(5_000, "a", swapped),
        event(5_001, "b", swapped),
    ];
    let got: Vec<(MarkKind, Duration)> = marks(&[d(vec![swap])], &twice)
        .iter()
        .map(|m| (m.kind, m.at))
        .collect();
    assert_eq!(
        got,
        [(MarkKind::Swap, ms(2_000)), (MarkKind::Rollback, ms(5_000))]
    );
}

#[test]
fn the_swap_is_the_first_answer_by_the_new_version_when_the_marker_was_seen_late() {
    let mut run = two_deployments();
    // The run saw the swap 300 ms after v2 first answered (at 6.1 s).
    run.marks[0].at = ms(6_400);
    let s = run.summary(1);
    assert_eq!(s.swap_at, Some(ms(6_100)));
    assert_eq!((s.old_after_swap, s.cutover), (Some(1), Some(ms(200))));
}

#[test]
fn latency_percentiles_per_second_count_only_production_requests() {
    let mut run = two_deployments();
    for (i, s) in run.samples.iter_mut().enumerate() {
        s.latency = ms(i as u64 % 10 + 1);
    }
    let l = run.latency_per_second();
    assert_eq!(l.first().map(|x| x.0), Some(2), "before production: none");
    assert_eq!(l.len(), 8);
    assert!(l
        .iter()
        .all(|(_, p50, p99)| *p50 == ms(5) && *p99 == ms(10)));
    assert_eq!(percentile(&[ms(1), ms(2), ms(3), ms(4)], 50.0), ms(2));
    assert_eq!(percentile(&[], 99.0), ms(0));
}

#[test]
fn a_passing_run_says_so() {
    let mut run = two_deployments();
    for s in &mut run.samples {
        if s.status == 503 {
            s.status = 200;
            s.version = Some("v2".into());
        }
    }
    assert!(run.ok());
    assert_eq!(
        run.verdict(),
        "PASS: 2 deployments reached production; 0 of 80 requests failed"
    );
    run.deployments[1].failure = Some("SmokeTest / SmokeTest failed: no".into());
    assert_eq!(
        run.verdict(),
        "FAIL: deployment #2 stopped: SmokeTest / SmokeTest failed: no"
    );
}

pub(crate) fn fixture() -> Run {
    two_deployments()
}

#[test]
fn the_99_percent_cutover_is_the_first_slice_after_which_old_answers_stay_under_1_percent() {
    let swap = ms(10_000);
    // Slice 0: half old; slice 1: 1 old in 200 (0.5 %); slice 2: 5 old in 100; slice 3 on: new.
    let mut answers = vec![];
    for i in 0..100u64 {
        answers.push((swap + ms(i * 5), i % 2 == 0));
        answers.push((swap + ms(500 + i * 2), i != 0));
        answers.push((swap + ms(500 + i * 2 + 1), true));
        answers.push((swap + ms(1000 + i * 5), i >= 5));
        answers.push((swap + ms(1500 + i * 5), true));
    }
    assert_eq!(time_to_99(&answers, swap), Some(ms(1500)));
    // All new from the start: at once.
    let clean: Vec<(Duration, bool)> = (0..10).map(|i| (swap + ms(i * 100), true)).collect();
    assert_eq!(time_to_99(&clean, swap), Some(Duration::ZERO));
    assert_eq!(time_to_99(&[], swap), None);
}

#[test]
fn instance_counts_are_reported_when_they_change() {
    let at = |t: u64, a: usize, b: usize| {
        (
            ms(t),
            [("shop-a".to_string(), a), ("shop-b".to_string(), b)]
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let timeline = vec![
        at(0, 2, 2),
        at(250, 2, 2),
        at(500, 3, 2),
        at(750, 2, 2),
        at(2000, 1, 1),
    ];
    let changes = instance_changes(&timeline, ms(0), ms(1000));
    assert_eq!(changes["shop-a"], [(ms(0), 2), (ms(500), 3), (ms(750), 2)]);
    assert_eq!(
        describe_instances(&changes),
        "shop-a 2 -> 3 (at 0.5 s) -> 2 (at 0.8 s); shop-b 2"
    );
}

#[test]
fn answers_by_the_new_version_before_the_swap_are_counted() {
    let mut run = two_deployments();
    // The first deployment had no other version in production before it: nothing to count.
    assert_eq!(run.summary(0).new_before_swap, None);
    // v2 first answered at the swap (6.1 s), after the Swap action began at 5.9 s.
    let second = run.summary(1);
    assert_eq!(second.new_before_swap, Some(0));
    assert!(
        describe_cutover(&second).contains("answered by the new version before the swap: 0"),
        "{}",
        describe_cutover(&second)
    );
    assert_eq!(cutover_json(&second)["new_before_swap"], 0);
    // Production answered with v2 at 4 s and 5 s, before the Swap action began: both counted.
    for at in [4_000, 5_000] {
        let i = run.samples.iter().position(|s| s.at == ms(at)).unwrap();
        run.samples[i].version = Some("v2".into());
    }
    assert_eq!(run.summary(1).new_before_swap, Some(2));
}

/// The page's instances-per-environment charts come from what the probe sampled: one series per
/// environment, at every change, 0 once it is gone, held to the end of the run.
#[test]
fn instances_per_environment_become_one_series_each() {
    let counts = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
        pairs.iter().map(|(e, n)| (e.to_string(), *n)).collect()
    };
    let timeline = vec![
        (ms(0), counts(&[("a", 2)])),
        (ms(500), counts(&[("a", 2), ("b", 0)])),
        (ms(1_000), counts(&[("a", 2), ("b", 2)])),
        (ms(1_500), counts(&[("a", 3), ("b", 2)])),
        (ms(2_000), counts(&[("b", 2)])),
    ];
    let mut run = Run::new("t", "http://x/", vec![], vec![], vec![], ms(3_000));
    run.set_instances(timeline.clone());
    assert_eq!(run.instances, timeline);
    let series = |name: &str, points: Vec<(Duration, f64)>| Series {
        name: name.into(),
        unit: "instances".into(),
        points,
    };
    assert_eq!(
        run.series,
        [
            series(
                "a",
                vec![
                    (ms(0), 2.0),
                    (ms(1_500), 3.0),
                    (ms(2_000), 0.0),
                    (ms(3_000), 0.0)
                ]
            ),
            series(
                "b",
                vec![(ms(500), 0.0), (ms(1_000), 2.0), (ms(3_000), 2.0)]
            ),
        ]
    );
}

/// Once every answer comes from the new version, 99 % do: a run that ends within the slice of the old
/// version's last answer still has its 99 % time (the demo's said "99 % after -, 100 % after 3.8 s").
#[test]
fn the_99_percent_time_is_never_missing_when_the_100_percent_one_is_there() {
    let mut samples: Vec<Sample> = (0..15).map(|i| sample(i * 100, 200, Some("v1"))).collect();
    samples.push(sample(1_450, 200, Some("v2")));
    let mut swap = span("Swap / Swap", 900, 1_500);
    swap.summary = "swapped CNAMEs: `b` now serves ...".into();
    let deployments = vec![
        Deployment {
            label: "#1".into(),
            version: Some("v1".into()),
            ..Deployment::default()
        },
        Deployment {
            label: "#2".into(),
            version: Some("v2".into()),
            start: ms(500),
            end: ms(1_500),
            actions: vec![swap],
            ..Deployment::default()
        },
    ];
    let events = vec![event(
        1_000,
        "b",
        "Completed swapping CNAMEs for environments 'a' and 'b'.",
    )];
    let run = Run::new("t", "http://x/", samples, deployments, events, ms(1_500));
    let second = run.summary(1);
    assert_eq!(second.swap_at, Some(ms(1_000)));
    assert_eq!(second.cutover, Some(ms(450)));
    assert_eq!(second.to_99, Some(ms(450)));
}
