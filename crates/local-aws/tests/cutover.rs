//! The cutover as it happens on AWS (issue 20): several instances behind each environment's load
//! balancer, health checks that take a dead instance out, DNS answers with a TTL that clients keep (so
//! the old environment keeps serving after a swap), draining on termination, the Auto Scaling group
//! following MinSize/MaxSize and its trigger. Delays are scaled to hundreds of milliseconds; every wait
//! is a poll.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_elasticbeanstalk::types::{
    ConfigurationOptionSetting, InstancesHealthAttribute, SingleInstanceHealth,
};
use aws_sdk_elasticbeanstalk::Client;
use local_aws::beanstalk::{Options, Scaling};
use local_aws::LocalAws;
use test_support::clients;
use test_support::moto::Moto;
use test_support::SOLUTION_STACK as STACK;

const PROD: &str = "shop-prod.us-east-1.elasticbeanstalk.com";

struct Bed {
    local: LocalAws,
    moto: Moto,
    eb: Client,
    s3: aws_sdk_s3::Client,
    http: reqwest::Client,
}

fn options() -> Options {
    Options {
        health_interval: Duration::from_millis(100),
        dns_ttl: Duration::from_millis(400),
        deregistration_delay: Duration::from_secs(3),
        ..Options::default()
    }
}

async fn bed(options: Options) -> Bed {
    let (local, moto) = test_support::bed::servers(options).await;
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
        moto,
        eb,
        s3,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    }
}

fn setting(namespace: &str, name: &str, value: &str) -> ConfigurationOptionSetting {
    ConfigurationOptionSetting::builder()
        .namespace(namespace)
        .option_name(name)
        .value(value)
        .build()
}

/// The answer `/_local/dns/{name}` gives: the load balancer's address and the TTL in ms, or `None`
/// (NXDOMAIN).
#[derive(Debug, serde::Deserialize)]
struct Answer {
    address: SocketAddr,
    ttl: u64,
    chain: Vec<String>,
}

impl Bed {
    async fn create(
        &self,
        name: &str,
        prefix: &str,
        label: &str,
        settings: Vec<ConfigurationOptionSetting>,
    ) -> String {
        test_support::bed::upload_version(
            &self.s3,
            &self.eb,
            "bundles",
            label,
            test_support::app_bundle(label, &[]),
        )
        .await;
        let id = self
            .eb
            .create_environment()
            .application_name("shop")
            .environment_name(name)
            .cname_prefix(prefix)
            .version_label(label)
            .solution_stack_name(STACK)
            .set_option_settings(Some(settings))
            .send()
            .await
            .unwrap()
            .environment_id()
            .unwrap()
            .to_string();
        self.wait_status(&id, "Ready").await;
        id
    }

    async fn wait_status(&self, id: &str, status: &str) {
        test_support::bed::wait_for_environment(&self.eb, id, Duration::from_secs(30), |e| {
            e.status().map(|s| s.as_str()) == Some(status)
        })
        .await;
    }

