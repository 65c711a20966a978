//! `beanswap permissions`: per function role of a template, the actions it grants and the actions its
//! function's code can need (crates/iam/functions.json through the operation table), and whether they
//! differ. The same facts the local cloud enforces, read before anything runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use beanswap_iam::{Functions, Table};
use serde_json::Value;

use crate::template::{Stack, MANAGED};

/// One role compared with its function's needs.
#[derive(Debug, Clone)]
pub struct RoleReport {
    pub function: String,
    pub role: String,
    /// Actions its inline policies allow (logs:* left out: Lambda writes the logs, not the code), and
    /// from a managed policy of the template only what the code needs (the rest of such a policy is
    /// what Beanstalk does with the caller's credentials).
    pub grants: BTreeSet<String>,
    pub needs: BTreeSet<String>,
}

impl RoleReport {
    pub fn missing(&self) -> Vec<&String> {
        self.needs.difference(&self.grants).collect()
    }
    pub fn unneeded(&self) -> Vec<&String> {
        self.grants.difference(&self.needs).collect()
    }
}

fn allowed_actions(document: &Value) -> Vec<String> {
    let statements = match &document["Statement"] {
        Value::Array(s) => s.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => vec![],
    };
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            // NotAction names what it does not grant: shown as such, and always a difference.
            _ => vec![format!("NotAction {}", s["NotAction"])],
        })
        .collect()
}

/// Compares every function role of `template` (with `parameters`) with what its function needs.
pub fn compare(
    template: &Path,
    parameters: &BTreeMap<String, String>,
) -> Result<Vec<RoleReport>, String> {
    let stack = Stack::load(template, parameters).map_err(|e| e.to_string())?;
    let identities = stack.identities().map_err(|e| e.to_string())?;
    let table = Table::load().map_err(|e| e.to_string())?;
    let functions = Functions::load().map_err(|e| e.to_string())?;
    let mut out = vec![];
    for f in &functions.functions {
        let needs = f
            .needed_actions_with(&table, |p| {
                // Set: a value that turns the call on (not empty, not `false`, not a local placeholder;
                // a list with a non-empty item).
                let on = |v: &str| !v.is_empty() && v != "false" && !v.starts_with("local-");
                match stack.parameter(p) {
                    Some(Value::String(v)) => on(v),
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(on),
                    _ => false,
                }
            })
            .map_err(|e| e.to_string())?;
        let Some(role) = identities
            .spec
            .roles
            .iter()
            .find(|r| r.logical_id == f.role)
        else {
            // Not created by this stack (reused by ARN): nothing here to compare.
            continue;
        };
        let mut grants = BTreeSet::new();
        for (name, doc) in &role.policies {
            let managed = name.starts_with(MANAGED);
            for a in allowed_actions(doc) {
                if a.starts_with("logs:") || (managed && !needs.contains(&a)) {
                    continue;
                }
                grants.insert(a);
            }
        }
        out.push(RoleReport {
            function: f.function.clone(),
            role: f.role.clone(),
            grants,
            needs,
        });
    }
    Ok(out)
}

/// The report as printed; `true` when every role grants exactly what its function needs.
pub fn render(reports: &[RoleReport]) -> (String, bool) {
    let mut text = String::new();
    let mut ok = true;
    for r in reports {
        let _ = writeln!(text, "{} ({})", r.role, r.function);
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        let _ = writeln!(text, "  grants: {}", list(&r.grants));
        let _ = writeln!(text, "  needs:  {}", list(&r.needs));
        let (missing, unneeded) = (r.missing(), r.unneeded());
        if missing.is_empty() && unneeded.is_empty() {
            let _ = writeln!(text, "  same");
        } else {
            ok = false;
            for a in missing {
                let _ = writeln!(
                    text,
                    "  MISSING {a}: its code needs it, AWS will refuse the call"
                );
            }
            for a in unneeded {
                let _ = writeln!(
                    text,
                    "  NOT NEEDED {a}: granted, but no call of its code needs it"
                );
            }
        }
    }
    (text, ok)
}
