//! Who calls AWS in a local run, as the stack would set it up: each Lambda function runs as the role its
//! `Role` property names, with that role's inline policies and the template's managed policies it
//! attaches, evaluated with the run's parameters; CodePipeline hands the functions artifact credentials
//! of its own role. local-aws and the moto proxy hold every call to these ([`beanswap_iam`]).

use std::collections::BTreeMap;

use beanswap_iam::identity::{role_key, IdentitiesSpec, RoleSpec, ADMIN_KEY};
use serde_json::Value;

use super::{invalid, kebab, text, Stack, TemplateError, ACCOUNT};

/// The identities of one run.
#[derive(Debug, Clone, Default)]
pub struct RunIdentities {
    /// What local-aws and the proxy are given.
    pub spec: IdentitiesSpec,
    /// Function binary (`swap`) -> the access key its process signs with. A function the stack does
    /// not create (reused by ARN) has no role here, and no key that names one.
    pub function_keys: BTreeMap<String, String>,
    /// Function binary -> its role's logical id.
    pub function_roles: BTreeMap<String, String>,
    /// The key of the artifact credentials CodePipeline gives a job (its own role's).
    pub artifact_key: Option<String>,
}

/// How a managed policy's name starts among a role's policies (`managed:BeanstalkOperatorPolicy`), so a
/// reader can tell it from the role's inline ones.
pub const MANAGED: &str = "managed:";

/// The key a function process gets when the stack gives it no role: it names none, so every call is
/// refused, as a function without a role could call nothing.
pub const NO_ROLE_KEY: &str = "beanswap-role-none";

impl Stack {
    /// Every role that calls AWS in a run, with its policies as this stack resolves them.
    pub fn identities(&self) -> Result<RunIdentities, TemplateError> {
        let roles: BTreeMap<String, Value> =
            self.resources_of("AWS::IAM::Role")?.into_iter().collect();
        let managed: Vec<(String, Value)> = self.resources_of("AWS::IAM::ManagedPolicy")?;
        let role_arn = |logical: &str| -> String {
            let path = self.template["Resources"][logical]["Properties"]["Path"]
                .as_str()
                .unwrap_or("/");
            format!(
                "arn:aws:iam::{ACCOUNT}:role{path}{}",
                self.physical_id(logical)
            )
        };
        let by_arn: BTreeMap<String, String> =
            roles.keys().map(|l| (role_arn(l), l.clone())).collect();
        let spec_of = |logical: &str| -> Result<RoleSpec, TemplateError> {
            let props = &roles[logical];
            let mut policies = vec![];
            for p in props["Policies"].as_array().cloned().unwrap_or_default() {
                policies.push((text(&p["PolicyName"]), p["PolicyDocument"].clone()));
            }
            for arn in props["ManagedPolicyArns"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let arn = text(&arn);
                let found = managed.iter().find(|(l, _)| {
                    let physical = self.physical_id(l);
                    arn == physical || arn.ends_with(&format!("/{physical}"))
                });
                match found {
                    Some((l, props)) => {
                        policies.push((format!("{MANAGED}{l}"), props["PolicyDocument"].clone()))
                    }
                    // Its statements are not in the template: the evaluator cannot know them.
                    None => {
                        return Err(invalid(format!(
                            "{logical} attaches managed policy {arn}, which is not in the template: the local cloud cannot evaluate it"
                        )))
                    }
                }
            }
            Ok(RoleSpec {
                key: role_key(logical),
                logical_id: logical.to_string(),
                arn: role_arn(logical),
                policies,
            })
        };
        let mut out = RunIdentities {
            spec: IdentitiesSpec {
                admin_keys: vec![ADMIN_KEY.to_string()],
                ..IdentitiesSpec::default()
            },
            ..RunIdentities::default()
        };
        for (logical, props) in self.resources_of("AWS::Lambda::Function")? {
            let binary = kebab(logical.trim_end_matches("Function"));
            let role = text(&props["Role"]);
            let Some(role_logical) = by_arn.get(&role) else {
                return Err(invalid(format!(
                    "{logical}'s Role {role} is not a role of this template"
                )));
            };
            out.spec.roles.push(spec_of(role_logical)?);
            out.function_keys
                .insert(binary.clone(), role_key(role_logical));
            out.function_roles.insert(binary, role_logical.clone());
        }
        // CodePipeline's artifact credentials are its own role's (scoped by AWS to the artifacts).
        if let Some((_, pipeline)) = self
            .resources_of("AWS::CodePipeline::Pipeline")?
            .into_iter()
            .next()
        {
            if let Some(role) = by_arn.get(&text(&pipeline["RoleArn"])) {
                out.spec.roles.push(spec_of(role)?);
                out.artifact_key = Some(role_key(role));
            }
        }
        for (logical, props) in self.resources_of("AWS::IAM::InstanceProfile")? {
            let path = self.template["Resources"][&logical]["Properties"]["Path"]
                .as_str()
                .unwrap_or("/");
            let profile = format!(
                "arn:aws:iam::{ACCOUNT}:instance-profile{path}{}",
                self.physical_id(&logical)
            );
            let role = props["Roles"]
                .as_array()
                .and_then(|r| r.first())
                .map(text)
                .and_then(|name| roles.keys().find(|l| self.physical_id(l) == name).cloned());
            if let Some(role) = role {
                out.spec.instance_profiles.insert(profile, role_arn(&role));
            }
        }
        out.spec
            .roles
            .sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
        out.spec.roles.dedup_by(|a, b| a.logical_id == b.logical_id);
        Ok(out)
    }
}
