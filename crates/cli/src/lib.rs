//! The beanswap CLI's parts, as a library so tests drive them directly: the template evaluator, the
//! local cloud, Source/Build on one machine, the pipeline runner, the load probe and the report.

pub mod build;
pub mod local;
pub mod ops;
pub mod pipeline;
pub mod probe;
pub mod report;
pub mod run;
pub mod template;
