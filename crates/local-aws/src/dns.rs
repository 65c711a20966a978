//! Custom domains, as DNS would resolve them: the router asks Route 53 (moto) which environment CNAME a
//! domain points at, through an alias or a CNAME record, choosing among weighted records by weight.
//! Answers are cached briefly, like a resolver honouring a short TTL, so a load test does not turn into
//! a Route 53 load test.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a resolved answer is reused.
const TTL: Duration = Duration::from_millis(500);

/// Target CNAMEs with their weights.
type Targets = Vec<(String, i64)>;

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

    /// The CNAME `host` points at (one pick by weight when records are weighted), if Route 53 knows it.
    pub async fn resolve(&self, host: &str) -> Option<String> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(host)
                .filter(|(at, _)| at.elapsed() < TTL)
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

    /// Every (target, weight) for `host` across the hosted zones that could hold it.
    async fn lookup(&self, host: &str) -> Vec<(String, i64)> {
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
                    targets.push((normalise(alias.dns_name()), weight));
                } else if record.r#type().as_str() == "CNAME" {
                    for value in record.resource_records() {
                        targets.push((normalise(value.value()), weight));
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
fn pick(targets: &[(String, i64)], unit: f64) -> Option<String> {
    let total: i64 = targets.iter().map(|(_, w)| (*w).max(0)).sum();
    if total == 0 {
        return targets.first().map(|(t, _)| t.clone());
    }
    let mut point = unit * total as f64;
    for (target, weight) in targets {
        let w = (*weight).max(0) as f64;
        if point < w {
            return Some(target.clone());
        }
        point -= w;
    }
    targets.last().map(|(t, _)| t.clone())
}

fn random_unit() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    f64::from(n) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_by_weight() {
        let t = vec![("a".to_string(), 90), ("b".to_string(), 10)];
        assert_eq!(pick(&t, 0.0).as_deref(), Some("a"));
        assert_eq!(pick(&t, 0.89).as_deref(), Some("a"));
        assert_eq!(pick(&t, 0.91).as_deref(), Some("b"));
        let zero = vec![("a".to_string(), 0), ("b".to_string(), 100)];
        assert_eq!(pick(&zero, 0.0).as_deref(), Some("b"));
        assert_eq!(pick(&[], 0.5), None);
        assert_eq!(
            normalise("dualstack.Shop-Prod.us-east-1.elasticbeanstalk.com."),
            "shop-prod.us-east-1.elasticbeanstalk.com"
        );
    }
}
