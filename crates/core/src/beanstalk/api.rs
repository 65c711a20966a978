//! [`BeanstalkApi`]: the Elastic Beanstalk calls the sequences make, as a narrow trait (the SDK's
//! implementation here, the in-memory one in [`crate::fakes`]), so a sequence written against it is
//! tested without a server.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::SystemTime;

use aws_sdk_elasticbeanstalk::primitives::DateTime;

use super::versions::VersionsApi;
use super::{
    eb_error, Beanstalk, Environment, EnvironmentDetails, Event, HealthFigures, LaunchFrom,
    NewEnvironment,
};
use crate::aws_error::AwsError;

/// The Elastic Beanstalk calls the sequences in this crate make, narrow enough that an in-memory fake
/// ([`crate::fakes::FakeBeanstalk`]) stands in for AWS in unit tests; [`Beanstalk`] makes them with the
/// SDK. Every answer is ours ([`Environment`], [`Event`]), every error the one [`AwsError`].
pub trait BeanstalkApi: VersionsApi {
    /// The application's environments that are not terminated, following every page.
    fn environments(
        &self,
        application: &str,
    ) -> impl Future<Output = Result<Vec<Environment>, AwsError>> + Send;
    /// An environment by id, terminated ones included.
    fn environment(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Environment>, AwsError>> + Send;
    /// A live (not terminated) environment of the application by name.
    fn environment_named(
        &self,
        application: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Environment>, AwsError>> + Send;
    /// Events of one environment since `since` (every page), oldest first; the newest `max` without.
    fn events_since(
        &self,
        environment_id: &str,
        since: Option<SystemTime>,
        max: i32,
    ) -> impl Future<Output = Result<Vec<Event>, AwsError>> + Send;
    fn tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, AwsError>> + Send;
    /// One tag change (see [`Beanstalk::retag`]): on an environment, an environment update.
    fn retag(
        &self,
        arn: &str,
        add: &[(&str, String)],
        remove: &[&str],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// SwapEnvironmentCNAMEs; both must be Ready.
    fn swap_cnames(
        &self,
        source_id: &str,
        destination_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The instances an environment runs and how many are healthy (DescribeInstancesHealth), and its
    /// Auto Scaling bounds (DescribeConfigurationSettings, `aws:autoscaling:asg`).
    fn capacity(
        &self,
        env: &Environment,
    ) -> impl Future<Output = Result<crate::swap::capacity::Capacity, AwsError>> + Send;
    /// UpdateEnvironment of MinSize and MaxSize (an environment update: Updating until it is done).
    fn set_size(
        &self,
        env: &Environment,
        min: u32,
        max: u32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// DescribeEnvironmentHealth (AttributeNames All): enhanced health's figures now, what the bake
    /// judges and, through [`HealthFigures::traffic`], what retire's idle rule counts. With enhanced
    /// health off, AWS answers InvalidRequestException.
    fn enhanced_health(
        &self,
        environment_id: &str,
    ) -> impl Future<Output = Result<HealthFigures, AwsError>> + Send;
    /// The application's environments that are not terminated, with what DescribeEnvironments tells
    /// beyond [`Environment`] (DateUpdated, EndpointURL), following every page: the same call as
    /// [`BeanstalkApi::environments`].
    fn environments_detailed(
        &self,
        application: &str,
    ) -> impl Future<Output = Result<Vec<EnvironmentDetails>, AwsError>> + Send;
    /// One environment by id with its details, terminated ones included.
    fn environment_detailed(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<EnvironmentDetails>, AwsError>> + Send;
    /// TerminateEnvironment. Beanstalk refuses it while the environment is busy (not Ready).
    fn terminate(&self, id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// An environment's option settings (DescribeConfigurationSettings), keyed by (namespace, option
    /// name).
    fn option_settings(
        &self,
        application: &str,
        environment_name: &str,
    ) -> impl Future<Output = Result<BTreeMap<(String, String), String>, AwsError>> + Send;
    /// CheckDNSAvailability: whether `prefix` is free to become a new environment's CNAME.
    fn cname_available(&self, prefix: &str) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// CreateConfigurationTemplate from a running environment's configuration.
    fn create_configuration_template(
        &self,
        application: &str,
        template: &str,
        environment_id: &str,
        description: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// CreateEnvironment: the new environment's id and CNAME.
    fn create_environment(
        &self,
        new: &NewEnvironment,
    ) -> impl Future<Output = Result<(String, String), AwsError>> + Send;
    /// DeleteConfigurationTemplate.
    fn delete_configuration_template(
        &self,
        application: &str,
        template: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// TerminateEnvironment with ForceTerminate (a failed launch, whatever state it is in).
    fn force_terminate(&self, id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The environment's tail logs, `(instance, text)` each, waited for at most `budget`
    /// ([`crate::tail_logs::fetch`]); the error worded for a failure message.
    fn tail_logs(
        &self,
        environment_id: &str,
        budget: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<(String, String)>, String>> + Send;
}

impl BeanstalkApi for Beanstalk {
    async fn environments(&self, application: &str) -> Result<Vec<Environment>, AwsError> {
        Ok(self
            .live_descriptions(application)
            .await?
            .iter()
            .map(Environment::from_sdk)
            .collect())
    }

    async fn environment(&self, id: &str) -> Result<Option<Environment>, AwsError> {
        Ok(self
            .description_by_id(id)
            .await?
            .as_ref()
            .map(Environment::from_sdk))
    }

    async fn environment_named(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Option<Environment>, AwsError> {
        let page = self
            .client
            .describe_environments()
            .application_name(application)
            .environment_names(name)
            .include_deleted(false)
            .send()
            .await
            .map_err(|e| eb_error("DescribeEnvironments", e))?;
        Ok(page
            .environments()
            .iter()
            .map(Environment::from_sdk)
            .find(|e| !e.is_terminated()))
    }

    async fn events_since(
        &self,
        environment_id: &str,
        since: Option<SystemTime>,
        max: i32,
    ) -> Result<Vec<Event>, AwsError> {
        /// Far beyond any burst between two polls; only a misbehaving endpoint repeats tokens forever.
        const MAX_PAGES: usize = 50;
        let mut events: Vec<Event> = vec![];
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut request = self
                .client
                .describe_events()
                .environment_id(environment_id)
                .max_records(max.clamp(1, 1000))
                .set_next_token(token.take());
            if let Some(since) = since {
                request = request.start_time(DateTime::from(since));
            }
            let page = request
                .send()
                .await
                .map_err(|e| eb_error("DescribeEvents", e))?;
            events.extend(page.events().iter().filter_map(Event::from_sdk));
            token = page.next_token().map(str::to_string);
            if since.is_none() || token.is_none() {
                break;
            }
        }
        events.reverse();
        Ok(events)
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let out = self
            .client
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| eb_error("ListTagsForResource", e))?;
        Ok(out
            .resource_tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect())
    }

    async fn retag(
        &self,
        arn: &str,
        add: &[(&str, String)],
        remove: &[&str],
    ) -> Result<(), AwsError> {
        let mut request = self.client.update_tags_for_resource().resource_arn(arn);
        for (key, value) in add {
            request = request.tags_to_add(
                aws_sdk_elasticbeanstalk::types::Tag::builder()
                    .key(*key)
                    .value(value)
                    .build(),
            );
        }
        for key in remove {
            request = request.tags_to_remove(*key);
        }
        request
            .send()
            .await
            .map_err(|e| eb_error("UpdateTagsForResource", e))?;
        Ok(())
    }

    async fn swap_cnames(&self, source_id: &str, destination_id: &str) -> Result<(), AwsError> {
        self.client
            .swap_environment_cnames()
            .source_environment_id(source_id)
            .destination_environment_id(destination_id)
            .send()
            .await
            .map_err(|e| eb_error("SwapEnvironmentCNAMEs", e))?;
        Ok(())
    }

    async fn capacity(
        &self,
        env: &Environment,
    ) -> Result<crate::swap::capacity::Capacity, AwsError> {
        use crate::swap::capacity::{Capacity, ASG_NAMESPACE, DEFAULT_MAX, DEFAULT_MIN};
        use aws_sdk_elasticbeanstalk::types::InstancesHealthAttribute;
        let mut instances = 0u32;
        let mut healthy = 0u32;
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_instances_health()
                .environment_id(&env.id)
                .attribute_names(InstancesHealthAttribute::Color)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| eb_error("DescribeInstancesHealth", e))?;
            for i in out.instance_health_list() {
                instances += 1;
                if i.color() == Some("Green") {
                    healthy += 1;
                }
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let settings = self.option_settings(&env.application, &env.name).await?;
        let option = |name: &str, default: u32| {
            settings
                .get(&(ASG_NAMESPACE.to_string(), name.to_string()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Ok(Capacity {
            instances,
            healthy,
            min: option("MinSize", DEFAULT_MIN),
            max: option("MaxSize", DEFAULT_MAX),
        })
    }

    async fn set_size(&self, env: &Environment, min: u32, max: u32) -> Result<(), AwsError> {
        use crate::swap::capacity::ASG_NAMESPACE;
        self.update_option_settings(
            &env.id,
            &[
                (ASG_NAMESPACE, "MinSize", min.to_string()),
                (ASG_NAMESPACE, "MaxSize", max.to_string()),
            ],
        )
        .await
    }

    async fn enhanced_health(&self, environment_id: &str) -> Result<HealthFigures, AwsError> {
        let out = self
            .client
            .describe_environment_health()
            .environment_id(environment_id)
            .attribute_names(aws_sdk_elasticbeanstalk::types::EnvironmentHealthAttribute::All)
            .send()
            .await
            .map_err(|e| eb_error("DescribeEnvironmentHealth", e))?;
        Ok(HealthFigures::from_sdk(&out))
    }

    async fn environments_detailed(
        &self,
        application: &str,
    ) -> Result<Vec<EnvironmentDetails>, AwsError> {
        Ok(self
            .live_descriptions(application)
            .await?
            .iter()
            .map(EnvironmentDetails::from_sdk)
            .collect())
    }

    async fn environment_detailed(&self, id: &str) -> Result<Option<EnvironmentDetails>, AwsError> {
        Ok(self
            .description_by_id(id)
            .await?
            .as_ref()
            .map(EnvironmentDetails::from_sdk))
    }

    async fn option_settings(
        &self,
        application: &str,
        environment_name: &str,
    ) -> Result<BTreeMap<(String, String), String>, AwsError> {
        let out = self
            .client
            .describe_configuration_settings()
            .application_name(application)
            .environment_name(environment_name)
            .send()
            .await
            .map_err(|e| eb_error("DescribeConfigurationSettings", e))?;
        Ok(out
            .configuration_settings()
            .iter()
            .flat_map(|c| c.option_settings())
            .filter_map(|o| {
                Some((
                    (o.namespace()?.to_string(), o.option_name()?.to_string()),
                    o.value().unwrap_or_default().to_string(),
                ))
            })
            .collect())
    }

    async fn terminate(&self, id: &str) -> Result<(), AwsError> {
        self.client
            .terminate_environment()
            .environment_id(id)
            .send()
            .await
            .map_err(|e| eb_error("TerminateEnvironment", e))?;
        Ok(())
    }

    async fn cname_available(&self, prefix: &str) -> Result<bool, AwsError> {
        let out = self
            .client
            .check_dns_availability()
            .cname_prefix(prefix)
            .send()
            .await
            .map_err(|e| eb_error("CheckDNSAvailability", e))?;
        Ok(out.available().unwrap_or(false))
    }

    async fn create_configuration_template(
        &self,
        application: &str,
        template: &str,
        environment_id: &str,
        description: &str,
    ) -> Result<(), AwsError> {
        self.client
            .create_configuration_template()
            .application_name(application)
            .template_name(template)
            .environment_id(environment_id)
            .description(description)
            .send()
            .await
            .map_err(|e| eb_error("CreateConfigurationTemplate", e))?;
        Ok(())
    }

    async fn create_environment(&self, new: &NewEnvironment) -> Result<(String, String), AwsError> {
        use aws_sdk_elasticbeanstalk::types::{ConfigurationOptionSetting, Tag};
        let mut create = self
            .client
            .create_environment()
            .application_name(&new.application)
            .environment_name(&new.name)
            .version_label(&new.version_label)
            .description(&new.description)
            .set_cname_prefix(new.cname_prefix.clone());
        create = match &new.from {
            LaunchFrom::Template(name) => create.template_name(name),
            LaunchFrom::SolutionStack(stack) => create.solution_stack_name(stack),
            LaunchFrom::PlatformArn(arn) => create.platform_arn(arn),
        };
        for (namespace, option, value) in &new.option_settings {
            create = create.option_settings(
                ConfigurationOptionSetting::builder()
                    .namespace(namespace)
                    .option_name(option)
                    .value(value)
                    .build(),
            );
        }
        for (key, value) in &new.tags {
            create = create.tags(Tag::builder().key(key).value(value).build());
        }
        let created = create
            .send()
            .await
            .map_err(|e| eb_error("CreateEnvironment", e))?;
        Ok((
            created.environment_id().unwrap_or_default().to_string(),
            created.cname().unwrap_or_default().to_string(),
        ))
    }

    async fn delete_configuration_template(
        &self,
        application: &str,
        template: &str,
    ) -> Result<(), AwsError> {
        self.client
            .delete_configuration_template()
            .application_name(application)
            .template_name(template)
            .send()
            .await
            .map_err(|e| eb_error("DeleteConfigurationTemplate", e))?;
        Ok(())
    }

    async fn force_terminate(&self, id: &str) -> Result<(), AwsError> {
        self.client
            .terminate_environment()
            .environment_id(id)
            .force_terminate(true)
            .send()
            .await
            .map_err(|e| eb_error("TerminateEnvironment", e))?;
        Ok(())
    }

    async fn tail_logs(
        &self,
        environment_id: &str,
        budget: std::time::Duration,
    ) -> Result<Vec<(String, String)>, String> {
        crate::tail_logs::fetch(self, environment_id, budget).await
    }
}
