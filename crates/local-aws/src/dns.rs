//! DNS as clients see it: an environment's CNAME and its load balancer's DNS name resolve to that
//! load balancer's listener ([`crate::lb`]); a custom domain resolves through Route 53 (moto) to the
//! environment CNAME (or load balancer name) its alias or CNAME record points at, choosing among
//! weighted records by weight. Every answer carries a TTL, as DNS answers do: Beanstalk's CNAMEs are
//! observed with 60 s (FIDELITY.md, "DNS"), a Route 53 CNAME record has its own, an alias answers with
//! its target's. Locally every TTL is scaled by `Options::dns_ttl` / 60 s, so that "60 s" takes
//! what the run can afford; clients (the load probe) keep each answer for its TTL.
//!
//! Route 53's records are read at most every [`PROPAGATION`]: a change reaches the name servers a
//! moment after ChangeResourceRecordSets (GetChange PENDING -> INSYNC), and a load test must not turn
//! into a Route 53 load test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::state::State;

/// How long Route 53's records are reused before they are read again.
const PROPAGATION: Duration = Duration::from_millis(500);

/// The TTL AWS gives Beanstalk CNAMEs and load balancer names (observed), which `Options::dns_ttl`
/// stands for locally.
pub const AWS_CNAME_TTL: Duration = Duration::from_secs(60);

/// A record's target: the name it points at, its weight, and its TTL (none for an alias: the target's
/// applies).
#[derive(Debug, Clone, PartialEq)]
pub struct Pointer {
    pub name: String,
    pub weight: i64,
    pub ttl: Option<Duration>,
}

type Targets = Vec<Pointer>;

/// A resolved name: where to connect, how long the answer may be kept (already scaled), and the
/// names followed to get there.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    pub address: SocketAddr,
    #[serde(serialize_with = "millis")]
    pub ttl: Duration,
    pub chain: Vec<String>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// The environment `host` names: one whose CNAME it is (while the environment is not terminating), or
/// whose load balancer's DNS name it is (while the load balancer exists).
pub fn environment_of(state: &State, host: &str) -> Option<String> {
    let host = normalise(host);
    state
        .beanstalk
        .environments
        .values()
        .find(|e| {
            (e.is_live() && e.status != "Terminating" && e.cname == host)
                || (e.endpoint_url == host && state.lbs.contains_key(&e.id))
        })
        .map(|e| e.id.clone())
}

/// `aws` scaled to the local run: `dns_ttl` for every 60 s.
pub fn scaled(aws: Duration, dns_ttl: Duration) -> Duration {
    dns_ttl.mul_f64(aws.as_secs_f64() / AWS_CNAME_TTL.as_secs_f64())
}

/// Resolves `name` as a client's resolver would, to the load balancer it reaches.
pub async fn answer(rt: &crate::lifecycle::Runtime, name: &str) -> Option<Answer> {
    let name = normalise(name);
    let direct = |name: &str| {
        let state = rt.shared.lock();
        let env_id = environment_of(&state, name)?;
        let env = state.beanstalk.environments.get(&env_id)?;
        let lb = state.lbs.get(&env_id)?;
        let mut chain = vec![name.to_string()];
        if env.endpoint_url != name {
            chain.push(env.endpoint_url.clone());
        }
        Some(Answer {
            address: lb.addr,
            ttl: state.beanstalk.options.dns_ttl,
            chain,
        })
    };
    if let Some(a) = direct(&name) {
        return Some(a);
    }
    let pointer = rt.dns.resolve(&name).await?;
    let mut a = direct(&pointer.name)?;
    if let Some(ttl) = pointer.ttl {
        let dns_ttl = rt.shared.lock().beanstalk.options.dns_ttl;
        a.ttl = a.ttl.min(scaled(ttl, dns_ttl));
    }
    a.chain.insert(0, name);
    Some(a)
}

pub struct Resolver {
    route53: Option<aws_sdk_route53::Client>,
    cache: Mutex<BTreeMap<String, (Instant, Targets)>>,
}

