//! beanswap: the command line. Runs the whole pipeline on one machine (`run`, `demo`), or one action
//! exactly as CodePipeline would (`invoke`): the function binaries under a local Lambda Runtime API,
//! Beanstalk and CodePipeline answered by local-aws, S3 and Route 53 by moto. Those three need the `local`
//! feature (on by default); the operations (`status`, `events`, `swap`, `rollback`, `retire`) work
//! against AWS without it.
//!
//! This file holds the arguments and the dispatch; the local commands' bodies are in
//! `local_commands.rs`.

use beanswap_core::beanstalk::HealthGate;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use beanswap_cli::ops;
use clap::{Parser, Subcommand};

#[cfg(feature = "local")]
mod local_commands;

#[cfg(feature = "local")]
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "beanswap",
    version,
    about = "Zero-downtime blue/green deployment to AWS Elastic Beanstalk"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy examples/app twice (v1, then a changed v2) through the whole pipeline on the local
    /// default, with a load probe on production, and report what happened.
    #[cfg(feature = "local")]
    Demo {
        #[command(flatten)]
        run: RunArgs,
        /// v2 ships a migration that breaks v1 (the new column required, so v1 can no longer insert): the smoke
        /// test's check of the live environment stops the pipeline before the swap, naming the snapshot.
        #[arg(long)]
        break_migration: bool,
        /// Deploy a third release, v3, whose bug answers 5 % of requests with 500: it passes the smoke
        /// test, and after the swap the bake sees the 5xx share and moves production back to v2.
        #[arg(long)]
        bad_release: bool,
    },
    /// Restore the local run's database from a snapshot the backup action took (pg_restore of its
    /// dump into the same database, as its owner, in one transaction).
    #[cfg(feature = "local")]
    Restore {
        /// The snapshot's id (`#{Backup.SnapshotId}`, in the run's report).
        #[arg(long)]
        snapshot: String,
        /// The run's report directory (its database and snapshots are kept there).
        #[arg(long, default_value = "target/beanswap")]
        report_dir: PathBuf,
    },
    /// Run the pipeline of pipeline-template.json once on the local default.
    #[cfg(feature = "local")]
    Run {
        /// The app to deploy: a directory or a git repository (its HEAD).
        #[arg(long, default_value = "examples/app")]
        source: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Per function role of the template: the actions it grants and the actions its function's code can
    /// need (crates/iam); exits 1 when any differ.
    Permissions {
        /// The CloudFormation template whose roles are compared.
        #[arg(long, default_value = "pipeline-template.json")]
        template: PathBuf,
        /// Template parameters, NAME=VALUE (repeatable): a domain's parameters add Route 53 grants.
        #[arg(long = "parameter", value_name = "NAME=VALUE")]
        parameters: Vec<String>,
    },
    /// Environments of an application (which one is live), their versions and health.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// An environment's recent Beanstalk events.
    Events {
        #[command(flatten)]
        target: Target,
        /// The environment.
        environment: String,
        /// How far back.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: Duration,
    },
    /// Terminate old environments (never the live one) and prune versions, as the retire action does.
    Retire {
        #[command(flatten)]
        target: Target,
        /// Previous environments to keep for rollback.
        #[arg(long, default_value_t = 1)]
        keep: usize,
        /// Minimum time out of production before an environment may go.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        grace: Duration,
        /// Keep the newest N application versions and delete older unused ones.
        #[arg(long)]
        prune_versions: Option<usize>,
        /// Say what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How long clients keep production's DNS answers: an environment goes only once it has
        /// served no request for this long (Beanstalk's CNAMEs: 60 s).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        dns_ttl: Duration,
    },
    /// Return production to the environment it came from (the live one's
    /// `beanswap:previous-environment`, or --to) while that one still exists, as the swap action's
    /// rollback mode does: a CNAME swap back, or the domain's records (--hosted-zone-id, --domain).
    Rollback {
        #[command(flatten)]
        target: Target,
        /// Return to this environment instead of the live one's previous.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, requires = "domain")]
        hosted_zone_id: Option<String>,
        #[arg(long, requires = "hosted_zone_id")]
        domain: Option<String>,
    },
    /// Move production to a staged environment by hand (Beanstalk CNAME swap, with swap's checks).
    Swap {
        #[command(flatten)]
        target: Target,
        /// The environment that should serve production.
        environment: String,
        /// Minimum health of that environment: Green or Yellow.
        #[arg(long, default_value = "Green", value_parser = ["Green", "Yellow"])]
        health: String,
    },
    /// Run one action's function locally as a CodePipeline job and print what it reported.
    #[cfg(feature = "local")]
    Invoke {
        /// The function's binary name, e.g. `check-config` (built into the same target directory).
        function: String,
        /// The action's UserParameters (JSON).
        #[arg(long, default_value = "{}")]
        user_parameters: String,
        /// A whole CodePipeline job event (JSON file) instead of the generated one.
        #[arg(long)]
        event: Option<PathBuf>,
    },
}

