//! The test bed of swap's end-to-end tests: moto (S3, Route 53), local-aws (Elastic Beanstalk whose
//! environments run examples/app behind a Host router, CodePipeline's job API) and the real swap binary
//! under a local Lambda Runtime API.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_elasticbeanstalk::types::Tag;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecordSet, RrType,
};
use local_aws::beanstalk::Options;
use local_aws::proxy::CountingProxy;
use local_aws::LocalAws;
use serde_json::{json, Value};
use test_support::clients;
use test_support::identities::BedIdentities;
use test_support::lambda::{Function, Invocation};
use test_support::moto::Moto;

pub use test_support::SOLUTION_STACK as STACK;
pub const PROD: &str = "shop-prod.us-east-1.elasticbeanstalk.com";
pub const DOMAIN: &str = "shop.example.com";
pub const EB_ZONE_US_EAST_1: &str = "Z117KPS5GTRQ2G";

pub struct Bed {
    pub local: LocalAws,
    pub moto: Moto,
    /// moto behind the proxy that holds Route 53 calls to the caller's policies (swap's go through it).
    pub proxy: CountingProxy,
    /// The roles from pipeline-template.json; swap runs as its own.
    pub identities: BedIdentities,
    pub eb: aws_sdk_elasticbeanstalk::Client,
    pub s3: aws_sdk_s3::Client,
    pub r53: aws_sdk_route53::Client,
    pub http: reqwest::Client,
    pub function: Function,
}

pub async fn bed() -> Bed {
    let (local, moto) = test_support::bed::servers(Options::default()).await;
    let eb = clients::beanstalk(&local.endpoint());
    let s3 = clients::s3(&moto.endpoint());
    let r53 = clients::route53(&moto.endpoint());
    s3.create_bucket().bucket("bundles").send().await.unwrap();
    eb.create_application()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    // From here on swap calls AWS as its role from pipeline-template.json; the clients above are the
    // administrator's (the test's own setup and checks).
    let proxy = CountingProxy::start(&moto.endpoint()).await.unwrap();
    let identities = BedIdentities::load();
    test_support::bed::enforce(&local, &proxy, &identities.spec);
    let function = test_support::lambda::start(
        Path::new(env!("CARGO_BIN_EXE_swap")),
        &[
            ("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", local.endpoint()),
            ("AWS_ENDPOINT_URL_ROUTE_53", proxy.endpoint()),
            ("AWS_ENDPOINT_URL_CLOUDWATCH", local.endpoint()),
            ("AWS_ACCESS_KEY_ID", identities.key_of("swap")),
        ],
    )
    .await;
    Bed {
        local,
        moto,
        proxy,
        identities,
        eb,
        s3,
        r53,
        http: reqwest::Client::new(),
        function,
    }
}

/// One environment, read as the actions read it.
pub type Env = beanswap_core::beanstalk::Environment;

impl Bed {
    /// An application version whose app answers `/version` with `serves`.
    pub async fn version(&self, label: &str, serves: &str) {
        self.version_with(label, serves, &[]).await;
    }

    /// An application version with these files added to the example app's bundle.
    pub async fn version_with(&self, label: &str, serves: &str, files: &[(&str, &str)]) {
        let bundle = test_support::app_bundle(serves, files);
        test_support::bed::upload_version(&self.s3, &self.eb, "bundles", label, bundle).await;
    }

    /// Launches an environment as stage would (beanswap's tags) and waits until it is Ready and Green.
    pub async fn launch(&self, name: &str, prefix: &str, label: &str) -> Env {
        self.launch_sized(name, prefix, label, None).await
    }

    /// [`Bed::launch`] with Auto Scaling's MinSize and MaxSize (`aws:autoscaling:asg`) when given.
    pub async fn launch_sized(
        &self,
        name: &str,
        prefix: &str,
        label: &str,
        size: Option<(u32, u32)>,
    ) -> Env {
        let mut request = self.eb.create_environment();
        if let Some((min, max)) = size {
            for (option, value) in [("MinSize", min), ("MaxSize", max)] {
                request = request.option_settings(
                    aws_sdk_elasticbeanstalk::types::ConfigurationOptionSetting::builder()
                        .namespace("aws:autoscaling:asg")
                        .option_name(option)
                        .value(value.to_string())
                        .build(),
                );
            }
        }
        let created = request
            .application_name("shop")
            .environment_name(name)
            .cname_prefix(prefix)
            .version_label(label)
            .solution_stack_name(STACK)
            .tags(
                Tag::builder()
                    .key("beanswap:application")
                    .value("shop")
                    .build(),
            )
            .tags(Tag::builder().key("beanswap:version").value(label).build())
            .send()
            .await
            .unwrap();
        let id = created.environment_id().unwrap().to_string();
        self.wait_until(&id, |e| e.status == "Ready" && e.health == "Green")
            .await
    }

