//! What Elastic Beanstalk's platform engine does on each instance between extracting a source bundle
//! and starting its web process, and the logs it writes while doing it: the step of a deployment that
//! runs the application's own code (its migrations, typically). [`crate::lifecycle`] calls
//! [`deploy_instances`] before it starts the web process and [`postdeploy`] after.
//!
//! What is modelled, and where each rule comes from (crates/local-aws/FIDELITY.md, section "Database,
//! migrations, tail logs and backups"):
//! - The instances: `aws:autoscaling:asg` MinSize of them (1 when unset), ids `i-<17 hex>`; the first is
//!   the leader. Each gets its own staging directory (the bundle extracted again) and its own logs, and
//!   runs its own web process (crate::lifecycle).
//! - The order ("Instance deployment workflow"): `.platform/hooks/prebuild`, then the `container_commands`
//!   of every `.ebextensions/*.config` (files in alphabetical order, commands in alphabetical order by
//!   name; `leader_only` ones on the leader only, before the other container commands, and `leader_only`
//!   wins over `test`), then `.platform/hooks/predeploy`; after the web process is up,
//!   `.platform/hooks/postdeploy` ("Platform hooks"; files in a hook directory run in alphabetical order
//!   and are made executable, as platform versions since April 2022 do).
//! - Working directory: the staging directory (`cwd` may change it); environment: the environment
//!   properties and the secrets of `aws:elasticbeanstalk:application:environmentsecrets`, each the whole
//!   SecretString of its ARN ("Fetching secrets and parameters to Elastic Beanstalk environment
//!   variables": available to container commands and platform hooks); a command's `env` on top.
//! - A command that exits non-zero (without `ignoreErrors`) stops the instance's deployment: cfn-init's
//!   `Command <name> (<command>) failed`, the engine's `container commands build failed`, and the
//!   Beanstalk events `Instance deployment failed. For details, see 'eb-engine.log'.` and
//!   `[Instance: i-...] Command failed on instance. Return code: 1 Output: Engine execution has
//!   encountered an error..`. The logs are what RequestEnvironmentInfo's tail compiles.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use serde::Deserialize;

use crate::beanstalk::Environment;

/// Where an environment's option settings name its secrets.
pub const SECRETS_NAMESPACE: &str = "aws:elasticbeanstalk:application:environmentsecrets";

/// The log files of an instance, as Amazon Linux 2/2023 platforms name them (tail logs show them so).
pub const LOG_FILES: &[&str] = &[
    "/var/log/eb-engine.log",
    "/var/log/eb-hooks.log",
    "/var/log/cfn-init.log",
    "/var/log/cfn-init-cmd.log",
    "/var/log/web.stdout.log",
];

/// The environment's instances: those running, else the ones a launch starts (MinSize of
/// `aws:autoscaling:asg`, 1 when unset); the first is the leader.
pub fn instance_ids(env: &Environment) -> Vec<String> {
    if !env.instances.is_empty() {
        return env.instances.iter().map(|i| i.id.clone()).collect();
    }
    (0..env.size_bounds().0)
        .map(|i| instance_id(env, i))
        .collect()
}

/// The `n`th instance the environment's Auto Scaling group launches (`i-0` and 16 hex digits, stable
/// per environment so logs and health name the same instances).
pub fn instance_id(env: &Environment, n: usize) -> String {
    let seed: u64 = env.id.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    });
    format!("i-0{:016x}", seed.wrapping_add(n as u64))
}

/// An instance's log directory (`<dir>/var/log/...` inside it).
pub fn log_dir(env_dir: &Path, instance: &str) -> PathBuf {
    env_dir.join("instances").join(instance)
}

/// An instance's log file by its path on the instance (`/var/log/eb-engine.log`).
pub fn log_file(env_dir: &Path, instance: &str, path: &str) -> PathBuf {
    log_dir(env_dir, instance).join(path.trim_start_matches('/'))
}

/// Appends lines to one of an instance's logs.
struct Logs {
    env_dir: PathBuf,
    instance: String,
}

impl Logs {
    fn append(&self, path: &str, lines: &[String]) {
        let file = log_file(&self.env_dir, &self.instance, path);
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
        {
            for line in lines {
                let _ = writeln!(f, "{line}");
            }
        }
    }

