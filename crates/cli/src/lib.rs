//! The beanswap CLI's parts, as a library so tests drive them directly: the template evaluator, the
//! local cloud, Source/Build on one machine, the pipeline runner, the load probe and the report.
//!
//! The local run (`build`, `local`, `pipeline`, `probe`, `report`, `run`) needs the `local` feature (on by
//! default), which brings in local-aws; `ops` and `template` do not.

#[cfg(feature = "local")]
pub mod build;
pub mod conditions;
#[cfg(feature = "local")]
pub mod database;
#[cfg(feature = "local")]
pub mod local;
pub mod ops;
pub mod permissions;
#[cfg(feature = "local")]
pub mod pipeline;
#[cfg(feature = "local")]
pub mod probe;
#[cfg(feature = "local")]
pub mod report;
#[cfg(feature = "local")]
pub mod run;
pub mod template;
