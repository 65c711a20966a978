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

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::{Map, Value};

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
        })
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

    pub fn condition(&self, name: &str) -> Result<bool, TemplateError> {
        let expr = self
            .template
            .get("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| invalid(format!("condition {name} is not declared")))?
            .clone();
        self.truth(&expr)
    }

    /// The template's Rules this parameter set breaks, as `<rule>: <AssertDescription>`; CloudFormation
    /// refuses such a stack before creating anything.
    pub fn broken_rules(&self) -> Result<Vec<String>, TemplateError> {
        let mut broken = Vec::new();
        let Some(rules) = self.template["Rules"].as_object() else {
            return Ok(broken);
        };
        for (name, rule) in rules {
            if let Some(condition) = rule.get("RuleCondition") {
                if !self.truth(condition)? {
                    continue;
                }
            }
            for assertion in rule["Assertions"].as_array().into_iter().flatten() {
                if !self.truth(&assertion["Assert"])? {
                    let description = assertion["AssertDescription"].as_str().unwrap_or_default();
                    broken.push(format!("{name}: {description}"));
                }
            }
        }
        Ok(broken)
    }

    fn truth(&self, expr: &Value) -> Result<bool, TemplateError> {
        let (key, arg) = single(expr).ok_or_else(|| invalid(format!("not a condition: {expr}")))?;
        let items = || {
            arg.as_array()
                .cloned()
                .ok_or_else(|| invalid(format!("{key} takes a list: {arg}")))
        };
        Ok(match key {
            "Condition" => self.condition(arg.as_str().unwrap_or_default())?,
            "Fn::Equals" => {
                let args = items()?;
                if args.len() != 2 {
                    return Err(invalid(format!("Fn::Equals takes two values: {arg}")));
                }
                self.eval(&args[0])? == self.eval(&args[1])?
            }
            "Fn::Not" => !self.truth(items()?.first().unwrap_or(&Value::Null))?,
            "Fn::And" => {
                let mut all = true;
                for c in items()? {
                    all &= self.truth(&c)?;
                }
                all
            }
            "Fn::Or" => {
                let mut any = false;
                for c in items()? {
                    any |= self.truth(&c)?;
                }
                any
            }
            other => return Err(invalid(format!("{other} is not supported in a condition"))),
        })
    }

    /// Resolves intrinsic functions; `None` is AWS::NoValue.
    pub fn eval(&self, v: &Value) -> Result<Option<Value>, TemplateError> {
        match v {
            Value::Array(items) => {
                let mut out = vec![];
                for i in items {
                    if let Some(v) = self.eval(i)? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(map) => {
                if let Some((key, arg)) =
                    single(v).filter(|(k, _)| *k == "Ref" || k.starts_with("Fn::"))
                {
                    return self.intrinsic(key, arg);
                }
                let mut out = Map::new();
                for (k, v) in map {
                    if let Some(v) = self.eval(v)? {
                        out.insert(k.clone(), v);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            other => Ok(Some(other.clone())),
        }
    }

    fn intrinsic(&self, key: &str, arg: &Value) -> Result<Option<Value>, TemplateError> {
        match key {
            "Ref" => self.reference(arg.as_str().unwrap_or_default()),
            "Fn::If" => {
                let args = arg
                    .as_array()
                    .filter(|a| a.len() == 3)
                    .ok_or_else(|| invalid(format!("Fn::If takes three values: {arg}")))?;
                let cond = args[0].as_str().unwrap_or_default();
                self.eval(&args[if self.condition(cond)? { 1 } else { 2 }])
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.clone(), Map::new()),
                    Value::Array(a) if a.len() == 2 => (
                        a[0].as_str().unwrap_or_default().to_string(),
                        a[1].as_object().cloned().unwrap_or_default(),
                    ),
                    other => return Err(invalid(format!("Fn::Sub {other}"))),
                };
                Ok(Some(Value::String(self.substitute(&text, &vars)?)))
            }
            "Fn::Join" => {
                let args = arg
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .ok_or_else(|| invalid(format!("Fn::Join takes two values: {arg}")))?;
                let sep = args[0].as_str().unwrap_or_default();
                let list = self.eval(&args[1])?.unwrap_or(Value::Array(vec![]));
                let parts: Vec<String> = list
                    .as_array()
                    .map(|a| a.iter().map(text).collect())
                    .unwrap_or_default();
                Ok(Some(Value::String(parts.join(sep))))
            }
            "Fn::Split" => {
                let args = arg
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .ok_or_else(|| invalid(format!("Fn::Split takes two values: {arg}")))?;
                let sep = args[0]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid(format!("Fn::Split needs a delimiter string: {arg}")))?;
                let source = self.eval(&args[1])?.map(|v| text(&v)).unwrap_or_default();
                Ok(Some(Value::Array(
                    source
                        .split(sep)
                        .map(|part| Value::String(part.to_string()))
                        .collect(),
                )))
            }
            "Fn::Select" => {
                let args = arg
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .ok_or_else(|| invalid(format!("Fn::Select takes two values: {arg}")))?;
                let index = self
                    .eval(&args[0])?
                    .map(|v| text(&v))
                    .and_then(|s| s.parse::<usize>().ok())
                    .unwrap_or(0);
                let list = self.eval(&args[1])?.unwrap_or(Value::Array(vec![]));
                Ok(list.as_array().and_then(|a| a.get(index)).cloned())
            }
            "Fn::GetAtt" => {
                let (resource, attribute) = match arg {
                    Value::Array(a) if a.len() == 2 => (text(&a[0]), text(&a[1])),
                    Value::String(s) => match s.split_once('.') {
                        Some((r, a)) => (r.to_string(), a.to_string()),
                        None => return Err(invalid(format!("Fn::GetAtt {s}"))),
                    },
                    other => return Err(invalid(format!("Fn::GetAtt {other}"))),
                };
                if self.is_absent(&resource) {
                    return Ok(None);
                }
                Ok(Some(Value::String(format!(
                    "{}.{attribute}",
                    self.physical_id(&resource)
                ))))
            }
            "Fn::GetAZs" => Ok(Some(Value::Array(vec![
                Value::String(format!("{REGION}a")),
                Value::String(format!("{REGION}b")),
            ]))),
            other => Err(invalid(format!(
                "{other} is not supported by the local run"
            ))),
        }
    }

    fn reference(&self, name: &str) -> Result<Option<Value>, TemplateError> {
        let pseudo = match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::Region" => Some(REGION),
            "AWS::AccountId" => Some(ACCOUNT),
            "AWS::Partition" => Some("aws"),
            "AWS::StackName" => Some(STACK),
            "AWS::URLSuffix" => Some("amazonaws.com"),
            _ => None,
        };
        if let Some(p) = pseudo {
            return Ok(Some(Value::String(p.to_string())));
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(Some(v.clone()));
        }
        if self.is_absent(name) {
            return Ok(None);
        }
        if let Some(resource) = self.template["Resources"].get(name) {
            // Resources whose Ref is a name they were given.
            let named = match resource["Type"].as_str() {
                Some("AWS::ElasticBeanstalk::Application") => Some("ApplicationName"),
                _ => None,
            };
            if let Some(given) = named.and_then(|p| resource["Properties"].get(p)) {
                return self.eval(given);
            }
            return Ok(Some(Value::String(self.physical_id(name))));
        }
        Err(invalid(format!(
            "Ref {name}: neither a parameter nor a resource"
        )))
    }

    fn substitute(
        &self,
        template: &str,
        vars: &Map<String, Value>,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| invalid(format!("unclosed ${{ in {template}")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let value = match vars.get(name) {
                    Some(v) => self.eval(v)?,
                    None if name.contains('.') && !name.starts_with("AWS::") => {
                        let (resource, attribute) = name.split_once('.').unwrap_or((name, ""));
                        if self.template["Resources"].get(resource).is_none() {
                            return Err(invalid(format!("${{{name}}}: no resource {resource}")));
                        }
                        if self.is_absent(resource) {
                            None
                        } else {
                            Some(Value::String(format!(
                                "{}.{attribute}",
                                self.physical_id(resource)
                            )))
                        }
                    }
                    None => self.reference(name)?,
                };
                if let Some(Value::Array(_) | Value::Object(_)) = value {
                    return Err(invalid(format!(
                        "${{{name}}} in Fn::Sub is not a single value"
                    )));
                }
                out.push_str(&value.map(|v| text(&v)).unwrap_or_default());
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
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
            stages.push(StageDef {
                name: text(&stage["Name"]),
                actions,
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

fn single(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// A scalar as text (numbers and booleans as CloudFormation would stringify them).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

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
fn check_parameter(name: &str, decl: &Value, raw: &str) -> Result<(), TemplateError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    #[test]
    fn evaluates_parameters_conditions_and_functions() {
        let template = json!({
            "Parameters": {
                "App": {"Type": "String", "Default": "shop"},
                "Domain": {"Type": "String", "Default": ""},
                "Paths": {"Type": "CommaDelimitedList", "Default": "/,/health"}
            },
            "Conditions": {"HasDomain": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Domain"}, ""]}]}},
            "Resources": {
                "StageFunction": {"Type": "AWS::Lambda::Function"},
                "Pipeline": {"Type": "AWS::CodePipeline::Pipeline", "Properties": {"Stages": [
                    {"Name": "Stage", "Actions": [{
                        "Name": "Stage", "Namespace": "Stage",
                        "ActionTypeId": {"Category": "Invoke", "Provider": "Lambda"},
                        "Configuration": {
                            "FunctionName": {"Ref": "StageFunction"},
                            "UserParameters": {"Fn::Sub": "{\"application\":\"${App}\",\"paths\":\"${P}\",\"d\":\"${D}\"}"
                                .replace("${P}", "${Paths}")},
                            "Extra": {"Fn::If": ["HasDomain", "yes", {"Ref": "AWS::NoValue"}]},
                            "Joined": {"Fn::Join": ["|", {"Ref": "Paths"}]}
                        }
                    }]}
                ]}}
            }
        });
        let mut template = template;
        template["Resources"]["Pipeline"]["Properties"]["Stages"][0]["Actions"][0]
            ["Configuration"]["UserParameters"] =
            json!({"Fn::Sub": "{\"application\":\"${App}\"}"});
        let stack = Stack::new(template.clone(), &BTreeMap::new()).unwrap();
        let pipeline = stack.pipeline().unwrap();
        let action = &pipeline.stages[0].actions[0];
        assert_eq!(action.function.as_deref(), Some("stage"));
        assert_eq!(
            action.configuration["UserParameters"],
            json!("{\"application\":\"shop\"}")
        );
        assert!(action.configuration.get("Extra").is_none());
        assert_eq!(action.configuration["Joined"], json!("/|/health"));
        let with_domain = Stack::new(
            template,
            &[("Domain".to_string(), "example.com".to_string())].into(),
        )
        .unwrap();
        let action = &with_domain.pipeline().unwrap().stages[0].actions[0];
        assert_eq!(action.configuration["Extra"], json!("yes"));
    }

    #[test]
    fn splits_a_string_parameter_into_a_list() {
        let template = json!({
            "Parameters": {"Paths": {"Type": "String", "Default": "/,/health,/api"}},
            "Resources": {}
        });
        let stack = Stack::new(template, &BTreeMap::new()).unwrap();
        let joined = stack
            .eval(&json!({"Fn::Join": ["|", {"Fn::Split": [",", {"Ref": "Paths"}]}]}))
            .unwrap();
        assert_eq!(joined, Some(json!("/|/health|/api")));
        assert_eq!(
            stack.eval(&json!({"Fn::Split": [",", "/"]})).unwrap(),
            Some(json!(["/"]))
        );
        assert!(stack.eval(&json!({"Fn::Split": ["", "a"]})).is_err());
    }

    #[test]
    fn lambda_actions_carry_their_functions_timeout() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let stack = Stack::load(
            &root.join("pipeline-template.json"),
            &crate::run::local_parameters(),
        )
        .unwrap();
        let timeouts: BTreeMap<String, Option<u64>> = stack
            .pipeline()
            .unwrap()
            .stages
            .iter()
            .flat_map(|s| s.actions.iter())
            .filter_map(|a| Some((a.function.clone()?, a.function_timeout)))
            .collect();
        assert_eq!(timeouts["stage"], Some(300), "{timeouts:?}");
        assert_eq!(timeouts["package"], Some(600), "{timeouts:?}");
        assert!(timeouts.values().all(Option::is_some), "{timeouts:?}");
    }

    #[test]
    fn parameter_values_cloudformation_would_refuse_are_refused_naming_the_parameter() {
        let template = json!({
            "Parameters": {
                "Domain": {"Type": "String", "Default": "", "MaxLength": 12,
                           "AllowedPattern": "^$|^[a-z.]+$", "ConstraintDescription": "lower-case letters and dots"},
                "Paths": {"Type": "CommaDelimitedList", "Default": "/", "AllowedPattern": "^/[a-z]*$"},
                "Mode": {"Type": "String", "Default": "cname", "AllowedValues": ["cname", "route53"]},
                "Keep": {"Type": "Number", "Default": 1, "MinValue": 0, "MaxValue": 5},
                "Arn": {"Type": "String", "AllowedPattern": "^arn:.*$"}
            }
        });
        let with = |name: &str, value: &str| {
            Stack::new(
                template.clone(),
                &[(name.to_string(), value.to_string())].into(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(with("Domain", "example.com"), Ok(()));
        assert_eq!(with("Paths", "/,/health, /api"), Ok(()));
        assert_eq!(with("Keep", "5"), Ok(()));
        let refused = [
            ("Domain", "Example.com", "does not match"),
            ("Domain", "a.b.c.d.e.f.g.h", "longer than 12 characters"),
            ("Paths", "/,health", "\"health\" does not match"),
            ("Mode", "weighted", "not one of"),
            ("Keep", "6", "more than 5"),
            ("Keep", "-1", "less than 0"),
            ("Keep", "two", "not a number"),
        ];
        for (name, value, why) in refused {
            let err = with(name, value).unwrap_err();
            assert!(
                err.starts_with(&format!("parameter {name}=")) && err.contains(why),
                "{name}={value}: {err}"
            );
        }
        assert!(with("Domain", "UPPER")
            .unwrap_err()
            .ends_with(". Expected: lower-case letters and dots"));
        // A required parameter nobody gave gets an unchecked placeholder: the local run has no account.
        let stack = Stack::new(template.clone(), &BTreeMap::new()).unwrap();
        assert_eq!(stack.parameter("Arn"), Some(&json!("local-arn")));
    }

    #[test]
    fn references_to_resources_left_out_of_the_run_are_no_value() {
        let template = json!({
            "Resources": {
                "Database": {"Type": "AWS::RDS::DBInstance"},
                "Secret": {"Type": "AWS::SecretsManager::Secret"},
                "Bucket": {"Type": "AWS::S3::Bucket"},
                "Settings": {"Type": "AWS::ElasticBeanstalk::ConfigurationTemplate", "Properties": {
                    "OptionSettings": [
                        {"OptionName": "DATABASE_HOST", "Value": {"Fn::GetAtt": ["Database", "Endpoint.Address"]}},
                        {"OptionName": "DATABASE_SECRET_ARN", "Value": {"Ref": "Secret"}},
                        {"OptionName": "STORAGE_BUCKET", "Value": {"Ref": "Bucket"}}
                    ]
                }}
            }
        });
        let options = |stack: &Stack| {
            stack
                .resources_of("AWS::ElasticBeanstalk::ConfigurationTemplate")
                .unwrap()[0]
                .1["OptionSettings"]
                .clone()
        };
        let full = Stack::new(template.clone(), &BTreeMap::new()).unwrap();
        assert_eq!(
            options(&full)[0]["Value"],
            json!("beanswap-local-Database-LOCAL.Endpoint.Address")
        );
        let local = full.without(crate::run::NOT_CREATED_LOCALLY);
        let options = options(&local);
        assert_eq!(options[0].get("Value"), None, "{options}");
        assert_eq!(options[1].get("Value"), None, "{options}");
        assert_eq!(options[2]["Value"], json!("beanswap-local-Bucket-LOCAL"));
    }

    #[test]
    fn variables_substitute_or_name_what_is_missing() {
        let vars: BTreeMap<String, String> =
            [("Stage.Url".to_string(), "http://a\"b/".to_string())].into();
        assert_eq!(
            substitute_variables("{\"url\":\"#{Stage.Url}\"}", &vars).unwrap(),
            "{\"url\":\"http://a\\\"b/\"}"
        );
        let err = substitute_variables("#{Package.VersionLabel}", &vars).unwrap_err();
        assert!(err.contains("Package.VersionLabel"), "{err}");
        assert_eq!(kebab("SmokeTest"), "smoke-test");
        assert_eq!(kebab("check-config"), "check-config");
    }
}