    async fn resolve(&self, name: &str) -> Option<Answer> {
        let r = self
            .http
            .get(format!("{}/_local/dns/{name}", self.local.endpoint()))
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            return None;
        }
        Some(r.json().await.unwrap())
    }

    /// GET `path` from the load balancer at `address`, as a client that resolved `host` to it:
    /// (status, body, why the load balancer refused), or `None` when the connection fails.
    async fn get_at(
        &self,
        address: SocketAddr,
        host: &str,
        path: &str,
    ) -> Option<(u16, String, Option<String>)> {
        let r = self
            .http
            .get(format!("http://{address}{path}"))
            .header("host", host)
            .send()
            .await
            .ok()?;
        let refused = r
            .headers()
            .get(local_aws::lb::REFUSED_HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        Some((r.status().as_u16(), r.text().await.ok()?, refused))
    }

    async fn instances(&self, id: &str) -> Vec<SingleInstanceHealth> {
        self.eb
            .describe_instances_health()
            .environment_id(id)
            .attribute_names(InstancesHealthAttribute::All)
            .send()
            .await
            .unwrap()
            .instance_health_list()
            .to_vec()
    }

    /// Polls until `done` holds for the environment's instances, at most 30 s.
    async fn wait_instances(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&[SingleInstanceHealth]) -> bool,
    ) -> Vec<SingleInstanceHealth> {
        let started = Instant::now();
        loop {
            let instances = self.instances(id).await;
            if done(&instances) {
                return instances;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "waiting for {what}: {instances:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn requests(i: &SingleInstanceHealth) -> i32 {
    i.application_metrics()
        .map(|m| m.request_count())
        .unwrap_or(0)
}

fn status(i: &SingleInstanceHealth) -> &str {
    i.health_status().unwrap_or_default()
}

#[tokio::test]
async fn instances_follow_min_size_share_the_traffic_and_a_killed_one_is_taken_out() {
    let bed = bed(options()).await;
    let asg = "aws:autoscaling:asg";
    let process = "aws:elasticbeanstalk:environment:process:default";
    let id = bed
        .create(
            "shop-a",
            "shop-prod",
            "v1",
            vec![
                setting(asg, "MinSize", "2"),
                setting(asg, "MaxSize", "3"),
                setting(process, "UnhealthyThresholdCount", "2"),
            ],
        )
        .await;
    let instances = bed.instances(&id).await;
    assert_eq!(instances.len(), 2, "{instances:#?}");
    assert_eq!(bed.local.instance_counts().get("shop-a"), Some(&2));

    // Round-robin: both instances answer.
    for _ in 0..20 {
        assert_eq!(bed.get_via_router("/version").await, (200, "v1\n".into()));
    }
    let instances = bed.instances(&id).await;
    assert!(
        instances.iter().all(|i| requests(i) >= 10),
        "every instance served its share: {instances:#?}"
    );

    // One instance's app dies: its requests fail until the health checks take it out, then every
    // request reaches the other one.
    let dead = instances[1].instance_id().unwrap().to_string();
    assert!(bed.local.kill_instance(&dead));
    bed.wait_instances(&id, "the killed instance Severe", |list| {
        list.iter()
            .any(|i| i.instance_id() == Some(&dead) && status(i) == "Severe")
    })
    .await;
    // The load balancer takes it out after UnhealthyThresholdCount failed checks.
    let started = Instant::now();
    let mut good_in_a_row = 0;
    while good_in_a_row < 40 {
        let (code, _) = bed.get_via_router("/version").await;
        good_in_a_row = if code == 200 { good_in_a_row + 1 } else { 0 };
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "traffic never recovered"
        );
    }
    let env = bed
        .eb
        .describe_environment_health()
        .environment_id(&id)
        .attribute_names(aws_sdk_elasticbeanstalk::types::EnvironmentHealthAttribute::All)
        .send()
        .await
        .unwrap();
    assert_eq!(env.health_status(), Some("Warning"), "{env:#?}");
    assert!(
        env.causes()
            .iter()
            .any(|c| c.starts_with("1 out of 2 instances are impaired.")),
        "{env:#?}"
    );

    // UpdateEnvironment MinSize 3: the group runs three. A size change is no deployment: the running
    // instances keep running, the killed app's instance included (the group's health check is EC2's by
    // default, so a dead app on a running instance is not replaced: EB DG, "Auto Scaling health check").
    bed.eb
        .update_environment()
        .environment_id(&id)
        .option_settings(setting(asg, "MinSize", "3"))
        .send()
        .await
        .unwrap();
    bed.wait_status(&id, "Ready").await;
    let instances = bed
        .wait_instances(&id, "three instances, two Ok", |list| {
            list.len() == 3 && list.iter().filter(|i| status(i) == "Ok").count() == 2
        })
        .await;
    assert_eq!(instances.len(), 3);
    assert!(
        instances
            .iter()
            .any(|i| i.instance_id() == Some(&dead) && status(i) == "Severe"),
        "{instances:#?}"
    );
}

/// An instance whose health check starts failing is taken out after UnhealthyThresholdCount failed
/// checks (it still answers, the load balancer just stops sending it requests) and put back after
/// HealthyThresholdCount good ones once it recovers (ELB UG, "Health checks for your target groups").
#[tokio::test]
async fn an_instance_that_fails_its_health_check_is_taken_out_and_put_back_when_it_recovers() {
    let bed = bed(options()).await;
    let asg = "aws:autoscaling:asg";
    let process = "aws:elasticbeanstalk:environment:process:default";
    let id = bed
        .create(
            "shop-a",
            "shop-prod",
            "v1",
            vec![
                setting(asg, "MinSize", "2"),
                setting(asg, "MaxSize", "2"),
                setting(process, "HealthCheckPath", "/health"),
                setting(process, "UnhealthyThresholdCount", "2"),
                setting(process, "HealthyThresholdCount", "2"),
            ],
        )
        .await;
    let instances = bed
        .wait_instances(&id, "two instances Ok", |list| {
            list.len() == 2 && list.iter().all(|i| status(i) == "Ok")
        })
        .await;
    let sick = instances[1].instance_id().unwrap().to_string();
    let other = instances[0].instance_id().unwrap().to_string();
    let counts = || async {
        let list = bed.instances(&id).await;
        let of = |id: &str| {
            list.iter()
                .find(|i| i.instance_id() == Some(id))
                .map_or(0, requests)
        };
        (of(&sick), of(&other))
    };
    // Sends a batch through the load balancer: (the sick instance's, the other's) requests served
    // meanwhile, by the 10 s windows' counts (records older than a batch do not leave them in time).
    let batch = || async {
        let before = counts().await;
        for _ in 0..20 {
            assert_eq!(bed.get_via_router("/version").await, (200, "v1\n".into()));
        }
        let after = counts().await;
        (
            after.0 as i64 - before.0 as i64,
            after.1 as i64 - before.1 as i64,
        )
    };
    let (to_sick, to_other) = batch().await;
    assert!(
        to_sick > 0 && to_other > 0,
        "round-robin: {to_sick}, {to_other}"
    );

    // The example app's switch: its /health answers 503 on this instance only.
    let dir = bed
        .local
        .instance_dir(&sick)
        .expect("the instance's app runs");
    std::fs::write(dir.join("HEALTH_STATUS"), "503").unwrap();
    bed.wait_instances(&id, "the sick instance impaired", |list| {
        list.iter()
            .any(|i| i.instance_id() == Some(sick.as_str()) && status(i) != "Ok")
    })
    .await;
    let started = Instant::now();
    loop {
        let (to_sick, to_other) = batch().await;
        if to_sick <= 0 && to_other >= 15 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the failing instance was never taken out"
        );
    }

    // It recovers: after HealthyThresholdCount good checks it gets requests again.
    std::fs::remove_file(dir.join("HEALTH_STATUS")).unwrap();
    bed.wait_instances(&id, "both instances Ok again", |list| {
        list.len() == 2 && list.iter().all(|i| status(i) == "Ok")
    })
    .await;
    let started = Instant::now();
    loop {
        let (to_sick, to_other) = batch().await;
        if to_sick > 0 && to_other > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the recovered instance never got requests again"
        );
    }
}

