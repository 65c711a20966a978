//! What an action ends with, and the CodePipeline limits its report must respect.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Serialize};

/// CodePipeline's documented limits (botocore model, codepipeline 2015-07-09).
pub mod limits {
    pub const CONTINUATION_TOKEN: usize = 2048;
    pub const SUMMARY: usize = 2048;
    pub const FAILURE_MESSAGE: usize = 5000;
    pub const OUTPUT_VARIABLES_BYTES: usize = 122_880;
}

/// How CodePipeline should classify a failure; mirrors its `FailureType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The deployment itself went wrong (unhealthy environment, failed smoke test, ...).
    JobFailed,
    /// The pipeline is set up wrong (bad UserParameters, missing artifact); retrying will not help.
    ConfigurationError,
    /// AWS refused us an operation.
    PermissionError,
    /// AWS was unavailable; a retry may help.
    SystemUnavailable,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::JobFailed => "JobFailed",
            FailureKind::ConfigurationError => "ConfigurationError",
            FailureKind::PermissionError => "PermissionError",
            FailureKind::SystemUnavailable => "SystemUnavailable",
        }
    }
}

/// The end of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<S> {
    /// Done: later actions may read `variables` as `#{Namespace.Name}`.
    Succeeded {
        summary: String,
        variables: BTreeMap<String, String>,
    },
    /// Not done yet: CodePipeline invokes us again with `state` as the continuation token.
    InProgress {
        state: S,
        summary: String,
        percent: u8,
    },
    Failed {
        kind: FailureKind,
        message: String,
    },
}

impl<S> Outcome<S> {
    pub fn succeeded(summary: impl Into<String>) -> Self {
        Outcome::Succeeded {
            summary: summary.into(),
            variables: BTreeMap::new(),
        }
    }

    pub fn with_variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Outcome::Succeeded { variables, .. } = &mut self {
            variables.insert(name.into(), value.into());
        }
        self
    }

    pub fn failed(kind: FailureKind, message: impl Into<String>) -> Self {
        Outcome::Failed {
            kind,
            message: message.into(),
        }
    }
}

/// Cuts `text` to at most `max` characters, on a character boundary, marking the cut so a reader knows
/// there was more (the full text is in the function's log). Never fails: a report must always go out.
pub fn truncate(text: &str, max: usize) -> String {
    const MARK: &str = " …[truncated]";
    let text = if text.trim().is_empty() {
        "(no details)"
    } else {
        text
    };
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mark_len = MARK.chars().count();
    if max <= mark_len {
        return text.chars().take(max).collect();
    }
    let mut out: String = text.chars().take(max - mark_len).collect();
    out.push_str(MARK);
    out
}

/// Why a continuation state could not be carried to the next invocation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("the continuation state is {len} characters; CodePipeline carries at most {max}")]
    TooLong { len: usize, max: usize },
    #[error("the continuation state could not be written: {0}")]
    Encode(String),
    #[error(
        "the continuation token `{token}` was written by another version of beanswap ({reason})"
    )]
    Decode { token: String, reason: String },
}

/// The version prefix on every continuation token. Bump it when an action's state changes shape, so a
/// job that spans a deploy of new functions fails clearly instead of misreading its state.
pub const STATE_VERSION: &str = "v1";

/// Writes state as `v1:<compact json>`, refusing anything over the token limit.
pub fn encode_state<S: Serialize>(state: &S) -> Result<String, StateError> {
    let json = serde_json::to_string(state).map_err(|e| StateError::Encode(e.to_string()))?;
    let token = format!("{STATE_VERSION}:{json}");
    let len = token.chars().count();
    if len > limits::CONTINUATION_TOKEN {
        return Err(StateError::TooLong {
            len,
            max: limits::CONTINUATION_TOKEN,
        });
    }
    Ok(token)
}

/// Reads a token written by [`encode_state`].
pub fn decode_state<S: DeserializeOwned>(token: &str) -> Result<S, StateError> {
    let shown = truncate(token, 80);
    let json = token
        .strip_prefix(STATE_VERSION)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(|| StateError::Decode {
            token: shown.clone(),
            reason: format!("expected prefix `{STATE_VERSION}:`"),
        })?;
    serde_json::from_str(json).map_err(|e| StateError::Decode {
        token: shown,
        reason: e.to_string(),
    })
}

/// Checks output variable names and total size before they are sent, so a mistake is our message rather
/// than a ValidationException the pipeline console shows without context.
pub fn check_variables(variables: &BTreeMap<String, String>) -> Result<(), String> {
    let mut total = 0;
    for (name, value) in variables {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@-_".contains(c))
        {
            return Err(format!(
                "output variable name `{name}` may only use letters, digits, @, - and _"
            ));
        }
        total += name.len() + value.len();
    }
    if total > limits::OUTPUT_VARIABLES_BYTES {
        return Err(format!(
            "output variables total {total} bytes; CodePipeline allows {}",
            limits::OUTPUT_VARIABLES_BYTES
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn truncate_keeps_short_text_and_cuts_long_text_on_char_boundaries() {
        assert_eq!(truncate("ok", 10), "ok");
        assert_eq!(truncate("", 100), "(no details)");
        let long = "é".repeat(6000);
        let cut = truncate(&long, limits::FAILURE_MESSAGE);
        assert_eq!(cut.chars().count(), limits::FAILURE_MESSAGE);
        assert!(cut.ends_with("…[truncated]"));
        assert_eq!(truncate("abcdef", 3).chars().count(), 3);
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Waiting {
        env: String,
        since: u64,
    }

    #[test]
    fn state_round_trips_compactly() {
        let s = Waiting {
            env: "shop-blue-42".into(),
            since: 1_700_000_000,
        };
        let token = encode_state(&s).unwrap();
        assert_eq!(token, r#"v1:{"env":"shop-blue-42","since":1700000000}"#);
        assert_eq!(decode_state::<Waiting>(&token).unwrap(), s);
    }

    #[test]
    fn state_over_the_limit_is_refused_with_its_length() {
        let s = Waiting {
            env: "x".repeat(3000),
            since: 0,
        };
        let err = encode_state(&s).unwrap_err();
        assert!(
            matches!(err, StateError::TooLong { max: 2048, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("at most 2048"));
    }

    #[test]
    fn foreign_tokens_are_refused_clearly() {
        let err = decode_state::<Waiting>("v0:{}").unwrap_err().to_string();
        assert!(err.contains("expected prefix `v1:`"), "{err}");
        let err = decode_state::<Waiting>(r#"v1:{"env":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("another version of beanswap"), "{err}");
    }

    #[test]
    fn variable_names_and_sizes_are_checked() {
        let mut ok = BTreeMap::new();
        ok.insert("EnvironmentName".to_string(), "shop-blue".to_string());
        assert!(check_variables(&ok).is_ok());
        let mut bad = BTreeMap::new();
        bad.insert("Env Name".to_string(), "x".to_string());
        assert!(check_variables(&bad).unwrap_err().contains("`Env Name`"));
        let mut big = BTreeMap::new();
        big.insert("Big".to_string(), "x".repeat(130_000));
        assert!(check_variables(&big).unwrap_err().contains("122880"));
    }
}
