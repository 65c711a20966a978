#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::beanstalk::{
    ApplicationVersion, Environment, TAG_APPLICATION, TAG_OUT_OF_SERVICE_SINCE, TAG_VERSION,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

const PROD: &str = "shop-prod";

fn at(minutes_ago: u64) -> SystemTime {
    now() - Duration::from_secs(minutes_ago * 60)
}
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

struct E {
    name: &'static str,
    prefix: &'static str,
    status: &'static str,
    app_tag: Option<&'static str>,
    out_since: Option<u64>,
    created: u64,
    updated: u64,
}

fn e(name: &'static str, prefix: &'static str) -> E {
    E {
        name,
        prefix,
        status: "Ready",
        app_tag: Some("shop"),
        out_since: None,
        created: 600,
        updated: 600,
    }
}
impl E {
    fn out(mut self, minutes_ago: u64) -> Self {
        self.out_since = Some(minutes_ago);
        self
    }
    fn created(mut self, minutes_ago: u64) -> Self {
        self.created = minutes_ago;
        self.updated = minutes_ago;
        self
    }
    fn updated(mut self, minutes_ago: u64) -> Self {
        self.updated = minutes_ago;
        self
    }
    fn status(mut self, s: &'static str) -> Self {
        self.status = s;
        self
    }
    fn tag(mut self, app: Option<&'static str>) -> Self {
        self.app_tag = app;
        self
    }
    fn facts(&self) -> EnvFacts {
        let mut tags = BTreeMap::new();
        if let Some(app) = self.app_tag {
            tags.insert(TAG_APPLICATION.to_string(), app.to_string());
        }
        if let Some(m) = self.out_since {
            tags.insert(TAG_OUT_OF_SERVICE_SINCE.to_string(), format_time(at(m)));
        }
        EnvFacts {
            env: Environment {
                id: format!("e-{}", self.name),
                name: self.name.into(),
                application: "shop".into(),
                version_label: Some(format!("v-{}", self.name)),
                cname: format!("{}.us-east-1.elasticbeanstalk.com", self.prefix),
                status: self.status.into(),
                health: "Green".into(),
                health_status: None,
                arn: String::new(),
                created: Some(at(self.created)),
            },
            tags,
            updated: Some(at(self.updated)),
            endpoint_url: Some(format!(
                "awseb-e-{}-AWSEBLoa-X-1.us-east-1.elb.amazonaws.com",
                self.name
            )),
        }
    }
}

fn decide(envs: &[E], keep: usize, grace_min: u64, targets: &[&str]) -> Vec<(String, Decision)> {
    let facts: Vec<EnvFacts> = envs.iter().map(E::facts).collect();
    let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
    let policy = Policy {
        application: "shop",
        production_cname: PROD,
        record_targets: &targets,
        keep,
        grace: Duration::from_secs(grace_min * 60),
        now: now(),
        busy_patience: None,
    };
    plan(&facts, &policy)
        .unwrap()
        .envs
        .into_iter()
        .map(|p| (p.name, p.decision))
        .collect()
}

/// A due environment that is busy for a moment (the swap's tag change on it) is looked at again
/// soon while the job's patience lasts, and only then reported as skipped; never forced.
#[test]
fn a_busy_environment_is_waited_for_then_skipped() {
    let envs = [e("p", PROD), e("a", "shop-a").out(300).status("Updating")];
    let facts: Vec<EnvFacts> = envs.iter().map(E::facts).collect();
    let mut policy = Policy {
        application: "shop",
        production_cname: PROD,
        record_targets: &[],
        keep: 0,
        grace: Duration::from_secs(600),
        now: now(),
        busy_patience: Some(now() + Duration::from_secs(60)),
    };
    let decision = |policy: &Policy| plan(&facts, policy).unwrap().envs[1].decision.clone();
    assert_eq!(
        decision(&policy),
        Decision::Busy {
            status: "Updating".into(),
            until: now() + BUSY_RECHECK
        }
    );
    policy.busy_patience = Some(now());
    assert_eq!(
        decision(&policy),
        Decision::Skip(SkipReason::Transitional("Updating".into()))
    );
}

