//! Permissions, as AWS checks them before it answers: each request's access key names its caller (a
//! function's role, or the local run's administrator), `crates/iam/operations.json` says which IAM actions
//! the operation needs on which of its resources, and the caller's policies decide. Off until the local
//! run registers its identities (`LocalAws::set_identities`, `PUT /_local/iam`); from then on, a key
//! that names no role is refused too.
//!
//! This module turns a request into the checks of its table row: which members it carries (for the
//! checks that depend on them) and the ARN of each resource the row names, from the request and, for
//! an environment named by id, from the store (its application is part of its ARN).

use std::collections::BTreeMap;

use beanswap_iam::table::{CheckRule, Operation};
use beanswap_iam::{Check, Identities, Principal, Refusal, ResourceKind, Service, When};

use crate::beanstalk::{self, Store};
use crate::query::Params;

const EB: &str = "arn:aws:elasticbeanstalk";

/// Who may call, once the local run said so.
pub type Enforcement = Option<std::sync::Arc<Identities>>;

/// Why a request is refused: a policy said no, or the table has no row for the operation (the local
/// cloud cannot know what AWS checks, so a role may not call it).
#[derive(Debug, Clone)]
pub enum Refused {
    Policy(Refusal),
    NoRow(String),
}

impl Refused {
    pub fn message(&self) -> String {
        match self {
            Refused::Policy(r) => r.to_string(),
            Refused::NoRow(m) => m.clone(),
        }
    }
}

/// Decides one request: `None` when it may go ahead. The administrator skips the table (its calls are
/// the runner's setup, not a function's).
pub fn authorize(
    identities: &Identities,
    key: Option<&str>,
    service: Service,
    operation: &str,
    checks_of: impl FnOnce(&Operation) -> Vec<Check>,
) -> Result<(), Refused> {
    if let Some(Principal::Admin) = key.and_then(|k| identities.principal(k)) {
        return Ok(());
    }
    let row = identities
        .table()
        .operation(service, operation)
        .map_err(|e| Refused::NoRow(e.to_string()))?;
    let checks = checks_of(row);
    identities.authorize(key, &checks).map_err(Refused::Policy)
}

/// The checks of `row` that apply to a request carrying `has(member)`, with `arn(kind)` for each
/// resource (`None`: the request does not name one of that kind, so it is checked against `*`).
pub fn checks(
    row: &Operation,
    has: impl Fn(&str) -> bool,
    arn: impl Fn(ResourceKind) -> Option<String>,
) -> Vec<Check> {
    row.checks
        .iter()
        .filter(|c| match &c.when {
            When::Always => true,
            When::Member(m) => has(m),
            When::NotFound => false,
        })
        .filter_map(|c: &CheckRule| {
            let resource = match c.resource {
                ResourceKind::Any => "*".to_string(),
                // A role that is not passed (no such setting) is not checked: nothing is passed.
                ResourceKind::ServiceRole | ResourceKind::InstanceRole => arn(c.resource)?,
                kind => arn(kind).unwrap_or_else(|| "*".to_string()),
            };
            Some(Check {
                action: c.action.clone(),
                resource,
                context: c.context.clone(),
            })
        })
        .collect()
}

/// Whether a Query request carries `member` (`Tags` is there as `Tags.member.1.Key=...`).
pub fn query_has(params: &Params, member: &str) -> bool {
    params.get(member).is_some() || params.has_prefix(&format!("{member}."))
}

