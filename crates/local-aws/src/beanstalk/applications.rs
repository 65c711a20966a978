//! CreateApplication, DescribeApplications, CreateApplicationVersion, DescribeApplicationVersions,
//! DeleteApplicationVersion.

use std::time::SystemTime;

use super::events::Paging;
use super::{application_arn, version_arn, Application, ApplicationVersion, Store};
use crate::query::{Params, QueryError, Xml};

pub fn create_application(store: &mut Store, p: &Params) -> Result<String, QueryError> {
    let name = p.required_string("ApplicationName", 1, 100)?;
    let description = p.string("Description", 0, 200)?;
    if store.applications.contains_key(name) {
        return Err(QueryError::invalid(format!(
            "Application {name} already exists."
        )));
    }
    let cap = store.options.max_applications;
    if store.applications.len() >= cap {
        return Err(QueryError::new(
            400,
            "TooManyApplicationsException",
            format!("You cannot have more than {cap} Applications."),
        ));
    }
    let app = insert_application(store, name, description);
    record_tags(store, &application_arn(name), p);
    let mut x = Xml::new();
    x.elem("Application", |x| application_xml(x, store, &app));
    Ok(x.finish())
}

fn insert_application(store: &mut Store, name: &str, description: Option<&str>) -> Application {
    let now = SystemTime::now();
    let app = Application {
        name: name.to_string(),
        description: description.map(str::to_string),
        created: now,
        updated: now,
    };
    store.applications.insert(name.to_string(), app.clone());
    app
}

pub fn record_tags(store: &mut Store, arn: &str, p: &Params) {
    let tags = super::tags(p, "Tags");
    if !tags.is_empty() {
        store.tags.entry(arn.to_string()).or_default().extend(tags);
    }
}

pub fn describe_applications(store: &Store, p: &Params) -> Result<String, QueryError> {
    let names = p.list("ApplicationNames");
    let mut x = Xml::new();
    x.elem("Applications", |x| {
        for app in store.applications.values() {
            if names.is_empty() || names.contains(&app.name.as_str()) {
                x.elem("member", |x| application_xml(x, store, app));
            }
        }
    });
    Ok(x.finish())
}

fn application_xml(x: &mut Xml, store: &Store, app: &Application) {
    let versions = newest_first(store, &app.name);
    x.text("ApplicationArn", &application_arn(&app.name))
        .text("ApplicationName", &app.name)
        .opt("Description", app.description.as_deref())
        .time("DateCreated", app.created)
        .time("DateUpdated", app.updated)
        .strings("Versions", versions.iter().map(|v| v.label.as_str()))
        .strings(
            "ConfigurationTemplates",
            store
                .templates
                .values()
                .filter(|t| t.application == app.name)
                .map(|t| t.name.as_str()),
        );
}

fn newest_first<'a>(store: &'a Store, application: &str) -> Vec<&'a ApplicationVersion> {
    let mut versions: Vec<&ApplicationVersion> = store
        .versions
        .values()
        .filter(|v| v.application == application)
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.sequence));
    versions
}

pub fn create_version(
    store: &mut Store,
    p: &Params,
) -> Result<(Option<String>, Vec<super::Effect>), QueryError> {
    let application = p.required_string("ApplicationName", 1, 100)?;
    let label = p.required_string("VersionLabel", 1, 100)?;
    let description = p.string("Description", 0, 200)?;
    let bucket = p.string("SourceBundle.S3Bucket", 0, 255)?;
    let key = p.string("SourceBundle.S3Key", 0, 1024)?;
    let process = p.bool("Process")?.unwrap_or(false);
    if !store.applications.contains_key(application) {
        if p.bool("AutoCreateApplication")?.unwrap_or(false) {
            insert_application(store, application, None);
        } else {
            return Err(QueryError::invalid(format!(
                "No Application named '{application}' found."
            )));
        }
    }
    let id = (application.to_string(), label.to_string());
    if store.versions.contains_key(&id) {
        return Err(QueryError::invalid(format!(
            "Application Version {label} already exists."
        )));
    }
    if bucket.is_some() != key.is_some() {
        return Err(QueryError::invalid(
            "Both S3 bucket and key must be specified.",
        ));
    }
    let cap = store.options.max_application_versions;
    if store.versions.len() >= cap {
        return Err(QueryError::new(
            400,
            "TooManyApplicationVersionsException",
            format!("You cannot have more than {cap} Application Versions."),
        ));
    }
    let now = SystemTime::now();
    let sequence = store.sequence();
    let version = ApplicationVersion {
        application: application.to_string(),
        label: label.to_string(),
        description: description.map(str::to_string),
        bucket: bucket.map(str::to_string),
        key: key.map(str::to_string),
        status: if process { "Processing" } else { "Unprocessed" },
        created: now,
        updated: now,
        sequence,
    };
    store.versions.insert(id, version.clone());
    if let Some(app) = store.applications.get_mut(application) {
        app.updated = now;
    }
    record_tags(store, &version_arn(application, label), p);
    let mut x = Xml::new();
    x.elem("ApplicationVersion", |x| version_xml(x, &version));
    let effects = if process {
        vec![super::Effect::ProcessVersion {
            application: application.to_string(),
            label: label.to_string(),
        }]
    } else {
        vec![]
    };
    Ok((Some(x.finish()), effects))
}

pub fn describe_versions(store: &Store, p: &Params) -> Result<String, QueryError> {
    let application = p.string("ApplicationName", 1, 100)?;
    let labels = p.list("VersionLabels");
    let paging = Paging::from_params(p)?;
    let mut matching: Vec<&ApplicationVersion> = store
        .versions
        .values()
        .filter(|v| application.is_none_or(|a| v.application == a))
        .filter(|v| labels.is_empty() || labels.contains(&v.label.as_str()))
        .collect();
    matching.sort_by_key(|v| std::cmp::Reverse(v.sequence));
    let (page, next) = paging.page(&matching);
    let mut x = Xml::new();
    x.elem("ApplicationVersions", |x| {
        for v in page {
            x.elem("member", |x| version_xml(x, v));
        }
    });
    x.opt("NextToken", next.as_deref());
    Ok(x.finish())
}

fn version_xml(x: &mut Xml, v: &ApplicationVersion) {
    x.text(
        "ApplicationVersionArn",
        &version_arn(&v.application, &v.label),
    )
    .text("ApplicationName", &v.application)
    .opt("Description", v.description.as_deref())
    .text("VersionLabel", &v.label);
    if let (Some(bucket), Some(key)) = (&v.bucket, &v.key) {
        x.elem("SourceBundle", |x| {
            x.text("S3Bucket", bucket).text("S3Key", key);
        });
    }
    x.time("DateCreated", v.created)
        .time("DateUpdated", v.updated)
        .text("Status", v.status);
}

pub fn delete_version(store: &mut Store, p: &Params) -> Result<(), QueryError> {
    let application = p.required_string("ApplicationName", 1, 100)?;
    let label = p.required_string("VersionLabel", 1, 100)?;
    let id = (application.to_string(), label.to_string());
    if store.versions.remove(&id).is_none() {
        return Err(QueryError::invalid(format!(
            "Application Version {label} does not exist."
        )));
    }
    store.tags.remove(&version_arn(application, label));
    Ok(())
}
