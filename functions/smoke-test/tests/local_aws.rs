//! smoke-test against the example app (examples/app) really running on local-aws: environments launched
//! through the Elastic Beanstalk API from bundles in moto's S3, reached by their CNAME through local-aws's
//! Host router with the `resolve` override, as a pipeline reaches them through DNS and the load balancer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use aws_sdk_elasticbeanstalk::types::ConfigurationOptionSetting;
use aws_sdk_elasticbeanstalk::Client;
use local_aws::beanstalk::Options;
use local_aws::LocalAws;
use serde_json::{json, Value};
use test_support::clients;
use test_support::lambda::{Function, Invocation};
use test_support::moto::Moto;

use test_support::SOLUTION_STACK as STACK;

struct Bed {
    local: LocalAws,
    _moto: Moto,
    eb: Client,
    s3: aws_sdk_s3::Client,
}

async fn bed() -> Bed {
    let (local, moto) = test_support::bed::servers(Options::default()).await;
    let eb = clients::beanstalk(&local.endpoint());
    let s3 = clients::s3(&moto.endpoint());
    s3.create_bucket().bucket("bundles").send().await.unwrap();
    eb.create_application()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    Bed {
        local,
        _moto: moto,
        eb,
        s3,
    }
}

impl Bed {
    async fn version(&self, label: &str) {
        let bundle = test_support::app_bundle(label, &[]);
        test_support::bed::upload_version(&self.s3, &self.eb, "bundles", label, bundle).await;
    }

    /// Launches an environment of `label` with app environment variables; returns (id, CNAME).
    async fn launch(&self, name: &str, label: &str, vars: &[(&str, &str)]) -> (String, String) {
        let mut create = self
            .eb
            .create_environment()
            .application_name("shop")
            .environment_name(name)
            .cname_prefix(name)
            .version_label(label)
            .solution_stack_name(STACK);
        for (k, v) in vars {
            create = create.option_settings(
                ConfigurationOptionSetting::builder()
                    .namespace("aws:elasticbeanstalk:application:environment")
                    .option_name(*k)
                    .value(*v)
                    .build(),
            );
        }
        let out = create.send().await.unwrap();
        (
            out.environment_id().unwrap().to_string(),
            out.cname().unwrap().to_string(),
        )
    }

    /// Polls until the environment is Ready.
    async fn ready(&self, id: &str) {
        test_support::bed::wait_for_environment(&self.eb, id, Duration::from_secs(30), |e| {
            e.status().map(|s| s.as_str()) == Some("Ready")
        })
        .await;
    }

    /// UserParameters reaching `cname` through the router, plus `extra`.
    fn event(&self, cname: &str, extra: Value) -> Value {
        let mut p = json!({
            "url": cname,
            "resolve": {cname: self.local.router_addr().to_string()},
        });
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        test_support::job_event(&p.to_string())
    }

    async fn run(&self, function: &mut Function, event: &Value) -> (String, Value) {
        assert_eq!(
            function.invoke(event.clone()).await.unwrap(),
            Invocation::Response(Value::Null)
        );
        let id = event["CodePipeline.job"]["id"].as_str().unwrap();
        let r = self
            .local
            .job_results()
            .into_iter()
            .rev()
            .find(|r| r.job_id == id)
            .unwrap();
        (r.operation, r.request)
    }
}

fn failure(reported: &(String, Value), parts: &[&str]) {
    let (operation, body) = reported;
    assert_eq!(operation, "PutJobFailureResult", "{body}");
    assert_eq!(body["failureDetails"]["type"], "JobFailed", "{body}");
    let message = body["failureDetails"]["message"].as_str().unwrap();
    for part in parts {
        assert!(message.contains(part), "expected {part:?} in:\n{message}");
    }
}

