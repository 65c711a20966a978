//! The facts retire decides on, read from AWS: every environment of the application with its tags, and
//! where the production Route 53 record points. Apart from the execution because both the plan and the
//! re-check before each termination read them, and a typo in the record must fail here, not look like an
//! environment out of service.

use super::exec::{Record, RetireError};
use super::{live_targets, EnvFacts, RecordTarget};
use crate::beanstalk::BeanstalkApi;
use crate::route53::Route53Api;

/// Every environment of the application with its tags.
pub async fn gather<B: BeanstalkApi>(
    beanstalk: &B,
    application: &str,
) -> Result<Vec<EnvFacts>, RetireError> {
    let mut facts = vec![];
    for details in beanstalk.environments_detailed(application).await? {
        let env = details.environment;
        let tags = if env.arn.is_empty() {
            Default::default()
        } else {
            match beanstalk.tags(&env.arn).await {
                Ok(tags) => tags,
                // Terminated since it was listed: no tags, so never a candidate.
                Err(e) if e.code.as_deref() == Some("ResourceNotFoundException") => {
                    Default::default()
                }
                Err(e) => return Err(e.into()),
            }
        };
        facts.push(EnvFacts {
            env,
            tags,
            updated: details.updated,
            endpoint_url: details.endpoint_url,
        });
    }
    Ok(facts)
}

/// Where the production Route 53 name points: the live targets of its alias and CNAME records
/// (weighted records included), read as swap reads them ([`Route53Api::records`]). Fails when the zone
/// has no such record: a typo must not make every environment look out of service.
pub async fn record_targets<R: Route53Api>(
    route53: &R,
    record: &Record,
) -> Result<Vec<String>, RetireError> {
    let existing = route53.records(&record.zone, &record.name).await?;
    if existing.is_empty() {
        return Err(RetireError::RecordMissing {
            zone: record.zone.trim_start_matches("/hostedzone/").to_string(),
            domain: record.name.clone(),
        });
    }
    let found: Vec<RecordTarget> = existing
        .iter()
        .map(|e| RecordTarget {
            target: e.record.target(),
            weight: e.record.weight,
        })
        .collect();
    Ok(live_targets(&found))
}