impl Resolver {
    pub async fn new(endpoint: Option<String>) -> Resolver {
        let endpoint = endpoint.or_else(|| std::env::var("AWS_ENDPOINT_URL_ROUTE_53").ok());
        let route53 = match endpoint {
            Some(e) => Some(aws_sdk_route53::Client::new(&crate::sdk_config(e).await)),
            None => None,
        };
        Resolver {
            route53,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The name `host` points at (one pick by weight when records are weighted), if Route 53 knows it.
    pub async fn resolve(&self, host: &str) -> Option<Pointer> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(host)
                .filter(|(at, _)| at.elapsed() < PROPAGATION)
                .map(|(_, targets)| targets.clone())
        };
        let targets = match cached {
            Some(t) => t,
            None => {
                let fresh = self.lookup(host).await;
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(host.to_string(), (Instant::now(), fresh.clone()));
                fresh
            }
        };
        pick(&targets, random_unit())
    }

    /// Every target for `host` across the hosted zones that could hold it.
    async fn lookup(&self, host: &str) -> Targets {
        let Some(route53) = &self.route53 else {
            return vec![];
        };
        let Ok(zones) = route53.list_hosted_zones().send().await else {
            return vec![];
        };
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let mut targets = vec![];
        for zone in zones.hosted_zones() {
            if !fqdn.ends_with(zone.name()) {
                continue;
            }
            let Ok(records) = route53
                .list_resource_record_sets()
                .hosted_zone_id(zone.id())
                .start_record_name(&fqdn)
                .send()
                .await
            else {
                continue;
            };
            for record in records.resource_record_sets() {
                if !record.name().eq_ignore_ascii_case(&fqdn) {
                    continue;
                }
                let weight = record.weight().unwrap_or(1);
                if let Some(alias) = record.alias_target() {
                    targets.push(Pointer {
                        name: normalise(alias.dns_name()),
                        weight,
                        ttl: None,
                    });
                } else if record.r#type().as_str() == "CNAME" {
                    let ttl = record
                        .ttl()
                        .map(|t| Duration::from_secs(t.max(0).unsigned_abs()));
                    for value in record.resource_records() {
                        targets.push(Pointer {
                            name: normalise(value.value()),
                            weight,
                            ttl,
                        });
                    }
                }
            }
        }
        targets
    }
}

/// `dualstack.shop-prod.us-east-1.elasticbeanstalk.com.` -> `shop-prod.us-east-1.elasticbeanstalk.com`.
fn normalise(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.strip_prefix("dualstack.").unwrap_or(&name).to_string()
}

/// A weighted choice; `unit` in [0, 1). Weight 0 records get traffic only when all weights are 0.
fn pick(targets: &[Pointer], unit: f64) -> Option<Pointer> {
    let total: i64 = targets.iter().map(|p| p.weight.max(0)).sum();
    if total == 0 {
        return targets.first().cloned();
    }
    let mut point = unit * total as f64;
    for target in targets {
        let w = target.weight.max(0) as f64;
        if point < w {
            return Some(target.clone());
        }
        point -= w;
    }
    targets.last().cloned()
}

fn random_unit() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    f64::from(n) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, weight: i64) -> Pointer {
        Pointer {
            name: name.into(),
            weight,
            ttl: None,
        }
    }

    #[test]
    fn picks_by_weight() {
        let t = vec![p("a", 90), p("b", 10)];
        let name = |unit| pick(&t, unit).map(|p| p.name);
        assert_eq!(name(0.0).as_deref(), Some("a"));
        assert_eq!(name(0.89).as_deref(), Some("a"));
        assert_eq!(name(0.91).as_deref(), Some("b"));
        let zero = vec![p("a", 0), p("b", 100)];
        assert_eq!(pick(&zero, 0.0).map(|p| p.name).as_deref(), Some("b"));
        assert_eq!(pick(&[], 0.5), None);
        assert_eq!(
            normalise("dualstack.Shop-Prod.us-east-1.elasticbeanstalk.com."),
            "shop-prod.us-east-1.elasticbeanstalk.com"
        );
    }

    #[test]
    fn ttls_scale_with_the_local_cname_ttl() {
        let local = Duration::from_secs(5);
        assert_eq!(scaled(AWS_CNAME_TTL, local), local);
        assert_eq!(
            scaled(Duration::from_secs(300), local),
            Duration::from_secs(25)
        );
        assert_eq!(scaled(Duration::ZERO, local), Duration::ZERO);
    }
}
