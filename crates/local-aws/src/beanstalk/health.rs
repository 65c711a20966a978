//! Enhanced health: DescribeEnvironmentHealth and DescribeInstancesHealth, with figures measured from the
//! router's per-request records (one per request answered, tagged with the environment and instance it
//! reached), so a router with several instances per environment feeds the same figures per instance.
//!
//! Shapes follow botocore's model; what the figures mean follows its documentation: ApplicationMetrics
//! cover "the last 10 seconds" (`Duration` 10), and each latency percentile is "the average latency for
//! the slowest X percent of requests over the last 10 seconds". Request failures show as enhanced health's
//! cause "N % of the requests are failing with HTTP 5xx." (FIDELITY.md, "Health").

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use super::{Environment, Instance, Store, Target};
use crate::query::{Params, QueryError, Xml};

/// The window the metrics cover.
pub const WINDOW: Duration = Duration::from_secs(10);
/// How long records are kept (a little more than the window).
const KEEP: Duration = Duration::from_secs(60);
/// At most this many records are kept, whatever the load.
const MAX_RECORDS: usize = 200_000;

/// One request the router answered for an environment.
#[derive(Debug, Clone)]
pub struct Record {
    pub at: Instant,
    pub env_id: String,
    /// The instance that answered; empty when the load balancer answered itself (503 with no target).
    pub instance_id: String,
    pub status: u16,
    pub latency: Duration,
}

/// The records, and the longest window asked for (records are kept at least that long).
#[derive(Debug, Default)]
pub struct Requests(VecDeque<Record>, Duration);

impl Requests {
    /// Keeps records for at least `window` (the longest window metrics are asked for).
    pub fn keep(&mut self, window: Duration) {
        self.1 = self.1.max(window);
    }

    pub fn record(&mut self, record: Record) {
        let now = record.at;
        self.0.push_back(record);
        while self
            .0
            .front()
            .is_some_and(|r| now.duration_since(r.at) > KEEP.max(self.1))
            || self.0.len() > MAX_RECORDS
        {
            self.0.pop_front();
        }
    }

    /// How many requests an environment's load balancer answered in the last `window`.
    pub fn count(&self, window: Duration, env_id: &str) -> usize {
        self.window(window, env_id, None).len()
    }

    /// Records of the last `window` for an environment, or one of its instances.
    fn window(&self, window: Duration, env_id: &str, instance: Option<&str>) -> Vec<&Record> {
        let now = Instant::now();
        self.0
            .iter()
            .filter(|r| now.duration_since(r.at) <= window)
            .filter(|r| r.env_id == env_id)
            .filter(|r| instance.is_none_or(|i| r.instance_id == i))
            .collect()
    }
}

/// ApplicationMetrics over some records.
#[derive(Debug, Default, PartialEq)]
pub struct Metrics {
    /// The time covered.
    pub window: Duration,
    pub requests: usize,
    /// Requests by status class: 2xx, 3xx, 4xx, 5xx.
    pub classes: [usize; 4],
    /// P999, P99, P95, P90, P85, P75, P50, P10 in seconds.
    pub latency: Option<[f64; 8]>,
}

const PERCENTILES: [(&str, f64); 8] = [
    ("P999", 0.001),
    ("P99", 0.01),
    ("P95", 0.05),
    ("P90", 0.10),
    ("P85", 0.15),
    ("P75", 0.25),
    ("P50", 0.50),
    ("P10", 0.90),
];

pub fn metrics(window: Duration, records: &[&Record]) -> Metrics {
    let mut m = Metrics {
        window,
        requests: records.len(),
        ..Metrics::default()
    };
    for r in records {
        if let Some(i) = (r.status / 100).checked_sub(2).map(usize::from) {
            if let Some(c) = m.classes.get_mut(i) {
                *c += 1;
            }
        }
    }
    if records.is_empty() {
        return m;
    }
    let mut slowest_first: Vec<f64> = records.iter().map(|r| r.latency.as_secs_f64()).collect();
    slowest_first.sort_by(|a, b| b.total_cmp(a));
    let mut latency = [0.0; 8];
    for (slot, (_, fraction)) in latency.iter_mut().zip(PERCENTILES) {
        // The slowest `fraction` of the requests, at least one.
        let n = ((slowest_first.len() as f64 * fraction).ceil() as usize).max(1);
        *slot = slowest_first[..n].iter().sum::<f64>() / n as f64;
    }
    m.latency = Some(latency);
    m
}

/// `n` of `total` as a whole percentage, rounded to the nearest (AWS does not say how it rounds).
fn percent_of(n: usize, total: usize) -> u64 {
    if total == 0 {
        return 0;
    }
    ((n as f64 * 100.0 / total as f64).round()) as u64
}

