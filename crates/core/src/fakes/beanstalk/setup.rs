//! What a test sets up and reads back on [`FakeBeanstalk`]: environments, tags, traffic, health
//! readings, capacity, events, tail logs, failures to inject, and the calls made.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use super::{figures, lock, FakeBeanstalk, DEFAULT_SIZE};
use crate::aws_error::AwsError;
use crate::beanstalk::{Environment, Event, HealthFigures, NewEnvironment, Traffic};

impl FakeBeanstalk {
    pub fn with(environments: Vec<Environment>) -> Self {
        let fake = FakeBeanstalk::default();
        lock(&fake.eb).environments = environments;
        fake
    }

    pub fn add(&self, env: Environment) {
        lock(&self.eb).environments.push(env);
    }

    /// The environment named `name` as it is now (panics when there is none: a test's mistake).
    pub fn env(&self, name: &str) -> Environment {
        lock(&self.eb)
            .environments
            .iter()
            .find(|e| e.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no environment {name}"))
    }

    /// The environment holding this CNAME, if any.
    pub fn holder(&self, cname: &str) -> Option<Environment> {
        lock(&self.eb)
            .environments
            .iter()
            .find(|e| e.cname.eq_ignore_ascii_case(cname) && !e.is_terminated())
            .cloned()
    }

    /// Changes an environment in place (status, health, ...).
    pub fn set(&self, name: &str, change: impl FnOnce(&mut Environment)) {
        let mut eb = lock(&self.eb);
        if let Some(e) = eb.environments.iter_mut().find(|e| e.name == name) {
            change(e);
        }
    }

    pub fn set_tags(&self, name: &str, tags: &[(&str, &str)]) {
        let arn = self.env(name).arn;
        let mut eb = lock(&self.eb);
        let entry = eb.tags.entry(arn).or_default();
        for (k, v) in tags {
            entry.insert(k.to_string(), v.to_string());
        }
    }

    pub fn tags_of(&self, name: &str) -> BTreeMap<String, String> {
        let arn = self.env(name).arn;
        lock(&self.eb).tags.get(&arn).cloned().unwrap_or_default()
    }

    /// What enhanced health reports the environment served (`None`: no metrics, enhanced health off),
    /// from now on.
    pub fn set_traffic(&self, name: &str, traffic: Option<Traffic>) {
        let env = self.env(name);
        let reading = HealthFigures {
            color: env.health,
            status: env.health_status,
            ..match traffic {
                Some(t) => HealthFigures {
                    window: t.window,
                    ..figures(t.requests, 0, 0)
                },
                None => HealthFigures {
                    metrics: false,
                    ..figures(0, 0, 0)
                },
            }
        };
        lock(&self.eb)
            .figures
            .insert(name.to_string(), VecDeque::from([reading]));
    }

    /// The next call of `operation` fails with `error`.
    pub fn fail_next(&self, operation: &'static str, error: AwsError) {
        lock(&self.eb).failures.push_back((operation, error));
    }

    /// What `name` runs: `instances`, `healthy` of them, within MinSize/MaxSize.
    pub fn set_capacity(&self, name: &str, capacity: crate::swap::capacity::Capacity) {
        lock(&self.eb).sizes.insert(name.to_string(), capacity);
    }

    pub fn capacity_of(&self, name: &str) -> crate::swap::capacity::Capacity {
        lock(&self.eb)
            .sizes
            .get(name)
            .copied()
            .unwrap_or(DEFAULT_SIZE)
    }

    /// What DescribeEnvironmentHealth answers for `name`: these readings in turn, then the last one
    /// again (none given: no requests, the environment's color).
    pub fn set_figures(&self, name: &str, readings: Vec<HealthFigures>) {
        lock(&self.eb)
            .figures
            .insert(name.to_string(), readings.into());
    }

    /// What DescribeEnvironments gives as the environment's DateUpdated.
    pub fn set_updated(&self, name: &str, updated: SystemTime) {
        lock(&self.eb).updated.insert(name.to_string(), updated);
    }

    /// What DescribeEnvironments gives as the environment's EndpointURL (its load balancer).
    pub fn set_endpoint(&self, name: &str, endpoint: &str) {
        lock(&self.eb)
            .endpoints
            .insert(name.to_string(), endpoint.to_string());
    }

    /// The CNAME prefix is taken by someone the fake does not hold (CheckDNSAvailability says no).
    pub fn take_cname(&self, prefix: &str) {
        lock(&self.eb).taken.insert(prefix.to_ascii_lowercase());
    }

    /// The configuration templates that exist, as (application, name).
    pub fn templates(&self) -> Vec<(String, String)> {
        lock(&self.eb).templates.iter().cloned().collect()
    }

    /// An event of `name` at `date`, as Beanstalk would report it.
    pub fn add_event(&self, name: &str, date: SystemTime, severity: &str, message: &str) {
        lock(&self.eb).events.push(Event {
            date,
            severity: severity.to_string(),
            message: message.to_string(),
            environment: Some(name.to_string()),
        });
    }

    /// What the instances of `name` logged, for the tail logs.
    pub fn set_tail_logs(&self, name: &str, logs: Vec<(String, String)>) {
        lock(&self.eb).tail.insert(name.to_string(), logs);
    }

    /// Every CreateEnvironment request so far.
    pub fn created(&self) -> Vec<NewEnvironment> {
        lock(&self.eb).created.clone()
    }

    /// Every call so far, as `Operation` names in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.eb).calls.clone()
    }

    /// How many times `operation` was called.
    pub fn count(&self, operation: &str) -> usize {
        lock(&self.eb)
            .calls
            .iter()
            .filter(|c| *c == operation)
            .count()
    }
}
