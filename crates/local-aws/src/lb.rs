//! Each environment's Application Load Balancer: a listener of its own on 127.0.0.1 (the address its
//! CNAME and its load balancer DNS name resolve to through [`crate::dns`]), forwarding round-robin to
//! the environment's registered targets (one app process per instance):
//! - only to targets that passed their health check (FIDELITY.md, "Instances and load balancer"), or
//!   to the unhealthy ones when none is healthy (an ALB fails open); 503 from the load balancer itself
//!   when it has no target;
//! - an instance already serving its capacity of concurrent requests answers 503 itself, as an
//!   overloaded target does;
//! - on termination the targets deregister: new requests are refused (503), those in flight finish,
//!   then after the deregistration delay (or once nothing is in flight) the instances stop and the
//!   listener closes, so a client still holding the address gets its connection refused.
//!
//! Every answer is recorded (environment, instance, status, latency) for enhanced health's figures.
//! Answers the load balancer gives itself carry `x-local-aws-refused` (`draining`, `no-target`,
//! `overloaded`): a local marker, so reports can say why a request failed; AWS sends no such header.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use crate::beanstalk::{Instance, Target};
use crate::lifecycle::Runtime;
use crate::state::{Shared, State as Store};

/// Largest request body forwarded to an app.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The header that marks answers the load balancer (or an overloaded target) gave without the app.
pub const REFUSED_HEADER: &str = "x-local-aws-refused";

/// One environment's load balancer.
#[derive(Debug)]
pub struct Balancer {
    /// Where its listener accepts connections.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// Deregistration has started: new requests are refused, those in flight finish.
    pub draining: bool,
    /// Round-robin position.
    next: usize,
    /// Requests in flight per instance.
    in_flight: BTreeMap<String, usize>,
}

impl Balancer {
    /// Requests in flight on every instance together.
    pub fn in_flight(&self) -> usize {
        self.in_flight.values().sum()
    }

    /// Requests in flight on one instance.
    pub fn in_flight_on(&self, instance: &str) -> usize {
        self.in_flight.get(instance).copied().unwrap_or(0)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Creates the environment's load balancer: binds its listener and registers it in the store.
pub async fn start(rt: &Arc<Runtime>, env_id: &str) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .fallback(entry)
        .with_state((rt.clone(), env_id.to_string()));
    let stop = crate::serve(listener, app);
    rt.shared.lock().lbs.insert(
        env_id.to_string(),
        Balancer {
            addr,
            stop: Some(stop),
            draining: false,
            next: 0,
            in_flight: BTreeMap::new(),
        },
    );
    Ok(addr)
}

async fn entry(State((rt, env_id)): State<(Arc<Runtime>, String)>, request: Request) -> Response {
    forward(&rt, &env_id, request).await
}

/// Which instance the load balancer sends the next request to: round-robin over the healthy targets,
/// or over the unhealthy ones when none is healthy (fail open); never one initial or draining.
pub fn pick(instances: &[Instance], next: usize) -> Option<usize> {
    let of = |t: Target| -> Vec<usize> {
        instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.target == t)
            .map(|(n, _)| n)
            .collect()
    };
    let mut candidates = of(Target::Healthy);
    if candidates.is_empty() {
        candidates = of(Target::Unhealthy);
    }
    (!candidates.is_empty()).then(|| candidates[next % candidates.len()])
}

enum Choice {
    Refused,
    NoTarget(String),
    Sample(String, String),
    Overloaded(String),
    Forward(String, u16),
}

fn choose(state: &mut Store, env_id: &str) -> Choice {
    let capacity = state.beanstalk.options.instance_capacity;
    let Some(env) = state.beanstalk.environments.get(env_id) else {
        return Choice::NoTarget(String::new());
    };
    let Some(lb) = state.lbs.get_mut(env_id) else {
        return Choice::NoTarget(env.name.clone());
    };
    if lb.draining {
        return Choice::Refused;
    }
    let Some(n) = pick(&env.instances, lb.next) else {
        return Choice::NoTarget(env.name.clone());
    };
    lb.next = lb.next.wrapping_add(1);
    let instance = &env.instances[n];
    match (instance.port, &env.version_label) {
        (None, None) => Choice::Sample(instance.id.clone(), env.name.clone()),
        (None, Some(_)) => Choice::NoTarget(env.name.clone()),
        (Some(port), _) => {
            let busy = lb.in_flight.entry(instance.id.clone()).or_default();
            if *busy >= capacity {
                Choice::Overloaded(instance.id.clone())
            } else {
                *busy += 1;
                Choice::Forward(instance.id.clone(), port)
            }
        }
    }
}

