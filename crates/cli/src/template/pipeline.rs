//! The template's pipeline as the local run needs it: its stages and actions with their configuration
//! evaluated, each Lambda action's function binary and timeout, and CodePipeline's own
//! `#{Namespace.Variable}` references filled in from earlier actions' output variables. Apart because it
//! is CodePipeline's reading of the stack, not CloudFormation's.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{invalid, text, ActionDef, Pipeline, Stack, StageDef, TemplateError, STACK};

impl Stack {
    /// The template's one pipeline, evaluated.
    pub fn pipeline(&self) -> Result<Pipeline, TemplateError> {
        let timeouts: BTreeMap<String, u64> = self
            .resources_of("AWS::Lambda::Function")?
            .into_iter()
            .filter_map(|(logical, props)| Some((logical, props["Timeout"].as_u64()?)))
            .collect();
        let resources = self.resources();
        let (logical, resource) = resources
            .iter()
            .find(|(_, r)| r["Type"] == "AWS::CodePipeline::Pipeline")
            .ok_or_else(|| invalid("the template has no AWS::CodePipeline::Pipeline"))?;
        let properties = self.eval(&resource["Properties"])?.unwrap_or(Value::Null);
        let name = properties["Name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| self.physical_id(logical));
        let mut stages = vec![];
        for stage in properties["Stages"].as_array().cloned().unwrap_or_default() {
            let mut actions = vec![];
            for action in stage["Actions"].as_array().cloned().unwrap_or_default() {
                let type_id = &action["ActionTypeId"];
                let configuration = action["Configuration"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                let category = text(&type_id["Category"]);
                let provider = text(&type_id["Provider"]);
                let function_name = (category == "Invoke" && provider == "Lambda")
                    .then(|| configuration.get("FunctionName").map(text))
                    .flatten();
                let function = function_name.as_deref().map(|f| self.function_binary(f));
                let function_timeout = function_name
                    .as_deref()
                    .and_then(|f| f.strip_prefix(&format!("{STACK}-")))
                    .and_then(|f| f.strip_suffix("-LOCAL"))
                    .and_then(|logical| timeouts.get(logical).copied());
                let artifacts = |key: &str| -> Vec<String> {
                    action[key]
                        .as_array()
                        .map(|a| a.iter().map(|x| text(&x["Name"])).collect())
                        .unwrap_or_default()
                };
                actions.push(ActionDef {
                    name: text(&action["Name"]),
                    category,
                    provider,
                    namespace: action["Namespace"].as_str().map(str::to_string),
                    run_order: action["RunOrder"].as_u64().unwrap_or(1),
                    input_artifacts: artifacts("InputArtifacts"),
                    output_artifacts: artifacts("OutputArtifacts"),
                    configuration,
                    function,
                    function_timeout,
                });
            }
            actions.sort_by_key(|a| a.run_order);
            let name = text(&stage["Name"]);
            let conditions = crate::conditions::StageConditions::parse(&stage)
                .map_err(|e| invalid(format!("stage {name}: {e}")))?;
            stages.push(StageDef {
                name,
                actions,
                conditions,
            });
        }
        Ok(Pipeline { name, stages })
    }

    /// `beanswap-local-SmokeTestFunction-LOCAL` -> `smoke-test`; an ARN's function name is kebab-cased
    /// the same way after dropping a `beanswap-` prefix.
    fn function_binary(&self, function_name: &str) -> String {
        let logical = function_name
            .strip_prefix(&format!("{STACK}-"))
            .and_then(|s| s.strip_suffix("-LOCAL"))
            .map(|s| s.trim_end_matches("Function").to_string())
            .unwrap_or_else(|| {
                let name = function_name.rsplit(':').next().unwrap_or(function_name);
                name.trim_start_matches("beanswap-").to_string()
            });
        kebab(&logical)
    }
}

/// `SmokeTest` -> `smoke-test`; already-kebab names stay.
pub fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('-') {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Replaces `#{Namespace.Variable}` from `variables` (keyed `Namespace.Variable`); unknown references
/// are an error naming them, as CodePipeline fails an action whose variables do not resolve.
pub fn substitute_variables(
    text: &str,
    variables: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("#{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = variables
            .get(name)
            .ok_or_else(|| format!("#{{{name}}} does not resolve: no earlier action set it"))?;
        // Values land inside JSON strings in UserParameters: escape as CodePipeline's users must.
        let escaped = serde_json::to_string(value).unwrap_or_default();
        out.push_str(escaped.trim_matches('"'));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
