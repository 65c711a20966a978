//! HTTP checks against an environment: what the smoke test runs before approval, and what the swap runs
//! to prove the production URL serves the new version.
//!
//! - [`spec`]: the checks as users write them in UserParameters (serde), validated with errors naming
//!   the field.
//! - [`eval`]: pure parts: judging one response against a check, the per-check table, body excerpts.
//! - [`engine`]: the HTTP client (reqwest over rustls) running rounds of checks with bounded
//!   concurrency, a request timeout, a redirect policy and `curl --resolve`-style address overrides.

pub mod engine;
pub mod eval;
pub mod spec;

pub use engine::{Checker, Options};
pub use eval::{CheckResult, Observed, Round, Transport, TransportKind};
pub use spec::{parse_base_url, CheckSpec, Redirects, StatusSet, VersionCheck};

/// Why a set of checks cannot be run at all: always a configuration mistake, named by its field.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HttpCheckError {
    #[error("`{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

impl HttpCheckError {
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        HttpCheckError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field the error is about (for [`crate::ParamsError::Field`]), if any.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            HttpCheckError::Field { field, .. } => Some(field),
            HttpCheckError::Client(_) => None,
        }
    }
}

impl From<HttpCheckError> for crate::ParamsError {
    fn from(e: HttpCheckError) -> Self {
        match e {
            HttpCheckError::Field { field, reason } => crate::ParamsError::Field { field, reason },
            HttpCheckError::Client(reason) => crate::ParamsError::Invalid(reason),
        }
    }
}