fn metrics_xml(x: &mut Xml, m: &Metrics) {
    x.elem("ApplicationMetrics", |x| {
        x.text("Duration", &m.window.as_secs_f64().ceil().to_string())
            .text("RequestCount", &m.requests.to_string());
        if m.requests > 0 {
            x.elem("StatusCodes", |x| {
                // Percentages of the window's requests, not counts (API reference: StatusCodes,
                // "The percentage of requests over the last 10 seconds ..."); an Integer, so rounded.
                for (name, n) in ["Status2xx", "Status3xx", "Status4xx", "Status5xx"]
                    .iter()
                    .zip(m.classes)
                {
                    x.text(name, &percent_of(n, m.requests).to_string());
                }
            });
        }
        if let Some(latency) = m.latency {
            x.elem("Latency", |x| {
                for ((name, _), value) in PERCENTILES.iter().zip(latency) {
                    x.text(name, &format!("{value:.3}"));
                }
            });
        }
    });
}

/// The causes request failures add: enhanced health's wording for the share of 5xx answers.
fn request_causes(m: &Metrics) -> Vec<String> {
    if m.requests == 0 || m.classes[3] == 0 {
        return vec![];
    }
    let share = m.classes[3] as f64 * 100.0 / m.requests as f64;
    vec![format!(
        "{share:.1} % of the requests are failing with HTTP 5xx."
    )]
}

/// An instance's health status: Pending while the environment launches or before its target was
/// checked; Severe while its own checks fail; otherwise the environment's (Ok when only other
/// instances are impaired).
fn instance_status(env: &Environment, instance: &Instance) -> &'static str {
    if env.status == "Launching" || instance.target == Target::Initial {
        return "Pending";
    }
    if instance.problem.is_some() {
        return "Severe";
    }
    if env.instances.iter().any(|i| i.problem.is_some()) {
        return "Ok";
    }
    env.health_status
}

fn color_of(status: &str) -> &'static str {
    match status {
        "Ok" => "Green",
        "Warning" | "Degraded" => "Yellow",
        "Severe" => "Red",
        _ => "Grey",
    }
}

/// The instances enhanced health reports on: those launched and not terminated.
fn instances(env: &Environment) -> &[Instance] {
    if env.instance_launched.is_some() && env.status != "Terminated" {
        &env.instances
    } else {
        &[]
    }
}

fn attributes<'a>(p: &'a Params, allowed: &[&str]) -> Result<Vec<&'a str>, QueryError> {
    let names = p.list("AttributeNames");
    if let Some(bad) = names.iter().find(|n| !allowed.contains(n)) {
        return Err(QueryError::new(
            400,
            "ValidationError",
            format!("1 validation error detected: Value '[{bad}]' at 'attributeNames' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]", allowed.join(", ")),
        ));
    }
    Ok(names)
}

fn env_for<'a>(store: &'a Store, p: &Params) -> Result<&'a Environment, QueryError> {
    let env = store
        .find_env(p.get("EnvironmentId"), p.get("EnvironmentName"))
        .map_err(|e| QueryError::new(400, "InvalidRequestException", e.message))?;
    if !env.enhanced_health() {
        return Err(QueryError::new(
            400,
            "InvalidRequestException",
            format!(
                "Enhanced health reporting is not enabled for environment {}.",
                env.name
            ),
        ));
    }
    Ok(env)
}

/// DescribeEnvironmentHealth: only the attributes asked for (`All` for every one, none for just the name).
pub fn describe_environment(store: &Store, p: &Params) -> Result<String, QueryError> {
    let env = env_for(store, p)?;
    let names = attributes(
        p,
        &[
            "Status",
            "Color",
            "Causes",
            "ApplicationMetrics",
            "InstancesHealth",
            "All",
            "HealthStatus",
            "RefreshedAt",
        ],
    )?;
    let wants = |n: &str| names.contains(&"All") || names.contains(&n);
    let w = store.options.health_window;
    let m = metrics(w, &store.requests.window(w, &env.id, None));
    let mut x = Xml::new();
    x.text("EnvironmentName", &env.name);
    if wants("HealthStatus") {
        x.text("HealthStatus", env.health_status);
    }
    if wants("Status") {
        // The operational status, as AWS answers (the member's documentation and the CLI example).
        x.text("Status", env.status);
    }
    if wants("Color") {
        x.text("Color", env.health);
    }
    if wants("Causes") {
        let causes: Vec<String> = env
            .causes
            .iter()
            .cloned()
            .chain(request_causes(&m))
            .collect();
        x.strings("Causes", causes.iter().map(String::as_str));
    }
    if wants("ApplicationMetrics") {
        metrics_xml(&mut x, &m);
    }
    if wants("InstancesHealth") {
        let statuses: Vec<&str> = instances(env)
            .iter()
            .map(|i| instance_status(env, i))
            .collect();
        x.elem("InstancesHealth", |x| {
            for status in [
                "NoData", "Unknown", "Pending", "Ok", "Info", "Warning", "Degraded", "Severe",
            ] {
                let n = statuses.iter().filter(|s| **s == status).count();
                x.text(status, &n.to_string());
            }
        });
    }
    if wants("RefreshedAt") {
        x.time("RefreshedAt", SystemTime::now());
    }
    Ok(x.finish())
}

