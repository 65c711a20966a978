//! The bake: after production moved, swap watches the new live environment for a while and moves
//! production back by itself when it misbehaves (what CodeDeploy's alarm-based rollback does for its
//! deployments). Pure: what a breach is, from one reading.
//!
//! A reading is enhanced health (DescribeEnvironmentHealth: the last 10 seconds' share of 5xx, P99
//! latency, the health color) and the state of the CloudWatch alarms named in UserParameters. The
//! previous environment is kept in service (not marked out of service) until the bake passes, so the
//! move back is a move to an environment that still runs, and retire's grace period counts from the
//! bake's end.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::alarms::{Alarm, AlarmState};
use crate::beanstalk::{Health, HealthFigures};
use crate::clock::rfc3339;

/// The bake polls at least this often (the goal: production back within 30 s of a breach).
pub const MAX_POLL: Duration = Duration::from_secs(10);

/// What the bake watches, and for how long (from UserParameters).
#[derive(Debug, Clone, PartialEq)]
pub struct Bake {
    /// How long production is watched after it moved; zero: no bake.
    pub duration: Duration,
    /// How long between readings (at most [`MAX_POLL`]).
    pub poll: Duration,
    /// A larger share of 5xx answers than this (percent) is a breach.
    pub max_server_errors_percent: u32,
    /// The 5xx share is judged only over at least this many requests (one failed request of two is
    /// noise, not a verdict).
    pub min_requests: u64,
    /// A P99 latency above this is a breach.
    pub max_p99: Option<Duration>,
    /// CloudWatch alarms: any of them in ALARM is a breach.
    pub alarms: Vec<String>,
}

/// The bake in progress, carried between invocations (short keys: the token holds at most 2048
/// characters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baking {
    /// When production moved (Unix seconds): the bake ends `duration` later.
    #[serde(rename = "s")]
    pub since: u64,
    /// The environment production moved from: the one it goes back to on a breach.
    #[serde(rename = "f")]
    pub from: String,
    /// Readings taken so far.
    #[serde(rename = "n", default)]
    pub readings: u32,
    /// The largest 5xx share seen, percent.
    #[serde(rename = "e", default)]
    pub worst_errors: u32,
    /// The largest P99 seen, milliseconds.
    #[serde(rename = "l", default)]
    pub worst_p99_ms: u64,
    /// Readings skipped because AWS throttled them (the bake's clock went on meanwhile).
    #[serde(rename = "k", default, skip_serializing_if = "is_zero")]
    pub skipped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Baking {
    /// Counts a reading into the worst figures.
    pub fn count(&mut self, reading: &Reading) {
        self.readings += 1;
        if let Some(p) = reading.figures.server_errors_percent {
            self.worst_errors = self.worst_errors.max(p);
        }
        if let Some(p99) = reading.figures.p99 {
            let ms = u64::try_from(p99.as_millis()).unwrap_or(u64::MAX);
            self.worst_p99_ms = self.worst_p99_ms.max(ms);
        }
    }

    /// "baked 300 s: 31 readings, worst 5xx 0 %, worst P99 0.120 s, no breach"; readings AWS
    /// throttled are named, so a bake that saw little does not pass as one that saw everything.
    pub fn passed(&self, bake: &Bake) -> String {
        format!(
            "baked {} s: {} readings{}, worst 5xx {} %, worst P99 {:.3} s{}, no breach",
            bake.duration.as_secs(),
            self.readings,
            if self.skipped == 0 {
                String::new()
            } else {
                format!(" ({} more skipped: AWS throttled them)", self.skipped)
            },
            self.worst_errors,
            self.worst_p99_ms as f64 / 1000.0,
            if bake.alarms.is_empty() {
                String::new()
            } else {
                format!(", alarms {} never in ALARM", bake.alarms.join(", "))
            }
        )
    }
}

/// One look at the new live environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub at: SystemTime,
    pub figures: HealthFigures,
    pub alarms: Vec<Alarm>,
}

/// What went wrong during the bake: the figure, its value, the threshold.
#[derive(Debug, Clone, PartialEq)]
pub enum Breach {
    ServerErrors {
        percent: u32,
        threshold: u32,
        requests: u64,
        window: Duration,
    },
    Latency {
        p99: Duration,
        threshold: Duration,
    },
    Health {
        color: Health,
        status: Option<String>,
        causes: Vec<String>,
    },
    Alarm {
        name: String,
        reason: String,
    },
    /// A named alarm does not exist: it could never fire, so the bake cannot vouch for anything.
    MissingAlarm {
        name: String,
    },
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::ServerErrors {
                percent,
                threshold,
                requests,
                window,
            } => write!(
                f,
                "{percent} % of {requests} requests answered 5xx over the last {} s (threshold {threshold} %)",
                window.as_secs()
            ),
            Breach::Latency { p99, threshold } => write!(
                f,
                "P99 latency {:.3} s (threshold {:.3} s)",
                p99.as_secs_f64(),
                threshold.as_secs_f64()
            ),
            Breach::Health {
                color,
                status,
                causes,
            } => {
                write!(f, "health {color}")?;
                if let Some(s) = status {
                    write!(f, " ({s})")?;
                }
                if !causes.is_empty() {
                    write!(f, ": {}", causes.join(" "))?;
                }
                Ok(())
            }
            Breach::Alarm { name, reason } => {
                write!(f, "CloudWatch alarm `{name}` is in ALARM: {reason}")
            }
            Breach::MissingAlarm { name } => write!(
                f,
                "CloudWatch alarm `{name}` does not exist (check `bake_alarms`): the bake cannot watch it"
            ),
        }
    }
}

