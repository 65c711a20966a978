//! The load probe: a steady stream of requests to the production URL for the whole run, so "zero
//! downtime" is measured, not claimed. Requests before production first answers don't count as failures
//! (there is nothing to take down yet); every one after does. Each answer records which version of the
//! app gave it (its `X-App-Version` header, or the body of the version path), so a cutover can be seen.
//!
//! The requests come from a crowd of clients that resolve the production name as real ones do
//! ([`Resolution::Cached`]): each keeps a DNS answer (a load balancer's address) for the answer's TTL,
//! a share of "stubborn" ones for several times longer, as resolvers that do not honour TTLs do
//! (AWS's blue/green guide warns of them). So after a swap the old environment keeps receiving requests
//! until the caches expire, as on AWS, and a retire that does not wait for that fails requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request that has not answered by then is a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The response header the example app names its version in (examples/app/app.py).
pub const VERSION_HEADER: &str = "x-app-version";

/// The longest version string kept: a commit id, a label, not a page.
const MAX_VERSION: usize = 64;

/// One request's fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Since the probe started.
    pub at: Duration,
    pub latency: Duration,
    /// HTTP status, or 0 when the request failed without one.
    pub status: u16,
    /// The version of the app that answered, when it said.
    pub version: Option<String>,
    /// Why the load balancer refused the request without the app, when it did (local-aws's
    /// `x-local-aws-refused`: `draining`, `no-target`, `overloaded`).
    pub refused: Option<String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

/// What the probe saw, counted from production's first good answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub requests: usize,
    pub failures: usize,
    pub max_latency: Duration,
    /// Requests sent before production first answered (not counted above).
    pub before_up: usize,
}

/// How the probe's clients reach production.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// Every request through local-aws's shared router with the Host header: a client that resolves
    /// the name afresh for every request.
    Router(SocketAddr),
    /// A crowd of clients resolving through local-aws's DNS (`<endpoint>/_local/dns/<name>`), each
    /// keeping its answer for the answer's TTL (the stubborn ones for longer), requests spread over them
    /// in turn.
    Cached { dns: String, crowd: Crowd },
}

/// The clients of [`Resolution::Cached`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crowd {
    pub clients: usize,
    /// The share of clients that keep answers longer than their TTL (0..=1).
    pub stubborn_share: f64,
    /// How many TTLs a stubborn client keeps an answer.
    pub stubborn_factor: f64,
}

impl Default for Crowd {
    /// 100 clients, 10 % of them keeping answers for 3 TTLs.
    fn default() -> Self {
        Crowd {
            clients: 100,
            stubborn_share: 0.10,
            stubborn_factor: 3.0,
        }
    }
}

impl Crowd {
    /// Whether client `n` is stubborn: the first `share` of them.
    fn stubborn(&self, n: usize) -> bool {
        (n as f64) < self.stubborn_share * self.clients as f64
    }

    /// The share of its TTL client `n`'s first answer is kept, in (0, 1]: spread evenly over the
    /// clients (and over the stubborn ones among themselves), in a scrambled order.
    fn phase(&self, n: usize) -> f64 {
        let stubborn = (self.stubborn_share * self.clients as f64).ceil() as usize;
        let (index, group) = if self.stubborn(n) {
            (n, stubborn.max(1))
        } else {
            (n - stubborn.min(n), (self.clients - stubborn).max(1))
        };
        // 7 is coprime with every group size that is not a multiple of 7; otherwise plain order.
        let k = if group % 7 == 0 {
            index
        } else {
            (index * 7) % group
        };
        (k + 1) as f64 / group as f64
    }
}

/// The DNS answers each client holds: (address, kept until).
struct Caches {
    dns: String,
    crowd: Crowd,
    held: Mutex<Vec<Option<(SocketAddr, Instant)>>>,
}

/// local-aws's DNS answer (crate local_aws::dns::Answer on the wire).
#[derive(serde::Deserialize)]
struct Answer {
    address: SocketAddr,
    /// Milliseconds.
    ttl: u64,
}

