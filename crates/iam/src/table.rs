//! `operations.json`: for every AWS operation the functions call, the IAM actions AWS checks and the
//! resource each is checked against. Data, not code, so the template test, `beanswap permissions` and the
//! local cloud's enforcement read one table, and every row names the public pages it is taken from.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::IamError;

/// The table as shipped (compiled in: the local cloud and the CLI cannot run with another copy).
const OPERATIONS: &str = include_str!("../operations.json");

/// An AWS service whose calls the table covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    #[serde(rename = "elasticbeanstalk")]
    ElasticBeanstalk,
    #[serde(rename = "codepipeline")]
    CodePipeline,
    S3,
    Route53,
    Rds,
    #[serde(rename = "cloudwatch")]
    CloudWatch,
}

impl Service {
    /// The service prefix of its IAM actions (`elasticbeanstalk:`), also its name in the table.
    pub fn prefix(self) -> &'static str {
        match self {
            Service::ElasticBeanstalk => "elasticbeanstalk",
            Service::CodePipeline => "codepipeline",
            Service::S3 => "s3",
            Service::Route53 => "route53",
            Service::Rds => "rds",
            Service::CloudWatch => "cloudwatch",
        }
    }

    pub fn from_prefix(prefix: &str) -> Option<Service> {
        [
            Service::ElasticBeanstalk,
            Service::CodePipeline,
            Service::S3,
            Service::Route53,
            Service::Rds,
            Service::CloudWatch,
        ]
        .into_iter()
        .find(|s| s.prefix() == prefix)
    }
}

/// Which resource of a request an action is checked against; the service that answers the request
/// turns it into an ARN (it knows, for one, which application an environment id belongs to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum ResourceKind {
    /// The action has no resource-level permission: checked against `*`.
    Any,
    Application,
    ApplicationVersion,
    ConfigurationTemplate,
    Environment,
    SourceEnvironment,
    DestinationEnvironment,
    /// The ARN in the request's `ResourceArn` member.
    ResourceArn,
    /// The role an environment's `ServiceRole` setting names (passed to Beanstalk).
    ServiceRole,
    /// The role of the instance profile an environment's `IamInstanceProfile` setting names.
    InstanceRole,
    Object,
    /// The object `x-amz-copy-source` names.
    CopySource,
    Bucket,
    HostedZone,
    Change,
    DbInstance,
    DbSnapshot,
    /// A CloudWatch alarm named by the request.
    Alarm,
}

/// When a check applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// On every call.
    Always,
    /// Only when the request carries this member (named as in the service model: `TagsToAdd`).
    Member(String),
    /// Only when the answer would be "not found": without this action AWS answers 403, not 404.
    NotFound,
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "not-found" => When::NotFound,
            _ => When::Member(s),
        })
    }
}

fn always() -> When {
    When::Always
}

/// One IAM action checked against one resource of a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRule {
    /// `elasticbeanstalk:AddTags`.
    pub action: String,
    pub resource: ResourceKind,
    #[serde(default = "always")]
    pub when: When,
    /// Condition keys the request context carries for this check (`iam:PassedToService`).
    #[serde(default)]
    pub context: BTreeMap<String, String>,
}

/// One row: what AWS checks when `operation` of `service` is called.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub service: Service,
    /// As in the service model: `UpdateTagsForResource`.
    pub operation: String,
    pub checks: Vec<CheckRule>,
    /// The public pages the row is taken from.
    pub source: String,
}

impl Operation {
    /// The actions checked when the request carries `members` (model names), leaving out checks that
    /// apply only to a not-found answer.
    pub fn actions_with(&self, members: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .filter(|c| match &c.when {
                When::Always => true,
                When::Member(m) => members.contains(&m.as_str()),
                When::NotFound => false,
            })
            .map(|c| c.action.clone())
            .collect();
        out.dedup();
        out
    }
}

/// A condition key the evaluator knows, and where its value comes from (or why it never has one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionKeyRow {
    /// `iam:PassedToService`; a trailing `/*` stands for any tag key (`ec2:ResourceTag/*`).
    pub key: String,
    pub supplied: String,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub about: String,
    pub operations: Vec<Operation>,
    /// What each [`ResourceKind`] is, in words.
    pub resources: BTreeMap<String, String>,
    pub condition_keys: Vec<ConditionKeyRow>,
}

impl Table {
    /// The compiled-in table.
    pub fn load() -> Result<Table, IamError> {
        serde_json::from_str(OPERATIONS).map_err(|e| IamError::Table(e.to_string()))
    }

    /// The row of `service`'s `operation`; an operation with no row is an error, never a same-named
    /// guess (several are authorised by actions of another name).
    pub fn operation(&self, service: Service, operation: &str) -> Result<&Operation, IamError> {
        self.operations
            .iter()
            .find(|o| o.service == service && o.operation == operation)
            .ok_or_else(|| IamError::UnknownOperation {
                service: service.prefix().to_string(),
                operation: operation.to_string(),
            })
    }

    /// Whether the evaluator knows condition key `key` (case-insensitively, as IAM compares keys).
    pub fn knows_condition_key(&self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        key.starts_with("aws:")
            || self.condition_keys.iter().any(|k| {
                let known = k.key.to_ascii_lowercase();
                match known.strip_suffix('*') {
                    Some(prefix) => key.starts_with(prefix),
                    None => key == known,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_loads_and_every_row_is_sourced() {
        let table = Table::load().unwrap();
        assert!(table.operations.len() > 30);
        for op in &table.operations {
            assert!(
                op.source.contains("https://"),
                "{}: no source",
                op.operation
            );
            assert!(!op.checks.is_empty(), "{}: no check", op.operation);
            for c in &op.checks {
                let (prefix, _) = c.action.split_once(':').unwrap();
                assert!(
                    prefix == op.service.prefix() || prefix == "iam",
                    "{}: {}",
                    op.operation,
                    c.action
                );
            }
        }
    }

    #[test]
    fn virtual_actions_depend_on_the_members_sent() {
        let table = Table::load().unwrap();
        let tags = table
            .operation(Service::ElasticBeanstalk, "UpdateTagsForResource")
            .unwrap();
        assert_eq!(
            tags.actions_with(&["TagsToAdd"]),
            ["elasticbeanstalk:AddTags"]
        );
        assert_eq!(
            tags.actions_with(&["TagsToAdd", "TagsToRemove"]),
            ["elasticbeanstalk:AddTags", "elasticbeanstalk:RemoveTags"]
        );
        assert!(table.operation(Service::S3, "GetBucketAcl").is_err());
    }
}
