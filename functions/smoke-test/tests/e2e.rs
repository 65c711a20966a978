//! The smoke-test binary under the real lambda_runtime against a local Runtime API, checking small HTTP
//! apps started here on free ports, with its CodePipeline results recorded by local-aws.

// Test helpers may panic: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use test_support::lambda::{Function, Invocation};
use test_support::{job_event, LocalAws};
use tokio::sync::oneshot;

/// A small web app on 127.0.0.1, stopped when dropped.
struct App {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl App {
    async fn start(router: Router) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        App::serve(listener, router)
    }

    fn serve(listener: tokio::net::TcpListener, router: Router) -> App {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        App {
            addr,
            stop: Some(stop),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The healthy app: `/`, `/health`, `/version` (v42), `/api/info` (JSON, needs `X-Smoke: yes`).
fn healthy(version: &'static str) -> Router {
    Router::new()
        .route("/", get(|| async { "<h1>shop</h1>" }))
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/version",
            get(move || async move { format!("{version}\n") }),
        )
        .route(
            "/api/info",
            get(move |headers: HeaderMap| async move {
                if headers.get("x-smoke").and_then(|v| v.to_str().ok()) != Some("yes") {
                    return (StatusCode::UNAUTHORIZED, "missing X-Smoke\n").into_response();
                }
                axum::Json(json!({"status": "ok", "version": version, "db": {"up": true}}))
                    .into_response()
            }),
        )
}

async fn function(local: &LocalAws) -> Function {
    test_support::lambda::start(
        Path::new(env!("CARGO_BIN_EXE_smoke-test")),
        &[("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint())],
    )
    .await
}

/// Every result local-aws recorded for this job, in order: (operation, request body).
fn results(local: &LocalAws, event: &Value) -> Vec<(String, Value)> {
    let id = event["CodePipeline.job"]["id"].as_str().unwrap();
    local
        .job_results()
        .into_iter()
        .filter(|r| r.job_id == id)
        .map(|r| (r.operation, r.request))
        .collect()
}

/// Invokes once and returns what this invocation reported.
async fn run(function: &mut Function, local: &LocalAws, event: &Value) -> (String, Value) {
    let before = results(local, event).len();
    assert_eq!(
        function.invoke(event.clone()).await.unwrap(),
        Invocation::Response(Value::Null)
    );
    let mut all = results(local, event);
    assert_eq!(all.len(), before + 1, "one report per invocation: {all:?}");
    all.pop().unwrap()
}

fn failure(reported: &(String, Value)) -> String {
    let (operation, body) = reported;
    assert_eq!(operation, "PutJobFailureResult", "{body}");
    assert_eq!(body["failureDetails"]["type"], "JobFailed", "{body}");
    body["failureDetails"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

fn params(value: Value) -> Value {
    job_event(&value.to_string())
}

#[tokio::test]
async fn a_healthy_app_passes_every_check_in_every_round() {
    let local = test_support::local_aws().await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = App::start(healthy("v42").layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            counted.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        },
    )))
    .await;
    let mut function = function(&local).await;

    let event = params(json!({
        "url": app.url(),
        "checks": [
            {"path": "/"},
            {"path": "/health", "body_contains": "ok", "max_latency_ms": 5000},
            {"name": "info", "path": "/api/info", "headers": {"X-Smoke": "yes"}, "status": 200,
             "json": {"/status": "ok", "/db/up": true}, "body_regex": "\"version\":\\s*\"v\\d+\""},
        ],
        "version": {"path": "/version", "expected": "v42"},
        "rounds": 3,
    }));
    let (operation, body) = run(&mut function, &local, &event).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    assert!(body.get("continuationToken").is_none(), "{body}");
    let variables = body["outputVariables"].as_object().unwrap();
    let names: Vec<&str> = variables.keys().map(String::as_str).collect();
    assert_eq!(names, smoke_test::OUTPUT_VARIABLES);
    assert_eq!(variables["Passed"], "true");
    let summary = variables["Summary"].as_str().unwrap();
    assert_contains(
        summary,
        &[
            "smoke test passed: 4 checks x 3 rounds against http://127.0.0.1:",
            "GET /health",
            "info",
            "version /version",
            "3/3",
        ],
    );
    assert!(!summary.contains("FAIL"), "{summary}");
    assert_eq!(
        body["executionDetails"]["summary"].as_str().unwrap(),
        summary
    );
    assert_eq!(hits.load(Ordering::SeqCst), 12);

    // No checks given: GET / expecting 2xx or 3xx, and a URL without a scheme means http.
    let bare = params(json!({"url": app.addr.to_string()}));
    let (operation, body) = run(&mut function, &local, &bare).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    assert_contains(
        body["outputVariables"]["Summary"].as_str().unwrap(),
        &["1 checks x 1 rounds", "GET /  1/1     200"],
    );
}

#[tokio::test]
async fn ten_checks_in_three_rounds_take_well_under_a_second() {
    let local = test_support::local_aws().await;
    let app = App::start(healthy("v1")).await;
    let mut function = function(&local).await;
    let checks: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("check {i}"), "path": if i % 2 == 0 { "/" } else { "/health" }}))
        .collect();
    let event = params(json!({"url": app.url(), "checks": checks, "rounds": 3}));
    let started = Instant::now();
    let (operation, body) = run(&mut function, &local, &event).await;
    let elapsed = started.elapsed();
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    let summary = body["outputVariables"]["Summary"].as_str().unwrap();
    eprintln!("10 checks x 3 rounds: {elapsed:?} for the invocation\n{summary}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_health_endpoint_answering_500_fails_naming_status_headers_and_body() {
    let local = test_support::local_aws().await;
    let app = App::start(Router::new().route("/", get(|| async { "home" })).route(
        "/health",
        get(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("x-app-version", "v42")],
                "database connection refused\n  at pool.rs:42\n",
            )
        }),
    ))
    .await;
    let mut function = function(&local).await;
    let event = params(json!({"url": app.url(), "checks": [{"path": "/"}, {"path": "/health"}]}));
    // A 500 is the app speaking, not a load balancer waiting for it: no warm-up, an immediate failure.
    let message = failure(&run(&mut function, &local, &event).await);
    assert_contains(
        &message,
        &[
            "smoke test failed in round 1 of 1 against http://127.0.0.1:",
            "check `GET /health` failed: status 500, expected 2xx",
            "request: GET http://127.0.0.1:",
            "response: 500 Internal Server Error in ",
            "headers: content-type: text/plain; charset=utf-8",
            "x-app-version: v42",
            "body: database connection refused at pool.rs:42",
            "checks:\ncheck",
            "GET /        1/1",
            "GET /health  0/1     500",
        ],
    );
    assert!(message.chars().count() <= 5000);
}