/// The ARN of an Elastic Beanstalk resource the request names.
pub fn beanstalk_arn(store: &Store, params: &Params, kind: ResourceKind) -> Option<String> {
    let region = beanstalk::REGION;
    let account = beanstalk::ACCOUNT;
    let env_by = |id: Option<&str>, name: Option<&str>| -> Option<(String, String)> {
        let found = store.environments.values().find(|e| {
            id.is_some_and(|id| e.id == id)
                || name.is_some_and(|n| e.name == n && e.status != "Terminated")
        });
        match found {
            Some(e) => Some((e.application.clone(), e.name.clone())),
            None => {
                let app = params.get("ApplicationName")?;
                Some((app.to_string(), name?.to_string()))
            }
        }
    };
    let env_arn =
        |(app, name): (String, String)| format!("{EB}:{region}:{account}:environment/{app}/{name}");
    let app = || -> Option<String> {
        params
            .get("ApplicationName")
            .map(str::to_string)
            .or_else(|| {
                env_by(params.get("EnvironmentId"), params.get("EnvironmentName")).map(|(a, _)| a)
            })
    };
    match kind {
        ResourceKind::Application => {
            Some(format!("{EB}:{region}:{account}:application/{}", app()?))
        }
        ResourceKind::ApplicationVersion => {
            let labels = params.list("VersionLabels");
            let label: &str = match (params.get("VersionLabel"), labels.as_slice()) {
                (Some(label), _) => label,
                (None, [label]) => label,
                // Versions of the application, none named: all of them.
                _ => "*",
            };
            Some(format!(
                "{EB}:{region}:{account}:applicationversion/{}/{label}",
                app()?
            ))
        }
        ResourceKind::ConfigurationTemplate => Some(format!(
            "{EB}:{region}:{account}:configurationtemplate/{}/{}",
            app()?,
            params.get("TemplateName")?
        )),
        ResourceKind::Environment => {
            let ids = params.list("EnvironmentIds");
            let names = params.list("EnvironmentNames");
            let one = match (ids.as_slice(), names.as_slice()) {
                ([id], []) => env_by(Some(id), None),
                ([], [name]) => env_by(None, Some(name)),
                _ => env_by(params.get("EnvironmentId"), params.get("EnvironmentName")),
            };
            match one {
                Some(e) => Some(env_arn(e)),
                // No one environment named: the application's (Describe* over an application).
                None => beanstalk_arn(store, params, ResourceKind::Application),
            }
        }
        ResourceKind::SourceEnvironment => env_by(
            params.get("SourceEnvironmentId"),
            params.get("SourceEnvironmentName"),
        )
        .map(env_arn),
        ResourceKind::DestinationEnvironment => env_by(
            params.get("DestinationEnvironmentId"),
            params.get("DestinationEnvironmentName"),
        )
        .map(env_arn),
        ResourceKind::ResourceArn => params.get("ResourceArn").map(str::to_string),
        _ => None,
    }
}

/// The option settings a CreateEnvironment request gives its environment: its configuration
/// template's, overridden by the request's own.
pub fn create_settings(store: &Store, params: &Params) -> BTreeMap<(String, String), String> {
    let mut settings = BTreeMap::new();
    if let (Some(app), Some(t)) = (params.get("ApplicationName"), params.get("TemplateName")) {
        if let Some(template) = store.templates.get(&(app.to_string(), t.to_string())) {
            settings.extend(template.settings.clone());
        }
    }
    for m in params.structs("OptionSettings") {
        if let (Some(ns), Some(name), Some(value)) =
            (m.get("Namespace"), m.get("OptionName"), m.get("Value"))
        {
            settings.insert((ns.clone(), name.clone()), value.clone());
        }
    }
    settings
}

/// The roles a CreateEnvironment passes: its ServiceRole, and the role of its IamInstanceProfile.
pub fn passed_role(
    identities: &Identities,
    settings: &BTreeMap<(String, String), String>,
    kind: ResourceKind,
) -> Option<String> {
    let account = beanstalk::ACCOUNT;
    let get = |ns: &str, name: &str| settings.get(&(ns.to_string(), name.to_string()));
    match kind {
        ResourceKind::ServiceRole => {
            let v = get("aws:elasticbeanstalk:environment", "ServiceRole")?;
            Some(if v.starts_with("arn:") {
                v.clone()
            } else {
                format!("arn:aws:iam::{account}:role/{v}")
            })
        }
        ResourceKind::InstanceRole => {
            let v = get("aws:autoscaling:launchconfiguration", "IamInstanceProfile")?;
            let profile = if v.starts_with("arn:") {
                v.clone()
            } else {
                format!("arn:aws:iam::{account}:instance-profile/{v}")
            };
            Some(
                identities
                    .instance_profile_role(&profile)
                    .map(str::to_string)
                    .unwrap_or_else(|| profile.replace(":instance-profile/", ":role/")),
            )
        }
        _ => None,
    }
}

/// The ARN of an RDS resource the request names.
pub fn rds_arn(params: &Params, kind: ResourceKind) -> Option<String> {
    let (region, account) = (beanstalk::REGION, beanstalk::ACCOUNT);
    match kind {
        // DescribeDBSnapshots takes either (SAR: resource types db, snapshot): the one it names.
        ResourceKind::DbInstance => params
            .get("DBInstanceIdentifier")
            .map(|id| format!("arn:aws:rds:{region}:{account}:db:{id}"))
            .or_else(|| rds_arn(params, ResourceKind::DbSnapshot)),
        ResourceKind::DbSnapshot => params
            .get("DBSnapshotIdentifier")
            .map(|id| format!("arn:aws:rds:{region}:{account}:snapshot:{id}")),
        _ => None,
    }
}