/// Ends a request's count against its instance's capacity, however the request ends.
struct InFlight {
    shared: Shared,
    env_id: String,
    instance: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(n) = state
            .lbs
            .get_mut(&self.env_id)
            .and_then(|lb| lb.in_flight.get_mut(&self.instance))
        {
            *n = n.saturating_sub(1);
        }
    }
}

/// Records one answer for enhanced health; `instance` is empty when the load balancer answered itself.
fn record(rt: &Runtime, env_id: &str, instance: &str, status: StatusCode, started: Instant) {
    let mut state = rt.shared.lock();
    let window = state.beanstalk.options.health_window;
    state.beanstalk.requests.keep(window);
    state
        .beanstalk
        .requests
        .record(crate::beanstalk::health::Record {
            at: Instant::now(),
            env_id: env_id.to_string(),
            instance_id: instance.to_string(),
            status: status.as_u16(),
            latency: started.elapsed(),
        });
}

fn refused(why: &'static str, text: String) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    response
        .headers_mut()
        .insert(REFUSED_HEADER, HeaderValue::from_static(why));
    response
}

/// Forwards one request through the environment's load balancer.
pub async fn forward(rt: &Arc<Runtime>, env_id: &str, request: Request) -> Response {
    let started = Instant::now();
    let choice = choose(&mut rt.shared.lock(), env_id);
    let (instance, port) = match choice {
        Choice::Refused => {
            record(rt, env_id, "", StatusCode::SERVICE_UNAVAILABLE, started);
            return refused(
                "draining",
                "503 Service Temporarily Unavailable: the load balancer's targets are deregistering\n"
                    .into(),
            );
        }
        Choice::NoTarget(name) => {
            record(rt, env_id, "", StatusCode::SERVICE_UNAVAILABLE, started);
            return refused(
                "no-target",
                format!("503 Service Temporarily Unavailable: environment {name} has no healthy instance registered with its load balancer\n"),
            );
        }
        Choice::Overloaded(instance) => {
            record(
                rt,
                env_id,
                &instance,
                StatusCode::SERVICE_UNAVAILABLE,
                started,
            );
            return refused(
                "overloaded",
                format!("503 Service Unavailable: instance {instance} is serving its capacity of concurrent requests\n"),
            );
        }
        Choice::Sample(instance, name) => {
            record(rt, env_id, &instance, StatusCode::OK, started);
            return (
                StatusCode::OK,
                format!("Congratulations: environment {name} runs the sample application.\n"),
            )
                .into_response();
        }
        Choice::Forward(instance, port) => (instance, port),
    };
    let _in_flight = InFlight {
        shared: rt.shared.clone(),
        env_id: env_id.to_string(),
        instance: instance.clone(),
    };
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("request body: {e}\n")).into_response(),
    };
    let mut headers = parts.headers.clone();
    for hop in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(hop);
    }
    if let Some(host) = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| HeaderValue::from_str(h.split(':').next().unwrap_or_default()).ok())
    {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let upstream = rt
        .http
        .request(parts.method, format!("http://127.0.0.1:{port}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await;
    match upstream {
        Ok(r) => {
            let status = r.status();
            let mut headers = r.headers().clone();
            headers.remove(header::TRANSFER_ENCODING);
            headers.remove(header::CONNECTION);
            let bytes = match r.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    record(rt, env_id, &instance, StatusCode::BAD_GATEWAY, started);
                    return (StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n"))
                        .into_response();
                }
            };
            record(rt, env_id, &instance, status, started);
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => {
            record(rt, env_id, &instance, StatusCode::BAD_GATEWAY, started);
            (StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(target: Target) -> Instance {
        let mut i = Instance::new(format!("i-{target:?}"));
        i.target = target;
        i
    }

    #[test]
    fn round_robin_over_healthy_targets_and_open_when_none_is() {
        let mixed = [
            at(Target::Healthy),
            at(Target::Unhealthy),
            at(Target::Initial),
            at(Target::Healthy),
            at(Target::Draining),
        ];
        let picks: Vec<Option<usize>> = (0..4).map(|n| pick(&mixed, n)).collect();
        assert_eq!(picks, [Some(0), Some(3), Some(0), Some(3)]);
        // None healthy: the unhealthy ones still get requests (fail open).
        let sick = [at(Target::Unhealthy), at(Target::Initial)];
        assert_eq!(pick(&sick, 7), Some(0));
        // Initial and draining targets never do.
        assert_eq!(pick(&[at(Target::Initial), at(Target::Draining)], 0), None);
        assert_eq!(pick(&[], 0), None);
    }
}