/// Which application, where.
#[derive(clap::Args)]
struct Target {
    /// The Beanstalk application.
    #[arg(long, default_value = "shop")]
    application: String,
    /// The production CNAME prefix (or full CNAME): how the live environment is found.
    #[arg(long)]
    production_cname: Option<String>,
    /// Send every AWS call here (a running `local-aws`); default: your AWS configuration.
    #[arg(long)]
    endpoint_url: Option<String>,
    #[arg(long)]
    region: Option<String>,
}

#[cfg(feature = "local")]
#[derive(clap::Args)]
struct RunArgs {
    /// The CloudFormation template whose pipeline runs.
    #[arg(long, default_value = "pipeline-template.json")]
    template: PathBuf,
    /// Template parameters, NAME=VALUE (repeatable); local defaults fill the required ones.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
    /// Approve the manual approval without asking.
    #[arg(long)]
    approve: bool,
    /// One JSON object per line instead of progress for a person.
    #[arg(long)]
    json: bool,
    /// Judge the pipeline's deployment windows (SwapWindowCron) as if it were this time (RFC 3339, UTC).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    now: Option<std::time::SystemTime>,
    /// How long a new environment takes to launch (try 5m to feel real Beanstalk).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    launch_delay: Duration,
    /// Requests per second the load probe sends to production.
    #[arg(long, default_value_t = 50)]
    probe_rate: u32,
    /// Where the report (report.html, its screenshot report.png, timeline.svg) goes.
    #[arg(long, default_value = "target/beanswap")]
    report_dir: PathBuf,
    /// Open the report when the run ends (with xdg-open, or open on macOS, when there is a display;
    /// its path is printed otherwise).
    #[arg(long)]
    open: bool,
    /// How long "CodePipeline" waits before re-invoking an action that is still in progress.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    continuation_pause: Duration,
    /// Use this running local-aws (its API, e.g. http://127.0.0.1:4566) instead of starting one; it
    /// must read bundles from the --moto-url moto (`local-aws --s3-endpoint`). --launch-delay is then
    /// its own.
    #[arg(long, requires_all = ["router_url", "moto_url"])]
    endpoint_url: Option<String>,
    /// That local-aws's environments' router (what `local-aws` prints as "router").
    #[arg(long, requires = "endpoint_url", value_parser = parse_router)]
    router_url: Option<SocketAddr>,
    /// Use this running moto_server (S3, Route 53, e.g. http://127.0.0.1:5000) instead of starting one.
    #[arg(long)]
    moto_url: Option<String>,
    /// Serve production on this custom domain (e.g. www.shop.test) through Route 53 on moto: a hosted
    /// zone for its parent, HostedZoneId/DomainName set, SwapMode route53 unless weighted is asked for.
    #[arg(long)]
    domain: Option<String>,
}

