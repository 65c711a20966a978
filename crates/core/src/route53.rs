//! Route 53 as swap sees it: the records of one custom domain (simple or weighted, alias or CNAME) that
//! point at Elastic Beanstalk environments, the change batch that moves them, and the wait for INSYNC.
//!
//! The planning half ([`changes_to`], [`beanstalk_hosted_zone_id`]) is pure; [`Route53`] is the thin
//! adapter over the SDK client.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_smithy_types::error::display::DisplayErrorContext;

use aws_config::SdkConfig;
use aws_sdk_route53::error::ProvideErrorMetadata;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;

use crate::aws_error::{AwsError, HttpStatus, Service};

/// Route 53 hosted zone id of each region's Elastic Beanstalk environment CNAMEs
/// (`<prefix>.<region>.elasticbeanstalk.com`), the `HostedZoneId` an alias record to an environment needs.
/// Source: AWS General Reference, "AWS Elastic Beanstalk endpoints and quotas" (every region listed
/// there, GovCloud included; the China regions are not listed).
pub const BEANSTALK_HOSTED_ZONES: &[(&str, &str)] = &[
    ("af-south-1", "Z1EI3BVKMKK4AM"),
    ("ap-east-1", "ZPWYUBWRU171A"),
    ("ap-northeast-1", "Z1R25G3KIG2GBW"),
    ("ap-northeast-2", "Z3JE5OI70TWKCP"),
    ("ap-northeast-3", "ZNE5GEY1TIAGY"),
    ("ap-south-1", "Z18NTBI3Y7N9TZ"),
    ("ap-south-2", "Z10223522IBWPBF2C2FJS"),
    ("ap-southeast-1", "Z16FZ9L249IFLT"),
    ("ap-southeast-2", "Z2PCDNR3VC2G1N"),
    ("ap-southeast-3", "Z05913172VM7EAZB40TA8"),
    ("ap-southeast-4", "Z0666869LC74UHAO5YE4"),
    ("ap-southeast-5", "Z01812971H0QCYWSL7WOH"),
    ("ap-southeast-6", "Z01144401H1NECCLJDD4D"),
    ("ap-southeast-7", "Z08384933QM5LSQCVMNZM"),
    ("ca-central-1", "ZJFCZL7SSZB5I"),
    ("ca-west-1", "Z1021028356Y0CYS11DQI"),
    ("eu-central-1", "Z1FRNW7UH4DEZJ"),
    ("eu-central-2", "Z00227012FSHBMZNNSJJI"),
    ("eu-north-1", "Z23GO28BZ5AETM"),
    ("eu-south-1", "Z10VDYYOA2JFKM"),
    ("eu-south-2", "Z0243492AO4B9S3KI68O"),
    ("eu-west-1", "Z2NYPWQ7DFZAZH"),
    ("eu-west-2", "Z1GKAAAUGATPF1"),
    ("eu-west-3", "Z5WN6GAYWG5OB"),
    ("il-central-1", "Z02941091PERNCB1MI5H7"),
    ("me-central-1", "Z0650511N84AAKGW7QUK"),
    ("me-south-1", "Z2BBTEKR2I36N2"),
    ("sa-east-1", "Z10X7K2B4QSOFV"),
    ("us-east-1", "Z117KPS5GTRQ2G"),
    ("us-east-2", "Z14LCN19Q5QHIC"),
    ("us-gov-east-1", "Z35TSARG0EJ4VU"),
    ("us-gov-west-1", "Z4KAURWC4UUUG"),
    ("us-west-1", "Z1LQECGX5PH1X"),
    ("us-west-2", "Z38NKT9BP95V3O"),
];

/// The Beanstalk hosted zone id for `region`, if Beanstalk runs there.
pub fn beanstalk_hosted_zone_id(region: &str) -> Option<&'static str> {
    BEANSTALK_HOSTED_ZONES
        .iter()
        .find(|(r, _)| r.eq_ignore_ascii_case(region))
        .map(|(_, id)| *id)
}