fn live() -> Decision {
    Decision::Live {
        by: "holds the production CNAME shop-prod.us-east-1.elasticbeanstalk.com".into(),
    }
}
fn skip(r: SkipReason) -> Decision {
    Decision::Skip(r)
}

#[test]
fn environments_are_kept_terminated_waited_for_or_left_alone() {
    use Decision::*;
    // (what, environments, keep, grace in minutes, expected decisions)
    type Case = (&'static str, Vec<E>, usize, u64, Vec<Decision>);
    let cases: Vec<Case> = vec![
        (
            "keep=1: newest old kept, older two terminated, live untouched",
            vec![
                e("a", "shop-a").out(300),
                e("b", "shop-b").out(200),
                e("c", "shop-c").out(100),
                e("d", PROD).created(50),
            ],
            1,
            10,
            vec![Terminate, Terminate, Keep, live()],
        ),
        (
            "production is never touched, even tagged out of service long ago",
            vec![e("p", PROD).out(10_000), e("a", "shop-a").out(300)],
            0,
            10,
            vec![live(), Terminate],
        ),
        (
            "grace period: out of service 5 minutes of 10 waits",
            vec![e("p", PROD), e("a", "shop-a").out(5)],
            0,
            10,
            vec![
                live(),
                Wait {
                    until: at(5) + Duration::from_secs(600),
                },
            ],
        ),
        (
            "transitional environments are skipped, not forced",
            vec![
                e("p", PROD),
                e("a", "shop-a").out(300).status("Updating"),
                e("b", "shop-b").out(200).status("Launching"),
            ],
            0,
            10,
            vec![
                live(),
                skip(SkipReason::Transitional("Updating".into())),
                skip(SkipReason::Transitional("Launching".into())),
            ],
        ),
        (
            "a transitional environment still takes its keep slot",
            vec![
                e("p", PROD),
                e("a", "shop-a").out(300),
                e("b", "shop-b").out(200).status("Updating"),
            ],
            1,
            10,
            vec![live(), Terminate, Keep],
        ),
        (
            "untagged or other application's environments are left alone",
            vec![
                e("p", PROD),
                e("x", "shop-x").out(300).tag(None),
                e("y", "shop-y").out(300).tag(Some("blog")),
            ],
            0,
            10,
            vec![
                live(),
                skip(SkipReason::NotTagged),
                skip(SkipReason::NotTagged),
            ],
        ),
        (
            "already terminating",
            vec![
                e("p", PROD),
                e("a", "shop-a").out(300).status("Terminating"),
            ],
            0,
            10,
            vec![live(), skip(SkipReason::Terminating)],
        ),
        (
            "no tag: counted from the last update, which is later than creation",
            vec![
                e("p", PROD).created(900),
                e("a", "shop-a").created(1000).updated(5),
                e("b", "shop-b").created(1000).updated(60),
            ],
            0,
            10,
            vec![
                live(),
                Wait {
                    until: at(5) + Duration::from_secs(600),
                },
                Terminate,
            ],
        ),
        (
            "no tag and newer than the live environment: the next release, left alone",
            vec![e("p", PROD).created(900), e("n", "shop-n").created(30)],
            0,
            10,
            vec![live(), skip(SkipReason::Pending)],
        ),
        (
            "a tagged environment newer than live is an old production (swapped back), not pending",
            vec![
                e("p", PROD).created(900),
                e("a", "shop-a").created(30).out(20),
            ],
            0,
            10,
            vec![live(), Terminate],
        ),
        (
            "keep larger than the candidates keeps all",
            vec![
                e("p", PROD),
                e("a", "shop-a").out(300),
                e("b", "shop-b").out(200),
            ],
            5,
            10,
            vec![live(), Keep, Keep],
        ),
    ];
    for (what, envs, keep, grace, expected) in cases {
        let got: Vec<Decision> = decide(&envs, keep, grace, &[])
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn the_route53_target_is_live_too() {
    let got = decide(
        &[e("p", PROD), e("w", "shop-w").out(300)],
        0,
        10,
        &["dualstack.SHOP-W.us-east-1.elasticbeanstalk.com."],
    );
    assert_eq!(
        got[1].1,
        Decision::Live {
            by: "target of the production Route 53 record".into()
        }
    );
}

#[test]
fn an_alias_to_the_load_balancer_is_live_and_an_unknown_target_stops_everything() {
    let got = decide(
        &[e("p", PROD), e("w", "shop-w").out(300)],
        0,
        10,
        &["dualstack.awseb-e-w-awsebloa-x-1.us-east-1.elb.amazonaws.com."],
    );
    assert_eq!(
        got[1].1,
        Decision::Live {
            by: "target of the production Route 53 record".into()
        }
    );
    let facts = vec![e("p", PROD).facts(), e("a", "shop-a").out(300).facts()];
    let targets = vec!["d111.cloudfront.net".to_string()];
    let policy = Policy {
        application: "shop",
        production_cname: PROD,
        record_targets: &targets,
        keep: 0,
        grace: Duration::ZERO,
        now: now(),
        busy_patience: None,
    };
    let err = plan(&facts, &policy).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "the production Route 53 record points at d111.cloudfront.net, which is neither"
        ),
        "{err}"
    );
}

#[test]
fn without_a_live_environment_nothing_is_planned() {
    let facts = vec![e("a", "shop-a").out(300).facts()];
    let policy = Policy {
        application: "shop",
        production_cname: "shop-prd",
        record_targets: &[],
        keep: 0,
        grace: Duration::ZERO,
        now: now(),
        busy_patience: None,
    };
    let err = plan(&facts, &policy).unwrap_err().to_string();
    assert!(
        err.contains("holds the production CNAME `shop-prd`"),
        "{err}"
    );
    assert!(err.contains("refusing to retire anything"), "{err}");
}

#[test]
fn times_parse_as_swap_writes_them() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_322_800);
    for s in [
        "2026-01-02T03:00:00Z",
        "2026-01-02T03:00:00+00:00",
        " 2026-01-02T03:00:00Z ",
    ] {
        assert_eq!(parse_time(s), Some(t), "{s}");
    }
    assert_eq!(parse_time("yesterday"), None);
    assert_eq!(parse_time(&format_time(t)), Some(t));
}

