//! Who is calling, and whether they may: the access key id of a request's SigV4 signature names a role
//! (every function's process gets its own) or the local run's administrator (the runner's own setup:
//! the stand-ins for Source and Build, creating buckets and zones). A key that names neither is refused:
//! a function with no role gets nothing.
//!
//! The local run sends the roles as [`IdentitiesSpec`] (policies as the template resolves them); the
//! services parse them here once, so a policy the evaluator does not understand fails the setup, not a
//! call in the middle of a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::{decide, Decision, Policy};
use crate::table::Table;
use crate::{IamError, ACCOUNT};

/// The access key id that names role `logical_id` (`beanswap-role-SwapFunctionRole`). No `/`: SigV4's
/// credential scope is split on it.
pub fn role_key(logical_id: &str) -> String {
    format!("beanswap-role-{logical_id}")
}

/// The access key id of the local run's administrator: the runner's own setup calls, never a function.
pub const ADMIN_KEY: &str = "beanswap-admin";

/// One role as the local run resolved it from the template.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleSpec {
    /// The access key id its function's process signs with.
    pub key: String,
    /// Its logical id in the template (`SwapFunctionRole`).
    pub logical_id: String,
    /// Its ARN, as policies and messages name it.
    pub arn: String,
    /// Its policies (inline and managed), each `(name, document)`.
    pub policies: Vec<(String, Value)>,
}

/// Every identity of a run, as sent to local-aws (`PUT /_local/iam`) and the moto proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdentitiesSpec {
    pub admin_keys: Vec<String>,
    pub roles: Vec<RoleSpec>,
    /// Instance profile ARN -> the ARN of the role it holds (what iam:PassRole is checked against when
    /// an environment is given the profile).
    #[serde(default)]
    pub instance_profiles: BTreeMap<String, String>,
}

/// A role with its policies parsed.
#[derive(Debug, Clone)]
pub struct RoleIdentity {
    pub logical_id: String,
    pub arn: String,
    pub policies: Vec<Policy>,
}

impl RoleIdentity {
    /// How AWS names a role's session in an access-denied message.
    pub fn session_arn(&self) -> String {
        let name = self.arn.rsplit('/').next().unwrap_or(&self.logical_id);
        format!(
            "arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{}",
            self.logical_id
        )
    }
}

#[derive(Debug, Clone)]
pub enum Principal {
    Admin,
    Role(RoleIdentity),
}

/// One IAM action on one resource, with the request's condition context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub action: String,
    pub resource: String,
    pub context: BTreeMap<String, String>,
}

impl Check {
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Check {
        Check {
            action: action.into(),
            resource: resource.into(),
            context: BTreeMap::new(),
        }
    }
}

/// Why a request was refused, in AWS's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("User: {principal} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action")]
    NotAllowed {
        principal: String,
        action: String,
        resource: String,
    },
    #[error("User: {principal} is not authorized to perform: {action} on resource: {resource} with an explicit deny in an identity-based policy")]
    Denied {
        principal: String,
        action: String,
        resource: String,
    },
    #[error("User: {key} is not authorized to perform: {action} on resource: {resource} because the access key names no role of this stack (a function with no role may call nothing)")]
    NoRole {
        key: String,
        action: String,
        resource: String,
    },
}

impl Refusal {
    /// The IAM action refused.
    pub fn action(&self) -> &str {
        match self {
            Refusal::NotAllowed { action, .. }
            | Refusal::Denied { action, .. }
            | Refusal::NoRole { action, .. } => action,
        }
    }
}

/// The identities a local cloud enforces.
#[derive(Debug, Clone)]
pub struct Identities {
    keys: BTreeMap<String, Principal>,
    instance_profiles: BTreeMap<String, String>,
    table: Table,
}

