//! check-config as a library: the action, its UserParameters and the output variables it sets. The binary
//! (`main.rs`) runs it under Lambda; the pipeline template test (`crates/cli/tests/template.rs`) parses the
//! template's UserParameters for this action with [`Params`] and checks its `#{...}` references against
//! [`OUTPUT_VARIABLES`].

pub mod action;

pub use action::{CheckConfig, Params, OUTPUT_VARIABLES};

#[cfg(test)]
mod tests {
    use super::*;
    use beanswap_core::params::parse;

    /// Test builds have the `test-panic` feature (the package's dev-dependency on itself); a build without
    /// it, as deployed, refuses the field like any other it does not know.
    #[test]
    fn panic_is_a_field_of_test_builds_only() {
        let parsed = parse::<Params>(Some(r#"{"application":"shop","panic":true}"#));
        #[cfg(feature = "test-panic")]
        assert!(parsed.map(|p| p.panic).unwrap_or(false));
        #[cfg(not(feature = "test-panic"))]
        assert!(parsed
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
            .starts_with("UserParameters field `panic`: unknown field `panic`"));
    }
}
