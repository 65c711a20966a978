//! Elastic Beanstalk in memory: environments with their tags and events, a tag change as an
//! environment update (Updating for [`FakeBeanstalk::update_reads`] reads), enhanced health readings
//! and capacity set by the test.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::{lock, not_ready};
use crate::aws_error::{AwsError, Service};
use crate::beanstalk::{
    ApplicationVersion, BeanstalkApi, Environment, EnvironmentDetails, Event, HealthFigures,
    NewEnvironment, NewVersion, Traffic,
};

#[derive(Debug, Default)]
struct Eb {
    environments: Vec<Environment>,
    tags: BTreeMap<String, BTreeMap<String, String>>,
    events: Vec<Event>,
    /// Environment id -> reads left before a tag change's update is over.
    busy: BTreeMap<String, u32>,
    failures: VecDeque<(&'static str, AwsError)>,
    calls: Vec<String>,
    /// Environment name -> enhanced health readings to give, one per call; the last one stays. Unset:
    /// the environment's own colour, nothing served in the last 10 s.
    figures: BTreeMap<String, VecDeque<HealthFigures>>,
    /// Environment name -> its capacity (default: one healthy instance, MinSize 1, MaxSize 4).
    sizes: BTreeMap<String, crate::swap::capacity::Capacity>,
    /// Environment name -> DateUpdated (unset: none).
    updated: BTreeMap<String, SystemTime>,
    /// Environment name -> EndpointURL (unset: none).
    endpoints: BTreeMap<String, String>,
    /// Application -> its versions.
    versions: BTreeMap<String, Vec<ApplicationVersion>>,
    /// (application, template name) of the configuration templates made.
    templates: BTreeSet<(String, String)>,
    /// CNAME prefixes taken outside the fake (another application or account).
    taken: BTreeSet<String>,
    /// Every CreateEnvironment request, in order.
    created: Vec<NewEnvironment>,
    /// Environment name -> its instances' tail logs, (instance, text).
    tail: BTreeMap<String, Vec<(String, String)>>,
    /// Applications that exist without versions or environments.
    applications: BTreeSet<String>,
    /// (application, label) -> the statuses reads of that version give, in turn; the last one stays.
    version_statuses: BTreeMap<(String, String), VecDeque<String>>,
    /// How many versions the account may hold (unset: no limit).
    version_limit: Option<usize>,
    /// Every CreateApplicationVersion request that created a version, in order.
    created_versions: Vec<NewVersion>,
    /// (application, label) -> the version's events, oldest first.
    version_events: BTreeMap<(String, String), Vec<Event>>,
    /// What CreateStorageLocation names (unset: `elasticbeanstalk-us-east-1-123456789012`).
    storage_bucket: Option<String>,
    /// A version another invocation creates just before this one's next CreateApplicationVersion
    /// of the same application.
    racing: Option<(String, ApplicationVersion)>,
}

/// Elastic Beanstalk in memory.
#[derive(Debug)]
pub struct FakeBeanstalk {
    eb: Mutex<Eb>,
    /// How many reads of an environment show it Updating after a tag change.
    pub update_reads: u32,
}

impl Default for FakeBeanstalk {
    fn default() -> Self {
        FakeBeanstalk {
            eb: Mutex::default(),
            update_reads: 2,
        }
    }
}

/// A Ready, Green environment of `application` whose CNAME prefix is `prefix`, for tests.
pub fn environment(application: &str, name: &str, prefix: &str, version: &str) -> Environment {
    Environment {
        id: format!("e-{name}"),
        name: name.to_string(),
        application: application.to_string(),
        version_label: Some(version.to_string()),
        cname: format!("{prefix}.us-east-1.elasticbeanstalk.com"),
        status: "Ready".into(),
        health: "Green".into(),
        health_status: Some("Ok".into()),
        arn: format!(
            "arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/{application}/{name}"
        ),
        created: None,
    }
}

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

    /// Registers an application version.
    pub fn add_version(&self, application: &str, version: ApplicationVersion) {
        lock(&self.eb)
            .versions
            .entry(application.to_string())
            .or_default()
            .push(version);
    }

    /// The labels of the application's versions, in the order they were added.
    pub fn version_labels(&self, application: &str) -> Vec<String> {
        lock(&self.eb)
            .versions
            .get(application)
            .map(|v| v.iter().map(|v| v.label.clone()).collect())
            .unwrap_or_default()
    }

    /// An application that exists (with no versions or environments yet).
    pub fn add_application(&self, application: &str) {
        lock(&self.eb).applications.insert(application.to_string());
    }

