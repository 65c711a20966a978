//! Saved configurations (CreateConfigurationTemplate, DescribeConfigurationSettings,
//! DeleteConfigurationTemplate) and resource tags (UpdateTagsForResource, ListTagsForResource).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{
    application_arn, environment_arn, option_settings, platforms, tags, template_arn, version_arn,
    OptionKey, Store, Template,
};
use crate::beanstalk::{Effect, Request};
use crate::query::{Params, QueryError, Xml};

pub fn create_template(store: &mut Store, p: &Params) -> Result<String, QueryError> {
    let application = p.required_string("ApplicationName", 1, 100)?;
    let name = p.required_string("TemplateName", 1, 100)?;
    let description = p.string("Description", 0, 200)?;
    if !store.applications.contains_key(application) {
        return Err(QueryError::invalid(format!(
            "No Application named '{application}' found."
        )));
    }
    let key = (application.to_string(), name.to_string());
    if store.templates.contains_key(&key) {
        return Err(QueryError::invalid(format!(
            "Configuration Template {name} already exists."
        )));
    }
    if store.templates.len() >= store.options.max_configuration_templates {
        return Err(QueryError::new(
            400,
            "TooManyConfigurationTemplatesException",
            format!(
                "You cannot have more than {} Configuration Templates.",
                store.options.max_configuration_templates
            ),
        ));
    }
    if p.get("SolutionStackName").is_some() && p.get("PlatformArn").is_some() {
        return Err(QueryError::new(
            400,
            "InvalidParameterCombination",
            "You can specify only one of SolutionStackName and PlatformArn.",
        ));
    }
    // The base: an environment's live configuration (every option it has, defaults included), another
    // template, or a bare platform with its defaults.
    let mut solution_stack = p.get("SolutionStackName").map(str::to_string);
    let mut platform_arn = p.get("PlatformArn").map(str::to_string);
    let mut settings: BTreeMap<OptionKey, String> = BTreeMap::new();
    if solution_stack.is_some() || platform_arn.is_some() {
        let platform =
            platforms::resolve(store, solution_stack.as_deref(), platform_arn.as_deref())?;
        solution_stack = Some(platform.stack());
        platform_arn = Some(platform.arn());
        if p.get("EnvironmentId").is_none() && p.get("SourceConfiguration.TemplateName").is_none() {
            settings.extend(platforms::default_settings(&platform));
        }
    }
    if let Some(env_id) = p.get("EnvironmentId") {
        let env = store.find_env(Some(env_id), None)?;
        if env.application != application {
            return Err(QueryError::invalid(format!(
                "Environment {} does not belong to application {application}.",
                env.name
            )));
        }
        solution_stack = solution_stack.or_else(|| env.solution_stack.clone());
        platform_arn = platform_arn.or_else(|| env.platform_arn.clone());
        settings.extend(env.settings.clone());
    } else if let Some(source) = p.get("SourceConfiguration.TemplateName") {
        let source_app = p
            .get("SourceConfiguration.ApplicationName")
            .unwrap_or(application);
        let base = store
            .templates
            .get(&(source_app.to_string(), source.to_string()))
            .ok_or_else(|| {
                QueryError::invalid(format!(
                    "No Configuration Template named '{source_app}/{source}' found."
                ))
            })?;
        solution_stack = solution_stack.or_else(|| base.solution_stack.clone());
        platform_arn = platform_arn.or_else(|| base.platform_arn.clone());
        settings.extend(base.settings.clone());
    } else if solution_stack.is_none() && platform_arn.is_none() {
        return Err(QueryError::invalid(
            "You must specify one of SolutionStackName, PlatformArn, SourceConfiguration or EnvironmentId.",
        ));
    }
    settings.extend(option_settings(p, "OptionSettings")?);
    let now = SystemTime::now();
    let template = Template {
        application: application.to_string(),
        name: name.to_string(),
        description: description.map(str::to_string),
        solution_stack,
        platform_arn,
        settings,
        created: now,
        updated: now,
    };
    store.templates.insert(key, template.clone());
    let tags = tags(p, "Tags");
    if !tags.is_empty() {
        store
            .tags
            .entry(template_arn(application, name))
            .or_default()
            .extend(tags);
    }
    let mut x = Xml::new();
    settings_xml(
        &mut x,
        &SettingsView {
            application,
            template: Some(name),
            environment: None,
            description: template.description.as_deref(),
            solution_stack: template.solution_stack.as_deref(),
            platform_arn: template.platform_arn.as_deref(),
            created: now,
            updated: now,
            settings: &template.settings,
        },
    );
    Ok(x.finish())
}

