//! What a local run sets up before the pipeline runs: the function binaries, the template's parameters
//! for one machine, the local cloud's timing, the Beanstalk application and first settings, a custom
//! domain's hosted zone, and what the load probe asks for.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use local_aws::beanstalk::Options;

use crate::local::LocalCloud;
use crate::pipeline::Ui;
use crate::probe;
use crate::template::{self, Stack};

/// Function binaries the template's Lambda actions need.
pub const FUNCTIONS: &[&str] = &[
    "check-config",
    "package",
    "backup",
    "stage",
    "smoke-test",
    "swap",
    "retire",
];

/// Parameters that make the template's defaults fit one machine: a Beanstalk platform for the first
/// environment, a version check, no grace period to wait out.
pub fn local_parameters() -> BTreeMap<String, String> {
    [
        ("ApplicationName", "shop"),
        ("ProductionCnamePrefix", "shop-prod"),
        (
            "SolutionStackName",
            "64bit Amazon Linux 2023 v4.5.2 running Python 3.11",
        ),
        ("VersionPath", "/version"),
        // The smoke test checks a path that writes and reads the database too, on the staged and on the
        // live environment.
        ("SmokeTestPaths", "/,/health,/api/orders"),
        ("RetireGraceMinutes", "0"),
        // The bake after the move, scaled from minutes to 3 seconds: it watches production (enhanced
        // health from the router's requests) and moves it back on a breach (`--bad-release`).
        ("BakeMinutes", "0.05"),
        ("KeepPreviousEnvironments", "1"),
        ("RepositoryId", "local/app"),
        ("FunctionsBucket", "local-functions"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    // Retire waits for the old environment to serve nothing for the DNS TTL: the local one.
    .chain([("DnsTtlSeconds".to_string(), DNS_TTL.as_secs().to_string())])
    .collect()
}

/// Creates what the template would create on Beanstalk before the pipeline first runs: the application
/// and the first environment's saved configuration.
pub async fn provision(stack: &Stack, eb: &aws_sdk_elasticbeanstalk::Client) -> Result<(), String> {
    let err = |what: &str, e: String| format!("provision {what}: {e}");
    for (_, props) in stack
        .resources_of("AWS::ElasticBeanstalk::Application")
        .map_err(|e| e.to_string())?
    {
        let name = template::text(&props["ApplicationName"]);
        if let Err(e) = eb.create_application().application_name(&name).send().await {
            let message = aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata::message(&e)
                .unwrap_or_default()
                .to_string();
            if !message.contains("already exists") {
                return Err(err("application", message));
            }
        }
    }
    for (logical, props) in stack
        .resources_of("AWS::ElasticBeanstalk::ConfigurationTemplate")
        .map_err(|e| e.to_string())?
    {
        let mut request = eb
            .create_configuration_template()
            .application_name(template::text(&props["ApplicationName"]))
            .template_name(stack.physical_id(&logical))
            .set_solution_stack_name(props.get("SolutionStackName").map(template::text))
            .set_platform_arn(props.get("PlatformArn").map(template::text));
        // A setting whose value came from a resource not created here (the database) has none: left out.
        for o in props["OptionSettings"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.get("Value").is_some())
        {
            request = request.option_settings(
                aws_sdk_elasticbeanstalk::types::ConfigurationOptionSetting::builder()
                    .namespace(template::text(&o["Namespace"]))
                    .option_name(template::text(&o["OptionName"]))
                    .value(template::text(&o["Value"]))
                    .build(),
            );
        }
        if let Err(e) = request.send().await {
            let message = aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata::message(&e)
                .unwrap_or_default()
                .to_string();
            if !message.contains("already exists") {
                return Err(err(&logical, message));
            }
        }
    }
    Ok(())
}

/// Builds the function binaries with cargo when running from the source tree and any is missing.
pub fn ensure_binaries(root: &Path, bin_dir: &Path, ui: &Ui) -> Result<(), String> {
    let missing: Vec<&str> = FUNCTIONS
        .iter()
        .copied()
        .filter(|f| !bin_dir.join(f).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !root.join("Cargo.toml").exists() {
        return Err(format!(
            "function binaries missing in {}: {missing:?}",
            bin_dir.display()
        ));
    }
    ui.line(&format!("building {} (first run only)", missing.join(", ")));
    let release = bin_dir.ends_with("release");
    let mut command =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root).arg("build").arg("--quiet");
    if release {
        command.arg("--release");
    }
    for f in &missing {
        command.args(["-p", f]);
    }
    let status = command.status().map_err(|e| format!("run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed ({status})"))
    }
}

/// What Beanstalk's 60 s CNAME TTL becomes in a local run (every DNS TTL is scaled alike): long
/// enough that cached answers visibly outlive a swap, short enough for a run of a few minutes.
pub const DNS_TTL: Duration = Duration::from_secs(5);

/// The local cloud's timing for a pipeline run: environments launch in `launch_delay`; updates and
/// terminations take half as long, as they roughly do on AWS; DNS answers live [`DNS_TTL`] where AWS
/// gives 60 s, Beanstalk's 20 s deregistration timeout takes 2 s, and a request-rate trigger scales the
/// environments.
pub fn cloud_options(launch_delay: Duration) -> Options {
    Options {
        launch_delay,
        update_delay: launch_delay / 2,
        terminate_delay: launch_delay / 2,
        health_interval: Duration::from_millis(500),
        dns_ttl: DNS_TTL,
        deregistration_delay: Duration::from_secs(2),
        // A loaded live environment grows, as Auto Scaling grows it on AWS: above 100 requests per
        // second per instance over 5 s one more instance (up to MaxSize), below 10 one fewer (down to
        // MinSize).
        scaling: Some(local_aws::beanstalk::Scaling {
            upper: 100.0,
            lower: 10.0,
            window: Duration::from_secs(5),
        }),
        ..Options::default()
    }
}

/// How the probe's clients cache DNS, for the text reports: `clients keep DNS answers 5 s (AWS: 60 s,
/// scaled down for the local run), 10 % of them 3x`, from [`DNS_TTL`], local-aws's [`AWS_CNAME_TTL`]
/// and [`probe::Crowd::default`].
///
/// [`AWS_CNAME_TTL`]: local_aws::dns::AWS_CNAME_TTL
pub fn dns_caching() -> String {
    let crowd = probe::Crowd::default();
    format!(
        "clients keep DNS answers {} s (AWS: {} s, scaled down for the local run), {:.0} % of them {}x",
        DNS_TTL.as_secs(),
        local_aws::dns::AWS_CNAME_TTL.as_secs(),
        crowd.stubborn_share * 100.0,
        crowd.stubborn_factor
    )
}

/// The load probe's clients in a local run: they resolve production through local-aws's DNS and
/// keep each answer for its TTL, 10 % of them for three TTLs (probe::Crowd::default).
pub fn probe_resolution(cloud: &LocalCloud) -> probe::Resolution {
    probe::Resolution::Cached {
        dns: cloud.aws.endpoint(),
        crowd: probe::Crowd::default(),
    }
}

/// Production on a custom domain, as the template sets it up on AWS: a hosted zone for the domain's
/// parent in moto's Route 53 (AWS accounts have theirs already), and the parameters HostedZoneId and
/// DomainName pointing at it, with SwapMode route53 unless `weighted` was asked for. Swap then creates
/// the domain's record on the first deployment and moves it on every later one; the router resolves the
/// domain through those records, as DNS would.
pub async fn serve_domain(
    route53: &aws_sdk_route53::Client,
    domain: &str,
    parameters: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let zone = match domain.split_once('.') {
        Some((_, parent)) if parent.contains('.') => parent.to_string(),
        _ => domain.clone(),
    };
    let created = route53
        .create_hosted_zone()
        .name(&zone)
        .caller_reference(format!("beanswap-local-{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "create the hosted zone {zone}: {}",
                beanswap_core::aws_error::describe(&e).1
            )
        })?;
    let id = created
        .hosted_zone()
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
        .ok_or_else(|| format!("create the hosted zone {zone}: no zone in the answer"))?;
    parameters.insert("HostedZoneId".into(), id);
    parameters.insert("DomainName".into(), domain);
    if parameters.get("SwapMode").map(String::as_str) != Some("weighted") {
        parameters.insert("SwapMode".into(), "route53".into());
    }
    Ok(())
}