    /// The version `label` of `application` as it is now.
    pub fn version(&self, application: &str, label: &str) -> Option<ApplicationVersion> {
        lock(&self.eb)
            .versions
            .get(application)
            .and_then(|v| v.iter().find(|v| v.label == label).cloned())
    }

    /// What reads of the version give as its status from now on: these in turn, then the last one
    /// again (as Beanstalk's processing moves it on).
    pub fn script_version_status(&self, application: &str, label: &str, statuses: &[&str]) {
        lock(&self.eb).version_statuses.insert(
            (application.to_string(), label.to_string()),
            statuses.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// The account may hold at most `limit` versions (TooManyApplicationVersionsException beyond).
    pub fn set_version_limit(&self, limit: usize) {
        lock(&self.eb).version_limit = Some(limit);
    }

    /// Every CreateApplicationVersion request that created a version, in order.
    pub fn created_versions(&self) -> Vec<NewVersion> {
        lock(&self.eb).created_versions.clone()
    }

    /// An event of the version, as DescribeEvents with VersionLabel gives it.
    pub fn add_version_event(&self, application: &str, label: &str, severity: &str, message: &str) {
        let mut eb = lock(&self.eb);
        let events = eb
            .version_events
            .entry((application.to_string(), label.to_string()))
            .or_default();
        events.push(Event {
            date: SystemTime::UNIX_EPOCH + Duration::from_secs(events.len() as u64),
            severity: severity.to_string(),
            message: message.to_string(),
            environment: None,
        });
    }

    /// What CreateStorageLocation names as Beanstalk's bucket.
    pub fn set_storage_bucket(&self, bucket: &str) {
        lock(&self.eb).storage_bucket = Some(bucket.to_string());
    }

    /// Another invocation creates `version` of `application` just before this one's next
    /// CreateApplicationVersion, which then finds the label taken.
    pub fn race_version(&self, application: &str, version: ApplicationVersion) {
        lock(&self.eb).racing = Some((application.to_string(), version));
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

    fn call(&self, operation: &'static str) -> Result<MutexGuard<'_, Eb>, AwsError> {
        let mut eb = lock(&self.eb);
        eb.calls.push(operation.to_string());
        if let Some(i) = eb.failures.iter().position(|(op, _)| *op == operation) {
            if let Some((_, e)) = eb.failures.remove(i) {
                return Err(e);
            }
        }
        Ok(eb)
    }

    /// A read: a tag change's update runs out after [`FakeBeanstalk::update_reads`] of them.
    fn tick(eb: &mut Eb) {
        let done: Vec<String> = eb
            .busy
            .iter_mut()
            .filter_map(|(id, left)| {
                *left = left.saturating_sub(1);
                (*left == 0).then(|| id.clone())
            })
            .collect();
        for id in done {
            eb.busy.remove(&id);
            if let Some(e) = eb.environments.iter_mut().find(|e| e.id == id) {
                if e.status == "Updating" {
                    e.status = "Ready".into();
                }
            }
        }
    }

    fn details(eb: &Eb, env: &Environment) -> EnvironmentDetails {
        EnvironmentDetails {
            environment: env.clone(),
            updated: eb.updated.get(&env.name).copied(),
            endpoint_url: eb.endpoints.get(&env.name).cloned(),
        }
    }

    fn event(eb: &mut Eb, env: &Environment, message: String) {
        eb.events.push(Event {
            date: SystemTime::UNIX_EPOCH + Duration::from_secs(eb.events.len() as u64),
            severity: "INFO".into(),
            message,
            environment: Some(env.name.clone()),
        });
    }
}

/// Enhanced health with `requests` in the last 10 s, `errors` percent of them 5xx, P99 `p99_ms`, Green.
pub fn figures(requests: u64, errors: u32, p99_ms: u64) -> HealthFigures {
    HealthFigures {
        window: Duration::from_secs(10),
        requests,
        metrics: true,
        server_errors_percent: (requests > 0).then_some(errors),
        p99: (requests > 0).then(|| Duration::from_millis(p99_ms)),
        color: "Green".into(),
        status: Some("Ok".into()),
        causes: Vec::new(),
    }
}

const DEFAULT_SIZE: crate::swap::capacity::Capacity = crate::swap::capacity::Capacity {
    instances: 1,
    healthy: 1,
    min: 1,
    max: 4,
};

impl BeanstalkApi for FakeBeanstalk {
    async fn capacity(
        &self,
        env: &Environment,
    ) -> Result<crate::swap::capacity::Capacity, AwsError> {
        let eb = self.call("DescribeInstancesHealth")?;
        Ok(eb.sizes.get(&env.name).copied().unwrap_or(DEFAULT_SIZE))
    }

    /// A new size launches instances at once, healthy, as a test would want them after the update
    /// (the update itself makes the environment Updating for a few reads, as a tag change does).
    async fn set_size(&self, env: &Environment, min: u32, max: u32) -> Result<(), AwsError> {
        let mut eb = self.call("UpdateEnvironment")?;
        if let Some(e) = eb.environments.iter().find(|e| e.id == env.id) {
            if !e.is_ready() {
                return Err(not_ready("UpdateEnvironment", &e.name));
            }
        }
        let size = eb.sizes.entry(env.name.clone()).or_insert(DEFAULT_SIZE);
        size.min = min;
        size.max = max;
        size.instances = size.instances.clamp(min, max);
        size.healthy = size.instances;
        eb.busy.insert(env.id.clone(), self.update_reads);
        if let Some(e) = eb.environments.iter_mut().find(|e| e.id == env.id) {
            e.status = "Updating".into();
        }
        Ok(())
    }

    async fn enhanced_health(&self, environment_id: &str) -> Result<HealthFigures, AwsError> {
        let mut eb = self.call("DescribeEnvironmentHealth")?;
        let Some(env) = eb
            .environments
            .iter()
            .find(|e| e.id == environment_id)
            .cloned()
        else {
            return Err(AwsError::answered(
                Service::ElasticBeanstalk,
                "DescribeEnvironmentHealth",
                "InvalidRequestException",
                format!("No Environment found for EnvironmentId = '{environment_id}'."),
            ));
        };
        let queue = eb.figures.entry(env.name.clone()).or_default();
        let reading = if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        };
        Ok(reading.unwrap_or_else(|| HealthFigures {
            color: env.health.clone(),
            status: env.health_status.clone(),
            ..figures(0, 0, 0)
        }))
    }

    async fn environments(&self, application: &str) -> Result<Vec<Environment>, AwsError> {
        let mut eb = self.call("DescribeEnvironments")?;
        Self::tick(&mut eb);
        Ok(eb
            .environments
            .iter()
            .filter(|e| e.application == application && e.status != "Terminated")
            .cloned()
            .collect())
    }

    async fn environment(&self, id: &str) -> Result<Option<Environment>, AwsError> {
        let mut eb = self.call("DescribeEnvironments")?;
        Self::tick(&mut eb);
        Ok(eb.environments.iter().find(|e| e.id == id).cloned())
    }

    async fn environment_named(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Option<Environment>, AwsError> {
        let mut eb = self.call("DescribeEnvironments")?;
        Self::tick(&mut eb);
        Ok(eb
            .environments
            .iter()
            .find(|e| e.application == application && e.name == name && !e.is_terminated())
            .cloned())
    }

    async fn events_since(
        &self,
        environment_id: &str,
        since: Option<SystemTime>,
        max: i32,
    ) -> Result<Vec<Event>, AwsError> {
        let eb = self.call("DescribeEvents")?;
        let name = eb
            .environments
            .iter()
            .find(|e| e.id == environment_id)
            .map(|e| e.name.clone());
        let mut events: Vec<Event> = eb
            .events
            .iter()
            .filter(|e| e.environment == name)
            .filter(|e| since.is_none_or(|s| e.date >= s))
            .cloned()
            .collect();
        if since.is_none() {
            let keep = usize::try_from(max.max(0)).unwrap_or(0);
            events = events.split_off(events.len().saturating_sub(keep));
        }
        Ok(events)
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let eb = self.call("ListTagsForResource")?;
        Ok(eb.tags.get(arn).cloned().unwrap_or_default())
    }

    async fn retag(
        &self,
        arn: &str,
        add: &[(&str, String)],
        remove: &[&str],
    ) -> Result<(), AwsError> {
        let mut eb = self.call("UpdateTagsForResource")?;
        let env = eb.environments.iter().find(|e| e.arn == arn).cloned();
        if let Some(env) = &env {
            if !env.is_ready() {
                return Err(not_ready("UpdateTagsForResource", &env.name));
            }
        }
        let tags = eb.tags.entry(arn.to_string()).or_default();
        for (k, v) in add {
            tags.insert(k.to_string(), v.clone());
        }
        for k in remove {
            tags.remove(*k);
        }
        if let Some(env) = env {
            eb.busy.insert(env.id.clone(), self.update_reads);
            if let Some(e) = eb.environments.iter_mut().find(|e| e.id == env.id) {
                e.status = "Updating".into();
            }
            Self::event(&mut eb, &env, "Environment update is starting.".into());
        }
        Ok(())
    }

    async fn swap_cnames(&self, source_id: &str, destination_id: &str) -> Result<(), AwsError> {
        let mut eb = self.call("SwapEnvironmentCNAMEs")?;
        let find = |id: &str| eb.environments.iter().position(|e| e.id == id);
        let (Some(a), Some(b)) = (find(source_id), find(destination_id)) else {
            return Err(AwsError::answered(
                Service::ElasticBeanstalk,
                "SwapEnvironmentCNAMEs",
                "InvalidParameterValue",
                "Source environment not found",
            ));
        };
        for i in [a, b] {
            if !eb.environments[i].is_ready() {
                return Err(not_ready(
                    "SwapEnvironmentCNAMEs",
                    &eb.environments[i].name.clone(),
                ));
            }
        }
        let cname_a = eb.environments[a].cname.clone();
        let cname_b = std::mem::replace(&mut eb.environments[b].cname, cname_a);
        eb.environments[a].cname = cname_b;
        let (ea, eb_) = (eb.environments[a].clone(), eb.environments[b].clone());
        let message = format!(
            "Completed swapping CNAMEs for environments '{}' and '{}'.",
            ea.name, eb_.name
        );
        Self::event(&mut eb, &ea, message.clone());
        Self::event(&mut eb, &eb_, message);
        Ok(())
    }
    async fn environments_detailed(
        &self,
        application: &str,
    ) -> Result<Vec<EnvironmentDetails>, AwsError> {
        let mut eb = self.call("DescribeEnvironments")?;
        Self::tick(&mut eb);
        Ok(eb
            .environments
            .iter()
            .filter(|e| e.application == application && e.status != "Terminated")
            .map(|e| Self::details(&eb, e))
            .collect())
    }

    async fn environment_detailed(&self, id: &str) -> Result<Option<EnvironmentDetails>, AwsError> {
        let mut eb = self.call("DescribeEnvironments")?;
        Self::tick(&mut eb);
        Ok(eb
            .environments
            .iter()
            .find(|e| e.id == id)
            .map(|e| Self::details(&eb, e)))
    }

    /// Refused unless the environment is Ready; then it is Terminated at once.
    async fn terminate(&self, id: &str) -> Result<(), AwsError> {
        let mut eb = self.call("TerminateEnvironment")?;
        let Some(env) = eb
            .environments
            .iter()
            .find(|e| e.id == id && !e.is_terminated())
            .cloned()
        else {
            return Err(AwsError::answered(
                Service::ElasticBeanstalk,
                "TerminateEnvironment",
                "InvalidParameterValue",
                format!("No Environment found for EnvironmentId = '{id}'."),
            ));
        };
        if !env.is_ready() {
            return Err(not_ready("TerminateEnvironment", &env.name));
        }
        if let Some(e) = eb.environments.iter_mut().find(|e| e.id == id) {
            e.status = "Terminated".into();
        }
        Self::event(&mut eb, &env, "terminateEnvironment is starting.".into());
        Ok(())
    }

    /// The Auto Scaling bounds ([`FakeBeanstalk::set_capacity`]) as `aws:autoscaling:asg` options.
    async fn option_settings(
        &self,
        application: &str,
        environment_name: &str,
    ) -> Result<BTreeMap<(String, String), String>, AwsError> {
        use crate::swap::capacity::ASG_NAMESPACE;
        let eb = self.call("DescribeConfigurationSettings")?;
        if !eb.environments.iter().any(|e| {
            e.application == application && e.name == environment_name && !e.is_terminated()
        }) {
            return Err(AwsError::answered(
                Service::ElasticBeanstalk,
                "DescribeConfigurationSettings",
                "InvalidParameterValue",
                format!("No Environment found for EnvironmentName = '{environment_name}'."),
            ));
        }
        let size = eb
            .sizes
            .get(environment_name)
            .copied()
            .unwrap_or(DEFAULT_SIZE);
        Ok(BTreeMap::from([
            (
                (ASG_NAMESPACE.to_string(), "MinSize".to_string()),
                size.min.to_string(),
            ),
            (
                (ASG_NAMESPACE.to_string(), "MaxSize".to_string()),
                size.max.to_string(),
            ),
        ]))
    }

    async fn application_versions(
        &self,
        application: &str,
        _page_size: i32,
    ) -> Result<Vec<ApplicationVersion>, AwsError> {
        let eb = self.call("DescribeApplicationVersions")?;
        Ok(eb.versions.get(application).cloned().unwrap_or_default())
    }

    /// The version as [`FakeBeanstalk::script_version_status`] moves it on.
    async fn application_version(
        &self,
        application: &str,
        label: &str,
    ) -> Result<Option<ApplicationVersion>, AwsError> {
        let mut eb = self.call("DescribeApplicationVersions")?;
        let key = (application.to_string(), label.to_string());
        let status = eb.version_statuses.get_mut(&key).and_then(|queue| {
            if queue.len() > 1 {
                queue.pop_front()
            } else {
                queue.front().cloned()
            }
        });
        let version = eb
            .versions
            .get_mut(application)
            .and_then(|v| v.iter_mut().find(|v| v.label == label));
        Ok(version.map(|v| {
            if let Some(status) = status {
                v.status = status;
            }
            v.clone()
        }))
    }

    /// Refused as Beanstalk refuses it: a label that exists, an application that does not (without
    /// AutoCreateApplication), a version beyond the account's limit. A new version is Processing
    /// with Process, else Unprocessed, and newer than every other.
    async fn create_application_version(
        &self,
        new: &NewVersion,
    ) -> Result<Option<ApplicationVersion>, AwsError> {
        let mut eb = self.call("CreateApplicationVersion")?;
        let refuse = |code: &str, message: String| {
            AwsError::answered(
                Service::ElasticBeanstalk,
                "CreateApplicationVersion",
                code,
                message,
            )
        };
        if eb
            .racing
            .as_ref()
            .is_some_and(|(app, _)| *app == new.application)
        {
            if let Some((app, version)) = eb.racing.take() {
                eb.versions.entry(app).or_default().push(version);
            }
        }
        let versions = eb.versions.get(&new.application);
        if versions.is_some_and(|v| v.iter().any(|v| v.label == new.label)) {
            return Err(refuse(
                "InvalidParameterValue",
                format!("Application Version {} already exists.", new.label),
            ));
        }
        let exists = versions.is_some_and(|v| !v.is_empty())
            || eb.applications.contains(&new.application)
            || eb
                .environments
                .iter()
                .any(|e| e.application == new.application);
        if !exists && !new.auto_create_application {
            return Err(refuse(
                "InvalidParameterValue",
                format!("No Application named '{}' found.", new.application),
            ));
        }
        let held: usize = eb.versions.values().map(Vec::len).sum();
        if let Some(limit) = eb.version_limit {
            if held >= limit {
                return Err(refuse(
                    "TooManyApplicationVersionsException",
                    format!("You cannot have more than {limit} Application Versions."),
                ));
            }
        }
        let newest = eb
            .versions
            .values()
            .flatten()
            .filter_map(|v| v.created)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let version = ApplicationVersion {
            label: new.label.clone(),
            created: Some(newest + Duration::from_secs(1)),
            status: if new.process {
                "Processing"
            } else {
                "Unprocessed"
            }
            .into(),
            bundle: Some((new.bucket.clone(), new.key.clone())),
        };
        eb.applications.insert(new.application.clone());
        eb.versions
            .entry(new.application.clone())
            .or_default()
            .push(version.clone());
        eb.created_versions.push(new.clone());
        Ok(Some(version))
    }

    async fn create_storage_location(&self) -> Result<Option<String>, AwsError> {
        let eb = self.call("CreateStorageLocation")?;
        Ok(Some(eb.storage_bucket.clone().unwrap_or_else(|| {
            "elasticbeanstalk-us-east-1-123456789012".into()
        })))
    }

    async fn version_events(
        &self,
        application: &str,
        label: &str,
        max: i32,
    ) -> Result<Vec<Event>, AwsError> {
        let eb = self.call("DescribeEvents")?;
        let mut events = eb
            .version_events
            .get(&(application.to_string(), label.to_string()))
            .cloned()
            .unwrap_or_default();
        let keep = usize::try_from(max.max(0)).unwrap_or(0);
        Ok(events.split_off(events.len().saturating_sub(keep)))
    }

    /// Refused for a version a running environment uses, as Beanstalk refuses it.
    async fn delete_application_version(
        &self,
        application: &str,
        label: &str,
    ) -> Result<(), AwsError> {
        let mut eb = self.call("DeleteApplicationVersion")?;
        if let Some(env) = eb.environments.iter().find(|e| {
            e.application == application
                && !e.is_terminated()
                && e.version_label.as_deref() == Some(label)
        }) {
            return Err(AwsError::answered(
                Service::ElasticBeanstalk,
                "DeleteApplicationVersion",
                "InvalidParameterValue",
                format!(
                    "Unable to delete application version {label} because it is being deployed to running environment {}.",
                    env.name
                ),
            ));
        }
        if let Some(versions) = eb.versions.get_mut(application) {
            versions.retain(|v| v.label != label);
        }
        Ok(())
    }

    async fn cname_available(&self, prefix: &str) -> Result<bool, AwsError> {
        let eb = self.call("CheckDNSAvailability")?;
        let prefix = prefix.to_ascii_lowercase();
        Ok(!eb.taken.contains(&prefix)
            && !eb
                .environments
                .iter()
                .any(|e| !e.is_terminated() && e.cname_prefix().eq_ignore_ascii_case(&prefix)))
    }

    async fn create_configuration_template(
        &self,
        application: &str,
        template: &str,
        environment_id: &str,
        _description: &str,
    ) -> Result<(), AwsError> {
        let mut eb = self.call("CreateConfigurationTemplate")?;
        let refuse = |message: String| {
            AwsError::answered(
                Service::ElasticBeanstalk,
                "CreateConfigurationTemplate",
                "InvalidParameterValue",
                message,
            )
        };
        if !eb.environments.iter().any(|e| e.id == environment_id) {
            return Err(refuse(format!(
                "No Environment found for EnvironmentId = '{environment_id}'."
            )));
        }
        let key = (application.to_string(), template.to_string());
        if !eb.templates.insert(key) {
            return Err(refuse(format!(
                "Configuration Template {template} already exists."
            )));
        }
        Ok(())
    }

    /// The new environment is Launching (Grey) with the request's tags, on the prefix asked for (else
    /// one made of its name).
    async fn create_environment(&self, new: &NewEnvironment) -> Result<(String, String), AwsError> {
        let mut eb = self.call("CreateEnvironment")?;
        if eb
            .environments
            .iter()
            .any(|e| e.application == new.application && e.name == new.name && !e.is_terminated())
        {
            return Err(AwsError::answered(
                Service::ElasticBeanstalk,
                "CreateEnvironment",
                "InvalidParameterValue",
                format!("Environment {} already exists.", new.name),
            ));
        }
        let prefix = new
            .cname_prefix
            .clone()
            .unwrap_or_else(|| format!("{}-x7k2", new.name.to_ascii_lowercase()));
        let mut env = environment(&new.application, &new.name, &prefix, &new.version_label);
        env.status = "Launching".into();
        env.health = "Grey".into();
        env.health_status = None;
        let (id, cname) = (env.id.clone(), env.cname.clone());
        eb.tags.insert(env.arn.clone(), new.tags.clone());
        eb.created.push(new.clone());
        Self::event(&mut eb, &env, "createEnvironment is starting.".into());
        eb.environments.push(env);
        Ok((id, cname))
    }

    async fn delete_configuration_template(
        &self,
        application: &str,
        template: &str,
    ) -> Result<(), AwsError> {
        let mut eb = self.call("DeleteConfigurationTemplate")?;
        if !eb
            .templates
            .remove(&(application.to_string(), template.to_string()))
        {
            return Err(AwsError::answered(
                Service::ElasticBeanstalk,
                "DeleteConfigurationTemplate",
                "InvalidParameterValue",
                format!("No Configuration Template named '{application}/{template}' found."),
            ));
        }
        Ok(())
    }

    /// Terminated at once, whatever its state.
    async fn force_terminate(&self, id: &str) -> Result<(), AwsError> {
        let mut eb = self.call("TerminateEnvironment")?;
        if let Some(e) = eb.environments.iter_mut().find(|e| e.id == id) {
            e.status = "Terminated".into();
        }
        Ok(())
    }

    async fn tail_logs(
        &self,
        environment_id: &str,
        _budget: Duration,
    ) -> Result<Vec<(String, String)>, String> {
        let eb = self
            .call("RequestEnvironmentInfo")
            .map_err(|e| e.to_string())?;
        let name = eb
            .environments
            .iter()
            .find(|e| e.id == environment_id)
            .map(|e| e.name.clone())
            .unwrap_or_default();
        Ok(eb.tail.get(&name).cloned().unwrap_or_default())
    }
}
