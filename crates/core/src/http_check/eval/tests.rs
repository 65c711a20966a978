use super::*;
use crate::http_check::spec::{CheckSpec, VersionCheck};

fn observed(status: u16, body: &str) -> Observed {
    Observed {
        status,
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("x-app-version".into(), "v2".into()),
            ("set-cookie".into(), "secret".into()),
        ],
        body: body.into(),
        body_truncated: false,
        final_url: "http://h.example/".into(),
        unfollowed_redirect: None,
    }
}

fn check(json: &str) -> Expect {
    let spec: CheckSpec = serde_json::from_str(json).unwrap();
    Expect::from_check(&spec, "checks[0]").unwrap()
}

fn version(json: &str) -> Expect {
    let v: VersionCheck = serde_json::from_str(json).unwrap();
    Expect::from_version(&v, "version").unwrap()
}

#[test]
fn responses_are_judged_against_every_rule() {
    let fast = Duration::from_millis(20);
    let slow = Duration::from_millis(900);
    let mut redirect = observed(302, "");
    redirect.unfollowed_redirect = Some("http://elsewhere.example/".into());
    let cases: Vec<(Expect, Observed, Duration, Vec<&str>)> = vec![
        (check(r#"{"path":"/"}"#), observed(200, "hi"), fast, vec![]),
        (check(r#"{"path":"/"}"#), observed(204, ""), fast, vec![]),
        (
            check(r#"{"path":"/"}"#),
            observed(500, "boom"),
            fast,
            vec!["status 500, expected 2xx"],
        ),
        (
            check(r#"{"path":"/","status":[200,"3xx"]}"#),
            observed(301, ""),
            fast,
            vec![],
        ),
        (
            check(r#"{"path":"/","status":"200-201"}"#),
            observed(204, ""),
            fast,
            vec!["status 204, expected 200-201"],
        ),
        (
            check(r#"{"path":"/"}"#),
            redirect,
            fast,
            vec!["status 302, expected 2xx (redirect to http://elsewhere.example/ not followed)"],
        ),
        // A wrong status hides body rules (they would describe an error page) but not latency.
        (
            check(r#"{"path":"/","body_contains":"ok","max_latency_ms":100}"#),
            observed(503, "down"),
            slow,
            vec![
                "status 503, expected 2xx",
                "took 900 ms, more than the maximum of 100 ms",
            ],
        ),
        (
            check(r#"{"path":"/","body_contains":"ok"}"#),
            observed(200, "all ok"),
            fast,
            vec![],
        ),
        (
            check(r#"{"path":"/","body_contains":"ok"}"#),
            observed(200, "fine"),
            fast,
            vec!["body does not contain `ok`"],
        ),
        (
            check(r#"{"path":"/","body_regex":"^v\\d+$"}"#),
            observed(200, "v12"),
            fast,
            vec![],
        ),
        (
            check(r#"{"path":"/","body_regex":"^v\\d+$"}"#),
            observed(200, "vx"),
            fast,
            vec!["body does not match /^v\\d+$/"],
        ),
        (
            check(r#"{"path":"/","json":{"/status":"ok","/db/up":true}}"#),
            observed(200, r#"{"status":"ok","db":{"up":true}}"#),
            fast,
            vec![],
        ),
        (
            check(r#"{"path":"/","json":{"/status":"ok"}}"#),
            observed(200, r#"{"status":"degraded"}"#),
            fast,
            vec![r#"JSON `/status` is "degraded", expected "ok""#],
        ),
        (
            check(r#"{"path":"/","json":{"/db/up":true}}"#),
            observed(200, r#"{"status":"ok"}"#),
            fast,
            vec!["JSON has nothing at `/db/up`, expected true"],
        ),
        (
            check(r#"{"path":"/","json":{"/status":"ok"}}"#),
            observed(200, "<html>"),
            fast,
            vec!["body is not JSON"],
        ),
        (
            check(r#"{"path":"/","max_latency_ms":100}"#),
            observed(200, ""),
            slow,
            vec!["took 900 ms, more than the maximum of 100 ms"],
        ),
        (
            version(r#"{"expected":"v2"}"#),
            observed(200, "v2\n"),
            fast,
            vec![],
        ),
        (
            version(r#"{"expected":"v2"}"#),
            observed(200, "v1\n"),
            fast,
            vec!["wrong version: expected `v2`, the app serves `v1`"],
        ),
        (
            version(r#"{"expected":"v2"}"#),
            observed(200, ""),
            fast,
            vec!["wrong version: expected `v2`, the app reports nothing"],
        ),
        (
            version(r#"{"expected":"v2"}"#),
            observed(404, "not found"),
            fast,
            vec!["status 404, expected 2xx"],
        ),
        (
            version(r#"{"expected":"v2","header":"X-App-Version"}"#),
            observed(200, "whatever"),
            fast,
            vec![],
        ),
        (
            version(r#"{"expected":"v3","header":"X-Other"}"#),
            observed(200, ""),
            fast,
            vec!["no `X-Other` header to read the version from (expected version `v3`)"],
        ),
        (
            version(r#"{"expected":"v2","json_pointer":"/version"}"#),
            observed(200, r#"{"version":"v2"}"#),
            fast,
            vec![],
        ),
        (
            version(r#"{"expected":"7","json_pointer":"/build"}"#),
            observed(200, r#"{"build":7}"#),
            fast,
            vec![],
        ),
        (
            version(r#"{"expected":"v2","json_pointer":"/version"}"#),
            observed(200, r#"{"version":"v1"}"#),
            fast,
            vec!["expected `v2`, the app serves `v1`"],
        ),
    ];
    for (i, (expect, obs, latency, want)) in cases.into_iter().enumerate() {
        let got = evaluate(&expect, &obs, latency);
        assert_eq!(got.len(), want.len(), "case {i}: {got:?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(g.contains(w), "case {i}: expected {w:?} in {g:?}");
        }
    }
}

#[test]
fn excerpts_are_one_readable_line_within_the_limit() {
    let cases = [
        ("", 10, "(empty)"),
        ("  \n\t ", 10, "(empty)"),
        ("ok\n", 10, "ok"),
        ("<h1>\n  Error\r\n</h1>\u{0}", 100, "<h1> Error </h1>"),
        ("abcdefghij", 4, "abcd… (6 more characters)"),
        ("ééééé", 2, "éé… (3 more characters)"),
    ];
    for (body, max, expected) in cases {
        assert_eq!(excerpt(body, max), expected, "{body:?}");
    }
    assert_eq!(clip("abcdef", 4), "abc…");
    assert_eq!(clip("abc", 4), "abc");
}

#[test]
fn only_headers_of_interest_are_shown() {
    let headers: Vec<(String, String)> = [
        ("Content-Type", "text/html"),
        ("Set-Cookie", "session=secret"),
        ("Location", "http://x/"),
        ("X-App-Version", "v2"),
        ("Authorization-Info", "x"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let shown: Vec<String> = interesting_headers(&headers)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(shown, ["content-type", "location", "x-app-version"]);
}

fn result(
    name: &str,
    status: Result<u16, TransportKind>,
    ms: u64,
    problems: &[&str],
) -> CheckResult {
    CheckResult {
        name: name.into(),
        method: "GET".into(),
        url: "http://h.example/x".into(),
        latency: Duration::from_millis(ms),
        response: match status {
            Ok(s) => Ok(Observed {
                final_url: "http://h.example/x".into(),
                ..observed(s, "unhealthy\n")
            }),
            Err(kind) => Err(Transport {
                kind,
                message: "tcp connect error: Connection refused (os error 111)".into(),
            }),
        },
        problems: problems.iter().map(|s| s.to_string()).collect(),
        not_answering: matches!(status, Err(TransportKind::Connect) | Ok(502..=504)),
    }
}

#[test]
fn the_table_has_a_row_per_check_over_all_rounds() {
    let rounds = vec![
        Round {
            number: 1,
            results: vec![
                result("GET /", Ok(200), 12, &[]),
                result("GET /health", Ok(200), 5, &[]),
            ],
        },
        Round {
            number: 2,
            results: vec![
                result("GET /", Ok(200), 30, &[]),
                result("GET /health", Ok(500), 7, &["status 500, expected 2xx"]),
            ],
        },
    ];
    let table = summary_table(&rounds);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines,
        [
            "check        passed  status   slowest  result",
            "GET /        2/2     200      30 ms    ok",
            "GET /health  1/2     200,500  7 ms     FAIL: status 500, expected 2xx",
        ],
        "{table}"
    );
    assert_eq!(summary_table(&[]), "(no checks ran)");
    assert!(!rounds[1].passed());
    assert!(!rounds[1].not_answering());
    assert_eq!(rounds[1].first_failure().unwrap().name, "GET /health");

    let refused = Round {
        number: 1,
        results: vec![
            result(
                "GET /",
                Err(TransportKind::Connect),
                1,
                &["could not connect"],
            ),
            result("GET /a", Ok(503), 1, &["status 503, expected 2xx"]),
        ],
    };
    assert!(refused.not_answering());
    assert!(summary_table(&[refused]).contains("no connection"));
}

#[test]
fn a_failure_is_described_with_request_response_headers_and_body() {
    let r = result("GET /health", Ok(500), 7, &["status 500, expected 2xx"]);
    let text = r.describe();
    assert_eq!(
        text,
        "check `GET /health` failed: status 500, expected 2xx\n  request: GET http://h.example/x\n  response: 500 Internal Server Error in 7 ms\n  headers: content-type: text/plain; x-app-version: v2\n  body: unhealthy\n"
    );
    let r = result(
        "GET /",
        Err(TransportKind::Connect),
        3,
        &["could not connect"],
    );
    assert!(
        r.describe().contains(
            "  no response after 3 ms: could not connect: tcp connect error: Connection refused"
        ),
        "{}",
        r.describe()
    );
}
