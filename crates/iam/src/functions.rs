//! `functions.json`: what each function's code calls with its role, so what its role must allow can be
//! derived from [`crate::Table`] without reading the sources (crates/cli/tests/template.rs holds the list
//! to them). `beanswap permissions` compares each role of a template with it.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::table::{Service, Table};
use crate::IamError;

const FUNCTIONS: &str = include_str!("../functions.json");

/// One SDK call a function makes with its role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub service: Service,
    /// The SDK's name for it (`swap_environment_cnames`).
    pub call: String,
    /// Request members it sets that change its authorisation (model names: `TagsToAdd`).
    #[serde(default)]
    pub members: Vec<String>,
    /// Made only when the stack sets this template parameter (a hosted zone for Route 53's calls).
    #[serde(default)]
    pub if_parameter: Option<String>,
}

/// An action a role needs that no call names, with the reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extra {
    pub action: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// Its binary and directory under functions/ (`smoke-test`).
    pub function: String,
    /// Its role's logical id in pipeline-template.json.
    pub role: String,
    /// Sources only this function runs.
    pub own: Vec<String>,
    pub calls: Vec<Call>,
    /// SDK calls made with the job's artifact credentials, not the role.
    pub job_calls: Vec<String>,
    pub extra: Vec<Extra>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Functions {
    pub about: String,
    pub functions: Vec<Function>,
}

/// `UpdateTagsForResource` and `update_tags_for_resource` both -> `updatetagsforresource`.
pub fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl Functions {
    pub fn load() -> Result<Functions, IamError> {
        serde_json::from_str(FUNCTIONS).map_err(|e| IamError::Table(format!("functions.json: {e}")))
    }
}

impl Function {
    /// Every IAM action its code can need with its role: the table's actions for each call with the
    /// members it sets, and its extras.
    pub fn needed_actions(&self, table: &Table) -> Result<BTreeSet<String>, IamError> {
        self.needed_actions_with(table, |_| true)
    }

    /// As [`Function::needed_actions`], counting a call with `if_parameter` only when `set(parameter)`.
    pub fn needed_actions_with(
        &self,
        table: &Table,
        set: impl Fn(&str) -> bool,
    ) -> Result<BTreeSet<String>, IamError> {
        let mut out = BTreeSet::new();
        for c in self
            .calls
            .iter()
            .filter(|c| c.if_parameter.as_deref().is_none_or(&set))
        {
            let row = table
                .operations
                .iter()
                .find(|o| o.service == c.service && squash(&o.operation) == squash(&c.call))
                .ok_or_else(|| IamError::UnknownOperation {
                    service: c.service.prefix().to_string(),
                    operation: c.call.clone(),
                })?;
            let members: Vec<&str> = c.members.iter().map(String::as_str).collect();
            out.extend(row.actions_with(&members));
        }
        out.extend(self.extra.iter().map(|e| e.action.clone()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_needs_only_actions_the_table_knows() {
        let table = Table::load().unwrap();
        let functions = Functions::load().unwrap();
        assert_eq!(functions.functions.len(), 7);
        let swap = functions
            .functions
            .iter()
            .find(|f| f.function == "swap")
            .unwrap();
        let needed = swap.needed_actions(&table).unwrap();
        assert!(needed.contains("elasticbeanstalk:AddTags"));
        assert!(needed.contains("elasticbeanstalk:RemoveTags"));
        assert!(!needed.contains("elasticbeanstalk:UpdateTagsForResource"));
    }
}