impl Caches {
    /// The address client `n` sends to: its cached answer while it holds one, else a fresh one.
    async fn address(&self, http: &reqwest::Client, n: usize, host: &str) -> Option<SocketAddr> {
        let now = Instant::now();
        if let Some((address, until)) = self
            .held
            .lock()
            .ok()
            .and_then(|h| h.get(n).copied().flatten())
        {
            if now < until {
                return Some(address);
            }
        }
        let answer: Answer = http
            .get(format!("{}/_local/dns/{host}", self.dns))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())?
            .json()
            .await
            .ok()?;
        let mut ttl = Duration::from_millis(answer.ttl);
        if self.crowd.stubborn(n) {
            ttl = ttl.mul_f64(self.crowd.stubborn_factor);
        }
        if let Ok(mut held) = self.held.lock() {
            if let Some(slot) = held.get_mut(n) {
                // A client's first answer is as if it had been cached a while ago: real clients'
                // caches expire at scattered moments, not all together from when the probe started.
                if slot.is_none() {
                    ttl = ttl.mul_f64(self.crowd.phase(n));
                }
                *slot = Some((answer.address, now + ttl));
            }
        }
        Some(answer.address)
    }
}

/// Instances per environment, as sampled during the run (since the probe started).
pub type InstanceTimeline = Vec<(Duration, BTreeMap<String, usize>)>;

pub struct Probe {
    samples: Arc<Mutex<Vec<Sample>>>,
    instances: Arc<Mutex<InstanceTimeline>>,
    stop: Arc<AtomicBool>,
    /// Requests sent and not yet recorded.
    in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    pub started: Instant,
}

impl Probe {
    /// Sends `rate` requests per second to `path` on `router` with `Host: host`.
    pub fn start(router: SocketAddr, host: String, path: String, rate: u32) -> Probe {
        Self::start_with(Resolution::Router(router), host, path, rate)
    }

    /// Sends `rate` requests per second to `path` on `host`, reached as `resolution` says. With
    /// [`Resolution::Cached`] it also samples local-aws's instances per environment (`/_local/instances`)
    /// every quarter second.
    pub fn start_with(resolution: Resolution, host: String, path: String, rate: u32) -> Probe {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let instances = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        let (router, caches) = match resolution {
            Resolution::Router(router) => (Some(router), None),
            Resolution::Cached { dns, crowd } => {
                let dns = dns.trim_end_matches('/').to_string();
                let timeline_task = {
                    let (http, dns, stop, instances) =
                        (http.clone(), dns.clone(), stop.clone(), instances.clone());
                    async move {
                        while !stop.load(Ordering::Relaxed) {
                            if let Ok(r) = http.get(format!("{dns}/_local/instances")).send().await
                            {
                                if let Ok(counts) = r.json::<BTreeMap<String, usize>>().await {
                                    if let Ok(mut t) = instances.lock() {
                                        t.push((started.elapsed(), counts));
                                    }
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                };
                tokio::spawn(timeline_task);
                let caches = Caches {
                    dns,
                    crowd,
                    held: Mutex::new(vec![None; crowd.clients.max(1)]),
                };
                (None, Some(Arc::new(caches)))
            }
        };
        let task = {
            let (samples, stop, in_flight) = (samples.clone(), stop.clone(), in_flight.clone());
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n: usize = 0;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let client = n;
                    n = n.wrapping_add(1);
                    let (http, host, path, samples, in_flight, caches) = (
                        http.clone(),
                        host.clone(),
                        path.clone(),
                        samples.clone(),
                        in_flight.clone(),
                        caches.clone(),
                    );
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let at = started.elapsed();
                        let sent = Instant::now();
                        let address = match &caches {
                            Some(c) => {
                                c.address(&http, client % c.crowd.clients.max(1), &host)
                                    .await
                            }
                            None => router,
                        };
                        let (status, version, refused) = match address {
                            Some(address) => {
                                ask(&http, &format!("http://{address}{path}"), &host).await
                            }
                            // The name did not resolve: the client has nowhere to send it.
                            None => (0, None, None),
                        };
                        let sample = Sample {
                            at,
                            latency: sent.elapsed(),
                            status,
                            version,
                            refused,
                        };
                        if let Ok(mut s) = samples.lock() {
                            s.push(sample);
                        }
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Probe {
            samples,
            instances,
            stop,
            in_flight,
            task,
            started,
        }
    }

    /// Instances per environment sampled so far (only with [`Resolution::Cached`]).
    pub fn instances(&self) -> InstanceTimeline {
        self.instances.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn samples(&self) -> Vec<Sample> {
        let mut s = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        s.sort_by_key(|x| x.at);
        s
    }

    pub fn summary(&self) -> Summary {
        summarize(&self.samples())
    }

    /// Stops sending and waits for every request in flight to end (each ends within its timeout), so a
    /// request hanging at the very end is counted as the failure it is.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let Probe {
            samples,
            task,
            in_flight,
            ..
        } = self;
        let _ = task.await;
        let waiting = Instant::now();
        while in_flight.load(Ordering::SeqCst) > 0 && waiting.elapsed() < REQUEST_TIMEOUT * 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut s = samples.lock().map(|s| s.clone()).unwrap_or_default();
        s.sort_by_key(|x| x.at);
        s
    }
}

/// One request: (status or 0 without one, the version that answered, why the load balancer refused).
async fn ask(
    http: &reqwest::Client,
    url: &str,
    host: &str,
) -> (u16, Option<String>, Option<String>) {
    match http.get(url).header("host", host).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let version = header(VERSION_HEADER);
            let refused = header(REFUSED_HEADER);
            // Read the body: a response cut off mid-way is a failure too.
            match r.bytes().await {
                Ok(body) => (
                    status,
                    answered_by(status, version.as_deref(), &body),
                    refused,
                ),
                Err(_) => (0, None, None),
            }
        }
        Err(_) => (0, None, None),
    }
}

/// The header local-aws's load balancers mark their own refusals with (local_aws::lb::REFUSED_HEADER).
pub const REFUSED_HEADER: &str = "x-local-aws-refused";

/// The version that answered: the version header, or else a good answer's body when it is one short
/// line (the probe asks the version path, whose body is the version).
pub fn answered_by(status: u16, header: Option<&str>, body: &[u8]) -> Option<String> {
    let clean = |v: &str| {
        let v = v.trim();
        (!v.is_empty() && v.len() <= MAX_VERSION && !v.contains(char::is_whitespace))
            .then(|| v.to_string())
    };
    if let Some(v) = header.and_then(clean) {
        return Some(v);
    }
    if !(200..300).contains(&status) {
        return None;
    }
    std::str::from_utf8(body).ok().and_then(clean)
}

pub fn summarize(samples: &[Sample]) -> Summary {
    let Some(first_ok) = samples.iter().position(Sample::ok) else {
        return Summary {
            before_up: samples.len(),
            ..Summary::default()
        };
    };
    let counted = &samples[first_ok..];
    Summary {
        requests: counted.len(),
        failures: counted.iter().filter(|s| !s.ok()).count(),
        max_latency: counted.iter().map(|s| s.latency).max().unwrap_or_default(),
        before_up: first_ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64, status: u16) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            latency: Duration::from_millis(ms / 10),
            status,
            version: None,
            refused: None,
        }
    }

