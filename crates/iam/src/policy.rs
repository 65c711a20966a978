//! Identity policies as IAM evaluates them: Allow and Deny, Action and NotAction, Resource and
//! NotResource with `*`/`?` wildcards, and the condition operators the template uses. Anything else (a
//! Principal in an identity policy, a policy variable, ForAnyValue, an operator or condition key not
//! listed) is refused when the policy is read, naming it: an evaluator that skipped what it does not
//! understand could allow what AWS refuses.
//!
//! Sources: IAM User Guide, "Policy evaluation logic" (an explicit Deny wins, then an Allow, else the
//! request is implicitly denied): https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html;
//! "IAM JSON policy elements: Condition operators" (a key absent from the request makes a condition
//! false, except Null, the `...IfExists` forms and the negated operators, which are then true):
//! https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html;
//! "IAM JSON policy elements: Action / Resource" (wildcards; actions are case-insensitive, resources
//! are not): https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::table::Table;
use crate::IamError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Action`/`Resource` (the statement covers what matches) or `NotAction`/`NotResource` (what does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patterns {
    Only(Vec<String>),
    AllBut(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Bool,
    Null,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        Some(match name {
            "StringEquals" => Operator::StringEquals,
            "StringNotEquals" => Operator::StringNotEquals,
            "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Operator::StringNotEqualsIgnoreCase,
            "StringLike" => Operator::StringLike,
            "StringNotLike" => Operator::StringNotLike,
            "ArnEquals" => Operator::ArnEquals,
            "ArnNotEquals" => Operator::ArnNotEquals,
            "ArnLike" => Operator::ArnLike,
            "ArnNotLike" => Operator::ArnNotLike,
            "Bool" => Operator::Bool,
            "Null" => Operator::Null,
            _ => return None,
        })
    }

    /// Negated operators are true when the key is absent from the request.
    fn negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::ArnNotEquals
                | Operator::ArnNotLike
        )
    }

    fn matches(self, pattern: &str, value: &str) -> bool {
        match self {
            Operator::StringEquals | Operator::StringNotEquals | Operator::ArnEquals => {
                pattern == value
            }
            Operator::ArnNotEquals => pattern == value,
            Operator::StringEqualsIgnoreCase | Operator::StringNotEqualsIgnoreCase => {
                pattern.eq_ignore_ascii_case(value)
            }
            Operator::StringLike | Operator::StringNotLike => glob(pattern, value),
            Operator::ArnLike | Operator::ArnNotLike => arn_like(pattern, value),
            Operator::Bool => pattern.eq_ignore_ascii_case(value),
            Operator::Null => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: Operator,
    pub if_exists: bool,
    /// As written (keys compare case-insensitively).
    pub key: String,
    pub values: Vec<String>,
}

impl Condition {
    fn holds(&self, context: &BTreeMap<String, String>) -> bool {
        let value = context
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&self.key))
            .map(|(_, v)| v.as_str());
        if self.operator == Operator::Null {
            // "true": the key must be absent; "false": present.
            return self
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case("true") == value.is_none());
        }
        match value {
            None => self.if_exists || self.operator.negated(),
            Some(value) => {
                let any = self.values.iter().any(|p| self.operator.matches(p, value));
                if self.operator.negated() {
                    !any
                } else {
                    any
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: Patterns,
    pub resources: Patterns,
    pub conditions: Vec<Condition>,
}

impl Statement {
    fn covers(&self, action: &str, resource: &str, context: &BTreeMap<String, String>) -> bool {
        let action = action.to_ascii_lowercase();
        let action_ok = match &self.actions {
            Patterns::Only(p) => p.iter().any(|p| glob(&p.to_ascii_lowercase(), &action)),
            Patterns::AllBut(p) => !p.iter().any(|p| glob(&p.to_ascii_lowercase(), &action)),
        };
        let resource_ok = match &self.resources {
            Patterns::Only(p) => p.iter().any(|p| arn_like(p, resource)),
            Patterns::AllBut(p) => !p.iter().any(|p| arn_like(p, resource)),
        };
        action_ok && resource_ok && self.conditions.iter().all(|c| c.holds(context))
    }

    /// Whether the statement names `action` (by a pattern that matches it), whatever the resource:
    /// what `beanswap permissions` lists as granted.
    pub fn names_action(&self, action: &str) -> bool {
        let action = action.to_ascii_lowercase();
        match &self.actions {
            Patterns::Only(p) => p.iter().any(|p| glob(&p.to_ascii_lowercase(), &action)),
            Patterns::AllBut(p) => !p.iter().any(|p| glob(&p.to_ascii_lowercase(), &action)),
        }
    }
}

/// One policy document, as a role carries it (inline or managed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where it came from (`SwapFunctionRole/swap`), for messages.
    pub name: String,
    pub statements: Vec<Statement>,
}

/// The outcome for one action on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No statement allows it.
    ImplicitDeny,
    /// A Deny statement covers it (its Sid, when it has one).
    ExplicitDeny(Option<String>),
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what} holds {i}, not a string"))
            })
            .collect(),
        other => Err(format!("{what} is {other}, not a string or a list")),
    }
}

impl Policy {
    /// Reads a policy document, refusing whatever the evaluator would not evaluate as IAM does.
    pub fn parse(name: &str, document: &Value, table: &Table) -> Result<Policy, IamError> {
        let fail = |problem: String| IamError::Policy {
            policy: name.to_string(),
            problem,
        };
        let doc = document
            .as_object()
            .ok_or_else(|| fail("the document is not an object".into()))?;
        for key in doc.keys() {
            if !["Version", "Id", "Statement"].contains(&key.as_str()) {
                return Err(fail(format!("policy element {key} is not understood")));
            }
        }
        if let Some(v) = doc.get("Version") {
            if v != "2012-10-17" {
                return Err(fail(format!(
                    "Version {v}: only 2012-10-17 is understood (policy variables differ in 2008-10-17)"
                )));
            }
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(s)) => s.clone(),
            Some(s @ Value::Object(_)) => vec![s.clone()],
            _ => return Err(fail("no Statement".into())),
        };
        let mut out = vec![];
        for (i, s) in statements.iter().enumerate() {
            let s = s
                .as_object()
                .ok_or_else(|| fail(format!("statement {i} is not an object")))?;
            let at = |problem: String| {
                let sid = s
                    .get("Sid")
                    .and_then(Value::as_str)
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                fail(format!("statement {i}{sid}: {problem}"))
            };
            for key in s.keys() {
                if ![
                    "Sid",
                    "Effect",
                    "Action",
                    "NotAction",
                    "Resource",
                    "NotResource",
                    "Condition",
                ]
                .contains(&key.as_str())
                {
                    return Err(at(format!(
                        "policy element {key} is not understood in an identity policy"
                    )));
                }
            }
            let effect = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                other => return Err(at(format!("Effect {other:?} is neither Allow nor Deny"))),
            };
            let pair = |yes: &str, no: &str| -> Result<Patterns, IamError> {
                match (s.get(yes), s.get(no)) {
                    (Some(v), None) => Ok(Patterns::Only(strings(v, yes).map_err(&at)?)),
                    (None, Some(v)) => Ok(Patterns::AllBut(strings(v, no).map_err(&at)?)),
                    _ => Err(at(format!("needs exactly one of {yes} and {no}"))),
                }
            };
            let actions = pair("Action", "NotAction")?;
            let resources = pair("Resource", "NotResource")?;
            let (Patterns::Only(r) | Patterns::AllBut(r)) = &resources;
            if let Some(v) = r.iter().find(|r| r.contains("${")) {
                return Err(at(format!("policy variable in {v} is not understood")));
            }
            let mut conditions = vec![];
            if let Some(c) = s.get("Condition") {
                let c = c
                    .as_object()
                    .ok_or_else(|| at("Condition is not an object".into()))?;
                for (op_name, keys) in c {
                    let (base, if_exists) = match op_name.strip_suffix("IfExists") {
                        Some(b) => (b, true),
                        None => (op_name.as_str(), false),
                    };
                    let operator = Operator::parse(base).ok_or_else(|| {
                        at(format!("condition operator {op_name} is not understood"))
                    })?;
                    let keys = keys
                        .as_object()
                        .ok_or_else(|| at(format!("{op_name} is not an object")))?;
                    for (key, values) in keys {
                        if !table.knows_condition_key(key) {
                            return Err(at(format!(
                                "condition key {key} is not understood (crates/iam/operations.json, condition_keys)"
                            )));
                        }
                        let values = match values {
                            Value::Bool(b) => vec![b.to_string()],
                            v => strings(v, key).map_err(&at)?,
                        };
                        if let Some(v) = values.iter().find(|v| v.contains("${")) {
                            return Err(at(format!("policy variable in {v} is not understood")));
                        }
                        conditions.push(Condition {
                            operator,
                            if_exists,
                            key: key.clone(),
                            values,
                        });
                    }
                }
            }
            out.push(Statement {
                sid: s.get("Sid").and_then(Value::as_str).map(str::to_string),
                effect,
                actions,
                resources,
                conditions,
            });
        }
        Ok(Policy {
            name: name.to_string(),
            statements: out,
        })
    }
}

/// IAM's decision over every policy of a principal: an explicit Deny anywhere wins, then an Allow
/// anywhere, else the implicit deny.
pub fn decide(
    policies: &[Policy],
    action: &str,
    resource: &str,
    context: &BTreeMap<String, String>,
) -> Decision {
    let covering = || {
        policies
            .iter()
            .flat_map(|p| &p.statements)
            .filter(|s| s.covers(action, resource, context))
    };
    if let Some(deny) = covering().find(|s| s.effect == Effect::Deny) {
        return Decision::ExplicitDeny(deny.sid.clone());
    }
    if covering().any(|s| s.effect == Effect::Allow) {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    }
}

/// `*` matches any run of characters, `?` any one; everything else matches itself.
pub fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// ARN matching: each of the six colon-separated parts matched on its own (the last one keeps its
/// colons), so a wildcard in the region cannot swallow the account.
pub fn arn_like(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    if p.len() != 6 || a.len() != 6 {
        return glob(pattern, arn);
    }
    p.iter().zip(&a).all(|(p, a)| glob(p, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(doc: Value) -> Result<Policy, IamError> {
        Policy::parse("test", &doc, &Table::load().unwrap())
    }

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ENV: &str = "arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/shop-2";

    #[test]
    fn allow_deny_and_wildcards() {
        let p = parse(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "elasticbeanstalk:Describe*", "Resource": "arn:aws:elasticbeanstalk:*:*:environment/shop/*"},
            {"Effect": "Allow", "NotAction": ["s3:*", "elasticbeanstalk:*"], "Resource": "*"},
            {"Sid": "NoTerminate", "Effect": "Deny", "Action": "elasticbeanstalk:TerminateEnvironment", "Resource": "*"},
            {"Effect": "Allow", "Action": "elasticbeanstalk:TerminateEnvironment", "NotResource": "arn:aws:elasticbeanstalk:*:*:environment/other/*"}
        ]}))
        .unwrap();
        let none = BTreeMap::new();
        let d = |a: &str, r: &str| decide(std::slice::from_ref(&p), a, r, &none);
        assert_eq!(
            d("elasticbeanstalk:describeenvironments", ENV),
            Decision::Allowed
        );
        assert_eq!(
            d(
                "elasticbeanstalk:DescribeEnvironments",
                &ENV.replace("shop/", "other/")
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            d("route53:GetChange", "arn:aws:route53:::change/C1"),
            Decision::Allowed
        );
        assert_eq!(
            d("s3:GetObject", "arn:aws:s3:::b/k"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            d("elasticbeanstalk:TerminateEnvironment", ENV),
            Decision::ExplicitDeny(Some("NoTerminate".into()))
        );
    }

    #[test]
    fn conditions_as_iam_evaluates_them() {
        let p = parse(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/beanswap/eb/*",
             "Condition": {"StringEquals": {"iam:PassedToService": ["elasticbeanstalk.amazonaws.com", "ec2.amazonaws.com"]}}},
            {"Effect": "Deny", "Action": "iam:PassRole", "Resource": "*",
             "Condition": {"StringNotLike": {"iam:PassedToService": "*.amazonaws.com"}}}
        ]}))
        .unwrap();
        let role = "arn:aws:iam::123456789012:role/beanswap/eb/beanswap-local-ServiceRole-LOCAL";
        let d =
            |c: &[(&str, &str)]| decide(std::slice::from_ref(&p), "iam:PassRole", role, &ctx(c));
        assert_eq!(
            d(&[("iam:PassedToService", "elasticbeanstalk.amazonaws.com")]),
            Decision::Allowed
        );
        assert_eq!(
            d(&[("iam:PassedToService", "lambda.amazonaws.com")]),
            Decision::ImplicitDeny
        );
        // Absent key: StringEquals is false, the negated StringNotLike true (so the Deny applies).
        assert_eq!(d(&[]), Decision::ExplicitDeny(None));
        assert_eq!(
            d(&[("iam:PassedToService", "evil.example")]),
            Decision::ExplicitDeny(None)
        );

        let null = parse(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "*",
             "Condition": {"Null": {"ec2:ResourceTag/beanswap:stack": "false"}}}
        ]}))
        .unwrap();
        let n = |c: &[(&str, &str)]| {
            decide(std::slice::from_ref(&null), "ec2:CreateTags", "x", &ctx(c))
        };
        assert_eq!(n(&[]), Decision::ImplicitDeny);
        assert_eq!(
            n(&[("ec2:ResourceTag/beanswap:stack", "s")]),
            Decision::Allowed
        );
    }

    #[test]
    fn what_is_not_understood_is_refused_by_name() {
        let refused = |doc: Value, needle: &str| {
            let e = parse(doc).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should name {needle}");
        };
        refused(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"}]}),
            "Principal",
        );
        refused(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}}]}),
            "ForAnyValue:StringEquals",
        );
        refused(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                "Condition": {"StringEquals": {"s3:prefix": "a"}}}]}),
            "s3:prefix",
        );
        refused(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::${aws:username}/*"}]}),
            "policy variable",
        );
        refused(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]}),
            "Maybe",
        );
        refused(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
            "Resource and NotResource",
        );
    }

    #[test]
    fn arn_parts_are_matched_one_by_one() {
        assert!(arn_like(
            "arn:aws:s3:::bucket/*",
            "arn:aws:s3:::bucket/a/b:c"
        ));
        assert!(!arn_like("arn:aws:s3:::bucket", "arn:aws:s3:::bucket/k"));
        assert!(arn_like(
            "arn:aws:rds:us-east-1:123456789012:snapshot:beanswap-*",
            "arn:aws:rds:us-east-1:123456789012:snapshot:beanswap-shop-1"
        ));
        assert!(!arn_like("arn:aws:*:us-east-1", "arn:aws:s3:us-east-1:1:x"));
        assert!(glob("a*b?c", "aXXbYc") && !glob("a*b?c", "abc"));
    }
}
