//! Test helpers shared by every crate's tests: a local Lambda Runtime API that runs a real function
//! binary, moto's server, and the local-aws stand-in. Every server binds 127.0.0.1 on a free port and
//! stops when its handle is dropped; every child process is killed on drop.

pub mod bed;
pub mod clients;
pub mod identities;
pub mod moto;
pub mod postgres;

use std::path::PathBuf;

pub use local_aws::LocalAws;

/// A function binary under a local Lambda Runtime API; see [`local_aws::lambda`].
pub mod lambda {
    pub use local_aws::lambda::{Function, Invocation, InvokeError};

    /// Starts `binary` under a local Runtime API, panicking (failing the test) if it cannot start.
    pub async fn start(binary: &std::path::Path, env: &[(&str, String)]) -> Function {
        Function::start(binary, env)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The solution stack the tests launch on: the newest Python branch in local-aws's platform catalogue
/// (an older one is refused as AWS refuses a retired stack).
pub const SOLUTION_STACK: &str = "64bit Amazon Linux 2023 v4.5.2 running Python 3.11";

/// The repository root (where the workspace Cargo.toml is).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// A port nobody listens on right now, for a child process that must be told its port.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Starts local-aws on a free port.
pub async fn local_aws() -> LocalAws {
    LocalAws::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start local-aws")
}

/// The checked-in CodePipeline job event, as JSON.
pub fn job_fixture() -> serde_json::Value {
    let path = workspace_root().join("tests/fixtures/codepipeline-job.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A fixture event with its own fresh job id and the given UserParameters.
pub fn job_event(user_parameters: &str) -> serde_json::Value {
    let mut event = job_fixture();
    event["CodePipeline.job"]["id"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
    event["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]["UserParameters"] =
        serde_json::json!(user_parameters);
    event
}

/// The example app (examples/app) as a source bundle, stamped with `version`, plus `extra` files
/// (name, content) that may replace the app's own (e.g. a broken Procfile).
pub fn app_bundle(version: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let app = workspace_root().join("examples/app");
    let mut files: Vec<(String, Vec<u8>)> = [
        "Procfile",
        "app.py",
        "db.py",
        "pg.py",
        "migrate.py",
        "migrations/0001_orders.sql",
    ]
    .iter()
    .map(|name| {
        let bytes = std::fs::read(app.join(name))
            .unwrap_or_else(|e| panic!("read examples/app/{name}: {e}"));
        (name.to_string(), bytes)
    })
    .collect();
    files.push(("VERSION".into(), format!("{version}\n").into_bytes()));
    for (name, content) in extra {
        files.retain(|(n, _)| n != name);
        files.push((name.to_string(), content.as_bytes().to_vec()));
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(&bytes).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

/// The AWS CLI (`$AWS_CLI`, else the one scripts/test installs in .venv): a client that is not ours,
/// so the wire format is checked against botocore's own parser.
pub fn aws_cli_path() -> PathBuf {
    std::env::var_os("AWS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/aws"))
}

/// [`aws_cli`], its JSON answer parsed (`Null` when it printed nothing), or its stderr when it failed.
pub async fn aws_cli_json(
    endpoint: &str,
    service: &str,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let (ok, stdout, stderr) = aws_cli(endpoint, service, args).await;
    if !ok {
        return Err(stderr);
    }
    if stdout.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&stdout).map_err(|e| format!("not JSON ({e}): {stdout}"))
}

/// Runs `aws --endpoint-url ENDPOINT --region us-east-1 --output json SERVICE ARGS` as the
/// administrator (a test's own check, never a function's call) and with no retries: (succeeded, stdout,
/// stderr).
pub async fn aws_cli(endpoint: &str, service: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(aws_cli_path())
        .args([
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
            service,
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", identities::ADMIN_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "run {} ({e}); run scripts/test to install the AWS CLI",
                aws_cli_path().display()
            )
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
