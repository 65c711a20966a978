//! CreateEnvironment, DescribeEnvironments, UpdateEnvironment, TerminateEnvironment; the CNAME
//! operations are in `cnames`, the environment's resources in `resources`.
//!
//! State changes that take time in Beanstalk are started here and finished by the lifecycle.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::cnames::{check_cname_prefix, cname_taken, full_cname};
use super::events::{time_param, Paging, Severity};
use super::resources::load_balancer_name;
use super::{
    option_settings, platforms, random_id, tags, Effect, Environment, OptionKey, Request, Store,
    CNAME_SUFFIX, REGION,
};
use crate::query::{Params, QueryError, Xml};

/// Beanstalk's environment name rule: 4-40 letters, digits and hyphens, no hyphen at either end.
fn check_env_name(name: &str) -> Result<(), QueryError> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let len = name.chars().count();
    if !(4..=40).contains(&len) || !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(QueryError::invalid(format!(
            "Value {name} at 'EnvironmentName' failed to satisfy constraint: Member must contain only letters, digits, and the dash character and may not start or end with a dash and must have length between 4 and 40"
        )));
    }
    Ok(())
}

pub(super) fn not_ready(env: &Environment) -> QueryError {
    QueryError::invalid(format!(
        "Environment named {} is in an invalid state for this operation. Must be Ready.",
        env.name
    ))
}

/// OptionsToRemove: a removed option goes back to the platform's default (or away, if it has none).
fn remove_options(
    p: &Params,
    settings: &mut BTreeMap<OptionKey, String>,
    defaults: &BTreeMap<OptionKey, String>,
) {
    for removed in p.structs("OptionsToRemove") {
        if let (Some(ns), Some(opt)) = (removed.get("Namespace"), removed.get("OptionName")) {
            let key = (ns.clone(), opt.clone());
            match defaults.get(&key) {
                Some(default) => settings.insert(key, default.clone()),
                None => settings.remove(&key),
            };
        }
    }
}

pub fn create(
    store: &mut Store,
    request: &Request,
) -> Result<(Option<String>, Vec<Effect>), QueryError> {
    let p = request.params;
    let application = p.required_string("ApplicationName", 1, 100)?;
    let name = p.required("EnvironmentName")?;
    check_env_name(name)?;
    let description = p.string("Description", 0, 200)?;
    if !store.applications.contains_key(application) {
        return Err(QueryError::invalid(format!(
            "No Application named '{application}' found."
        )));
    }
    if store
        .environments
        .values()
        .any(|e| e.is_live() && e.name == name)
    {
        return Err(QueryError::invalid(format!(
            "Environment {name} already exists."
        )));
    }
    let version_label = p.string("VersionLabel", 1, 100)?;
    if let Some(label) = version_label {
        if !store
            .versions
            .contains_key(&(application.to_string(), label.to_string()))
        {
            return Err(QueryError::invalid(format!(
                "No Application Version named '{label}' found."
            )));
        }
    }
    let template_name = p.string("TemplateName", 1, 100)?;
    let stack = p.get("SolutionStackName");
    let arn = p.get("PlatformArn");
    // The model's documentation: TemplateName excludes SolutionStackName, which excludes PlatformArn;
    // AWS answers parameters that must not be used together with InvalidParameterCombination.
    if template_name.is_some() && (stack.is_some() || arn.is_some())
        || stack.is_some() && arn.is_some()
    {
        return Err(QueryError::new(
            400,
            "InvalidParameterCombination",
            "You can specify only one of TemplateName, SolutionStackName and PlatformArn.",
        ));
    }
    let live = store.environments.values().filter(|e| e.is_live()).count();
    if live >= store.options.max_environments {
        return Err(QueryError::new(
            400,
            "TooManyEnvironmentsException",
            format!(
                "You cannot have more than {} Environments.",
                store.options.max_environments
            ),
        ));
    }
    let mut template_settings: BTreeMap<OptionKey, String> = BTreeMap::new();
    let platform = match template_name {
        Some(t) => {
            let template = store
                .templates
                .get(&(application.to_string(), t.to_string()))
                .ok_or_else(|| {
                    QueryError::invalid(format!(
                        "No Configuration Template named '{application}/{t}' found."
                    ))
                })?;
            template_settings.extend(template.settings.clone());
            platforms::resolve(
                store,
                template.solution_stack.as_deref(),
                template.platform_arn.as_deref(),
            )?
        }
        None => platforms::resolve(store, stack, arn)?,
    };
    // Full option settings: the platform's defaults, then the saved configuration, then the request's.
    let defaults = platforms::default_settings(&platform);
    let mut settings = defaults.clone();
    settings.extend(template_settings);
    settings.extend(option_settings(p, "OptionSettings")?);
    remove_options(p, &mut settings, &defaults);
    let cname = match p.get("CNAMEPrefix") {
        Some(prefix) => {
            check_cname_prefix(prefix)?;
            let cname = full_cname(prefix);
            if cname_taken(store, &cname) {
                return Err(QueryError::invalid(format!(
                    "DNS name ({cname}) is not available."
                )));
            }
            cname
        }
        None => format!(
            "{}.eba-{}.{CNAME_SUFFIX}",
            name.to_ascii_lowercase(),
            random_id(8)
        ),
    };
    let id = format!("e-{}", random_id(10));
    let now = SystemTime::now();
    let sequence = store.sequence();
    let env = Environment {
        id: id.clone(),
        name: name.to_string(),
        application: application.to_string(),
        version_label: version_label.map(str::to_string),
        solution_stack: Some(platform.stack()),
        platform_arn: Some(platform.arn()),
        template_name: template_name.map(str::to_string),
        description: description.map(str::to_string),
        cname,
        endpoint_url: format!(
            "{}-{}.{REGION}.elb.amazonaws.com",
            load_balancer_name(&id),
            1_000_000_000 + sequence
        ),
        created: now,
        updated: now,
        status: "Launching",
        health: "Grey",
        health_status: "Pending",
        tier_name: p.get("Tier.Name").unwrap_or("WebServer").to_string(),
        tier_type: p.get("Tier.Type").unwrap_or("Standard").to_string(),
        settings,
        terminated_at: None,
        generation: 1,
        instances: vec![],
        desired: 0,
        instance_launched: None,
        causes: vec![],
        deployment_id: 0,
        deployment_status: "In Progress",
        deployment_time: None,
        sequence,
    };
    let arn = env.arn();
    store.environments.insert(id.clone(), env.clone());
    let tags = tags(p, "Tags");
    if !tags.is_empty() {
        store.tags.entry(arn).or_default().extend(tags);
    }
    store.env_event(
        &id,
        Severity::Info,
        "createEnvironment is starting.",
        Some(request.request_id),
    );
    let mut x = Xml::new();
    environment_xml(&mut x, &env);
    Ok((
        Some(x.finish()),
        vec![Effect::Launch {
            env_id: id,
            generation: 1,
        }],
    ))
}

