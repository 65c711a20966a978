//! ListAvailableSolutionStacks, ListPlatformVersions and ListPlatformBranches over the catalogue: their
//! filters (operators as the API reference gives them, versions compared numerically) and paging.

use super::{all, launchable, Platform, CATALOGUE};
use crate::beanstalk::Store;
use crate::query::{Params, QueryError, Xml};

/// ListAvailableSolutionStacks: what the account may launch, newest platform versions first.
pub fn list_stacks(store: &Store) -> Result<String, QueryError> {
    let mut available: Vec<Platform> = all().filter(|p| launchable(store, p)).collect();
    available.sort_by(|a, b| {
        version_key(b.version)
            .cmp(&version_key(a.version))
            .then(b.branch.order.cmp(&a.branch.order))
    });
    let mut x = Xml::new();
    x.strings(
        "SolutionStacks",
        available
            .iter()
            .map(|p| p.stack())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    x.elem("SolutionStackDetails", |x| {
        for p in &available {
            x.elem("member", |x| {
                x.text("SolutionStackName", &p.stack())
                    .strings("PermittedFileTypes", p.branch.file_types.iter().copied());
            });
        }
    });
    Ok(x.finish())
}

pub(super) fn version_key(v: &str) -> Vec<u32> {
    v.split('.').map(|n| n.parse().unwrap_or(0)).collect()
}

/// One filter of ListPlatformVersions (`Type`) or ListPlatformBranches (`Attribute`).
pub(super) struct Filter {
    on: String,
    operator: String,
    values: Vec<String>,
}

pub(super) fn filters(p: &Params, list: &str, key: &str) -> Result<Vec<Filter>, QueryError> {
    p.structs(list)
        .into_iter()
        .map(|m| {
            let on = m.get(key).cloned().ok_or_else(|| {
                QueryError::invalid(format!("{list}: every filter needs a {key}"))
            })?;
            let values = (1..)
                .map_while(|i| m.get(&format!("Values.member.{i}")).cloned())
                .collect();
            Ok(Filter {
                on,
                operator: m.get("Operator").cloned().unwrap_or_else(|| "=".into()),
                values,
            })
        })
        .collect()
}

pub(super) fn compare(
    operator: &str,
    actual: &str,
    wanted: &str,
    versions: bool,
) -> Result<bool, QueryError> {
    let ordering = if versions {
        version_key(actual).cmp(&version_key(wanted))
    } else {
        actual.cmp(wanted)
    };
    use std::cmp::Ordering::*;
    Ok(match operator {
        "=" => actual == wanted,
        "!=" => actual != wanted,
        "<" => ordering == Less,
        "<=" => ordering != Greater,
        ">" => ordering == Greater,
        ">=" => ordering != Less,
        "contains" => actual.contains(wanted),
        "begins_with" => actual.starts_with(wanted),
        "ends_with" => actual.ends_with(wanted),
        other => {
            return Err(QueryError::invalid(format!(
                "Invalid filter operator '{other}'."
            )))
        }
    })
}

/// A filter holds when any value matches (all, for `!=`).
pub(super) fn holds(f: &Filter, actual: &[String], versions: bool) -> Result<bool, QueryError> {
    let mut any = false;
    let mut all = true;
    for wanted in &f.values {
        let hit = actual
            .iter()
            .map(|a| compare(&f.operator, a, wanted, versions))
            .collect::<Result<Vec<bool>, _>>()?
            .into_iter()
            .any(|b| b);
        any |= hit;
        all &= hit;
    }
    Ok(if f.operator == "!=" { all } else { any })
}

pub(super) fn page<T>(items: Vec<T>, p: &Params) -> Result<(Vec<T>, Option<String>), QueryError> {
    let max = p.int("MaxRecords", 1, i64::MAX)?.map(|m| m as usize);
    let skip = match p.get("NextToken") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| QueryError::invalid(format!("Invalid NextToken: {t}")))?,
    };
    let total = items.len();
    let page: Vec<T> = items
        .into_iter()
        .skip(skip)
        .take(max.unwrap_or(usize::MAX))
        .collect();
    let next = (skip + page.len() < total).then(|| (skip + page.len()).to_string());
    Ok((page, next))
}