/// The region of an environment CNAME (`shop.us-east-1.elasticbeanstalk.com` -> `us-east-1`).
pub fn region_of_cname(cname: &str) -> Option<&str> {
    let mut labels = cname.trim_end_matches('.').split('.');
    let _prefix = labels.next()?;
    let region = labels.next()?;
    let rest: Vec<&str> = labels.collect();
    (rest.len() == 2
        && rest[0].eq_ignore_ascii_case("elasticbeanstalk")
        && rest[1].eq_ignore_ascii_case("com"))
    .then_some(region)
}

/// `Shop.Example.com` -> `shop.example.com.` (Route 53 answers names fully qualified, lowercase).
pub fn fqdn(name: &str) -> String {
    format!(
        "{}.",
        name.trim().trim_end_matches('.').to_ascii_lowercase()
    )
}

/// A record's target as a plain host name: no trailing dot, lowercase, no `dualstack.` prefix.
pub fn normalise_target(name: &str) -> String {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    name.strip_prefix("dualstack.")
        .map(str::to_string)
        .unwrap_or(name)
}

/// `/hostedzone/Z123` -> `Z123`.
pub fn zone_id(id: &str) -> &str {
    id.trim().trim_start_matches("/hostedzone/")
}

/// Where production's record lives: a name in a hosted zone (stage reads it to find the environment
/// production is served by; swap and retire carry their own domain settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordName {
    pub zone: String,
    pub name: String,
}

/// How a domain points at an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pointer {
    /// An `A` alias record to the environment CNAME, in the Beanstalk hosted zone of its region.
    Alias { dns_name: String, zone_id: String },
    /// A `CNAME` record with a TTL.
    Cname { value: String, ttl: i64 },
}

/// One record of the domain, in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Fully qualified, lowercase, trailing dot.
    pub name: String,
    pub pointer: Pointer,
    /// Weighted records only.
    pub set_identifier: Option<String>,
    pub weight: Option<i64>,
}

impl Record {
    /// The environment CNAME this record points at.
    pub fn target(&self) -> String {
        match &self.pointer {
            Pointer::Alias { dns_name, .. } => normalise_target(dns_name),
            Pointer::Cname { value, .. } => normalise_target(value),
        }
    }

    pub fn rr_type(&self) -> RrType {
        match self.pointer {
            Pointer::Alias { .. } => RrType::A,
            Pointer::Cname { .. } => RrType::Cname,
        }
    }

    fn to_sdk(&self) -> Result<ResourceRecordSet, AwsError> {
        let mut set = ResourceRecordSet::builder()
            .name(&self.name)
            .r#type(self.rr_type())
            .set_set_identifier(self.set_identifier.clone())
            .set_weight(self.weight);
        set = match &self.pointer {
            Pointer::Alias { dns_name, zone_id } => set.alias_target(
                AliasTarget::builder()
                    .hosted_zone_id(zone_id)
                    .dns_name(dns_name)
                    .evaluate_target_health(false)
                    .build()
                    .map_err(|e| unbuildable("AliasTarget", e))?,
            ),
            Pointer::Cname { value, ttl } => set.ttl(*ttl).resource_records(
                ResourceRecord::builder()
                    .value(value)
                    .build()
                    .map_err(|e| unbuildable("ResourceRecord", e))?,
            ),
        };
        set.build().map_err(|e| unbuildable("ResourceRecordSet", e))
    }

    fn from_sdk(set: &ResourceRecordSet) -> Option<Record> {
        let pointer = if let Some(alias) = set.alias_target() {
            Pointer::Alias {
                dns_name: alias.dns_name().to_string(),
                zone_id: alias.hosted_zone_id().to_string(),
            }
        } else if *set.r#type() == RrType::Cname {
            Pointer::Cname {
                value: set.resource_records().first()?.value().to_string(),
                ttl: set.ttl().unwrap_or(300),
            }
        } else {
            return None;
        };
        Some(Record {
            name: fqdn(set.name()),
            pointer,
            set_identifier: set.set_identifier().map(str::to_string),
            weight: set.weight(),
        })
    }
}