struct SettingsView<'a> {
    application: &'a str,
    template: Option<&'a str>,
    environment: Option<&'a str>,
    description: Option<&'a str>,
    solution_stack: Option<&'a str>,
    platform_arn: Option<&'a str>,
    created: SystemTime,
    updated: SystemTime,
    settings: &'a BTreeMap<OptionKey, String>,
}

fn settings_xml(x: &mut Xml, v: &SettingsView) {
    x.opt("SolutionStackName", v.solution_stack)
        .opt("PlatformArn", v.platform_arn)
        .text("ApplicationName", v.application)
        .opt("TemplateName", v.template)
        .opt("Description", v.description)
        .opt("EnvironmentName", v.environment);
    if v.environment.is_some() {
        x.text("DeploymentStatus", "deployed");
    }
    x.time("DateCreated", v.created)
        .time("DateUpdated", v.updated)
        .elem("OptionSettings", |x| {
            for ((namespace, option), value) in v.settings {
                x.elem("member", |x| {
                    x.text("Namespace", namespace)
                        .text("OptionName", option)
                        .text("Value", value);
                });
            }
        });
}

pub fn describe_settings(store: &Store, p: &Params) -> Result<String, QueryError> {
    let application = p.required_string("ApplicationName", 1, 100)?;
    let template = p.string("TemplateName", 1, 100)?;
    let environment = p.string("EnvironmentName", 4, 40)?;
    let mut x = Xml::new();
    let view = match (template, environment) {
        (Some(name), _) => {
            let t = store
                .templates
                .get(&(application.to_string(), name.to_string()))
                .ok_or_else(|| {
                    QueryError::invalid(format!(
                        "No Configuration Template named '{application}/{name}' found."
                    ))
                })?;
            SettingsView {
                application,
                template: Some(&t.name),
                environment: None,
                description: t.description.as_deref(),
                solution_stack: t.solution_stack.as_deref(),
                platform_arn: t.platform_arn.as_deref(),
                created: t.created,
                updated: t.updated,
                settings: &t.settings,
            }
        }
        (None, Some(name)) => {
            let e = store.find_env(None, Some(name))?;
            if e.application != application {
                return Err(QueryError::invalid(format!(
                    "No Environment found for EnvironmentName = '{name}'."
                )));
            }
            SettingsView {
                application,
                template: None,
                environment: Some(&e.name),
                description: e.description.as_deref(),
                solution_stack: e.solution_stack.as_deref(),
                platform_arn: e.platform_arn.as_deref(),
                created: e.created,
                updated: e.updated,
                settings: &e.settings,
            }
        }
        (None, None) => {
            return Err(QueryError::invalid(
                "You must specify either TemplateName or EnvironmentName.",
            ))
        }
    };
    x.elem("ConfigurationSettings", |x| {
        x.elem("member", |x| settings_xml(x, &view));
    });
    Ok(x.finish())
}

pub fn delete_template(store: &mut Store, p: &Params) -> Result<(), QueryError> {
    let application = p.required_string("ApplicationName", 1, 100)?;
    let name = p.required_string("TemplateName", 1, 100)?;
    let launching = store.environments.values().any(|e| {
        e.application == application
            && e.template_name.as_deref() == Some(name)
            && e.status == "Launching"
    });
    if launching {
        return Err(QueryError::new(
            400,
            "OperationInProgressFailure",
            format!("Unable to delete configuration template '{name}': an environment is being launched from it."),
        ));
    }
    if store
        .templates
        .remove(&(application.to_string(), name.to_string()))
        .is_none()
    {
        return Err(QueryError::invalid(format!(
            "No Configuration Template named '{application}/{name}' found."
        )));
    }
    store.tags.remove(&template_arn(application, name));
    Ok(())
}