#[tokio::test]
async fn a_slow_app_fails_naming_the_latency_or_the_timeout() {
    let local = test_support::local_aws().await;
    let app = App::start(Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "finally"
        }),
    ))
    .await;
    let mut function = function(&local).await;

    let over_latency =
        params(json!({"url": app.url(), "checks": [{"path": "/slow", "max_latency_ms": 100}]}));
    let message = failure(&run(&mut function, &local, &over_latency).await);
    assert_contains(
        &message,
        &[
            "check `GET /slow` failed: took ",
            "ms, more than the maximum of 100 ms",
            "response: 200 OK in ",
            "body: finally",
        ],
    );

    let over_timeout =
        params(json!({"url": app.url(), "checks": [{"path": "/slow"}], "timeout_ms": 150}));
    let message = failure(&run(&mut function, &local, &over_timeout).await);
    assert_contains(
        &message,
        &[
            "check `GET /slow` failed: no complete answer within the request timeout of 150 ms",
            "no response after ",
            "GET /slow  0/1     timeout",
        ],
    );
}

#[tokio::test]
async fn the_wrong_version_fails_naming_expected_and_seen() {
    let local = test_support::local_aws().await;
    let app = App::start(healthy("v41")).await;
    let mut function = function(&local).await;
    let event = params(json!({"url": app.url(), "version": {"expected": "v42"}, "rounds": 2}));
    let message = failure(&run(&mut function, &local, &event).await);
    assert_contains(
        &message,
        &[
            "smoke test failed in round 1 of 2",
            "check `version /version` failed: wrong version: expected `v42`, the app serves `v41`",
            "body: v41",
        ],
    );
    // The version read from a JSON field of another path.
    let json_version = params(json!({"url": app.url(),
        "version": {"path": "/api/info", "json_pointer": "/version", "expected": "v42"}}));
    let message = failure(&run(&mut function, &local, &json_version).await);
    // /api/info wants a header the version check does not send: the status is what fails.
    assert_contains(
        &message,
        &["status 401, expected 2xx", "body: missing X-Smoke"],
    );
}