/// DescribeInstancesHealth: every instance of the environment, with the attributes asked for (none: just
/// the instance ids).
pub fn describe_instances(store: &Store, p: &Params) -> Result<String, QueryError> {
    let env = env_for(store, p)?;
    let names = attributes(
        p,
        &[
            "HealthStatus",
            "Color",
            "Causes",
            "ApplicationMetrics",
            "RefreshedAt",
            "LaunchedAt",
            "System",
            "Deployment",
            "AvailabilityZone",
            "InstanceType",
            "All",
        ],
    )?;
    let wants = |n: &str| names.contains(&"All") || names.contains(&n);
    let mut x = Xml::new();
    x.elem("InstanceHealthList", |x| {
        let w = store.options.health_window;
        for instance in instances(env) {
            let m = metrics(w, &store.requests.window(w, &env.id, Some(&instance.id)));
            let status = instance_status(env, instance);
            x.elem("member", |x| {
                x.text("InstanceId", &instance.id);
                if wants("HealthStatus") {
                    x.text("HealthStatus", status);
                }
                if wants("Color") {
                    x.text("Color", color_of(status));
                }
                if wants("Causes") {
                    let causes: Vec<String> = if instance.problem.is_some() {
                        instance.problem.iter().cloned().collect()
                    } else if env.instances.iter().any(|i| i.problem.is_some()) {
                        vec![]
                    } else {
                        env.causes.clone()
                    };
                    let causes: Vec<String> =
                        causes.into_iter().chain(request_causes(&m)).collect();
                    x.strings("Causes", causes.iter().map(String::as_str));
                }
                if wants("LaunchedAt") {
                    x.time("LaunchedAt", instance.launched);
                }
                if wants("ApplicationMetrics") {
                    metrics_xml(x, &m);
                }
                if wants("Deployment") {
                    x.elem("Deployment", |x| {
                        x.opt("VersionLabel", env.version_label.as_deref())
                            .text("DeploymentId", &env.deployment_id.to_string())
                            .text("Status", env.deployment_status);
                        if let Some(at) = env.deployment_time {
                            x.time("DeploymentTime", at);
                        }
                    });
                }
                if wants("AvailabilityZone") {
                    // Instances spread over the zones, as an Auto Scaling group balances them.
                    let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][env
                        .instances
                        .iter()
                        .position(|i| i.id == instance.id)
                        .unwrap_or(0)
                        % 3];
                    x.text("AvailabilityZone", zone);
                }
                if wants("InstanceType") {
                    x.text(
                        "InstanceType",
                        env.setting("aws:autoscaling:launchconfiguration", "InstanceType")
                            .unwrap_or("t3.micro"),
                    );
                }
            });
        }
    });
    if wants("RefreshedAt") {
        x.time("RefreshedAt", SystemTime::now());
    }
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ms: u64, status: u16) -> Record {
        Record {
            at: Instant::now(),
            env_id: "e-1".into(),
            instance_id: "i-1".into(),
            status,
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn percentiles_average_the_slowest_share() {
        let records: Vec<Record> = (1..=100).map(|ms| record(ms, 200)).collect();
        let refs: Vec<&Record> = records.iter().collect();
        let m = metrics(WINDOW, &refs);
        let l = m.latency.unwrap();
        // P999 and P99: the slowest one request; P50: the mean of the slowest 50 (51..=100 ms).
        assert!((l[0] - 0.100).abs() < 1e-9);
        assert!((l[1] - 0.100).abs() < 1e-9);
        assert!((l[6] - 0.0755).abs() < 1e-9);
        // P10: the slowest 90 percent (11..=100 ms).
        assert!((l[7] - 0.0555).abs() < 1e-9);
        assert_eq!(m.classes, [100, 0, 0, 0]);
    }

    #[test]
    fn status_classes_and_the_5xx_cause() {
        let records = [
            record(1, 200),
            record(1, 302),
            record(1, 404),
            record(1, 503),
        ];
        let refs: Vec<&Record> = records.iter().collect();
        let m = metrics(WINDOW, &refs);
        assert_eq!(m.classes, [1, 1, 1, 1]);
        let mut x = Xml::new();
        metrics_xml(&mut x, &m);
        assert!(x.finish().starts_with(
            "<ApplicationMetrics><Duration>10</Duration><RequestCount>4</RequestCount>\
             <StatusCodes><Status2xx>25</Status2xx><Status3xx>25</Status3xx>\
             <Status4xx>25</Status4xx><Status5xx>25</Status5xx></StatusCodes>"
        ));
        assert_eq!(percent_of(1, 3), 33);
        assert_eq!(percent_of(1, 40), 3, "2.5 % rounds to 3");
        assert_eq!(
            request_causes(&m),
            ["25.0 % of the requests are failing with HTTP 5xx."]
        );
        assert!(request_causes(&metrics(WINDOW, &[])).is_empty());
    }

    #[test]
    fn old_records_leave_the_window() {
        let mut requests = Requests::default();
        let mut old = record(1, 200);
        old.at = Instant::now() - Duration::from_secs(11);
        requests.record(old);
        requests.record(record(1, 200));
        assert_eq!(requests.window(WINDOW, "e-1", None).len(), 1);
        assert_eq!(requests.window(WINDOW, "e-1", Some("i-2")).len(), 0);
        assert_eq!(
            requests.window(Duration::from_secs(20), "e-1", None).len(),
            2
        );
    }
}