#[test]
fn an_unreadable_tag_falls_back_to_the_last_update() {
    let mut a = e("a", "shop-a").created(1000).updated(3).facts();
    a.tags
        .insert(TAG_OUT_OF_SERVICE_SINCE.into(), "soon".into());
    let facts = vec![e("p", PROD).created(900).facts(), a];
    let policy = Policy {
        application: "shop",
        production_cname: PROD,
        record_targets: &[],
        keep: 0,
        grace: Duration::from_secs(600),
        now: now(),
        busy_patience: None,
    };
    let p = plan(&facts, &policy).unwrap();
    assert_eq!(p.envs[1].since, Some((at(3), SinceBasis::LastUpdate)));
    assert_eq!(p.wait_until(), Some(at(3) + Duration::from_secs(600)));
}

#[test]
fn weighted_records_at_zero_do_not_count_while_another_carries_weight() {
    let r = |t: &str, w: Option<i64>| RecordTarget {
        target: t.into(),
        weight: w,
    };
    let cases: Vec<(Vec<RecordTarget>, Vec<&str>)> = vec![
        (vec![r("a.x.com.", None)], vec!["a.x.com"]),
        (
            vec![r("a.x.com", Some(255)), r("b.x.com", Some(0))],
            vec!["a.x.com"],
        ),
        (
            vec![r("a.x.com", Some(10)), r("b.x.com", Some(1))],
            vec!["a.x.com", "b.x.com"],
        ),
        (
            vec![r("a.x.com", Some(0)), r("b.x.com", Some(0))],
            vec!["a.x.com", "b.x.com"],
        ),
        (vec![], vec![]),
    ];
    for (records, expected) in cases {
        assert_eq!(live_targets(&records), expected, "{records:?}");
    }
}

