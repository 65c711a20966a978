//! The names package derives for a build: the version label (a template over the job's facts, or the
//! default), the S3 key of the bundle, and Beanstalk's default bucket. Pure and deterministic, so a
//! re-invoked job finds what an earlier invocation made; apart so these rules can be read (and tested)
//! without any AWS call.

use sha2::{Digest, Sha256};

/// Elastic Beanstalk's limit on a version label.
pub const MAX_LABEL: usize = 100;

/// What a version label template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelVars {
    pub application: String,
    /// The input artifact's revision (a commit id for most sources).
    pub revision: Option<String>,
    /// The last segment of the artifact's object key: unique per pipeline execution.
    pub artifact_id: String,
    pub job_id: String,
    /// The final bundle's SHA-256.
    pub sha256: String,
}

/// Placeholders a `version_label` template may contain.
pub const LABEL_PLACEHOLDERS: &[&str] = &[
    "application",
    "revision",
    "revision_short",
    "artifact_id",
    "job_id",
    "sha256",
    "sha256_short",
];

/// Checks a template's placeholders without values (for UserParameters validation).
pub fn check_label_template(template: &str) -> Result<(), String> {
    render(template, &|_| Some(String::new())).map(|_| ())
}

fn render(template: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{{` at `{}` is never closed", &rest[open..]))?;
        let name = &after[..close];
        if !LABEL_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}`; use one of {}",
                LABEL_PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let v = value(name).ok_or_else(|| {
            format!("`{{{name}}}` has no value for this job (the input artifact has no revision)")
        })?;
        out.push_str(&v);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Keeps what is safe in a label and an S3 key; anything else becomes `-`.
fn label_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The version label: `template` with its placeholders filled, or by default
/// `{revision_short}-{artifact_id}` (`{artifact_id}-{sha256_short}` when the artifact has no revision).
/// Deterministic for a job, so a re-invoked job finds the version it created. Longer than 100
/// characters, it is cut and suffixed with a hash of the whole, so it stays unique.
pub fn render_label(template: Option<&str>, vars: &LabelVars) -> Result<String, String> {
    let default = match vars.revision {
        Some(_) => "{revision_short}-{artifact_id}",
        None => "{artifact_id}-{sha256_short}",
    };
    let template = template.unwrap_or(default);
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "application" => label_safe(&vars.application),
            "revision" => label_safe(vars.revision.as_deref()?),
            "revision_short" => label_safe(
                &vars
                    .revision
                    .as_deref()?
                    .chars()
                    .take(12)
                    .collect::<String>(),
            ),
            "artifact_id" => label_safe(&vars.artifact_id),
            "job_id" => vars.job_id.clone(),
            "sha256" => vars.sha256.clone(),
            "sha256_short" => vars.sha256.chars().take(12).collect(),
            _ => return None,
        })
    };
    let label = render(template, &value)?;
    let label = label.trim().to_string();
    if label.is_empty() {
        return Err("the label is empty".into());
    }
    if label.chars().count() <= MAX_LABEL {
        return Ok(label);
    }
    let digest = hex::encode(Sha256::digest(label.as_bytes()));
    let head: String = label.chars().take(MAX_LABEL - 13).collect();
    Ok(format!("{head}-{}", &digest[..12]))
}

/// `<prefix><application>/<label>.zip`; the prefix gets a trailing `/` when it has none. A label with
/// characters unsafe in a key gets a short hash of itself, so two labels never share a bundle.
pub fn bundle_key(prefix: &str, application: &str, label: &str) -> String {
    let prefix = prefix.trim_start_matches('/');
    let sep = if prefix.is_empty() || prefix.ends_with('/') {
        ""
    } else {
        "/"
    };
    let mut name = label_safe(label);
    if name != label {
        let digest = hex::encode(Sha256::digest(label.as_bytes()));
        name = format!("{name}-{}", &digest[..8]);
    }
    format!("{prefix}{sep}{}/{name}.zip", label_safe(application))
}

/// `elasticbeanstalk-<region>-<account>`, the bucket Beanstalk itself uses.
pub fn default_bucket(region: &str, account: &str) -> String {
    format!("elasticbeanstalk-{region}-{account}")
}
