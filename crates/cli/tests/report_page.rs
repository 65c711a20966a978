//! The report page in a real browser: a run shaped like `beanswap demo`'s (two deployments, requests
//! before production existed, a cutover from v1 to v2 with a straggler, two failures, Beanstalk's events,
//! a termination, short actions side by side) rendered by headless Chromium, which must log nothing,
//! load nothing, draw no text over another, show the run's failure count, and leave a screenshot next to
//! the page. A page broken on purpose proves the checks catch what they look for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;

use std::collections::BTreeMap;
use std::time::Duration;

use beanswap_cli::probe::Sample;
use beanswap_cli::report::{self, Deployment, Event, Run, Series, Span};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const V1: &str = "3f9c2e1a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e";
const V2: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";

/// The pipeline's actions for one deployment from `t0` (ms): `(stage, action, took ms, invocations)`.
fn actions(t0: u64, swap_note: &str) -> (Vec<Span>, u64) {
    let plan: &[(&str, &str, u64, usize)] = &[
        ("Source", "Source", 40, 1),
        ("Build", "Build", 180, 1),
        ("Package", "CheckConfig", 90, 1),
        ("Package", "Package", 1_400, 3),
        ("Stage", "Stage", 6_500, 5),
        ("SmokeTest", "SmokeTest", 350, 1),
        ("Approval", "Approve", 5, 0),
        ("Swap", "Swap", 1_900, 2),
        ("Retire", "Retire", 1_200, 2),
    ];
    let mut t = t0;
    let mut out = vec![];
    for (stage, action, took, invocations) in plan {
        out.push(Span {
            name: format!("{stage} / {action}"),
            lane: action.to_string(),
            start: ms(t),
            end: ms(t + took),
            ok: true,
            invocations: *invocations,
            lines: vec![(ms(t + took / 2), format!("{action} is working"))],
            states: vec![],
            summary: if *action == "Swap" {
                swap_note.to_string()
            } else {
                format!("{action} done")
            },
        });
        t += took + 30;
    }
    (out, t)
}

