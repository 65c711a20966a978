//! Enhanced health's figures for one environment, as DescribeEnvironmentHealth gives them: what the
//! swap's bake watches after production moved, and the traffic retire's idle rule waits out.
//!
//! The API reference defines them: ApplicationMetrics cover "the last 10 seconds" (`Duration`),
//! StatusCodes are "the percentage of requests over the last 10 seconds" in each class, latency
//! percentiles are seconds "with one millisecond resolution". The operation "is only available with
//! Elastic Beanstalk Enhanced Health".

use std::time::Duration;

use aws_sdk_elasticbeanstalk::operation::describe_environment_health::DescribeEnvironmentHealthOutput;

use crate::beanstalk::{Health, Traffic};

/// One reading of an environment's enhanced health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthFigures {
    /// The time the request figures cover (usually 10 s).
    pub window: Duration,
    /// RequestCount: whether any request was answered in the window is all beanswap relies on (the
    /// reference calls it both a count and a per-second average).
    pub requests: u64,
    /// Whether enhanced health reported ApplicationMetrics with a duration: without them nobody can say
    /// what the environment served, and [`HealthFigures::traffic`] is `None`.
    pub metrics: bool,
    /// Percent of the window's requests answered with 5xx; `None` without requests.
    pub server_errors_percent: Option<u32>,
    /// The average latency of the slowest 1 % of the window's requests.
    pub p99: Option<Duration>,
    pub color: Health,
    /// Enhanced health's status word (`Ok`, `Warning`, `Degraded`, `Severe`, ...).
    pub status: Option<String>,
    pub causes: Vec<String>,
}

impl HealthFigures {
    /// From DescribeEnvironmentHealth with AttributeNames `All`.
    pub fn from_sdk(out: &DescribeEnvironmentHealthOutput) -> Self {
        let metrics = out.application_metrics();
        let requests = metrics.map_or(0, |m| u64::try_from(m.request_count()).unwrap_or(0));
        HealthFigures {
            window: Duration::from_secs(
                metrics
                    .and_then(|m| m.duration())
                    .map_or(10, |d| u64::try_from(d).unwrap_or(10)),
            ),
            requests,
            metrics: metrics.and_then(|m| m.duration()).is_some_and(|d| d > 0),
            server_errors_percent: metrics
                .and_then(|m| m.status_codes())
                .and_then(|c| c.status5xx())
                .filter(|_| requests > 0)
                .map(|p| u32::try_from(p).unwrap_or(0)),
            p99: metrics
                .and_then(|m| m.latency())
                .and_then(|l| l.p99())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64),
            color: Health::from(out.color().unwrap_or_default()),
            status: out.health_status().map(str::to_string),
            causes: out.causes().to_vec(),
        }
    }

    /// What the environment served lately, for retire's idle rule: `None` when enhanced health reports
    /// no request metrics.
    pub fn traffic(&self) -> Option<Traffic> {
        self.metrics.then_some(Traffic {
            requests: self.requests,
            window: self.window,
        })
    }

    /// One line for a summary: "12 requests in 10 s, 0 % 5xx, P99 0.045 s, Ok".
    pub fn line(&self) -> String {
        let errors = self
            .server_errors_percent
            .map_or_else(|| "no 5xx figure".to_string(), |p| format!("{p} % 5xx"));
        let p99 = self.p99.map_or_else(
            || "no P99".to_string(),
            |d| format!("P99 {:.3} s", d.as_secs_f64()),
        );
        format!(
            "{} requests in {} s, {errors}, {p99}, health {}{}",
            self.requests,
            self.window.as_secs(),
            self.color,
            self.status
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        )
    }
}