impl Bed {
    /// GET through the shared router (a client resolving the CNAME for every request).
    async fn get_via_router(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.local.router_endpoint()))
            .header("host", PROD)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn dns_answers_carry_a_ttl_and_a_cached_answer_keeps_reaching_the_old_environment() {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord};
    use aws_sdk_route53::types::{ResourceRecordSet, RrType};
    let bed = bed(options()).await;
    let blue = bed.create("shop-blue", "shop-prod", "v1", vec![]).await;
    let green = bed.create("shop-green", "shop-green", "v2", vec![]).await;

    let before = bed.resolve(PROD).await.unwrap();
    assert_eq!(before.ttl, 400, "the CNAME's 60 s, scaled: {before:?}");
    assert_eq!(before.chain[0], PROD);
    assert!(
        before.chain[1].ends_with(".elb.amazonaws.com"),
        "{before:?}"
    );
    bed.eb
        .swap_environment_cnames()
        .source_environment_id(&blue)
        .destination_environment_id(&green)
        .send()
        .await
        .unwrap();
    // A fresh resolution reaches green; a client still holding the old answer reaches blue, which
    // serves it: nothing moves a client before its cache expires.
    let after = bed.resolve(PROD).await.unwrap();
    assert_ne!(after.address, before.address);
    let fresh = bed.get_at(after.address, PROD, "/version").await.unwrap();
    assert_eq!((fresh.0, fresh.1.as_str()), (200, "v2\n"));
    let cached = bed.get_at(before.address, PROD, "/version").await.unwrap();
    assert_eq!((cached.0, cached.1.as_str()), (200, "v1\n"));

    // A Route 53 CNAME record's own TTL, scaled alike (300 s -> 5 x 400 ms), caps at the CNAME's.
    let route53 = clients::route53(&bed.moto.endpoint());
    let zone = route53
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("cutover")
        .send()
        .await
        .unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().to_string();
    let record = |name: &str, ttl: i64| {
        Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(
                ResourceRecordSet::builder()
                    .name(name)
                    .r#type(RrType::Cname)
                    .ttl(ttl)
                    .resource_records(ResourceRecord::builder().value(PROD).build().unwrap())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    route53
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(record("shop.example.com", 15))
                .changes(record("www.example.com", 300))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let short = bed.resolve("shop.example.com").await.unwrap();
    assert_eq!(short.ttl, 100, "15 s scaled: {short:?}");
    assert_eq!(short.address, after.address);
    assert_eq!(short.chain[..2], ["shop.example.com", PROD]);
    let long = bed.resolve("www.example.com").await.unwrap();
    assert_eq!(long.ttl, 400, "the shorter of the chain's TTLs: {long:?}");
    assert!(bed.resolve("nothing.example.com").await.is_none());
}

#[tokio::test]
async fn a_terminated_environment_drains_then_its_load_balancer_is_gone() {
    let bed = bed(options()).await;
    let env = "aws:elasticbeanstalk:application:environment";
    let id = bed
        .create(
            "shop-old",
            "shop-prod",
            "v1",
            vec![setting(env, "SLOW_MS", "1500")],
        )
        .await;
    let answer = bed.resolve(PROD).await.unwrap();
    let lb_name = answer.chain[1].clone();
    // A request in flight when the termination starts...
    let in_flight = {
        let http = bed.http.clone();
        let url = format!("http://{}/version", answer.address);
        tokio::spawn(async move {
            let r = http.get(url).header("host", PROD).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    bed.eb
        .terminate_environment()
        .environment_id(&id)
        .send()
        .await
        .unwrap();
    // ...new ones are refused while the targets deregister...
    let refused = bed.get_at(answer.address, PROD, "/version").await.unwrap();
    assert_eq!(refused.0, 503);
    assert_eq!(refused.2.as_deref(), Some("draining"));
    // ...the one in flight finishes...
    assert_eq!(in_flight.await.unwrap(), (200, "v1\n".into()));
    // ...then the load balancer is deleted: its name stops resolving and its address stops answering.
    let started = Instant::now();
    while bed.resolve(&lb_name).await.is_some() {
        assert!(started.elapsed() < Duration::from_secs(10), "never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(bed.resolve(PROD).await.is_none());
    bed.wait_status(&id, "Terminated").await;
    assert!(bed.get_at(answer.address, PROD, "/version").await.is_none());
}

#[tokio::test]
async fn the_scaling_trigger_grows_a_loaded_environment_and_shrinks_it_when_idle() {
    let bed = bed(Options {
        scaling: Some(Scaling {
            upper: 15.0,
            lower: 2.0,
            window: Duration::from_millis(500),
        }),
        ..options()
    })
    .await;
    let asg = "aws:autoscaling:asg";
    let id = bed
        .create(
            "shop-a",
            "shop-prod",
            "v1",
            vec![setting(asg, "MinSize", "1"), setting(asg, "MaxSize", "2")],
        )
        .await;
    let answer = bed.resolve(PROD).await.unwrap();
    // About 50 requests a second on one instance: above the upper threshold.
    let load = {
        let http = bed.http.clone();
        let url = format!("http://{}/version", answer.address);
        tokio::spawn(async move {
            loop {
                let _ = http.get(&url).header("host", PROD).send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    bed.wait_instances(&id, "a second instance", |list| {
        list.len() == 2 && list.iter().all(|i| status(i) == "Ok")
    })
    .await;
    load.abort();
    // Idle: back to MinSize.
    bed.wait_instances(&id, "back to one instance", |list| list.len() == 1)
        .await;
    // Each step writes Beanstalk's event (meteor-up/mup-aws-beanstalk #149 shows both).
    let events = bed
        .eb
        .describe_events()
        .environment_id(&id)
        .send()
        .await
        .unwrap();
    let messages: Vec<&str> = events.events().iter().filter_map(|e| e.message()).collect();
    for (prefix, suffix) in [
        ("Added instance [i-0", "] to your environment."),
        ("Removed instance [i-0", "] from your environment."),
    ] {
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with(prefix) && m.ends_with(suffix)),
            "{messages:#?}"
        );
    }
}

#[tokio::test]
async fn an_instance_beyond_its_capacity_answers_503_as_an_overloaded_target() {
    let bed = bed(Options {
        instance_capacity: 1,
        ..options()
    })
    .await;
    let env = "aws:elasticbeanstalk:application:environment";
    bed.create(
        "shop-a",
        "shop-prod",
        "v1",
        vec![setting(env, "SLOW_MS", "800")],
    )
    .await;
    let answer = bed.resolve(PROD).await.unwrap();
    let busy = {
        let http = bed.http.clone();
        let url = format!("http://{}/version", answer.address);
        tokio::spawn(async move {
            let r = http.get(url).header("host", PROD).send().await.unwrap();
            r.status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = bed.get_at(answer.address, PROD, "/version").await.unwrap();
    assert_eq!(second.0, 503);
    assert_eq!(second.2.as_deref(), Some("overloaded"));
    assert_eq!(busy.await.unwrap(), 200);
}
