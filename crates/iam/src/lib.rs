//! Permissions as AWS checks them, for the local cloud to refuse what AWS would refuse.
//!
//! - [`table`]: what each AWS operation the functions call needs (`operations.json`, with sources);
//! - [`policy`]: identity policies parsed into a typed model; an element, operator or condition key this
//!   crate does not understand is an error, never ignored (ignoring one could allow by accident);
//! - [`identity`]: who calls: an access key id that names a role (each function's), or the local run's
//!   administrator (its own setup calls), and the one authorisation decision for a request.

pub mod functions;
pub mod identity;
pub mod policy;
pub mod table;

pub use functions::Functions;
pub use identity::{Check, Identities, Principal, Refusal, RoleIdentity};
pub use policy::{Decision, Policy};
pub use table::{ResourceKind, Service, Table, When};

/// Why a table or a policy could not be used. Every variant names what was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    #[error("operations.json is not a valid table: {0}")]
    Table(String),
    #[error("{service} {operation} has no row in crates/iam/operations.json: the local cloud cannot say what AWS checks for it")]
    UnknownOperation { service: String, operation: String },
    #[error("policy {policy}: {problem}")]
    Policy { policy: String, problem: String },
}

/// The account and region the local cloud pretends to be (CLI's stack, local-aws's ARNs).
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