/// A run like the demo's, recorded by hand: 50 requests a second for 30 s.
fn demo_like() -> Run {
    let (first, end1) = actions(
        200,
        "`shop-v1` already serves production (...); nothing changed",
    );
    let (second, end2) = actions(
        end1 + 100,
        "swapped CNAMEs: `shop-v2` now serves `shop-prod`",
    );
    let stage1 = &first[4];
    // On the probe's 20 ms beat.
    let beat = |t: u64| t / 20 * 20;
    let up = beat(stage1.end.as_millis() as u64 + 300);
    let swap2 = &second[7];
    let swap_at = beat(swap2.start.as_millis() as u64 + 700);
    let end = end2 + 1_000;
    let mut samples = vec![];
    for i in 0..(end / 20) {
        let at = i * 20;
        let (status, version) = if at < up {
            (502, None)
        } else if at == up + 2_000 || at == up + 2_020 {
            (503, None)
        } else if at < swap_at || at == swap_at + 40 {
            (200, Some(V1))
        } else {
            (200, Some(V2))
        };
        samples.push(Sample {
            at: ms(at),
            latency: ms(2 + (i * 7) % 11 + if at % 1000 == 0 { 30 } else { 0 }),
            status,
            version: version.map(str::to_string),
            refused: None,
        });
    }
    let mut events = vec![];
    let mut event = |at: u64, env: &str, severity: &str, message: &str| {
        events.push(Event {
            at: ms(at),
            severity: severity.into(),
            environment: env.into(),
            message: message.into(),
        })
    };
    for (stage, env) in [(&first[4], "shop-v1"), (&second[4], "shop-v2")] {
        let s = stage.start.as_millis() as u64;
        event(s + 100, env, "INFO", "createEnvironment is starting.");
        event(s + 400, env, "INFO", "Using elasticbeanstalk-us-east-1-111111111111 as Amazon S3 storage bucket for environment data.");
        event(
            s + 3_000,
            env,
            "INFO",
            "Created security group named: sg-0a1b2c3d",
        );
        event(
            s + 5_900,
            env,
            "INFO",
            "Instance deployment completed successfully.",
        );
        event(
            s + 6_100,
            env,
            "INFO",
            &format!("Successfully launched environment: {env}"),
        );
    }
    event(
        swap_at - 300,
        "shop-v2",
        "INFO",
        "swapEnvironmentCNAMEs is starting.",
    );
    event(
        swap_at,
        "shop-v2",
        "INFO",
        "Completed swapping CNAMEs for environments 'shop-v1' and 'shop-v2'.",
    );
    let retire = second[8].start.as_millis() as u64;
    event(
        retire + 200,
        "shop-v1",
        "INFO",
        "terminateEnvironment is starting.",
    );
    event(
        retire + 250,
        "shop-v1",
        "WARN",
        "Environment health has transitioned from Ok to No Data.",
    );
    event(
        retire + 900,
        "shop-v1",
        "INFO",
        "terminateEnvironment completed successfully.",
    );
    let calls = |eb: u64, s3: u64, cp: u64| -> BTreeMap<String, u64> {
        [
            ("ElasticBeanstalk.DescribeEnvironments".to_string(), eb),
            ("S3.PutObject".to_string(), s3),
            ("CodePipeline.PutJobSuccessResult".to_string(), cp),
        ]
        .into()
    };
    let deployments = vec![
        Deployment {
            label: "#1".into(),
            source: "examples/app".into(),
            version: Some(V1.into()),
            start: ms(200),
            end: ms(end1),
            actions: first,
            calls: calls(31, 6, 14),
            failure: None,
        },
        Deployment {
            label: "#2".into(),
            source: "/tmp/app-v2".into(),
            version: Some(V2.into()),
            start: ms(end1 + 100),
            end: ms(end2),
            actions: second,
            calls: calls(44, 6, 16),
            failure: None,
        },
    ];
    let mut run = Run::new(
        "beanswap demo",
        "http://shop-prod.us-east-1.elasticbeanstalk.com/version",
        samples,
        deployments,
        events,
        ms(end),
    );
    // A series of the kind issue 20 adds: instances serving production.
    run.series.push(Series {
        name: "instances".into(),
        unit: String::new(),
        points: vec![
            (ms(0), 0.0),
            (ms(up), 1.0),
            (ms(swap_at), 2.0),
            (ms(retire + 900), 1.0),
        ],
    });
    run
}