/// A record as Route 53 holds it: ours to read, the original to delete exactly.
#[derive(Debug, Clone)]
pub struct Existing {
    pub record: Record,
    raw: ResourceRecordSet,
}

impl Existing {
    /// For tests and planning without a live zone.
    pub fn new(record: Record) -> Result<Existing, AwsError> {
        let raw = record.to_sdk()?;
        Ok(Existing { record, raw })
    }
}

/// One planned change, before it becomes an SDK `Change`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Delete(Record),
    Upsert(Record),
}

/// What turns the domain's `existing` records into `desired`: every existing record (A alias or CNAME)
/// that no desired one replaces is deleted, every desired one is upserted. Deletes come first; Route 53
/// applies a batch atomically, so nobody sees the state in between.
pub fn changes_to(existing: &[Existing], desired: &[Record]) -> Vec<Planned> {
    let replaced = |e: &Record| {
        desired
            .iter()
            .any(|d| d.set_identifier == e.set_identifier && d.rr_type() == e.rr_type())
    };
    let mut out: Vec<Planned> = existing
        .iter()
        .filter(|e| !replaced(&e.record))
        .map(|e| Planned::Delete(e.record.clone()))
        .collect();
    out.extend(desired.iter().cloned().map(Planned::Upsert));
    out
}

fn r53_error<E, R>(operation: &'static str, e: aws_sdk_route53::error::SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    AwsError::from_sdk(Service::Route53, operation, e)
}

/// A change that could not even be built (a value the SDK's builders refuse).
fn unbuildable(what: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError::other(
        Service::Route53,
        "ChangeResourceRecordSets",
        format!("could not build {what}: {e}"),
    )
}

/// The Route 53 calls swap makes.
#[derive(Clone, Debug)]
pub struct Route53 {
    client: Client,
}

impl Route53 {
    pub fn new(config: &SdkConfig) -> Self {
        Route53 {
            client: Client::new(config),
        }
    }
}

