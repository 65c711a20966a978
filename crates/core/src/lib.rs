//! beanswap-core: the CodePipeline job protocol and the deploy logic every beanswap action shares.
//!
//! No Lambda here (beanswap-lambda is every function's `main`) and no CLI: both call in.

pub mod alarms;
pub mod artifacts;
pub mod aws_error;
pub mod backup;
pub mod beanstalk;
pub mod bundle;
pub mod clock;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod health_figures;
pub mod http_check;
pub mod job;
pub mod outcome;
pub mod package;
pub mod params;
pub mod report;
pub mod retire;
pub mod route53;
pub mod runner;
pub mod s3;
pub mod smoke_test;
pub mod stage;
pub mod swap;
pub mod tail_logs;

pub use job::Job;
pub use outcome::{FailureKind, Outcome};
pub use params::{ParamsError, UserParameters};
pub use runner::{Action, ActionError};
