//! Evaluation: Conditions, the template's Rules and the intrinsic functions the template uses (`Ref`,
//! `Fn::If`, `Fn::Sub`, `Fn::Join`, `Fn::Split`, `Fn::Select`, `Fn::GetAtt`, `Fn::GetAZs`), as
//! CloudFormation resolves them. Apart because it is the evaluator proper: the rest of the module only
//! asks it for values.

use serde_json::{Map, Value};

use super::{invalid, text, Stack, TemplateError, ACCOUNT, REGION, STACK};

impl Stack {
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
                if let Some(value) = self.provided_attribute(&resource, &attribute) {
                    return Ok(value);
                }
                if self.is_absent(&resource) {
                    return Ok(None);
                }
                if let Some(arn) = self.arn_attribute(&resource, &attribute)? {
                    return Ok(Some(Value::String(arn)));
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

    /// `Arn` of the resources whose ARN a policy or a setting compares (IAM roles and instance profiles
    /// with their Path, S3 buckets), as CloudFormation returns it: a passed role must match the
    /// `iam:PassRole` grant, a bucket the S3 grants.
    fn arn_attribute(
        &self,
        logical: &str,
        attribute: &str,
    ) -> Result<Option<String>, TemplateError> {
        if attribute != "Arn" {
            return Ok(None);
        }
        let resource = &self.template["Resources"][logical];
        let path = resource["Properties"]["Path"].as_str().unwrap_or("/");
        let name = self.physical_id(logical);
        Ok(match resource["Type"].as_str() {
            Some("AWS::IAM::Role") => Some(format!("arn:aws:iam::{ACCOUNT}:role{path}{name}")),
            Some("AWS::IAM::InstanceProfile") => Some(format!(
                "arn:aws:iam::{ACCOUNT}:instance-profile{path}{name}"
            )),
            Some("AWS::S3::Bucket") => self
                .reference(logical)?
                .map(|r| format!("arn:aws:s3:::{}", text(&r))),
            _ => None,
        })
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
        if let Some(p) = self.provided.get(name) {
            return Ok(Some(Value::String(p.reference.clone())));
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
                        if let Some(value) = self.provided_attribute(resource, attribute) {
                            value
                        } else if self.is_absent(resource) {
                            None
                        } else if let Some(arn) = self.arn_attribute(resource, attribute)? {
                            Some(Value::String(arn))
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
}

fn single(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}