#[tokio::test]
async fn an_app_that_never_starts_waits_with_continuation_tokens_then_fails_after_the_window() {
    let local = test_support::local_aws().await;
    let mut function = function(&local).await;
    let port = test_support::free_port();
    let mut event = params(json!({
        "url": format!("http://127.0.0.1:{port}"),
        "checks": [{"path": "/health"}],
        "warmup": {"window_seconds": 1, "retries": 1, "backoff_ms": 50},
    }));

    let (operation, body) = run(&mut function, &local, &event).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    let token = body["continuationToken"].as_str().unwrap().to_string();
    assert!(token.starts_with("v1:{\"since_ms\":"), "{token}");
    assert!(token.ends_with(",\"attempts\":2}"), "{token}");
    assert!(body.get("outputVariables").is_none(), "{body}");
    assert!(
        body["executionDetails"]["percentComplete"]
            .as_u64()
            .unwrap()
            < 100
    );
    assert_contains(
        body["executionDetails"]["summary"].as_str().unwrap(),
        &[
            "waiting for http://127.0.0.1:",
            "attempt 2",
            "could not connect",
        ],
    );

    // Re-invoked with the token, as CodePipeline does, until the window has passed.
    let window_start = token[..token.find(',').unwrap()].to_string();
    let mut token = token;
    let mut continued = 0;
    let message = loop {
        event["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
        let reported = run(&mut function, &local, &event).await;
        if reported.0 == "PutJobFailureResult" {
            break failure(&reported);
        }
        continued += 1;
        assert!(
            continued < 200,
            "still waiting after {continued} invocations: {reported:?}"
        );
        let next = reported.1["continuationToken"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            next.starts_with(&window_start),
            "the window start is kept: {next} vs {window_start}"
        );
        assert_ne!(next, token, "each invocation counts its attempts");
        token = next;
    };
    assert_contains(
        &message,
        &[
            &format!("the environment at http://127.0.0.1:{port}/ did not answer within the warm-up window of 1 s"),
            "attempts over 1 s",
            "check `GET /health` failed: could not connect:",
            "Connection refused",
            "GET /health  0/1     no connection",
        ],
    );
}

#[tokio::test]
async fn an_app_that_starts_during_the_warm_up_passes() {
    let local = test_support::local_aws().await;
    let mut function = function(&local).await;
    let port = test_support::free_port();
    let mut event = params(json!({
        "url": format!("http://127.0.0.1:{port}"),
        "warmup": {"window_seconds": 600, "retries": 0},
    }));
    let (_, body) = run(&mut function, &local, &event).await;
    let token = body["continuationToken"].as_str().unwrap().to_string();

    // The environment comes up; the next invocation carries on from the token.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let _app = App::serve(listener, healthy("v1"));
    event["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
    let (operation, body) = run(&mut function, &local, &event).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    assert_contains(
        body["outputVariables"]["Summary"].as_str().unwrap(),
        &["smoke test passed", "it answered after 1 warm-up attempts"],
    );

    // A load balancer answering 503 until an instance is healthy: retried within one invocation.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let gateway = App::start(Router::new().route(
        "/",
        get(move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, "no healthy targets").into_response()
                } else {
                    "up".into_response()
                }
            }
        }),
    ))
    .await;
    let event = params(json!({"url": gateway.url(), "warmup": {"retries": 3, "backoff_ms": 20}}));
    let (operation, body) = run(&mut function, &local, &event).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_contains(
        body["outputVariables"]["Summary"].as_str().unwrap(),
        &["it answered after 2 warm-up attempts"],
    );
}

#[tokio::test]
async fn the_resolve_override_reaches_a_beanstalk_host_name_through_a_local_address() {
    let local = test_support::local_aws().await;
    let hosts = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = hosts.clone();
    let app = App::start(Router::new().route(
        "/health",
        get(move |headers: HeaderMap| {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            seen.lock().unwrap().push(host.clone());
            async move {
                // Like local-aws's router: only the environment's own host name is served.
                if host == "shop-blue.us-east-1.elasticbeanstalk.com" {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::NOT_FOUND, "no environment")
                }
            }
        }),
    ))
    .await;
    let mut function = function(&local).await;
    for url in [
        "http://shop-blue.us-east-1.elasticbeanstalk.com",
        "shop-blue.us-east-1.elasticbeanstalk.com",
    ] {
        let event = params(json!({
            "url": url,
            "checks": [{"path": "/health", "body_contains": "ok"}],
            "resolve": {"shop-blue.us-east-1.elasticbeanstalk.com": app.addr.to_string()},
            "rounds": 2,
        }));
        let (operation, body) = run(&mut function, &local, &event).await;
        assert_eq!(operation, "PutJobSuccessResult", "{body}");
        assert_contains(
            body["outputVariables"]["Summary"].as_str().unwrap(),
            &["against http://shop-blue.us-east-1.elasticbeanstalk.com/"],
        );
    }
    assert_eq!(
        *hosts.lock().unwrap(),
        vec!["shop-blue.us-east-1.elasticbeanstalk.com"; 4]
    );
}

