//! Fault injection: the failures real AWS produces now and then (throttling, slow answers, launches
//! that fail, environments that go Red or stay Yellow), on demand, so the actions' handling of them is tested.
//!
//! Set at start (`Options::faults`, the binary's `--faults`) or at any time with `PUT /_local/faults`.
//! Operations are named as in the call counts (`ElasticBeanstalk.DescribeEnvironments`) or bare
//! (`DescribeEnvironments`); environments by name, or `*` for all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Answer `Throttling: Rate exceeded` to some calls of an operation.
    pub throttle: Vec<Throttle>,
    /// Hold the answer to every call of an operation this many milliseconds.
    pub delay_ms: BTreeMap<String, u64>,
    /// Environments whose launch fails (the stack aborts; Launching -> Terminated).
    pub fail_launch: Vec<String>,
    /// Environments that turn Red/Severe this many seconds after they became Ready.
    pub red_after_seconds: BTreeMap<String, f64>,
    /// Environments that become Ready with Yellow/Warning health instead of Green (some instances
    /// impaired, as enhanced health reports it) and stay Yellow while nothing else goes wrong.
    pub yellow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub operation: String,
    /// Throttle the first N calls (counted from when the fault was set).
    #[serde(default)]
    pub first: Option<u64>,
    /// Throttle this fraction of calls, spread evenly (0.5 = every second call).
    #[serde(default)]
    pub fraction: Option<f64>,
}

fn names_operation(pattern: &str, qualified: &str) -> bool {
    pattern == qualified
        || qualified
            .split_once('.')
            .is_some_and(|(_, bare)| bare == pattern)
}

fn names_environment(pattern: &str, name: &str) -> bool {
    pattern == "*" || pattern == name
}

impl Faults {
    /// Whether call number `n` (1-based, since the faults were set) of `operation` is throttled.
    pub fn throttles(&self, operation: &str, n: u64) -> bool {
        self.throttle
            .iter()
            .filter(|t| names_operation(&t.operation, operation))
            .any(|t| {
                let by_count = t.first.is_some_and(|first| n <= first);
                let by_fraction = t.fraction.is_some_and(|f| {
                    let f = f.clamp(0.0, 1.0);
                    (n as f64 * f).floor() > ((n - 1) as f64 * f).floor()
                });
                by_count || by_fraction
            })
    }

    pub fn delay(&self, operation: &str) -> Option<std::time::Duration> {
        self.delay_ms
            .iter()
            .find(|(op, _)| names_operation(op, operation))
            .map(|(_, ms)| std::time::Duration::from_millis(*ms))
    }

    pub fn launch_fails(&self, environment: &str) -> bool {
        self.fail_launch
            .iter()
            .any(|p| names_environment(p, environment))
    }

    pub fn stays_yellow(&self, environment: &str) -> bool {
        self.yellow
            .iter()
            .any(|p| names_environment(p, environment))
    }

    pub fn red_after(&self, environment: &str) -> Option<std::time::Duration> {
        self.red_after_seconds
            .iter()
            .find(|(p, _)| names_environment(p, environment))
            .map(|(_, s)| std::time::Duration::from_secs_f64(s.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_first_calls_and_fractions() {
        let faults = Faults {
            throttle: vec![
                Throttle {
                    operation: "DescribeEvents".into(),
                    first: Some(2),
                    fraction: None,
                },
                Throttle {
                    operation: "ElasticBeanstalk.DescribeEnvironments".into(),
                    first: None,
                    fraction: Some(0.5),
                },
            ],
            ..Faults::default()
        };
        let events: Vec<bool> = (1..=4)
            .map(|n| faults.throttles("ElasticBeanstalk.DescribeEvents", n))
            .collect();
        assert_eq!(events, [true, true, false, false]);
        let envs: Vec<bool> = (1..=4)
            .map(|n| faults.throttles("ElasticBeanstalk.DescribeEnvironments", n))
            .collect();
        assert_eq!(envs, [false, true, false, true]);
        assert!(!faults.throttles("ElasticBeanstalk.CreateEnvironment", 1));
    }

    #[test]
    fn parses_from_json_and_refuses_typos() {
        let f: Faults = serde_json::from_str(
            r#"{"fail_launch":["*"],"red_after_seconds":{"shop-b":1.5},"yellow":["shop-y"]}"#,
        )
        .unwrap();
        assert!(f.launch_fails("anything"));
        assert!(f.stays_yellow("shop-y") && !f.stays_yellow("shop-b"));
        assert_eq!(
            f.red_after("shop-b"),
            Some(std::time::Duration::from_millis(1500))
        );
        assert!(serde_json::from_str::<Faults>(r#"{"fail_lunch":[]}"#).is_err());
    }
}