/// `http://127.0.0.1:PORT` (or just `127.0.0.1:PORT`) as the address it names.
#[cfg(feature = "local")]
fn parse_router(url: &str) -> Result<SocketAddr, String> {
    let address = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    address
        .parse()
        .map_err(|e| format!("{url}: expected http://IP:PORT ({e})"))
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[cfg(feature = "local")]
    #[error("no function binary at {0}; build it first: cargo build -p {1}")]
    NoBinary(PathBuf, String),
    #[cfg(feature = "local")]
    #[error("could not read the event file {0}: {1}")]
    Event(PathBuf, String),
    #[error("{0}")]
    Local(String),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(feature = "local")]
        Command::Demo {
            run,
            break_migration,
            bad_release,
        } => {
            let root = std::env::current_dir().unwrap_or_default();
            let tmp = match tempfile::Builder::new().prefix("beanswap-demo-").tempdir() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("beanswap: {e}");
                    return ExitCode::from(2);
                }
            };
            let v1 = root.join("examples/app");
            let migration = if break_migration {
                "0002_orders_note_required.sql"
            } else {
                "0002_orders_note.sql"
            };
            let releases =
                beanswap_cli::run::next_release(&v1, tmp.path(), "second release\n", migration)
                    .and_then(|v2| {
                        let mut releases = vec![v1.clone(), v2.clone()];
                        if bad_release {
                            releases.push(beanswap_cli::run::bad_release(&v2, tmp.path())?);
                        }
                        Ok(releases)
                    });
            match releases {
                Ok(releases) => local_commands::pipeline_run(run, releases, "beanswap demo").await,
                Err(e) => Err(CliError::Local(e)),
            }
        }
        #[cfg(feature = "local")]
        Command::Restore {
            snapshot,
            report_dir,
        } => print(beanswap_cli::database::restore(&report_dir, &snapshot)),
        #[cfg(feature = "local")]
        Command::Run { source, run } => {
            local_commands::pipeline_run(run, vec![source], "beanswap run").await
        }
        Command::Permissions {
            template,
            parameters,
        } => permissions(&template, &parameters),
        Command::Status { target } => {
            let config =
                ops::sdk_config(target.endpoint_url.as_deref(), target.region.as_deref()).await;
            print(
                ops::status(
                    &config,
                    &target.application,
                    target.production_cname.as_deref(),
                )
                .await,
            )
        }
        Command::Events {
            target,
            environment,
            since,
        } => {
            let config =
                ops::sdk_config(target.endpoint_url.as_deref(), target.region.as_deref()).await;
            print(ops::events(&config, &target.application, &environment, since).await)
        }
        Command::Retire {
            target,
            keep,
            grace,
            prune_versions,
            dry_run,
            dns_ttl,
        } => match target.production_cname.clone() {
            None => Err(CliError::Local(
                "retire needs --production-cname: the live environment is never guessed".into(),
            )),
            Some(production_cname) => {
                let config =
                    ops::sdk_config(target.endpoint_url.as_deref(), target.region.as_deref()).await;
                let settings = beanswap_core::retire::exec::Settings {
                    application: target.application,
                    production_cname,
                    record: None,
                    keep,
                    grace,
                    scale_down_kept: None,
                    prune: prune_versions.map(|keep| beanswap_core::retire::exec::Prune {
                        keep,
                        delete_bundles: false,
                    }),
                    dry_run,
                    dns_ttl,
                };
                print(ops::retire(&config, &settings).await)
            }
        },
        Command::Rollback {
            target,
            to,
            hosted_zone_id,
            domain,
        } => {
            use beanswap_core::swap::Domain;
            let config =
                ops::sdk_config(target.endpoint_url.as_deref(), target.region.as_deref()).await;
            let domain = hosted_zone_id.zip(domain).map(|(zone, name)| Domain {
                zone,
                name,
                record_type: Default::default(),
                ttl: 60,
            });
            let plan = ops::rollback(&target.application, target.production_cname, domain, to);
            print(ops::swap(&config, &plan).await)
        }
        Command::Swap {
            target,
            environment,
            health,
        } => match target.production_cname.clone() {
            None => Err(CliError::Local(
                "swap needs --production-cname: the live environment is never guessed".into(),
            )),
            Some(production) => {
                let config =
                    ops::sdk_config(target.endpoint_url.as_deref(), target.region.as_deref()).await;
                let gate = if health == "Yellow" {
                    HealthGate::Yellow
                } else {
                    HealthGate::Green
                };
                let plan = ops::cname_swap(&target.application, &production, &environment, gate);
                print(ops::swap(&config, &plan).await)
            }
        },
        #[cfg(feature = "local")]
        Command::Invoke {
            function,
            user_parameters,
            event,
        } => local_commands::invoke(&function, &user_parameters, event.as_deref()).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("beanswap: {e}");
            ExitCode::from(2)
        }
    }
}

fn permissions(template: &std::path::Path, given: &[String]) -> Result<ExitCode, CliError> {
    let mut parameters = std::collections::BTreeMap::new();
    for p in given {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Local(format!("--parameter {p}: expected NAME=VALUE")))?;
        parameters.insert(k.to_string(), v.to_string());
    }
    let reports =
        beanswap_cli::permissions::compare(template, &parameters).map_err(CliError::Local)?;
    let (text, same) = beanswap_cli::permissions::render(&reports);
    print!("{text}");
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(result: Result<String, String>) -> Result<ExitCode, CliError> {
    let text = result.map_err(CliError::Local)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