pub fn environment_xml(x: &mut Xml, e: &Environment) {
    x.text("EnvironmentName", &e.name)
        .text("EnvironmentId", &e.id)
        .text("ApplicationName", &e.application)
        .opt("VersionLabel", e.version_label.as_deref())
        .opt("SolutionStackName", e.solution_stack.as_deref())
        .opt("PlatformArn", e.platform_arn.as_deref())
        .opt("TemplateName", e.template_name.as_deref())
        .opt("Description", e.description.as_deref())
        .text("EndpointURL", &e.endpoint_url)
        .text("CNAME", &e.cname)
        .time("DateCreated", e.created)
        .time("DateUpdated", e.updated)
        .text("Status", e.status)
        .text(
            "AbortableOperationInProgress",
            if e.status == "Updating" {
                "true"
            } else {
                "false"
            },
        )
        .text("Health", e.health)
        .text("HealthStatus", e.health_status)
        .elem("Tier", |x| {
            x.text("Name", &e.tier_name)
                .text("Type", &e.tier_type)
                .text("Version", "1.0");
        })
        .elem("EnvironmentLinks", |_| {})
        .text("EnvironmentArn", &e.arn());
}

pub fn describe(store: &Store, p: &Params) -> Result<String, QueryError> {
    let application = p.string("ApplicationName", 1, 100)?;
    let version = p.string("VersionLabel", 1, 100)?;
    let ids = p.list("EnvironmentIds");
    let names = p.list("EnvironmentNames");
    let include_deleted = p.bool("IncludeDeleted")?.unwrap_or(true);
    let deleted_back_to = time_param(p, "IncludedDeletedBackTo")?;
    let paging = Paging::from_params(p)?;
    let mut matching: Vec<&Environment> = store
        .environments
        .values()
        .filter(|e| application.is_none_or(|a| e.application == a))
        .filter(|e| version.is_none_or(|v| e.version_label.as_deref() == Some(v)))
        .filter(|e| ids.is_empty() || ids.contains(&e.id.as_str()))
        .filter(|e| names.is_empty() || names.contains(&e.name.as_str()))
        .filter(|e| match e.terminated_at {
            None => true,
            Some(at) => include_deleted && deleted_back_to.is_none_or(|back| at >= back),
        })
        .collect();
    matching.sort_by_key(|e| e.sequence);
    let (page, next) = paging.page(&matching);
    let mut x = Xml::new();
    x.elem("Environments", |x| {
        for e in page {
            x.elem("member", |x| environment_xml(x, e));
        }
    });
    x.opt("NextToken", next.as_deref());
    Ok(x.finish())
}

