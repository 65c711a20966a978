//! The load probe: a steady stream of requests to the production URL for the whole run, so "zero
//! downtime" is measured, not claimed. Requests before production first answers don't count as failures
//! (there is nothing to take down yet); every one after does. Each answer records which version of the
//! app gave it (its `X-App-Version` header, or the body of the version path), so a cutover can be seen.

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

pub struct Probe {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    /// Requests sent and not yet recorded.
    in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    pub started: Instant,
}

impl Probe {
    /// Sends `rate` requests per second to `path` on `router` with `Host: host`.
    pub fn start(router: SocketAddr, host: String, path: String, rate: u32) -> Probe {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        let url = format!("http://{router}{path}");
        let task = {
            let (samples, stop, in_flight) = (samples.clone(), stop.clone(), in_flight.clone());
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (http, url, host, samples, in_flight) = (
                        http.clone(),
                        url.clone(),
                        host.clone(),
                        samples.clone(),
                        in_flight.clone(),
                    );
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let at = started.elapsed();
                        let sent = Instant::now();
                        let (status, version) =
                            match http.get(&url).header("host", &host).send().await {
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    let header = r
                                        .headers()
                                        .get(VERSION_HEADER)
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_string);
                                    // Read the body: a response cut off mid-way is a failure too.
                                    match r.bytes().await {
                                        Ok(body) => {
                                            (status, answered_by(status, header.as_deref(), &body))
                                        }
                                        Err(_) => (0, None),
                                    }
                                }
                                Err(_) => (0, None),
                            };
                        let sample = Sample {
                            at,
                            latency: sent.elapsed(),
                            status,
                            version,
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
            stop,
            in_flight,
            task,
            started,
        }
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