fn v(label: &str, minutes_ago: u64, status: &str, bundle: Option<&str>) -> ApplicationVersion {
    ApplicationVersion {
        label: label.into(),
        created: Some(at(minutes_ago)),
        status: status.into(),
        bundle: bundle.map(|k| ("bundles".to_string(), k.to_string())),
    }
}

#[test]
fn pruning_keeps_the_newest_the_used_and_the_busy() {
    let versions = vec![
        v("v6", 1, "Processing", Some("v6.zip")),
        v("v5", 2, "Processed", Some("v5.zip")),
        v("v4", 3, "Processed", Some("v4.zip")),
        v("v3", 4, "Processed", Some("v3.zip")),
        v("v2", 5, "Processed", Some("shared.zip")),
        v("v1", 6, "Unprocessed", Some("shared.zip")),
        v("v0", 7, "Failed", None),
    ];
    let cases: Vec<(&str, usize, &[&str], bool, PrunePlan)> = vec![
        (
            "keep 1, v3 in use, v2 shares v1's bundle",
            1,
            &["v3"],
            true,
            PrunePlan {
                delete: vec![
                    VersionDeletion {
                        label: "v0".into(),
                        bundle: None,
                    },
                    VersionDeletion {
                        label: "v1".into(),
                        bundle: Some(("bundles".into(), "shared.zip".into())),
                    },
                    VersionDeletion {
                        label: "v2".into(),
                        bundle: Some(("bundles".into(), "shared.zip".into())),
                    },
                    VersionDeletion {
                        label: "v4".into(),
                        bundle: Some(("bundles".into(), "v4.zip".into())),
                    },
                    VersionDeletion {
                        label: "v5".into(),
                        bundle: Some(("bundles".into(), "v5.zip".into())),
                    },
                ],
                in_use: vec!["v3".into()],
                newest: vec!["v6".into()],
                busy: vec![],
            },
        ),
        (
            "keep 5 keeps v2, so the shared bundle stays; bundles only when asked",
            5,
            &[],
            false,
            PrunePlan {
                delete: vec![
                    VersionDeletion {
                        label: "v0".into(),
                        bundle: None,
                    },
                    VersionDeletion {
                        label: "v1".into(),
                        bundle: None,
                    },
                ],
                in_use: vec![],
                newest: vec![
                    "v6".into(),
                    "v5".into(),
                    "v4".into(),
                    "v3".into(),
                    "v2".into(),
                ],
                busy: vec![],
            },
        ),
        (
            "a busy version beyond keep stays",
            0,
            &["v0", "v1", "v2", "v3", "v4", "v5"],
            true,
            PrunePlan {
                delete: vec![],
                in_use: vec![
                    "v5".into(),
                    "v4".into(),
                    "v3".into(),
                    "v2".into(),
                    "v1".into(),
                    "v0".into(),
                ],
                newest: vec![],
                busy: vec!["v6".into()],
            },
        ),
    ];
    for (what, keep, used, bundles, expected) in cases {
        let used: BTreeSet<String> = used.iter().map(|s| s.to_string()).collect();
        let mut got = plan_pruning(&versions, &used, keep, bundles);
        if !bundles {
            assert!(got.delete.iter().all(|d| d.bundle.is_none()), "{what}");
        }
        if what.starts_with("keep 5") {
            // shared.zip is kept by v2, so v1 would not delete it even when bundles are asked for.
            let with = plan_pruning(&versions, &used, keep, true);
            assert_eq!(with.delete[1].bundle, None, "{what}");
        }
        got.delete.sort_by(|a, b| a.label.cmp(&b.label));
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn versions_in_use_come_from_labels_and_tags() {
    let mut a = e("a", "shop-a").facts();
    a.env.version_label = None;
    a.tags.insert(TAG_VERSION.into(), "v9".into());
    let b = e("b", "shop-b").facts();
    let used = versions_in_use(&[a, b]);
    assert_eq!(used.into_iter().collect::<Vec<_>>(), vec!["v-b", "v9"]);
}

/// The idle rule: past the grace period, an environment goes only once it has served no request for
/// the DNS TTL, counted across looks; any request starts the count again; without metrics it waits one
/// TTL after the grace period.
#[test]
fn an_environment_goes_only_once_idle_for_the_dns_ttl() {
    let ttl = Duration::from_secs(60);
    let due = at(5);
    let window = Duration::from_secs(10);
    let served = |n| {
        Some(Traffic {
            requests: n,
            window,
        })
    };
    // Still serving cached clients: waits, and says how much it served.
    let (d, quiet) = idle(served(42), None, ttl, due, now());
    assert_eq!(
        d,
        Decision::Idling {
            until: now() + ttl,
            traffic: served(42)
        }
    );
    assert_eq!(quiet, None);
    // First quiet look: quiet since the window began, not yet for the TTL.
    let (d, quiet) = idle(served(0), None, ttl, due, now());
    let since = now() - window;
    assert_eq!(quiet, Some(since));
    assert_eq!(
        d,
        Decision::Idling {
            until: since + ttl,
            traffic: served(0)
        }
    );
    // Later looks, all quiet: the count goes on from the first quiet moment...
    let later = now() + Duration::from_secs(30);
    let (d, q) = idle(served(0), quiet, ttl, due, later);
    assert!(matches!(d, Decision::Idling { until, .. } if until == since + ttl));
    assert_eq!(q, Some(since));
    // ...and it goes once quiet for the TTL.
    let (d, _) = idle(served(0), quiet, ttl, due, since + ttl);
    assert_eq!(d, Decision::Terminate);
    // One request in between starts over.
    let (d, q) = idle(served(1), quiet, ttl, due, since + ttl);
    assert!(matches!(d, Decision::Idling { .. }));
    assert_eq!(q, None);
    // A metrics window as long as the TTL proves it at one look.
    let (d, _) = idle(
        Some(Traffic {
            requests: 0,
            window: ttl,
        }),
        None,
        ttl,
        due,
        now(),
    );
    assert_eq!(d, Decision::Terminate);
    // No metrics (enhanced health off): one TTL after the grace period ended.
    let (d, _) = idle(None, None, ttl, due, due + Duration::from_secs(59));
    assert_eq!(
        d,
        Decision::Idling {
            until: due + ttl,
            traffic: None
        }
    );
    assert_eq!(idle(None, None, ttl, due, due + ttl).0, Decision::Terminate);
}

#[tokio::test]
async fn enhanced_health_is_read_through_the_beanstalk_trait() {
    use crate::beanstalk::BeanstalkApi;
    let fake = crate::fakes::FakeBeanstalk::with(vec![crate::fakes::environment(
        "shop", "shop-old", "shop-old", "v1",
    )]);
    let quiet = fake
        .enhanced_health("e-shop-old")
        .await
        .unwrap()
        .traffic()
        .unwrap();
    assert_eq!(quiet.requests, 0);
    fake.set_traffic(
        "shop-old",
        Some(Traffic {
            requests: 7,
            window: Duration::from_secs(10),
        }),
    );
    let busy = fake.enhanced_health("e-shop-old").await.unwrap();
    assert_eq!(busy.traffic().unwrap().requests, 7);
    fake.set_traffic("shop-old", None);
    let off = fake.enhanced_health("e-shop-old").await.unwrap();
    assert_eq!(off.traffic(), None);
    assert_eq!(fake.count("DescribeEnvironmentHealth"), 3);
}
