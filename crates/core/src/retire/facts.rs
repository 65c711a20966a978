//! The facts retire decides on, read from AWS: every environment of the application with its tags, and
//! where the production Route 53 record points. Apart from the execution because both the plan and the
//! re-check before each termination read them, and a typo in the record must fail here, not look like an
//! environment out of service.

use super::exec::{Record, RetireError};
use super::{live_targets, EnvFacts, RecordTarget};
use crate::aws_error::{AwsError, Service};
use crate::beanstalk::Beanstalk;
use crate::beanstalk::BeanstalkApi;

/// Every environment of the application with its tags.
pub async fn gather(
    beanstalk: &Beanstalk,
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

/// Where the production Route 53 name points: the live targets of its A/AAAA alias and CNAME records
/// (weighted records included). Fails when the zone has no such record: a typo must not make every
/// environment look out of service.
pub async fn record_targets(
    route53: &aws_sdk_route53::Client,
    record: &Record,
) -> Result<Vec<String>, RetireError> {
    use aws_sdk_route53::types::RrType;
    let zone = record
        .hosted_zone_id
        .trim_start_matches("/hostedzone/")
        .to_string();
    let domain = super::normalize_host(&record.domain);
    let mut found: Vec<RecordTarget> = vec![];
    let mut any_record = false;
    let mut start: (String, Option<RrType>, Option<String>) = (domain.clone(), None, None);
    loop {
        let page = route53
            .list_resource_record_sets()
            .hosted_zone_id(&zone)
            .start_record_name(&start.0)
            .set_start_record_type(start.1.clone())
            .set_start_record_identifier(start.2.clone())
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(Service::Route53, "ListResourceRecordSets", e)
                    .on(format!("hosted zone {zone}"))
            })?;
        for set in page.resource_record_sets() {
            if super::normalize_host(set.name()) != domain
                || !matches!(set.r#type(), RrType::A | RrType::Aaaa | RrType::Cname)
            {
                continue;
            }
            any_record = true;
            let weight = set.weight();
            if let Some(alias) = set.alias_target() {
                found.push(RecordTarget {
                    target: alias.dns_name().to_string(),
                    weight,
                });
            }
            if *set.r#type() == RrType::Cname {
                found.extend(set.resource_records().iter().map(|r| RecordTarget {
                    target: r.value().to_string(),
                    weight,
                }));
            }
        }
        match page.next_record_name() {
            Some(next) if page.is_truncated() && super::normalize_host(next) == domain => {
                start = (
                    next.to_string(),
                    page.next_record_type().cloned(),
                    page.next_record_identifier().map(str::to_string),
                );
            }
            _ => break,
        }
    }
    if !any_record {
        return Err(RetireError::RecordMissing {
            zone,
            domain: record.domain.clone(),
        });
    }
    Ok(live_targets(&found))
}