/// Whether an ARN names something that exists, so tags can't be set on nothing.
fn resource_exists(store: &Store, arn: &str) -> bool {
    store.applications.keys().any(|a| application_arn(a) == arn)
        || store
            .versions
            .values()
            .any(|v| version_arn(&v.application, &v.label) == arn)
        || store
            .templates
            .values()
            .any(|t| template_arn(&t.application, &t.name) == arn)
        || store
            .environments
            .values()
            .any(|e| e.is_live() && environment_arn(&e.application, &e.name) == arn)
}

fn existing_arn<'a>(store: &Store, p: &'a Params) -> Result<&'a str, QueryError> {
    let arn = p.required_string("ResourceArn", 1, 2048)?;
    if !resource_exists(store, arn) {
        return Err(QueryError::new(
            400,
            "ResourceNotFoundException",
            format!("Resource with ARN {arn} not found."),
        ));
    }
    Ok(arn)
}

/// UpdateTagsForResource. On an environment it is an environment update, as on AWS: Elastic Beanstalk
/// applies the tags to the environment's resources (its CloudFormation stack), the environment is
/// Updating meanwhile, and operations that need Ready are refused until it is Ready again. Sources
/// (FIDELITY.md): the Terraform AWS provider waits for Ready after tagging because the next
/// UpdateEnvironment failed with "... is in an invalid state for this operation. Must be Ready."
/// (hashicorp/terraform-provider-aws PR #36074, issues #31575 and #32284); Cloud Custodian's tests note
/// that "changing tags on an EB Env performs an update to the environment, which can take 60+ seconds"
/// (cloud-custodian PR #1873).
pub fn update_tags(store: &mut Store, request: &Request) -> Result<Vec<Effect>, QueryError> {
    let p = request.params;
    let arn = existing_arn(store, p)?.to_string();
    let environment = store
        .environments
        .values()
        .find(|e| e.is_live() && environment_arn(&e.application, &e.name) == arn)
        .cloned();
    if let Some(env) = &environment {
        if env.status != "Ready" {
            return Err(QueryError::invalid(format!(
                "Environment named {} is in an invalid state for this operation. Must be Ready.",
                env.name
            )));
        }
    }
    let add = tags(p, "TagsToAdd");
    let remove = p.list("TagsToRemove");
    if let Some(reserved) = add
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(remove.iter().copied())
        .find(|k| k.starts_with("elasticbeanstalk:") || k.starts_with("aws:"))
    {
        return Err(QueryError::invalid(format!(
            "Tag key '{reserved}' is reserved: keys starting with 'aws:' or 'elasticbeanstalk:' can't be changed."
        )));
    }
    let mut updated = store.tags.get(&arn).cloned().unwrap_or_default();
    updated.extend(add);
    for key in remove {
        updated.remove(key);
    }
    if updated.len() > 50 {
        return Err(QueryError::new(
            400,
            "TooManyTagsException",
            "The number of tags in the resource would exceed the number of tags that each resource can have (50).",
        ));
    }
    store.tags.insert(arn, updated);
    let Some(env) = environment else {
        return Ok(vec![]);
    };
    let Some((_, generation)) = store.begin_operation(
        &env.id,
        "Updating",
        "Environment update is starting.",
        request.request_id,
        |_| {},
    ) else {
        return Ok(vec![]);
    };
    Ok(vec![Effect::UpdateTags {
        env_id: env.id,
        generation,
    }])
}

pub fn list_tags(store: &Store, p: &Params) -> Result<String, QueryError> {
    let arn = existing_arn(store, p)?;
    let mut x = Xml::new();
    x.text("ResourceArn", arn).elem("ResourceTags", |x| {
        for (key, value) in store.tags.get(arn).into_iter().flatten() {
            x.elem("member", |x| {
                x.text("Key", key).text("Value", value);
            });
        }
    });
    Ok(x.finish())
}