pub(super) const TIERS: [&str; 2] = ["WebServer/Standard", "Worker/SQS/HTTP"];

/// ListPlatformVersions with its filters (a conjunction) and paging.
pub fn list_versions(store: &Store, p: &Params) -> Result<String, QueryError> {
    let today = store.options.platform_date;
    let filters = filters(p, "Filters", "Type")?;
    let mut matching = vec![];
    for platform in all() {
        let b = platform.branch;
        let mut ok = true;
        for f in &filters {
            let (actual, versions): (Vec<String>, bool) = match f.on.as_str() {
                "PlatformName" => (vec![b.name()], false),
                "PlatformVersion" => (vec![platform.version.to_string()], true),
                "PlatformStatus" => (vec!["Ready".into()], false),
                "PlatformBranchName" => (vec![b.name()], false),
                "PlatformLifecycleState" => (
                    vec![if platform.recommended() {
                        "Recommended"
                    } else {
                        ""
                    }
                    .into()],
                    false,
                ),
                "PlatformOwner" => (vec!["AWSElasticBeanstalk".into()], false),
                "SupportedTier" => (TIERS.iter().map(|t| t.to_string()).collect(), false),
                "SupportedAddon" => (vec![], false),
                "ProgrammingLanguageName" => (vec![b.language.into()], false),
                "OperatingSystemName" => (vec![b.os_name.into()], false),
                other => {
                    return Err(QueryError::invalid(format!(
                        "Invalid platform filter type '{other}'."
                    )))
                }
            };
            ok &= holds(f, &actual, versions)?;
        }
        if ok {
            matching.push(platform);
        }
    }
    let (page, next) = page(matching, p)?;
    let mut x = Xml::new();
    x.elem("PlatformSummaryList", |x| {
        for platform in &page {
            let b = platform.branch;
            x.elem("member", |x| {
                x.text("PlatformArn", &platform.arn())
                    .text("PlatformOwner", "AWSElasticBeanstalk")
                    .text("PlatformStatus", "Ready")
                    .text("PlatformCategory", b.platform)
                    .text("OperatingSystemName", b.os_name)
                    .text("OperatingSystemVersion", b.os_version)
                    .strings("SupportedTierList", TIERS)
                    .elem("SupportedAddonList", |_| {});
                if platform.recommended() {
                    x.text("PlatformLifecycleState", "Recommended");
                }
                x.text("PlatformVersion", platform.version)
                    .text("PlatformBranchName", &b.name())
                    .text("PlatformBranchLifecycleState", b.state(today));
            });
        }
    });
    x.opt("NextToken", next.as_deref());
    Ok(x.finish())
}

/// ListPlatformBranches with its filters and paging.
pub fn list_branches(store: &Store, p: &Params) -> Result<String, QueryError> {
    let today = store.options.platform_date;
    let filters = filters(p, "Filters", "Attribute")?;
    let mut matching = vec![];
    for b in CATALOGUE {
        let mut ok = true;
        for f in &filters {
            let actual: Vec<String> = match f.on.as_str() {
                "PlatformName" => vec![b.platform.into()],
                "BranchName" => vec![b.name()],
                "LifecycleState" => vec![b.state(today).into()],
                "TierType" => vec!["WebServer/Standard".into(), "Worker/SQS/HTTP".into()],
                other => {
                    return Err(QueryError::invalid(format!(
                        "Invalid search filter attribute '{other}'."
                    )))
                }
            };
            ok &= holds(f, &actual, false)?;
        }
        if ok {
            matching.push(b);
        }
    }
    let (page, next) = page(matching, p)?;
    let mut x = Xml::new();
    x.elem("PlatformBranchSummaryList", |x| {
        for b in &page {
            x.elem("member", |x| {
                x.text("PlatformName", b.platform)
                    .text("BranchName", &b.name())
                    .text("LifecycleState", b.state(today))
                    .text("BranchOrder", &b.order.to_string())
                    .strings("SupportedTierList", TIERS);
            });
        }
    });
    x.opt("NextToken", next.as_deref());
    Ok(x.finish())
}
