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
    NewEnvironment, NewVersion,
};

mod setup;
mod versions;

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
