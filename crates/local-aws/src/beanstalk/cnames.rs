//! Environment CNAMEs: the prefix rule, availability (CheckDNSAvailability) and SwapEnvironmentCNAMEs,
//! which needs both environments Ready and moves each CNAME to the other.

use std::time::SystemTime;

use super::environments::not_ready;
use super::events::Severity;
use super::{Request, Store, CNAME_SUFFIX};
use crate::query::{Params, QueryError, Xml};

pub(super) fn check_cname_prefix(prefix: &str) -> Result<(), QueryError> {
    let ok_chars = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-');
    let len = prefix.chars().count();
    if !(4..=63).contains(&len) || !ok_chars || prefix.starts_with('-') || prefix.ends_with('-') {
        return Err(QueryError::invalid(format!(
            "Value {prefix} at 'CNAMEPrefix' failed to satisfy constraint: Member must contain only letters, digits, and the dash character and may not start or end with a dash and must have length between 4 and 63"
        )));
    }
    Ok(())
}

pub(super) fn full_cname(prefix: &str) -> String {
    format!("{}.{CNAME_SUFFIX}", prefix.to_ascii_lowercase())
}

pub(super) fn cname_taken(store: &Store, cname: &str) -> bool {
    store
        .environments
        .values()
        .any(|e| e.is_live() && e.cname.eq_ignore_ascii_case(cname))
}

pub fn swap(store: &mut Store, request: &Request) -> Result<(), QueryError> {
    let p = request.params;
    let source = store
        .find_env(p.get("SourceEnvironmentId"), p.get("SourceEnvironmentName"))
        .map_err(|_| {
            QueryError::invalid(
                "Source environment not found: specify an existing SourceEnvironmentId or SourceEnvironmentName.",
            )
        })?
        .clone();
    let destination = store
        .find_env(
            p.get("DestinationEnvironmentId"),
            p.get("DestinationEnvironmentName"),
        )
        .map_err(|_| {
            QueryError::invalid(
                "Destination environment not found: specify an existing DestinationEnvironmentId or DestinationEnvironmentName.",
            )
        })?
        .clone();
    if source.id == destination.id {
        return Err(QueryError::invalid(
            "Source and destination environments must be different.",
        ));
    }
    for env in [&source, &destination] {
        if env.status != "Ready" {
            return Err(not_ready(env));
        }
    }
    if source.application != destination.application {
        return Err(QueryError::invalid(format!(
            "Environments {} and {} must belong to the same application to swap CNAMEs.",
            source.name, destination.name
        )));
    }
    // The events `eb swap` shows (AWS Elastic Beanstalk Developer Guide, "eb swap"): starting, swapping,
    // each CNAME's new target, completed.
    let pair = format!("'{}' and '{}'", source.name, destination.name);
    let both = |store: &mut Store, message: &str| {
        for env in [&source, &destination] {
            store.env_event(&env.id, Severity::Info, message, Some(request.request_id));
        }
    };
    both(store, "swapEnvironmentCNAMEs is starting.");
    both(store, &format!("Swapping CNAMEs for environments {pair}."));
    // One step under the store's lock: the router sees either the old or the new mapping, never a gap.
    let now = SystemTime::now();
    if let Some(e) = store.environments.get_mut(&source.id) {
        e.cname = destination.cname.clone();
        e.updated = now;
    }
    if let Some(e) = store.environments.get_mut(&destination.id) {
        e.cname = source.cname.clone();
        e.updated = now;
    }
    for (env, cname) in [(&source, &destination.cname), (&destination, &source.cname)] {
        store.env_event(
            &env.id,
            Severity::Info,
            format!("'{cname}' now points to '{}'.", env.endpoint_url),
            Some(request.request_id),
        );
    }
    both(
        store,
        &format!("Completed swapping CNAMEs for environments {pair}."),
    );
    Ok(())
}

pub fn check_dns(store: &Store, p: &Params) -> Result<String, QueryError> {
    let prefix = p.required("CNAMEPrefix")?;
    check_cname_prefix(prefix)?;
    let cname = full_cname(prefix);
    let available = !cname_taken(store, &cname);
    let mut x = Xml::new();
    x.text("Available", if available { "true" } else { "false" })
        .text("FullyQualifiedCNAME", &cname);
    Ok(x.finish())
}
