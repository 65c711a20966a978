//! pipeline-template.json as CloudFormation would read it, reduced to what running the pipeline locally
//! needs: parameters (defaults, overrides), Conditions, the intrinsic functions the template uses, and the
//! pipeline's stages and actions with their configuration evaluated.
//!
//! Resources are not created: a `Ref` to a resource gives a physical id that still names the resource
//! (`<stack>-<LogicalId>-LOCAL`), which is how a Lambda action's FunctionName leads to its binary.
//!
//! Given parameter values are checked as CloudFormation checks them before it creates anything (pattern,
//! length, allowed values, number range), and [`Stack::broken_rules`] evaluates the template's Rules, so
//! the template tests reason about deployments CloudFormation would accept, with this one evaluator.
//!
//! This file holds the stack (a template with its parameter values) and what reads it as it is; the
//! evaluation of Conditions, Rules and intrinsic functions is `intrinsics.rs`, CloudFormation's checks of
//! given parameter values `parameters.rs`, and the pipeline with its actions (and CodePipeline's own
//! `#{Namespace.Variable}` references) `pipeline.rs`.

mod intrinsics;
mod parameters;
mod pipeline;
mod roles;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use parameters::check_parameter;
pub use pipeline::{kebab, substitute_variables};
pub use roles::{RunIdentities, MANAGED, NO_ROLE_KEY};

/// Stack name and account the local run pretends to deploy into.
pub const STACK: &str = "beanswap-local";
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("could not read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid(message.into())
}

/// A template with one set of parameter values.
#[derive(Debug, Clone)]
pub struct Stack {
    template: Value,
    parameters: BTreeMap<String, Value>,
    /// Resource types nobody creates in this run: a `Ref` or `Fn::GetAtt` of one is AWS::NoValue, so what
    /// depends on it is left out instead of pointing at something that does not exist.
    absent: Vec<String>,
    /// Resources the local run made itself (the database, its secret): logical id -> what `Ref` gives
    /// and what each `Fn::GetAtt` attribute gives, as CloudFormation would once it created them.
    provided: BTreeMap<String, Provided>,
}

/// A resource the local run stands up itself, with the values CloudFormation would give for it.
#[derive(Debug, Clone, Default)]
pub struct Provided {
    pub reference: String,
    pub attributes: BTreeMap<String, String>,
}

/// One pipeline action, its configuration evaluated.
#[derive(Debug, Clone)]
pub struct ActionDef {
    pub name: String,
    pub category: String,
    pub provider: String,
    pub namespace: Option<String>,
    pub run_order: u64,
    pub configuration: Map<String, Value>,
    pub input_artifacts: Vec<String>,
    pub output_artifacts: Vec<String>,
    /// For a Lambda invoke action: the beanswap function binary (`package`, `smoke-test`, ...).
    pub function: Option<String>,
    /// That function's `Timeout` in the template (seconds), when the stack creates it: the local run
    /// gives each invocation the same time limit Lambda will.
    pub function_timeout: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct StageDef {
    pub name: String,
    pub actions: Vec<ActionDef>,
    /// CodePipeline's stage conditions (entry, failure, success), as the local run applies them.
    pub conditions: crate::conditions::StageConditions,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub stages: Vec<StageDef>,
}

impl Stack {
    /// Reads `path` and fixes the parameters: `given` values, else the template's defaults, else a
    /// local placeholder (a required parameter such as a connection ARN means nothing locally).
    pub fn load(path: &Path, given: &BTreeMap<String, String>) -> Result<Stack, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let template: Value = serde_json::from_str(&text).map_err(|e| TemplateError::Read {
            path: path.display().to_string(),
            reason: format!("not JSON: {e}"),
        })?;
        Stack::new(template, given)
    }

    pub fn new(template: Value, given: &BTreeMap<String, String>) -> Result<Stack, TemplateError> {
        let declared = template["Parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Some(unknown) = given.keys().find(|k| !declared.contains_key(*k)) {
            return Err(invalid(format!(
                "parameter {unknown} is not declared in the template"
            )));
        }
        let mut parameters = BTreeMap::new();
        for (name, decl) in &declared {
            let raw = match (given.get(name), decl.get("Default")) {
                (Some(v), _) => v.clone(),
                (None, Some(Value::String(s))) => s.clone(),
                (None, Some(Value::Number(n))) => n.to_string(),
                // A placeholder is not checked: it stands for a value only a real account has.
                _ => {
                    let placeholder = format!("local-{}", name.to_ascii_lowercase());
                    parameters.insert(name.clone(), Value::String(placeholder));
                    continue;
                }
            };
            check_parameter(name, decl, &raw)?;
            let value = if decl["Type"] == "CommaDelimitedList" {
                Value::Array(
                    raw.split(',')
                        .map(|s| Value::String(s.trim().to_string()))
                        .collect(),
                )
            } else {
                Value::String(raw)
            };
            parameters.insert(name.clone(), value);
        }
        Ok(Stack {
            template,
            parameters,
            absent: vec![],
            provided: BTreeMap::new(),
        })
    }

    /// `Ref` and `Fn::GetAtt` of `logical` give these values (a resource the local run made itself).
    pub fn provide(mut self, logical: &str, provided: Provided) -> Self {
        self.provided.insert(logical.to_string(), provided);
        self
    }

    fn provided_attribute(&self, logical: &str, attribute: &str) -> Option<Option<Value>> {
        let p = self.provided.get(logical)?;
        Some(p.attributes.get(attribute).cloned().map(Value::String))
    }

    /// Evaluates references to resources of these types as AWS::NoValue: what depends on them is left out.
    pub fn without(mut self, types: &[&str]) -> Self {
        self.absent = types.iter().map(|t| t.to_string()).collect();
        self
    }

    fn is_absent(&self, logical: &str) -> bool {
        self.template["Resources"][logical]["Type"]
            .as_str()
            .is_some_and(|t| self.absent.iter().any(|a| a == t))
    }

    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.parameters.get(name)
    }

    pub fn resources(&self) -> Map<String, Value> {
        self.template["Resources"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// What `Ref` gives for a resource created by this stack.
    pub fn physical_id(&self, logical: &str) -> String {
        format!("{STACK}-{logical}-LOCAL")
    }

    /// Resources of `kind` with their properties evaluated: (logical id, properties).
    pub fn resources_of(&self, kind: &str) -> Result<Vec<(String, Value)>, TemplateError> {
        let mut out = vec![];
        for (logical, resource) in self.resources() {
            if resource["Type"] != kind {
                continue;
            }
            if let Some(condition) = resource["Condition"].as_str() {
                if !self.condition(condition)? {
                    continue;
                }
            }
            out.push((
                logical,
                self.eval(&resource["Properties"])?.unwrap_or(Value::Null),
            ));
        }
        Ok(out)
    }
}

/// A scalar as text (numbers and booleans as CloudFormation would stringify them).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