    pub async fn env(&self, id: &str) -> Env {
        self.wait_until(id, |_| true).await
    }

    /// Polls (no fixed sleep) until the environment satisfies `done`.
    pub async fn wait_until(&self, id: &str, done: impl Fn(&Env) -> bool) -> Env {
        let timeout = Duration::from_secs(40);
        let e = test_support::bed::wait_for_environment(&self.eb, id, timeout, |e| {
            done(&Env::from_sdk(e))
        })
        .await;
        Env::from_sdk(&e)
    }

    /// Whether swap marked the environment out of service (retire's grace period counts from the tag).
    pub async fn out_of_service(&self, id: &str) -> bool {
        self.tags(id)
            .await
            .contains_key("beanswap:out-of-service-since")
    }

    pub async fn tags(&self, id: &str) -> std::collections::BTreeMap<String, String> {
        let arn = format!(
            "arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/{}",
            self.env(id).await.name
        );
        self.eb
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
            .resource_tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// GET through the router with `Host: host`, as a browser resolving that name would.
    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.local.router_endpoint()))
            .header("host", host)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Polls until `host` serves `/version` = `version` (the router caches a domain's records for
    /// 500 ms, as a resolver honours a TTL), then checks it stays so for a few requests.
    pub async fn serves(&self, host: &str, version: &str) {
        let expected = (200, format!("{version}\n"));
        let started = Instant::now();
        loop {
            let got = self.get(host, "/version").await;
            if got == expected {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{host} still answers {got:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..5 {
            assert_eq!(self.get(host, "/version").await, expected, "{host}");
        }
    }

    /// The router's address, for swap's `resolve`.
    pub fn resolve(&self) -> String {
        self.local.router_addr().to_string()
    }

    pub fn swaps(&self) -> u64 {
        self.local
            .call_counts()
            .get("ElasticBeanstalk.SwapEnvironmentCNAMEs")
            .copied()
            .unwrap_or(0)
    }

    /// Invokes once; the invocation itself must succeed (the outcome goes to CodePipeline).
    pub async fn invoke(&mut self, event: &Value) -> Report {
        let invocation = self.function.invoke(event.clone()).await.unwrap();
        assert_eq!(invocation, Invocation::Response(Value::Null), "{event}");
        self.last_report(event)
    }

    /// Invokes, and again with each continuation token (as CodePipeline does, after a short wait),
    /// until the job ends. Returns every report, the final one last.
    pub async fn run_job(&mut self, event: &Value) -> Vec<Report> {
        let mut event = event.clone();
        let mut reports = vec![];
        let started = Instant::now();
        loop {
            let report = self.invoke(&event).await;
            let token = report.continuation_token();
            reports.push(report);
            let Some(token) = token else {
                return reports;
            };
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "job never ended: {reports:?}"
            );
            event["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The latest result local-aws recorded for the event's job.
    pub fn last_report(&self, event: &Value) -> Report {
        let id = event["CodePipeline.job"]["id"].as_str().unwrap();
        let r = self
            .local
            .job_results()
            .into_iter()
            .rfind(|r| r.job_id == id)
            .unwrap_or_else(|| panic!("no report for job {id}"));
        Report {
            operation: r.operation,
            body: r.request,
        }
    }

    pub async fn hosted_zone(&self) -> String {
        self.r53
            .create_hosted_zone()
            .name("example.com")
            .caller_reference(uuid_like())
            .send()
            .await
            .unwrap()
            .hosted_zone()
            .unwrap()
            .id()
            .trim_start_matches("/hostedzone/")
            .to_string()
    }

    /// A simple alias record `domain` -> `target` (what production looked like before beanswap).
    pub async fn alias(&self, zone: &str, domain: &str, target: &str) {
        let set = ResourceRecordSet::builder()
            .name(domain)
            .r#type(RrType::A)
            .alias_target(
                AliasTarget::builder()
                    .hosted_zone_id(EB_ZONE_US_EAST_1)
                    .dns_name(target)
                    .evaluate_target_health(false)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        self.r53
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(
                ChangeBatch::builder()
                    .changes(
                        Change::builder()
                            .action(ChangeAction::Upsert)
                            .resource_record_set(set)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    /// (type, set identifier, weight, target, alias zone) of every A/CNAME record named `domain`.
    pub async fn records(
        &self,
        zone: &str,
        domain: &str,
    ) -> Vec<(String, Option<String>, Option<i64>, String, Option<String>)> {
        let out = self
            .r53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .send()
            .await
            .unwrap();
        let mut records: Vec<_> = out
            .resource_record_sets()
            .iter()
            .filter(|r| r.name().trim_end_matches('.') == domain)
            .filter(|r| matches!(r.r#type(), RrType::A | RrType::Cname))
            .map(|r| {
                let (target, zone) = match r.alias_target() {
                    Some(a) => (
                        a.dns_name().trim_end_matches('.').to_string(),
                        Some(a.hosted_zone_id().to_string()),
                    ),
                    None => (
                        r.resource_records()
                            .first()
                            .map(|v| v.value().to_string())
                            .unwrap_or_default(),
                        None,
                    ),
                };
                (
                    r.r#type().as_str().to_string(),
                    r.set_identifier().map(str::to_string),
                    r.weight(),
                    target,
                    zone,
                )
            })
            .collect();
        records.sort();
        records
    }
}

fn uuid_like() -> String {
    format!(
        "{:?}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    )
}

/// A result the function sent to CodePipeline.
#[derive(Debug, Clone)]
pub struct Report {
    pub operation: String,
    pub body: Value,
}

impl Report {
    pub fn continuation_token(&self) -> Option<String> {
        self.body["continuationToken"].as_str().map(str::to_string)
    }

    pub fn summary(&self) -> &str {
        self.body["executionDetails"]["summary"]
            .as_str()
            .unwrap_or_default()
    }

    /// The final success: its output variables.
    pub fn succeeded(&self) -> &Value {
        assert_eq!(self.operation, "PutJobSuccessResult", "{}", self.body);
        assert!(self.continuation_token().is_none(), "{}", self.body);
        &self.body["outputVariables"]
    }

    /// The failure: its type and message.
    pub fn failed(&self) -> (&str, &str) {
        assert_eq!(self.operation, "PutJobFailureResult", "{}", self.body);
        (
            self.body["failureDetails"]["type"].as_str().unwrap(),
            self.body["failureDetails"]["message"].as_str().unwrap(),
        )
    }
}

/// Clients requesting `GET /version` with `Host: host` through the router until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    pub seen: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    pub failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(bed: &Bed, host: &str, clients: usize) -> Load {
        let load = Load {
            stop: Arc::default(),
            ok: Arc::default(),
            seen: Arc::default(),
            failures: Arc::default(),
            tasks: vec![],
        };
        let mut tasks = vec![];
        for _ in 0..clients {
            let (stop, ok, seen, failures) = (
                load.stop.clone(),
                load.ok.clone(),
                load.seen.clone(),
                load.failures.clone(),
            );
            let url = format!("{}/version", bed.local.router_endpoint());
            let http = bed.http.clone();
            let host = host.to_string();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).header("host", &host).send().await {
                        Ok(r) if r.status().is_success() => {
                            let body = r.text().await.unwrap_or_default();
                            ok.fetch_add(1, Ordering::Relaxed);
                            *seen
                                .lock()
                                .unwrap()
                                .entry(body.trim().to_string())
                                .or_default() += 1;
                        }
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("HTTP {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            }));
        }
        Load { tasks, ..load }
    }

    /// Waits (polling) until `n` more requests have succeeded.
    pub async fn wait_for(&self, n: u64) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        let started = Instant::now();
        while self.ok.load(Ordering::Relaxed) < target {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "load stalled: {:?}",
                self.failures.lock().unwrap().first()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients: (succeeded, failures, bodies seen with counts).
    pub async fn stop(self) -> (u64, Vec<String>, std::collections::BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let seen = self.seen.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures, seen)
    }
}
