//! check-config as a library: the action, its UserParameters and the output variables it sets. The binary
//! (`main.rs`) runs it under Lambda; the pipeline template test (`crates/cli/tests/template.rs`) parses the
//! template's UserParameters for this action with [`Params`] and checks its `#{...}` references against
//! [`OUTPUT_VARIABLES`].

pub mod action;

pub use action::{CheckConfig, Params, OUTPUT_VARIABLES};
