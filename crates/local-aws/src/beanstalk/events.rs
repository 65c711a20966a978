//! DescribeEvents: newest first, filtered as the model documents (Severity is a minimum, StartTime is
//! inclusive, EndTime exclusive), paged with NextToken.

use std::time::SystemTime;

use super::{Event, Store};
use crate::query::{Params, QueryError, Xml};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Trace => "TRACE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }

    fn parse(s: &str) -> Result<Severity, QueryError> {
        Ok(match s {
            "TRACE" => Severity::Trace,
            "DEBUG" => Severity::Debug,
            "INFO" => Severity::Info,
            "WARN" => Severity::Warn,
            "ERROR" => Severity::Error,
            "FATAL" => Severity::Fatal,
            other => {
                return Err(QueryError::new(
                    400,
                    "ValidationError",
                    format!("1 validation error detected: Value '{other}' at 'severity' failed to satisfy constraint: Member must satisfy enum value set: [TRACE, DEBUG, INFO, WARN, ERROR, FATAL]"),
                ))
            }
        })
    }
}

/// MaxRecords and NextToken of a Describe call (at most 1000 a page; our NextToken is the number of
/// records already returned).
pub struct Paging {
    max: usize,
    skip: usize,
}

impl Paging {
    pub fn from_params(p: &Params) -> Result<Self, QueryError> {
        let max = p.int("MaxRecords", 1, 1000)?.unwrap_or(1000) as usize;
        let skip = match p.get("NextToken") {
            None => 0,
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| QueryError::invalid(format!("Invalid NextToken: {t}")))?,
        };
        Ok(Paging { max, skip })
    }

    /// This page of `all`, and the NextToken for the rest (none after the last page).
    pub fn page<'a, T>(&self, all: &'a [T]) -> (&'a [T], Option<String>) {
        let start = self.skip.min(all.len());
        let end = (start + self.max).min(all.len());
        let next = (end < all.len()).then(|| end.to_string());
        (&all[start..end], next)
    }
}

/// A timestamp member (ISO 8601, as botocore and the Rust SDK send it).
pub fn time_param(p: &Params, name: &str) -> Result<Option<SystemTime>, QueryError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => humantime::parse_rfc3339_weak(v.trim_end_matches('Z'))
            .or_else(|_| humantime::parse_rfc3339(v))
            .map(Some)
            .map_err(|_| QueryError::invalid(format!("Invalid timestamp for {name}: {v}"))),
    }
}

pub fn describe(store: &Store, p: &Params) -> Result<String, QueryError> {
    let application = p.string("ApplicationName", 1, 100)?;
    let version = p.string("VersionLabel", 1, 100)?;
    let template = p.string("TemplateName", 1, 100)?;
    let env_id = p.get("EnvironmentId");
    let env_name = p.string("EnvironmentName", 4, 40)?;
    let request_id = p.get("RequestId");
    let severity = p.get("Severity").map(Severity::parse).transpose()?;
    let start = time_param(p, "StartTime")?;
    let end = time_param(p, "EndTime")?;
    let paging = Paging::from_params(p)?;
    let matches = |e: &&Event| {
        application.is_none_or(|a| e.application == a)
            && version.is_none_or(|v| e.version_label.as_deref() == Some(v))
            && template.is_none_or(|t| e.template.as_deref() == Some(t))
            && env_id.is_none_or(|i| e.environment_id.as_deref() == Some(i))
            && env_name.is_none_or(|n| e.environment.as_deref() == Some(n))
            && request_id.is_none_or(|r| e.request_id.as_deref() == Some(r))
            && severity.is_none_or(|s| e.severity >= s)
            && start.is_none_or(|s| e.date >= s)
            && end.is_none_or(|t| e.date < t)
    };
    let mut matching: Vec<&Event> = store.events.iter().filter(matches).collect();
    matching.sort_by_key(|e| std::cmp::Reverse(e.sequence));
    let (page, next) = paging.page(&matching);
    let mut x = Xml::new();
    x.elem("Events", |x| {
        for e in page {
            x.elem("member", |x| {
                x.time("EventDate", e.date)
                    .text("Message", &e.message)
                    .text("ApplicationName", &e.application)
                    .opt("VersionLabel", e.version_label.as_deref())
                    .opt("TemplateName", e.template.as_deref())
                    .opt("EnvironmentName", e.environment.as_deref())
                    .opt("RequestId", e.request_id.as_deref())
                    .text("Severity", e.severity.as_str());
            });
        }
    });
    x.opt("NextToken", next.as_deref());
    Ok(x.finish())
}
