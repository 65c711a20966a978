//! moto's server (PyPI `moto[server]`) as a child process, for S3 and Route 53.

use std::path::PathBuf;

use tokio::process::Child;

/// A running moto_server; killed on drop.
pub struct Moto {
    port: u16,
    _child: Child,
}

impl Moto {
    /// Starts moto_server on a loopback port and waits until it says it listens.
    ///
    /// Finds the binary in `$MOTO_SERVER`, then `.venv/bin/moto_server` (what `.ci/run` installs),
    /// then `PATH`. Fails loudly when missing: a skipped test would prove nothing.
    pub async fn start() -> Moto {
        let binary = find_binary();
        let spawned = local_aws::moto::spawn(&binary).await.unwrap_or_else(|e| {
            panic!(
                "could not start {} ({e}); run .ci/run or `pip install 'moto[server]'`",
                binary.display()
            )
        });
        Moto {
            port: spawned.port,
            _child: spawned.child,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn find_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = crate::workspace_root().join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}
