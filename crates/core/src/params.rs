//! Typed UserParameters.
//!
//! Each action declares its own config struct with `#[serde(deny_unknown_fields)]`; [`parse`] turns the
//! pipeline's JSON string into it, and a mistake comes back as a sentence naming the field, because the
//! person reading it is looking at a pipeline console, not at our source.

use serde::de::DeserializeOwned;

/// UserParameters that could not become the action's config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamsError {
    #[error("UserParameters is empty; this action needs a JSON object, for example {example}")]
    Missing { example: &'static str },
    #[error("UserParameters is not valid JSON ({reason}); expected a JSON object, for example {example}")]
    NotJson {
        reason: String,
        example: &'static str,
    },
    #[error("UserParameters is {found}; expected a JSON object, for example {example}")]
    NotObject {
        found: &'static str,
        example: &'static str,
    },
    #[error("UserParameters field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("UserParameters: {0}")]
    Invalid(String),
}

impl ParamsError {
    /// A mistake in one field, said as a sentence about that field (`field `x`: reason`).
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ParamsError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `hosted_zone_id` and `domain`, which go together: the production record they name, if any.
pub fn production_record(
    hosted_zone_id: &Option<String>,
    domain: &Option<String>,
) -> Result<Option<crate::route53::RecordName>, ParamsError> {
    match (hosted_zone_id, domain) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ParamsError::field(
            "domain",
            "is required with `hosted_zone_id`",
        )),
        (None, Some(_)) => Err(ParamsError::field(
            "hosted_zone_id",
            "is required with `domain`",
        )),
        (Some(z), Some(d)) if z.trim().is_empty() || d.trim().is_empty() => Err(
            ParamsError::field("domain", "and `hosted_zone_id` must not be empty"),
        ),
        (Some(z), Some(d)) => Ok(Some(crate::route53::RecordName {
            zone: z.trim().to_string(),
            name: d.trim().to_string(),
        })),
    }
}

/// `#[serde(default = "beanswap_core::params::yes")]`: a switch that is on unless turned off.
pub fn yes() -> bool {
    true
}

/// An Elastic Beanstalk application's name, as UserParameters give it: 1 to 100 characters (the
/// ApplicationName constraint in the Elastic Beanstalk API reference). Every action's parameters use
/// this one type, so the rule and its message are written once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ApplicationName(String);

impl TryFrom<String> for ApplicationName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let len = name.chars().count();
        if (1..=100).contains(&len) {
            Ok(ApplicationName(name))
        } else {
            Err(format!("must be 1 to 100 characters, got {len}"))
        }
    }
}

impl ApplicationName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ApplicationName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ApplicationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ApplicationName> for String {
    fn from(name: ApplicationName) -> String {
        name.0
    }
}

/// An action's config: how to show a user what good UserParameters look like.
pub trait UserParameters: DeserializeOwned {
    /// A short, valid example, quoted in error messages.
    const EXAMPLE: &'static str;

    /// Checks that serde cannot express (ranges, name rules). Runs after parsing.
    fn validate(&self) -> Result<(), ParamsError> {
        Ok(())
    }
}

/// Parses `raw` (absent or blank counts as `{}`, so actions whose fields all default need no parameters).
pub fn parse<T: UserParameters>(raw: Option<&str>) -> Result<T, ParamsError> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("{}");
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| ParamsError::NotJson {
        reason: e.to_string(),
        example: T::EXAMPLE,
    })?;
    if !value.is_object() {
        return Err(ParamsError::NotObject {
            found: json_kind(&value),
            example: T::EXAMPLE,
        });
    }
    let parsed: T = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.inner().to_string();
        match field_of(&path, &reason) {
            Some(field) => ParamsError::Field { field, reason },
            None if reason.starts_with("missing field") => ParamsError::Field {
                field: missing_name(&reason).unwrap_or_default(),
                reason,
            },
            None => ParamsError::Invalid(reason),
        }
    })?;
    parsed.validate()?;
    Ok(parsed)
}

/// serde_path_to_error reports "." for the top level, where an unknown field's name is only in the message.
fn field_of(path: &str, reason: &str) -> Option<String> {
    if path != "." {
        return Some(path.to_string());
    }
    if reason.starts_with("unknown field") {
        return between_backticks(reason);
    }
    None
}

fn missing_name(reason: &str) -> Option<String> {
    between_backticks(reason)
}

fn between_backticks(s: &str) -> Option<String> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(s[start..start + len].to_string())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        application: String,
        #[serde(default = "default_timeout")]
        timeout_seconds: u32,
        #[serde(default)]
        checks: Vec<Check>,
    }
    fn default_timeout() -> u32 {
        600
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Check {
        path: String,
        status: u16,
    }
    impl UserParameters for Example {
        const EXAMPLE: &'static str = r#"{"application":"shop"}"#;
        fn validate(&self) -> Result<(), ParamsError> {
            if self.timeout_seconds == 0 {
                return Err(ParamsError::Field {
                    field: "timeout_seconds".into(),
                    reason: "must be above 0".into(),
                });
            }
            Ok(())
        }
    }

    #[test]
    fn good_parameters_parse_with_defaults() {
        let p: Example = parse(Some(r#" {"application":"shop"} "#)).unwrap();
        assert_eq!(
            p,
            Example {
                application: "shop".into(),
                timeout_seconds: 600,
                checks: vec![]
            }
        );
    }

    #[test]
    fn bad_parameters_name_the_field_and_the_expectation() {
        let cases = [
            (None, "UserParameters field `application`: missing field `application`"),
            (Some("   "), "missing field `application`"),
            (Some("{"), "not valid JSON"),
            (Some("[1]"), "UserParameters is an array; expected a JSON object, for example {\"application\":\"shop\"}"),
            (Some(r#"{"application":"shop","timeout":5}"#), "field `timeout`: unknown field `timeout`, expected one of"),
            (Some(r#"{"application":7}"#), "field `application`: invalid type: integer `7`, expected a string"),
            (Some(r#"{"application":"a","timeout_seconds":-1}"#), "field `timeout_seconds`: invalid value"),
            (Some(r#"{"application":"a","checks":[{"path":"/","status":"ok"}]}"#), "field `checks[0].status`"),
            (Some(r#"{"application":"a","timeout_seconds":0}"#), "field `timeout_seconds`: must be above 0"),
        ];
        for (raw, expected) in cases {
            let err = parse::<Example>(raw).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "for {raw:?}: expected {expected:?} in {err:?}"
            );
        }
    }
}
