//! CloudFormation's checks of a given parameter value before it creates anything: the pattern (of each
//! value, for a list), the length, the allowed values and, for a Number, the range. Apart because the
//! template tests lean on them to reason only about deployments CloudFormation would accept.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::Value;

use super::{invalid, TemplateError};

/// An AllowedPattern compiled to match a whole value, once per process: a pattern with bounded
/// repetitions (SmokeTestPaths: up to 10 paths of up to 100 characters) takes a noticeable time to
/// compile, and the template tests evaluate the template under many parameter sets.
fn allowed_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    static COMPILED: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    let compiled = COMPILED.get_or_init(Default::default);
    if let Some(re) = compiled
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(pattern)
    {
        return Ok(re.clone());
    }
    let re = regex::Regex::new(&format!("^(?:{pattern})$"))?;
    compiled
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// CloudFormation's checks of one parameter value: the pattern (of each value, for a list), the length,
/// the allowed values and, for a Number, the range.
pub(super) fn check_parameter(name: &str, decl: &Value, raw: &str) -> Result<(), TemplateError> {
    let refuse = |why: String| {
        let hint = decl["ConstraintDescription"]
            .as_str()
            .map(|c| format!(". Expected: {c}"))
            .unwrap_or_default();
        Err(invalid(format!("parameter {name}={raw:?}: {why}{hint}")))
    };
    let is_list = decl["Type"] == "CommaDelimitedList";
    if let Some(pattern) = decl["AllowedPattern"].as_str() {
        let re = allowed_pattern(pattern)
            .map_err(|e| invalid(format!("parameter {name}: AllowedPattern {pattern}: {e}")))?;
        let values: Vec<&str> = if is_list {
            raw.split(',').map(str::trim).collect()
        } else {
            vec![raw]
        };
        if let Some(bad) = values.iter().find(|v| !re.is_match(v)) {
            // In a list, say which value; a single value was just named.
            let which = if is_list {
                format!("{bad:?} ")
            } else {
                String::new()
            };
            return refuse(format!("{which}does not match {pattern}"));
        }
    }
    let len = raw.chars().count() as u64;
    if let Some(min) = decl["MinLength"].as_u64().filter(|min| len < *min) {
        return refuse(format!("shorter than {min} characters"));
    }
    if let Some(max) = decl["MaxLength"].as_u64().filter(|max| len > *max) {
        return refuse(format!("longer than {max} characters"));
    }
    if let Some(allowed) = decl["AllowedValues"].as_array() {
        let listed = allowed
            .iter()
            .any(|a| a.as_str() == Some(raw) || (a.is_number() && a.as_f64() == raw.parse().ok()));
        if !listed {
            return refuse(format!("not one of {}", Value::Array(allowed.clone())));
        }
    }
    if decl["Type"] == "Number" {
        let Ok(number) = raw.parse::<f64>() else {
            return refuse("not a number".into());
        };
        if let Some(min) = decl["MinValue"].as_f64().filter(|min| number < *min) {
            return refuse(format!("less than {min}"));
        }
        if let Some(max) = decl["MaxValue"].as_f64().filter(|max| number > *max) {
            return refuse(format!("more than {max}"));
        }
    }
    Ok(())
}
