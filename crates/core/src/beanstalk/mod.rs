//! Elastic Beanstalk as the actions see it: environments found by CNAME and by beanswap's tags (never by
//! guessing from names), events read with a time cursor, and errors that name the call and the code.
//!
//! Every read of environments (DescribeEnvironments, events, tags, health) goes through here, so every
//! action shares one understanding of "the live environment" and of what counts as healthy. A few
//! writes call the SDK client directly through [`Beanstalk::client`]: stage's deletion of its cloned
//! configuration template and forced termination of a failed launch, the tail logs of `tail_logs`.
//!
//! `model` holds the shapes of the answers, `api` the narrow trait the sequences call (and its SDK
//! implementation); this file the client and its other calls.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata;
use aws_sdk_elasticbeanstalk::types::EnvironmentDescription;
use aws_sdk_elasticbeanstalk::Client;

use crate::aws_error::{AwsError, HttpStatus, Service};
pub use crate::health_figures::HealthFigures;

mod api;
mod model;
mod versions;

pub use api::BeanstalkApi;
use model::to_system_time;
pub use model::{
    ApplicationVersion, Environment, EnvironmentDetails, Event, Health, HealthGate, LaunchFrom,
    NewEnvironment, NewVersion, Status, Traffic,
};
pub use versions::VersionsApi;

/// Tags beanswap puts on the environments it creates; retire only ever considers environments with them.
pub const TAG_APPLICATION: &str = "beanswap:application";
/// The version label the environment was created with.
pub const TAG_VERSION: &str = "beanswap:version";
/// When the environment stopped serving production (RFC 3339), set by swap; retire's grace period
/// counts from it.
pub const TAG_OUT_OF_SERVICE_SINCE: &str = "beanswap:out-of-service-since";

/// An Elastic Beanstalk SDK call's error as the one [`AwsError`], named by its operation.
pub fn eb_error<E, R>(
    operation: &'static str,
    e: aws_sdk_elasticbeanstalk::error::SdkError<E, R>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    AwsError::from_sdk(Service::ElasticBeanstalk, operation, e)
}

/// The Beanstalk calls the actions make, with the SDK.
#[derive(Clone, Debug)]
pub struct Beanstalk {
    client: Client,
}

impl Beanstalk {
    pub fn new(config: &SdkConfig) -> Self {
        Beanstalk {
            client: Client::new(config),
        }
    }

    /// Around a client built elsewhere (tests aim theirs at local-aws).
    pub fn from_client(client: Client) -> Self {
        Beanstalk { client }
    }

    /// The SDK client, for calls this module does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// DescribeEnvironments for the application, every page, without the terminated ones (Beanstalk lists
    /// an environment as Terminated for a while even with IncludeDeleted=false).
    async fn live_descriptions(
        &self,
        application: &str,
    ) -> Result<Vec<EnvironmentDescription>, AwsError> {
        let mut out: Vec<EnvironmentDescription> = vec![];
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_environments()
                .application_name(application)
                .include_deleted(false)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| eb_error("DescribeEnvironments", e))?;
            out.extend(page.environments().iter().cloned());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.retain(|e| e.status().map(|s| s.as_str()) != Some("Terminated"));
        Ok(out)
    }

    /// DescribeEnvironments for one id, terminated ones included.
    async fn description_by_id(
        &self,
        id: &str,
    ) -> Result<Option<EnvironmentDescription>, AwsError> {
        let page = self
            .client
            .describe_environments()
            .environment_ids(id)
            .include_deleted(true)
            .send()
            .await
            .map_err(|e| eb_error("DescribeEnvironments", e))?;
        Ok(page.environments().first().cloned())
    }

    /// The environment serving production: the one holding the production CNAME. `None` before the
    /// first deployment.
    pub async fn live(
        &self,
        application: &str,
        production_cname: &str,
    ) -> Result<Option<Environment>, AwsError> {
        Ok(self
            .environments(application)
            .await?
            .into_iter()
            .find(|e| !e.is_terminated() && e.holds_cname(production_cname)))
    }

    /// Polls the environment until it is Ready (or terminated, or `timeout` passes), skipping polls
    /// AWS throttles: what every write that can make an environment busy (a tag change, an update) is
    /// followed by before an operation that needs Ready.
    pub async fn wait_ready(
        &self,
        env: &Environment,
        timeout: Duration,
    ) -> Result<Environment, AwsError> {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let mut last = env.clone();
        loop {
            if let Some(now) = crate::aws_error::unless_transient(self.environment(&env.id).await)?
            {
                match now {
                    Some(e) if e.is_ready() || e.is_terminated() => return Ok(e),
                    Some(e) => last = e,
                    None => return Ok(last),
                }
            }
            if started.elapsed() >= timeout {
                return Ok(last);
            }
            tokio::time::sleep(poll_delay(attempt).min(Duration::from_secs(5))).await;
            attempt += 1;
        }
    }
}

impl Beanstalk {
    /// UpdateEnvironment with option settings only: (namespace, option name, value).
    pub async fn update_option_settings(
        &self,
        id: &str,
        settings: &[(&str, &str, String)],
    ) -> Result<(), AwsError> {
        let mut request = self.client.update_environment().environment_id(id);
        for (namespace, option, value) in settings {
            request = request.option_settings(
                aws_sdk_elasticbeanstalk::types::ConfigurationOptionSetting::builder()
                    .namespace(*namespace)
                    .option_name(*option)
                    .value(value)
                    .build(),
            );
        }
        request
            .send()
            .await
            .map_err(|e| eb_error("UpdateEnvironment", e))?;
        Ok(())
    }
}

/// The last `n` events as lines, newest last, for a failure message.
pub fn event_lines(events: &[Event], n: usize) -> String {
    let start = events.len().saturating_sub(n);
    events[start..]
        .iter()
        .map(Event::line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Backoff for polling Beanstalk: quick at first (tests, fast launches), then every 10 s, the interval of
/// the usual polling tools, so a failure is never noticed later than with them.
pub fn poll_delay(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.min(6));
    Duration::from_millis(ms.min(10_000))
}

#[cfg(test)]
mod tests;