/// The Route 53 calls swap makes, narrow enough to fake ([`crate::fakes::FakeRoute53`]).
pub trait Route53Api: Send + Sync {
    /// The A (alias) and CNAME records named exactly `name` in the zone, weighted ones included.
    fn records(
        &self,
        zone: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<Existing>, AwsError>> + Send;
    /// Sends the planned changes as one batch; the change id.
    fn apply(
        &self,
        zone: &str,
        existing: &[Existing],
        planned: &[Planned],
        comment: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// Until the change is INSYNC or `timeout`; `false` when it is still PENDING then.
    fn wait_in_sync(
        &self,
        change_id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
}

impl Route53Api for Route53 {
    async fn records(&self, zone: &str, name: &str) -> Result<Vec<Existing>, AwsError> {
        let wanted = fqdn(name);
        let mut out = vec![];
        let mut start: Option<(String, RrType, Option<String>)> =
            Some((wanted.clone(), RrType::A, None));
        while let Some((start_name, start_type, start_id)) = start.take() {
            let page = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(zone_id(zone))
                .start_record_name(start_name)
                .start_record_type(start_type)
                .set_start_record_identifier(start_id)
                .send()
                .await
                .map_err(|e| {
                    r53_error("ListResourceRecordSets", e)
                        .on(format!("hosted zone {}", zone_id(zone)))
                })?;
            let mut past = false;
            for set in page.resource_record_sets() {
                if fqdn(set.name()) != wanted {
                    past = true;
                    continue;
                }
                if let Some(record) = Record::from_sdk(set) {
                    out.push(Existing {
                        record,
                        raw: set.clone(),
                    });
                }
            }
            if page.is_truncated() && !past {
                if let (Some(n), Some(t)) = (page.next_record_name(), page.next_record_type()) {
                    start = Some((
                        n.to_string(),
                        t.clone(),
                        page.next_record_identifier().map(str::to_string),
                    ));
                }
            }
        }
        Ok(out)
    }

    async fn apply(
        &self,
        zone: &str,
        existing: &[Existing],
        planned: &[Planned],
        comment: &str,
    ) -> Result<String, AwsError> {
        let mut batch = ChangeBatch::builder().comment(comment);
        for p in planned {
            let (action, set) = match p {
                Planned::Delete(r) => {
                    let raw = existing
                        .iter()
                        .find(|e| &e.record == r)
                        .map(|e| e.raw.clone())
                        .map_or_else(|| r.to_sdk(), Ok)?;
                    (ChangeAction::Delete, raw)
                }
                Planned::Upsert(r) => (ChangeAction::Upsert, r.to_sdk()?),
            };
            batch = batch.changes(
                Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()
                    .map_err(|e| unbuildable("Change", e))?,
            );
        }
        let batch = batch.build().map_err(|e| unbuildable("ChangeBatch", e))?;
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(zone_id(zone))
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| r53_error("ChangeResourceRecordSets", e))?;
        Ok(out
            .change_info()
            .map(|c| c.id().to_string())
            .unwrap_or_default())
    }

    async fn wait_in_sync(&self, change_id: &str, timeout: Duration) -> Result<bool, AwsError> {
        use aws_sdk_route53::client::Waiters;
        use aws_smithy_runtime_api::client::waiters::error::WaiterError;
        let started = Instant::now();
        let id = change_id.trim_start_matches("/change/");
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(false);
            }
            match self
                .client
                .wait_until_resource_record_sets_changed()
                .id(id)
                .wait(left)
                .await
            {
                Ok(_) => return Ok(true),
                Err(WaiterError::ExceededMaxWait(_)) => return Ok(false),
                Err(WaiterError::OperationFailed(failed)) => {
                    let e = r53_error("GetChange", failed.into_error());
                    if !e.is_transient() {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_secs(1).min(left)).await;
                }
                Err(e) => {
                    return Err(AwsError::other(
                        Service::Route53,
                        "GetChange",
                        format!(
                            "waiting for change {id} failed: {}",
                            DisplayErrorContext(&e)
                        ),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_beanstalk_region_has_its_hosted_zone() {
        let cases = [
            ("us-east-1", "Z117KPS5GTRQ2G"),
            ("us-east-2", "Z14LCN19Q5QHIC"),
            ("us-west-1", "Z1LQECGX5PH1X"),
            ("us-west-2", "Z38NKT9BP95V3O"),
            ("eu-west-1", "Z2NYPWQ7DFZAZH"),
            ("eu-central-1", "Z1FRNW7UH4DEZJ"),
            ("eu-south-2", "Z0243492AO4B9S3KI68O"),
            ("ap-northeast-1", "Z1R25G3KIG2GBW"),
            ("ap-southeast-1", "Z16FZ9L249IFLT"),
            ("ap-southeast-2", "Z2PCDNR3VC2G1N"),
            ("ap-southeast-7", "Z08384933QM5LSQCVMNZM"),
            ("sa-east-1", "Z10X7K2B4QSOFV"),
            ("me-central-1", "Z0650511N84AAKGW7QUK"),
            ("us-gov-west-1", "Z4KAURWC4UUUG"),
        ];
        for (region, zone) in cases {
            assert_eq!(beanstalk_hosted_zone_id(region), Some(zone), "{region}");
        }
        assert_eq!(
            beanstalk_hosted_zone_id("US-EAST-1"),
            Some("Z117KPS5GTRQ2G")
        );
        assert_eq!(beanstalk_hosted_zone_id("xx-nowhere-1"), None);
        // Every region the guide lists, once, with a well-formed id.
        assert_eq!(BEANSTALK_HOSTED_ZONES.len(), 34);
        let mut regions: Vec<&str> = BEANSTALK_HOSTED_ZONES.iter().map(|(r, _)| *r).collect();
        regions.sort_unstable();
        regions.dedup();
        assert_eq!(regions.len(), BEANSTALK_HOSTED_ZONES.len());
        for (region, id) in BEANSTALK_HOSTED_ZONES {
            assert!(
                id.starts_with('Z')
                    && (13..=21).contains(&id.len())
                    && id
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
                "{region}: {id}"
            );
        }
    }

    #[test]
    fn names_and_targets_are_normalised() {
        assert_eq!(
            region_of_cname("shop-prod.eu-west-1.elasticbeanstalk.com."),
            Some("eu-west-1")
        );
        assert_eq!(region_of_cname("shop.example.com"), None);
        assert_eq!(fqdn(" Shop.Example.com "), "shop.example.com.");
        assert_eq!(
            normalise_target("dualstack.Shop-A.us-east-1.elasticbeanstalk.com."),
            "shop-a.us-east-1.elasticbeanstalk.com"
        );
        assert_eq!(zone_id("/hostedzone/Z123"), "Z123");
    }

    fn alias(target: &str, id: Option<&str>, weight: Option<i64>) -> Record {
        Record {
            name: "shop.example.com.".into(),
            pointer: Pointer::Alias {
                dns_name: target.into(),
                zone_id: "Z117KPS5GTRQ2G".into(),
            },
            set_identifier: id.map(str::to_string),
            weight,
        }
    }

    #[test]
    fn changes_replace_what_differs_and_delete_what_is_left_over() {
        let simple = Existing::new(alias("a.us-east-1.elasticbeanstalk.com", None, None)).unwrap();
        // Simple -> simple: one upsert.
        let to_b = alias("b.us-east-1.elasticbeanstalk.com", None, None);
        assert_eq!(
            changes_to(std::slice::from_ref(&simple), std::slice::from_ref(&to_b)),
            vec![Planned::Upsert(to_b.clone())]
        );
        // Simple -> weighted: the simple record goes, in the same batch.
        let wa = alias("a.us-east-1.elasticbeanstalk.com", Some("shop-a"), Some(90));
        let wb = alias("b.us-east-1.elasticbeanstalk.com", Some("shop-b"), Some(10));
        assert_eq!(
            changes_to(std::slice::from_ref(&simple), &[wa.clone(), wb.clone()]),
            vec![
                Planned::Delete(simple.record.clone()),
                Planned::Upsert(wa.clone()),
                Planned::Upsert(wb.clone())
            ]
        );
        // Weighted with a stale third record (an older environment): it goes.
        let stale = Existing::new(alias(
            "z.us-east-1.elasticbeanstalk.com",
            Some("shop-z"),
            Some(0),
        ))
        .unwrap();
        let existing = [Existing::new(wa.clone()).unwrap(), stale.clone()];
        assert_eq!(
            changes_to(&existing, &[wa.clone(), wb.clone()]),
            vec![
                Planned::Delete(stale.record.clone()),
                Planned::Upsert(wa),
                Planned::Upsert(wb)
            ]
        );
        // Alias -> CNAME record type: the A record goes.
        let cname = Record {
            pointer: Pointer::Cname {
                value: "b.us-east-1.elasticbeanstalk.com".into(),
                ttl: 60,
            },
            ..to_b
        };
        assert_eq!(
            changes_to(std::slice::from_ref(&simple), std::slice::from_ref(&cname)),
            vec![
                Planned::Delete(simple.record.clone()),
                Planned::Upsert(cname.clone())
            ]
        );
        assert_eq!(cname.target(), "b.us-east-1.elasticbeanstalk.com");
    }
}