/// The first breach in `reading`, if any. Pure.
pub fn judge(bake: &Bake, reading: &Reading) -> Option<Breach> {
    for name in &bake.alarms {
        match reading.alarms.iter().find(|a| &a.name == name) {
            None => return Some(Breach::MissingAlarm { name: name.clone() }),
            Some(a) if a.state == AlarmState::Alarm => {
                return Some(Breach::Alarm {
                    name: a.name.clone(),
                    reason: a.reason.clone(),
                })
            }
            Some(_) => {}
        }
    }
    let f = &reading.figures;
    if f.color == Health::Red {
        return Some(Breach::Health {
            color: f.color.clone(),
            status: f.status.clone(),
            causes: f.causes.clone(),
        });
    }
    if let Some(percent) = f.server_errors_percent {
        if f.requests >= bake.min_requests && percent > bake.max_server_errors_percent {
            return Some(Breach::ServerErrors {
                percent,
                threshold: bake.max_server_errors_percent,
                requests: f.requests,
                window: f.window,
            });
        }
    }
    if let (Some(p99), Some(threshold)) = (f.p99, bake.max_p99) {
        if f.requests >= bake.min_requests && p99 > threshold {
            return Some(Breach::Latency { p99, threshold });
        }
    }
    None
}

/// The reason a breach gives for moving production back.
pub fn breach_reason(env: &str, breach: &Breach, reading: &Reading) -> String {
    format!(
        "the bake caught `{env}` at {}: {breach}",
        rfc3339(reading.at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bake() -> Bake {
        Bake {
            duration: Duration::from_secs(300),
            poll: Duration::from_secs(10),
            max_server_errors_percent: 1,
            min_requests: 10,
            max_p99: Some(Duration::from_secs(2)),
            alarms: vec![],
        }
    }

    fn reading(requests: u64, errors: u32, p99_ms: u64, color: Health) -> Reading {
        Reading {
            at: SystemTime::UNIX_EPOCH,
            figures: HealthFigures {
                window: Duration::from_secs(10),
                requests,
                metrics: true,
                server_errors_percent: Some(errors),
                p99: Some(Duration::from_millis(p99_ms)),
                color,
                status: Some("Ok".into()),
                causes: vec![],
            },
            alarms: vec![],
        }
    }

    #[test]
    fn healthy_figures_pass() {
        assert_eq!(judge(&bake(), &reading(500, 1, 150, Health::Green)), None);
        assert_eq!(judge(&bake(), &reading(500, 0, 150, Health::Yellow)), None);
    }

    #[test]
    fn a_5xx_share_above_the_threshold_is_a_breach_over_enough_requests() {
        let breach = judge(&bake(), &reading(500, 5, 150, Health::Green)).unwrap();
        assert_eq!(
            breach.to_string(),
            "5 % of 500 requests answered 5xx over the last 10 s (threshold 1 %)"
        );
        // One failure in a handful of requests is noise.
        assert_eq!(judge(&bake(), &reading(4, 25, 150, Health::Green)), None);
    }

    #[test]
    fn slow_answers_and_red_health_are_breaches() {
        let slow = judge(&bake(), &reading(500, 0, 2500, Health::Green)).unwrap();
        assert_eq!(slow.to_string(), "P99 latency 2.500 s (threshold 2.000 s)");
        let mut red = reading(0, 0, 0, Health::Red);
        red.figures.status = Some("Severe".into());
        red.figures.causes = vec!["100 % of the requests are failing with HTTP 5xx.".into()];
        assert_eq!(
            judge(&bake(), &red).unwrap().to_string(),
            "health Red (Severe): 100 % of the requests are failing with HTTP 5xx."
        );
    }

    #[test]
    fn an_alarm_in_alarm_or_missing_is_a_breach() {
        let mut b = bake();
        b.alarms = vec!["shop-5xx".into()];
        let mut r = reading(500, 0, 100, Health::Green);
        assert_eq!(
            judge(&b, &r).unwrap().to_string(),
            "CloudWatch alarm `shop-5xx` does not exist (check `bake_alarms`): the bake cannot watch it"
        );
        r.alarms = vec![Alarm {
            name: "shop-5xx".into(),
            state: AlarmState::Ok,
            reason: String::new(),
        }];
        assert_eq!(judge(&b, &r), None);
        r.alarms[0].state = AlarmState::Alarm;
        r.alarms[0].reason = "Threshold Crossed: 1 datapoint [12.0] was greater than 5.0".into();
        assert!(judge(&b, &r)
            .unwrap()
            .to_string()
            .starts_with("CloudWatch alarm `shop-5xx` is in ALARM: Threshold Crossed"));
    }

    #[test]
    fn the_worst_figures_are_kept_across_readings() {
        let mut baking = Baking::default();
        baking.count(&reading(100, 0, 120, Health::Green));
        baking.count(&reading(100, 1, 80, Health::Green));
        assert_eq!(
            (baking.readings, baking.worst_errors, baking.worst_p99_ms),
            (2, 1, 120)
        );
        assert_eq!(
            baking.passed(&bake()),
            "baked 300 s: 2 readings, worst 5xx 1 %, worst P99 0.120 s, no breach"
        );
    }
}