pub fn update(
    store: &mut Store,
    request: &Request,
) -> Result<(Option<String>, Vec<Effect>), QueryError> {
    let p = request.params;
    let env = store
        .find_env(p.get("EnvironmentId"), p.get("EnvironmentName"))?
        .clone();
    if let Some(app) = p.get("ApplicationName") {
        if app != env.application {
            return Err(QueryError::invalid(format!(
                "Environment {} does not belong to application {app}.",
                env.name
            )));
        }
    }
    // Any state but Ready, an update in progress included, is refused with InvalidParameterValue
    // (mup-aws-beanstalk #125; Terraform AWS provider issues #31575, #32284).
    if env.status != "Ready" {
        return Err(not_ready(&env));
    }
    let version_label = p.string("VersionLabel", 1, 100)?;
    if let Some(label) = version_label {
        if !store
            .versions
            .contains_key(&(env.application.clone(), label.to_string()))
        {
            return Err(QueryError::invalid(format!(
                "No Application Version named '{label}' found."
            )));
        }
    }
    let mut settings = env.settings.clone();
    if let Some(t) = p.string("TemplateName", 1, 100)? {
        let template = store
            .templates
            .get(&(env.application.clone(), t.to_string()))
            .ok_or_else(|| {
                QueryError::invalid(format!(
                    "No Configuration Template named '{}/{t}' found.",
                    env.application
                ))
            })?;
        settings.extend(template.settings.clone());
    }
    let given = option_settings(p, "OptionSettings")?;
    // Only the Auto Scaling group's size changes: the group grows or shrinks, the instances it runs keep
    // running (no deployment; EB DG: "Auto Scaling group for your Elastic Beanstalk environment",
    // capacity settings apply to the group).
    let resize_only = version_label.is_none()
        && p.get("TemplateName").is_none()
        && p.structs("OptionsToRemove").is_empty()
        && !given.is_empty()
        && given.iter().all(|((ns, option), _)| {
            ns == "aws:autoscaling:asg" && (option == "MinSize" || option == "MaxSize")
        });
    settings.extend(given);
    let defaults = env
        .platform_arn
        .as_deref()
        .and_then(platforms::by_arn)
        .map(|p| platforms::default_settings(&p))
        .unwrap_or_default();
    remove_options(p, &mut settings, &defaults);
    let description = p.string("Description", 0, 200)?;
    let template = p.get("TemplateName");
    let Some((updated, generation)) = store.begin_operation(
        &env.id,
        "Updating",
        "Environment update is starting.",
        request.request_id,
        |e| {
            if let Some(label) = version_label {
                e.version_label = Some(label.to_string());
            }
            if let Some(d) = description {
                e.description = Some(d.to_string());
            }
            if let Some(t) = template {
                e.template_name = Some(t.to_string());
            }
            e.settings = settings;
        },
    ) else {
        return Err(not_ready(&env));
    };
    let mut x = Xml::new();
    environment_xml(&mut x, &updated);
    let effect = if resize_only {
        Effect::Resize {
            env_id: env.id,
            generation,
        }
    } else {
        Effect::Update {
            env_id: env.id,
            generation,
        }
    };
    Ok((Some(x.finish()), vec![effect]))
}

pub fn terminate(
    store: &mut Store,
    request: &Request,
) -> Result<(Option<String>, Vec<Effect>), QueryError> {
    let p = request.params;
    let env = store
        .find_env(p.get("EnvironmentId"), p.get("EnvironmentName"))?
        .clone();
    let force = p.bool("ForceTerminate")?.unwrap_or(false);
    if env.status == "Terminating" || (!force && env.status != "Ready") {
        return Err(not_ready(&env));
    }
    let Some((updated, generation)) = store.begin_operation(
        &env.id,
        "Terminating",
        "terminateEnvironment is starting.",
        request.request_id,
        |_| {},
    ) else {
        return Err(not_ready(&env));
    };
    let mut x = Xml::new();
    environment_xml(&mut x, &updated);
    Ok((
        Some(x.finish()),
        vec![Effect::Terminate {
            env_id: env.id,
            generation,
        }],
    ))
}
