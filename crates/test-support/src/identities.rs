//! Who calls AWS in a test bed, as in `beanswap run`: each function binary signs with an access key that
//! names its own role from pipeline-template.json, whose policies local-aws and the proxy in front of
//! moto enforce; the bed's own setup (buckets, bundles, versions, environments made as fixtures) signs as
//! the administrator ([`ADMIN_KEY`]).
//!
//! The roles come from tests/fixtures/bed-identities.json: the template resolved by beanswap-cli's
//! evaluator with the bed's parameters. test-support cannot call that evaluator (beanswap-cli's tests
//! depend on test-support), so crates/cli/tests/permissions.rs (`the_test_beds_roles_are_the_templates`)
//! keeps the file equal to what the template resolves to now.

use std::collections::BTreeMap;

pub use beanswap_iam::identity::{IdentitiesSpec, ADMIN_KEY};
use beanswap_iam::Identities;
use serde_json::Value;

/// The key of a process the stack gives no role: it names none, so every call it makes is refused.
pub const NO_ROLE_KEY: &str = "beanswap-role-none";

/// The roles of the bed, as the template resolves them.
#[derive(Debug, Clone)]
pub struct BedIdentities {
    /// What local-aws and the proxy enforce.
    pub spec: IdentitiesSpec,
    /// Function binary (`swap`) -> the access key its process signs with.
    pub function_keys: BTreeMap<String, String>,
    /// The key of the job's artifact credentials (CodePipeline's role).
    pub artifact_key: Option<String>,
}

impl BedIdentities {
    /// tests/fixtures/bed-identities.json (panics, failing the test, when it cannot be read).
    pub fn load() -> BedIdentities {
        let path = crate::workspace_root().join("tests/fixtures/bed-identities.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        BedIdentities {
            spec: serde_json::from_value(v["spec"].clone())
                .unwrap_or_else(|e| panic!("{}: spec: {e}", path.display())),
            function_keys: serde_json::from_value(v["function_keys"].clone())
                .unwrap_or_else(|e| panic!("{}: function_keys: {e}", path.display())),
            artifact_key: v["artifact_key"].as_str().map(str::to_string),
        }
    }

    /// The access key of `binary`'s process (`NO_ROLE_KEY` for one the template gives no role).
    pub fn key_of(&self, binary: &str) -> String {
        self.function_keys
            .get(binary)
            .cloned()
            .unwrap_or_else(|| NO_ROLE_KEY.to_string())
    }

    /// The logical id of `binary`'s role.
    pub fn role_of(&self, binary: &str) -> Option<&str> {
        let key = self.function_keys.get(binary)?;
        self.spec
            .roles
            .iter()
            .find(|r| &r.key == key)
            .map(|r| r.logical_id.as_str())
    }

    /// The spec with `action` taken out of every Allow statement of `role`'s policies (a statement
    /// left with no action is dropped): what a role lacking it would be, for a test that shows its
    /// refusal.
    pub fn without(&self, role: &str, action: &str) -> IdentitiesSpec {
        let mut spec = self.spec.clone();
        for r in spec.roles.iter_mut().filter(|r| r.logical_id == role) {
            for (_, document) in r.policies.iter_mut() {
                let Some(statements) = document["Statement"].as_array_mut() else {
                    continue;
                };
                for s in statements.iter_mut() {
                    let kept: Vec<Value> = match &s["Action"] {
                        Value::String(a) if a == action => vec![],
                        Value::Array(list) => list
                            .iter()
                            .filter(|a| a.as_str() != Some(action))
                            .cloned()
                            .collect(),
                        _ => continue,
                    };
                    s["Action"] = Value::Array(kept);
                }
                statements
                    .retain(|s| !matches!(&s["Action"], Value::Array(list) if list.is_empty()));
            }
        }
        spec
    }
}

/// The spec parsed as the services hold it (panics on a policy the evaluator does not understand).
pub fn parse(spec: &IdentitiesSpec) -> Identities {
    Identities::from_spec(spec).unwrap_or_else(|e| panic!("the bed's identities: {e}"))
}