    /// `2026/03/03 12:09:25.964246 [INFO] ...`, eb-engine.log's format.
    fn engine(&self, level: &str, message: &str) {
        let line = format!("{} [{level}] {message}", engine_time(SystemTime::now()));
        self.append("/var/log/eb-engine.log", &[line]);
    }

    /// `2024-12-03 17:53:01,286 [INFO] ...`, cfn-init.log's format.
    fn cfn_init(&self, level: &str, message: &str) {
        let line = format!("{} [{level}] {message}", cfn_time(SystemTime::now()));
        self.append("/var/log/cfn-init.log", &[line]);
    }

    /// cfn-init-cmd.log's lines: `2024-12-03 17:53:01,286 P3644 [INFO] ...`.
    fn cfn_cmd(&self, level: &str, message: &str) {
        let line = format!(
            "{} P{} [{level}] {message}",
            cfn_time(SystemTime::now()),
            std::process::id()
        );
        self.append("/var/log/cfn-init-cmd.log", &[line]);
    }
}

fn engine_time(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_micros(t).to_string();
    // 2026-03-03T12:09:25.964246Z -> 2026/03/03 12:09:25.964246
    s.trim_end_matches('Z')
        .replacen('-', "/", 2)
        .replace('T', " ")
}

fn cfn_time(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(t).to_string();
    // 2024-12-03T17:53:01.286Z -> 2024-12-03 17:53:01,286
    s.trim_end_matches('Z').replace('T', " ").replace('.', ",")
}

/// One container command as a configuration file gives it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerCommand {
    command: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    env: BTreeMap<String, serde_yaml_ng::Value>,
    cwd: Option<String>,
    test: Option<String>,
    #[serde(default)]
    ignore_errors: Option<serde_yaml_ng::Value>,
    // The one key the documentation spells in snake case.
    #[serde(default, rename = "leader_only")]
    leader_only: Option<serde_yaml_ng::Value>,
}

fn truthy(v: &Option<serde_yaml_ng::Value>) -> bool {
    match v {
        Some(serde_yaml_ng::Value::Bool(b)) => *b,
        Some(serde_yaml_ng::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn scalar(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

#[derive(Debug, Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    container_commands: BTreeMap<String, ContainerCommand>,
}

/// The container commands of every `.ebextensions/*.config`: files in alphabetical order, a name in a
/// later file replacing the same name in an earlier one; a file that does not parse is named.
fn container_commands(staging: &Path) -> Result<BTreeMap<String, ContainerCommand>, String> {
    let dir = staging.join(".ebextensions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "config"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut commands = BTreeMap::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed: ConfigFile = serde_yaml_ng::from_str(&text).map_err(|e| {
            format!(
                "The configuration file .ebextensions/{} in application version is not valid: {e}",
                file.file_name().unwrap_or_default().to_string_lossy()
            )
        })?;
        commands.extend(parsed.container_commands);
    }
    Ok(commands)
}

/// Why an instance's deployment stopped: the event text after `Instance deployment failed.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub instance: String,
    pub reason: String,
}