#[tokio::test]
async fn redirects_to_another_host_are_not_followed_unless_allowed() {
    let local = test_support::local_aws().await;
    let elsewhere_hits = Arc::new(AtomicUsize::new(0));
    let counted = elsewhere_hits.clone();
    let elsewhere = App::start(Router::new().route(
        "/landing",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "a page that is not the environment" }
        }),
    ))
    .await;
    let app = App::start(
        Router::new()
            .route(
                "/",
                get(|| async { Redirect::to("http://other.example/landing") }),
            )
            .route("/old", get(|| async { Redirect::permanent("/new") }))
            .route("/new", get(|| async { "moved here" })),
    )
    .await;
    let mut function = function(&local).await;
    let with = |redirects: Option<&str>, path: &str| {
        let mut p = json!({
            "url": app.url(),
            "checks": [{"path": path}],
            "resolve": {"other.example": elsewhere.addr.to_string()},
        });
        if let Some(r) = redirects {
            p["redirects"] = json!(r);
        }
        params(p)
    };

    let message = failure(&run(&mut function, &local, &with(None, "/")).await);
    assert_contains(
        &message,
        &[
            "status 303, expected 2xx (redirect to http://other.example/landing not followed)",
            "location: http://other.example/landing",
        ],
    );
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);

    // On the same host, the default policy follows.
    let (operation, body) = run(&mut function, &local, &with(None, "/old")).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    // `none` follows nothing.
    let message = failure(&run(&mut function, &local, &with(Some("none"), "/old")).await);
    assert_contains(
        &message,
        &["status 308, expected 2xx (redirect to http://127.0.0.1:"],
    );
    // `any` follows to the other host.
    let (operation, body) = run(&mut function, &local, &with(Some("any"), "/")).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rounds_catch_one_broken_backend_behind_a_round_robin() {
    let local = test_support::local_aws().await;
    // Two backends behind a round-robin balancer: every other request reaches the broken one.
    let next = Arc::new(AtomicUsize::new(0));
    let balancer = next.clone();
    let app = App::start(Router::new().route(
        "/health",
        get(move || {
            let n = balancer.fetch_add(1, Ordering::SeqCst);
            async move {
                if n % 2 == 0 {
                    (StatusCode::OK, [("x-backend", "a")], "ok").into_response()
                } else {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [("x-backend", "b")],
                        "backend b: disk full",
                    )
                        .into_response()
                }
            }
        }),
    ))
    .await;
    let mut function = function(&local).await;

    // One round is lucky: it only meets backend a.
    let once = params(json!({"url": app.url(), "checks": [{"path": "/health"}]}));
    assert_eq!(
        run(&mut function, &local, &once).await.0,
        "PutJobSuccessResult"
    );

    next.store(0, Ordering::SeqCst);
    let thrice = params(json!({"url": app.url(), "checks": [{"path": "/health"}], "rounds": 3}));
    let message = failure(&run(&mut function, &local, &thrice).await);
    assert_contains(
        &message,
        &[
            "smoke test failed in round 2 of 3",
            "rounds 1 to 1 passed: some instance behind the load balancer answers differently",
            "status 500, expected 2xx",
            "body: backend b: disk full",
            "GET /health  1/2     200,500",
        ],
    );
    // It stopped at the failing round: no third request.
    assert_eq!(next.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tls_and_configuration_problems_fail_at_once_naming_the_cause() {
    let local = test_support::local_aws().await;
    let app = App::start(healthy("v1")).await;
    let mut function = function(&local).await;

    // https to a plain HTTP server: a TLS failure, not a warm-up.
    let tls = params(json!({"url": format!("https://{}", app.addr)}));
    let message = failure(&run(&mut function, &local, &tls).await);
    assert_contains(
        &message,
        &["check `GET /` failed: TLS handshake failed:", "TLS error"],
    );

    let cases = [
        (json!({"url": app.url(), "checks": [{"path": "/", "body_regex": "(("}]}),
         "UserParameters field `checks[0].body_regex`: not a valid regular expression"),
        (json!({"url": "#{Stage.Url}"}), "UserParameters field `url`: `#{Stage.Url}` still holds an unresolved pipeline variable"),
        (json!({"url": app.url(), "rounds": 11}), "UserParameters field `rounds`: 11 is out of range"),
        (json!({"url": app.url(), "checks": [{"path": "/", "expect": 200}]}), "unknown field `expect`"),
    ];
    for (p, expected) in cases {
        let event = params(p);
        let (operation, body) = run(&mut function, &local, &event).await;
        assert_eq!(operation, "PutJobFailureResult", "{body}");
        assert_eq!(
            body["failureDetails"]["type"], "ConfigurationError",
            "{body}"
        );
        assert_contains(
            body["failureDetails"]["message"].as_str().unwrap(),
            &[expected],
        );
    }
}