impl Identities {
    /// Parses every policy of `spec`; the first thing the evaluator does not understand is the error.
    pub fn from_spec(spec: &IdentitiesSpec) -> Result<Identities, IamError> {
        let table = Table::load()?;
        let mut keys = BTreeMap::new();
        for k in &spec.admin_keys {
            keys.insert(k.clone(), Principal::Admin);
        }
        for r in &spec.roles {
            let policies = r
                .policies
                .iter()
                .map(|(name, doc)| Policy::parse(&format!("{}/{name}", r.logical_id), doc, &table))
                .collect::<Result<Vec<_>, _>>()?;
            keys.insert(
                r.key.clone(),
                Principal::Role(RoleIdentity {
                    logical_id: r.logical_id.clone(),
                    arn: r.arn.clone(),
                    policies,
                }),
            );
        }
        Ok(Identities {
            keys,
            instance_profiles: spec.instance_profiles.clone(),
            table,
        })
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The role an instance profile holds, when the run registered it.
    pub fn instance_profile_role(&self, profile: &str) -> Option<&str> {
        self.instance_profiles.get(profile).map(String::as_str)
    }

    pub fn principal(&self, key: &str) -> Option<&Principal> {
        self.keys.get(key)
    }

    /// Whether `key` may perform every check; the first refused one is the answer.
    pub fn authorize(&self, key: Option<&str>, checks: &[Check]) -> Result<(), Refusal> {
        let principal = key.and_then(|k| self.keys.get(k));
        for c in checks {
            let role = match principal {
                Some(Principal::Admin) => continue,
                Some(Principal::Role(role)) => role,
                None => {
                    return Err(Refusal::NoRole {
                        key: key.unwrap_or("(unsigned request)").to_string(),
                        action: c.action.clone(),
                        resource: c.resource.clone(),
                    })
                }
            };
            match decide(&role.policies, &c.action, &c.resource, &c.context) {
                Decision::Allowed => {}
                Decision::ImplicitDeny => {
                    return Err(Refusal::NotAllowed {
                        principal: role.session_arn(),
                        action: c.action.clone(),
                        resource: c.resource.clone(),
                    })
                }
                Decision::ExplicitDeny(_) => {
                    return Err(Refusal::Denied {
                        principal: role.session_arn(),
                        action: c.action.clone(),
                        resource: c.resource.clone(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// The access key id of a SigV4-signed request: `Authorization: AWS4-HMAC-SHA256 Credential=<AKID>/...`,
/// or a presigned URL's `X-Amz-Credential`.
pub fn access_key(authorization: Option<&str>, query: &str) -> Option<String> {
    if let Some(auth) = authorization {
        let rest = auth.split("Credential=").nth(1)?;
        return rest.split('/').next().map(str::to_string);
    }
    query
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Credential="))
        .and_then(|c| c.split("%2F").next().or_else(|| c.split('/').next()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> IdentitiesSpec {
        IdentitiesSpec {
            admin_keys: vec![ADMIN_KEY.into()],
            roles: vec![RoleSpec {
                key: role_key("SwapFunctionRole"),
                logical_id: "SwapFunctionRole".into(),
                arn: "arn:aws:iam::123456789012:role/beanswap-local-SwapFunctionRole-LOCAL".into(),
                policies: vec![(
                    "swap".into(),
                    json!({"Version": "2012-10-17", "Statement": [
                        {"Effect": "Allow", "Action": "elasticbeanstalk:SwapEnvironmentCNAMEs", "Resource": "*"}
                    ]}),
                )],
            }],
            instance_profiles: BTreeMap::new(),
        }
    }

    #[test]
    fn each_key_gets_its_roles_rights_and_no_more() {
        let ids = Identities::from_spec(&spec()).unwrap();
        let swap = Check::new("elasticbeanstalk:SwapEnvironmentCNAMEs", "arn:x");
        let tag = Check::new(
            "elasticbeanstalk:AddTags",
            "arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/a",
        );
        let key = role_key("SwapFunctionRole");
        assert!(ids
            .authorize(Some(&key), std::slice::from_ref(&swap))
            .is_ok());
        let refused = ids
            .authorize(Some(&key), &[swap.clone(), tag.clone()])
            .unwrap_err();
        assert_eq!(refused.action(), "elasticbeanstalk:AddTags");
        assert_eq!(
            refused.to_string(),
            "User: arn:aws:sts::123456789012:assumed-role/beanswap-local-SwapFunctionRole-LOCAL/SwapFunctionRole is not authorized to perform: elasticbeanstalk:AddTags on resource: arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/a because no identity-based policy allows the elasticbeanstalk:AddTags action"
        );
        assert!(ids
            .authorize(Some(ADMIN_KEY), std::slice::from_ref(&tag))
            .is_ok());
        assert!(matches!(
            ids.authorize(Some("testing"), std::slice::from_ref(&tag)),
            Err(Refusal::NoRole { .. })
        ));
        assert!(matches!(
            ids.authorize(None, &[tag]),
            Err(Refusal::NoRole { .. })
        ));
    }

    #[test]
    fn a_policy_not_understood_fails_the_setup() {
        let mut s = spec();
        s.roles[0].policies[0].1["Statement"][0]["Condition"] =
            json!({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}});
        let e = Identities::from_spec(&s).unwrap_err().to_string();
        assert!(
            e.contains("DateGreaterThan") && e.contains("SwapFunctionRole/swap"),
            "{e}"
        );
    }

    #[test]
    fn reads_the_key_from_the_signature() {
        assert_eq!(
            access_key(Some("AWS4-HMAC-SHA256 Credential=beanswap-role-X/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab"), ""),
            Some("beanswap-role-X".into())
        );
        assert_eq!(
            access_key(None, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=beanswap-admin%2F20260101%2Fus-east-1"),
            Some("beanswap-admin".into())
        );
        assert_eq!(access_key(None, ""), None);
    }
}