/// Output of a process, merged, and its exit code.
fn run_process(mut command: Command) -> (i32, String, String) {
    match command.stdin(Stdio::null()).output() {
        Ok(out) => (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => (127, String::new(), format!("{e}")),
    }
}

fn shell(script: &str, cwd: &Path, env: &[(String, String)]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .current_dir(cwd)
        .envs(env.iter().cloned());
    c
}

/// Runs the prebuild hooks, container commands and predeploy hooks on every instance (the leader
/// last, so its staging directory is the one the web process starts from). The leader's staging
/// directory is `leader_staging`, already extracted; the others are extracted from `bundle`.
pub fn deploy_instances(
    env: &Environment,
    env_dir: &Path,
    deploy_dir: &Path,
    leader_staging: &Path,
    bundle: &[u8],
    vars: &[(String, String)],
) -> Result<(), Failure> {
    let instances = instance_ids(env);
    for (i, instance) in instances.iter().enumerate().rev() {
        let leader = i == 0;
        let staging = if leader {
            leader_staging.to_path_buf()
        } else {
            let dir = deploy_dir.join(instance).join("staging");
            crate::lifecycle::unpack(bundle, &dir).map_err(|e| Failure {
                instance: instance.clone(),
                reason: format!("The source bundle could not be extracted: {e}"),
            })?;
            dir
        };
        let logs = Logs {
            env_dir: env_dir.to_path_buf(),
            instance: instance.clone(),
        };
        deploy_one(&logs, &staging, leader, vars).map_err(|reason| Failure {
            instance: instance.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn deploy_one(
    logs: &Logs,
    staging: &Path,
    leader: bool,
    vars: &[(String, String)],
) -> Result<(), String> {
    logs.engine("INFO", "Executing instruction: StageApplication");
    logs.engine("INFO", "Executing instruction: RunAppDeployPreBuildHooks");
    hooks(logs, staging, "prebuild", "RunAppDeployPreBuildHooks", vars)?;
    logs.engine("INFO", "Executing instruction: PostBuildEbExtension");
    container_commands_on(logs, staging, leader, vars)?;
    logs.engine("INFO", "Executing instruction: RunAppDeployPreDeployHooks");
    hooks(
        logs,
        staging,
        "predeploy",
        "RunAppDeployPreDeployHooks",
        vars,
    )?;
    Ok(())
}

/// The postdeploy hooks, on every instance, once the web process runs.
pub fn postdeploy(
    env: &Environment,
    env_dir: &Path,
    leader_staging: &Path,
    deploy_dir: &Path,
    vars: &[(String, String)],
) -> Result<(), Failure> {
    for (i, instance) in instance_ids(env).iter().enumerate() {
        let staging = if i == 0 {
            leader_staging.to_path_buf()
        } else {
            deploy_dir.join(instance).join("staging")
        };
        let logs = Logs {
            env_dir: env_dir.to_path_buf(),
            instance: instance.clone(),
        };
        logs.engine("INFO", "Executing instruction: RunAppDeployPostDeployHooks");
        hooks(
            &logs,
            &staging,
            "postdeploy",
            "RunAppDeployPostDeployHooks",
            vars,
        )
        .map_err(|reason| Failure {
            instance: instance.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn container_commands_on(
    logs: &Logs,
    staging: &Path,
    leader: bool,
    vars: &[(String, String)],
) -> Result<(), String> {
    let commands = container_commands(staging).inspect_err(|e| {
        logs.engine("ERROR", &format!("An error occurred during execution of command [app-deploy] - [PostBuildEbExtension]. Stop running the command. Error: {e}"));
    })?;
    if commands.is_empty() {
        return Ok(());
    }
    logs.engine(
        "INFO",
        "Starting executing the config set Infra-EmbeddedPostBuild.",
    );
    let (leader_first, others): (Vec<_>, Vec<_>) = commands
        .into_iter()
        .partition(|(_, c)| truthy(&c.leader_only));
    let order: Vec<(String, ContainerCommand)> = if leader {
        leader_first.into_iter().chain(others).collect()
    } else {
        others
    };
    for (name, c) in order {
        let Some(command) = &c.command else {
            continue;
        };
        let cwd = c
            .cwd
            .as_ref()
            .map(|d| staging.join(d))
            .unwrap_or_else(|| staging.to_path_buf());
        let mut env: Vec<(String, String)> = vars.to_vec();
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), scalar(v))));
        // leader_only takes precedence over test.
        if let (Some(test), false) = (&c.test, truthy(&c.leader_only)) {
            let (code, _, _) = run_process(shell(test, &cwd, &env));
            logs.cfn_cmd("INFO", &format!("Test for Command {name}"));
            if code != 0 {
                logs.cfn_cmd("INFO", &format!("Test failed with code {code}"));
                logs.cfn_init("INFO", &format!("Command {name} not executed: test failed"));
                continue;
            }
            logs.cfn_cmd("INFO", "Completed successfully.");
        }
        let (text, process) = match command {
            serde_yaml_ng::Value::Sequence(parts) => {
                let parts: Vec<String> = parts.iter().map(scalar).collect();
                let mut p = Command::new(parts.first().cloned().unwrap_or_default());
                p.args(&parts[1.min(parts.len())..])
                    .current_dir(&cwd)
                    .envs(env.iter().cloned());
                (parts.join(" "), p)
            }
            other => {
                let text = scalar(other);
                let p = shell(&text, &cwd, &env);
                (text, p)
            }
        };
        logs.cfn_cmd("INFO", &"=".repeat(60));
        logs.cfn_cmd("INFO", &format!("Command {name}"));
        let (code, out, err) = run_process(process);
        logs.cfn_cmd(
            "INFO",
            "-----------------------Command Output-----------------------",
        );
        for line in out.lines().chain(err.lines()) {
            logs.cfn_cmd("INFO", &format!("\t{line}"));
        }
        logs.cfn_cmd("INFO", &"-".repeat(60));
        if code == 0 {
            logs.cfn_cmd("INFO", "Completed successfully.");
            logs.cfn_init("INFO", &format!("Command {name} succeeded"));
            continue;
        }
        logs.cfn_cmd("ERROR", &format!("Exited with error code {code}"));
        if truthy(&c.ignore_errors) {
            logs.cfn_init(
                "INFO",
                &format!("Command {name} failed with error code {code}; ignored (ignoreErrors)"),
            );
            continue;
        }
        logs.cfn_init("ERROR", &format!("Command {name} ({text}) failed"));
        logs.cfn_init(
            "ERROR",
            &format!("Error encountered during build of postbuild_0: Command {name} failed"),
        );
        logs.engine(
            "INFO",
            &format!("Error occurred during build: Command {name} failed"),
        );
        logs.engine("ERROR", "An error occurred during execution of command [app-deploy] - [PostBuildEbExtension]. Stop running the command. Error: container commands build failed. Please refer to /var/log/cfn-init.log for more details.");
        return Err("For details, see 'eb-engine.log'.".into());
    }
    Ok(())
}

/// The executables of `.platform/hooks/<stage>/`, in alphabetical order.
fn hooks(
    logs: &Logs,
    staging: &Path,
    stage: &str,
    instruction: &str,
    vars: &[(String, String)],
) -> Result<(), String> {
    let dir = staging.join(".platform/hooks").join(stage);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        return Ok(());
    }
    files.sort();
    let relative = format!(".platform/hooks/{stage}/");
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    logs.engine("INFO", &format!("Executing platform hooks in {relative}"));
    logs.engine(
        "INFO",
        &format!(
            "Following platform hooks will be executed in order: [{}]",
            names.join(" ")
        ),
    );
    for (file, name) in files.iter().zip(&names) {
        let hook = format!("{relative}{name}");
        let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755));
        logs.engine("INFO", &format!("Running platform hook: {hook}"));
        let mut c = Command::new(file);
        c.current_dir(staging).envs(vars.iter().cloned());
        let (code, out, err) = run_process(c);
        let stamped: Vec<String> = out
            .lines()
            .chain(err.lines())
            .map(|l| format!("{} [INFO] {l}", engine_time(SystemTime::now())))
            .collect();
        logs.append("/var/log/eb-hooks.log", &stamped);
        if code != 0 {
            logs.engine("ERROR", &format!("An error occurred during execution of command [app-deploy] - [{instruction}]. Stop running the command. Error: Command {hook} failed with error exit status {code}. Stderr:{}", err.trim_end()));
            return Err("For details, see 'eb-engine.log'.".into());
        }
    }
    logs.engine(
        "INFO",
        &format!("Finished running the platform hooks in {relative}"),
    );
    Ok(())
}

/// The last `n` lines of every log of one instance, as a tail log lays them out: each file under a
/// banner of its path.
pub fn tail(env_dir: &Path, instance: &str, n: usize) -> String {
    let mut out = String::new();
    for path in LOG_FILES {
        let text = std::fs::read_to_string(log_file(env_dir, instance, path)).unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        out.push_str("----------------------------------------\n");
        out.push_str(path);
        out.push_str("\n----------------------------------------\n");
        for line in &lines[lines.len().saturating_sub(n)..] {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("\n\n");
    }
    out
}

/// Adds the web process's output to the instance's `web.stdout.log`.
pub fn web_log(env_dir: &Path, instance: &str) -> PathBuf {
    log_file(env_dir, instance, "/var/log/web.stdout.log")
}