/// Resource types the local run has no stand-in of by themselves: a reference to one is left out. The
/// run's own database ([`crate::database`]) then provides `Database` and `DatabaseSecret`, which take
/// precedence: every environment gets the real server's host, port, name and secret.
pub const NOT_CREATED_LOCALLY: &[&str] = &["AWS::RDS::DBInstance", "AWS::SecretsManager::Secret"];

/// The path the load probe requests on production: one that writes and reads the database.
pub const PROBE_PATH: &str = "/api/orders";

/// What the load probe requests on `host`, as the report names it.
pub fn probe_target(host: &str) -> String {
    format!("http://{host}{PROBE_PATH}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One source for each figure: the TTL retire waits for is the local cloud's, the text says what
    /// it stands for on AWS and how the crowd keeps it, and the probe's target is its path.
    #[test]
    fn the_dns_figures_and_the_probe_path_come_from_one_place_each() {
        assert_eq!(
            local_parameters()["DnsTtlSeconds"],
            DNS_TTL.as_secs().to_string()
        );
        assert_eq!(cloud_options(Duration::from_secs(1)).dns_ttl, DNS_TTL);
        let crowd = probe::Crowd::default();
        assert_eq!(
            dns_caching(),
            format!(
                "clients keep DNS answers {} s (AWS: 60 s, scaled down for the local run), {:.0} % of them {}x",
                DNS_TTL.as_secs(),
                crowd.stubborn_share * 100.0,
                crowd.stubborn_factor
            )
        );
        assert_eq!(probe_target("shop"), format!("http://shop{PROBE_PATH}"));
    }
}