    #[test]
    fn the_answering_version_comes_from_the_header_or_the_version_body() {
        assert_eq!(
            answered_by(200, Some("abc123"), b"other\n").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            answered_by(200, None, b"abc123\n").as_deref(),
            Some("abc123")
        );
        // An error page is not a version; an error with the header still names who answered.
        assert_eq!(answered_by(502, None, b"bad gateway"), None);
        assert_eq!(answered_by(503, Some("v1"), b"").as_deref(), Some("v1"));
        // A page is not a version either.
        assert_eq!(answered_by(200, None, b"<html> a page </html>"), None);
        assert_eq!(answered_by(200, None, "x".repeat(65).as_bytes()), None);
        assert_eq!(answered_by(200, Some("  "), b""), None);
    }

    #[test]
    fn the_first_share_of_the_crowd_is_stubborn() {
        let crowd = Crowd::default();
        let stubborn: Vec<usize> = (0..crowd.clients).filter(|n| crowd.stubborn(*n)).collect();
        assert_eq!(stubborn, (0..10).collect::<Vec<_>>());
        let none = Crowd {
            stubborn_share: 0.0,
            ..crowd
        };
        assert!(!(0..100).any(|n| none.stubborn(n)));
        // First answers expire at scattered moments, within each group.
        let mut phases: Vec<f64> = (0..10).map(|n| crowd.phase(n)).collect();
        phases.sort_by(f64::total_cmp);
        assert_eq!(
            phases,
            (1..=10).map(|k| k as f64 / 10.0).collect::<Vec<_>>()
        );
        let mut rest: Vec<f64> = (10..100).map(|n| crowd.phase(n)).collect();
        rest.sort_by(f64::total_cmp);
        assert_eq!(rest[0], 1.0 / 90.0);
        assert_eq!(rest[89], 1.0);
    }

    #[test]
    fn failures_count_only_once_production_is_up() {
        let summary = summarize(&[s(0, 502), s(10, 0), s(20, 200), s(30, 503), s(40, 200)]);
        assert_eq!(
            summary,
            Summary {
                requests: 3,
                failures: 1,
                max_latency: Duration::from_millis(4),
                before_up: 2
            }
        );
        assert_eq!(summarize(&[s(0, 502)]).before_up, 1);
    }
}