#[test]
fn the_report_page_renders_clean_and_shows_the_runs_numbers() {
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let run = demo_like();
    let totals = run.totals();
    assert_eq!(totals.failures, 2, "the fixture has two failures");
    assert!(totals.before_up > 100, "and requests before production");
    let dir = tempfile::tempdir().unwrap();
    let written = report::write(&run, dir.path()).unwrap();
    let page = browser::render(&chromium, &written.html);
    eprintln!("Chromium rendered and checked the page in {:?}", page.took);
    browser::assert_clean(&page);

    // The failures shown are the run's: the count, the table's total, the picture's title.
    assert_eq!(page.metric("page failures"), totals.failures.to_string());
    assert_eq!(
        page.metric("run failures-total"),
        totals.failures.to_string()
    );
    let deployment_failures: usize = ["#1", "#2"]
        .iter()
        .map(|d| {
            page.metric(&format!("{d} failures"))
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(deployment_failures, totals.failures);
    assert!(
        page.metric("svg title").contains(&format!(
            "{} while it was up, {} failed; {} sent before it existed (grey, not failures)",
            totals.requests, totals.failures, totals.before_up
        )),
        "{}",
        page.metric("svg title")
    );
    assert_eq!(
        page.metric("page before-production"),
        totals.before_up.to_string()
    );
    assert_eq!(page.metric("page requests"), totals.requests.to_string());

    // Every part the issue names is there.
    for (selector, at_least) in [
        ("#verdict", 1),
        ("svg#timeline", 1),
        ("#timeline #before-production", 1),
        ("#timeline text.before-label", 1),
        ("#timeline rect.bar[data-class=before]", 1),
        ("#timeline rect.bar[data-class=failed]", 1),
        ("#timeline rect.bar[data-class=v0]", 1),
        ("#timeline rect.bar[data-class=v1]", 1),
        ("#timeline polyline.p50", 1),
        ("#timeline polyline.p99", 1),
        ("#timeline g.marker[data-kind=swap]", 1),
        ("#timeline g.marker[data-kind=termination]", 1),
        ("#timeline g.series", 1),
        ("table#summary [data-metric=calls]", 2),
        ("#run-verdict", 1),
    ] {
        assert!(
            page.found(selector) >= at_least,
            "{selector}: {}",
            page.checks["found"]
        );
    }
    assert_eq!(
        page.found("#timeline g.event-tick"),
        run.events.len() as u64
    );
    assert_eq!(page.found("#events-list tbody tr"), run.events.len() as u64);
    assert_eq!(page.found("#timeline g.lane"), 9, "one lane per action");
    assert_eq!(page.found("#timeline g.action"), 18, "a bar per action run");
    assert_eq!(page.found("table#summary tbody tr"), 2);
    // Each event's text is on its tick, for hovering.
    let ticks: Vec<&str> = page.checks["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for e in &run.events {
        assert!(
            ticks
                .iter()
                .any(|t| t.contains(&e.message) && t.contains(&e.environment)),
            "{}: {ticks:#?}",
            e.message
        );
    }
    // The cutover: one answer from v1 after the swap, full 60 ms after it (20 ms probe interval).
    let second = run.summary(1);
    assert_eq!(second.old_after_swap, Some(1));
    assert_eq!(page.metric("#2 old-after-swap"), "1");
    assert_eq!(
        page.metric("#2 cutover"),
        report::brief(second.cutover.unwrap())
    );
    assert_eq!(page.metric("#1 cutover"), "nothing to move");

    // The height the CLI's own screenshot is taken at (it measures nothing) covers the page.
    let estimate = report::browser::page_height(&run);
    eprintln!("page {} px tall, estimated {estimate}", page.height());
    assert!(
        (page.height().saturating_sub(40)..page.height() + 250).contains(&estimate),
        "estimated {estimate} px for a page {} px tall",
        page.height()
    );
    // A screenshot next to the page, the page's whole height.
    let png = written.html.with_file_name("report.png");
    report::browser::screenshot(&chromium, &written.html, &png, page.height()).unwrap();
    assert_eq!(
        browser::png_size(&png),
        (report::browser::WIDTH, page.height().max(200))
    );
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
    // Keep one for a person to look at when asked to.
    if let Some(keep) = std::env::var_os("BEANSWAP_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}

#[test]
fn the_checks_catch_a_console_error_a_load_from_elsewhere_and_text_over_text() {
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let written = report::write(&demo_like(), dir.path()).unwrap();
    let page = std::fs::read_to_string(&written.html).unwrap();
    let broken = page
        .replacen(
            "</header>",
            r#"</header><div style="position:absolute;top:20px;left:24px">covering the title</div>
<img src="http://example.invalid/beacon.png"><script>console.error("boom"); notAFunction();</script>"#,
            1,
        );
    std::fs::write(&written.html, broken).unwrap();
    let r = browser::render(&chromium, &written.html);
    let console = r.console.join("\n");
    assert!(console.contains("boom"), "{console}");
    assert!(console.contains("notAFunction is not defined"), "{console}");
    assert!(console.contains("example.invalid"), "{console}");
    let overlaps = r.checks["overlaps"].to_string();
    assert!(overlaps.contains("covering the title"), "{overlaps}");
}