#[tokio::test]
async fn the_example_app_on_local_aws_passes_healthy_and_fails_precisely_when_broken() {
    let bed = bed().await;
    bed.version("v1").await;
    let (healthy, healthy_cname) = bed.launch("shop-blue", "v1", &[]).await;
    let (sick, sick_cname) = bed
        .launch("shop-sick", "v1", &[("HEALTH_STATUS", "500")])
        .await;
    let (slow, slow_cname) = bed.launch("shop-slow", "v1", &[("SLOW_MS", "400")]).await;
    // Never listens: local-aws's load balancer answers 503 "no healthy instance" meanwhile.
    let (_, never_cname) = bed
        .launch("shop-never", "v1", &[("START_DELAY_SECONDS", "3600")])
        .await;
    for id in [&healthy, &sick, &slow] {
        bed.ready(id).await;
    }
    assert!(
        healthy_cname.ends_with(".elasticbeanstalk.com"),
        "{healthy_cname}"
    );
    // The function as its role from pipeline-template.json, held to it by local-aws (its only AWS calls
    // are CodePipeline's job results); the bed's clients are the administrator's.
    let identities = test_support::identities::BedIdentities::load();
    bed.local
        .set_identities(Some(test_support::identities::parse(&identities.spec)));
    let mut function = test_support::lambda::start(
        Path::new(env!("CARGO_BIN_EXE_smoke-test")),
        &[
            ("AWS_ENDPOINT_URL_CODEPIPELINE", bed.local.endpoint()),
            ("AWS_ACCESS_KEY_ID", identities.key_of("smoke-test")),
        ],
    )
    .await;

    // Healthy: every page, the JSON API and the version, three rounds.
    let event = bed.event(
        &healthy_cname,
        json!({
            "checks": [{"path": "/", "body_contains": "version v1"}, {"path": "/health"},
                       {"path": "/api/info", "json": {"/version": "v1"}}],
            "version": {"expected": "v1"},
            "rounds": 3,
        }),
    );
    let (operation, body) = bed.run(&mut function, &event).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    let summary = body["outputVariables"]["Summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!(
            "4 checks x 3 rounds against http://{healthy_cname}/"
        )),
        "{summary}"
    );

    // The wrong version.
    let event = bed.event(&healthy_cname, json!({"version": {"expected": "v2"}}));
    failure(
        &bed.run(&mut function, &event).await,
        &[
            "check `version /version` failed: wrong version: expected `v2`, the app serves `v1`",
            "x-app-version: v1",
        ],
    );
    // The same through the app's version header.
    let event = bed.event(
        &healthy_cname,
        json!({"version": {"path": "/", "header": "X-App-Version", "expected": "v2"}}),
    );
    failure(
        &bed.run(&mut function, &event).await,
        &["expected `v2`, the app serves `v1`"],
    );

    // /health answers 500.
    let event = bed.event(
        &sick_cname,
        json!({"checks": [{"path": "/"}, {"path": "/health"}]}),
    );
    failure(
        &bed.run(&mut function, &event).await,
        &[
            "check `GET /health` failed: status 500, expected 2xx",
            &format!("request: GET http://{sick_cname}/health"),
            "response: 500 Internal Server Error",
            "body: unhealthy",
        ],
    );

    // Slow answers.
    let event = bed.event(
        &slow_cname,
        json!({"checks": [{"path": "/health", "max_latency_ms": 150}]}),
    );
    failure(
        &bed.run(&mut function, &event).await,
        &[
            "check `GET /health` failed: took ",
            "more than the maximum of 150 ms",
        ],
    );

    // Never starts: continuation tokens while within the warm-up window, then a failure.
    let mut event = bed.event(
        &never_cname,
        json!({"checks": [{"path": "/health"}],
               "warmup": {"window_seconds": 1, "retries": 1, "backoff_ms": 100}}),
    );
    let mut waits = 0;
    let reported = loop {
        let reported = bed.run(&mut function, &event).await;
        let Some(token) = reported.1["continuationToken"].as_str() else {
            break reported;
        };
        waits += 1;
        assert!(waits < 100, "{reported:?}");
        event["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
    };
    assert!(waits >= 1, "the first invocation must wait: {reported:?}");
    failure(
        &reported,
        &[
            &format!("the environment at http://{never_cname}/ did not answer within the warm-up window of 1 s"),
            "status 503, expected 2xx",
            "no healthy instance",
        ],
    );
}
