//! moto's server (PyPI `moto[server]`) as a child process, for S3 and Route 53.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A running moto_server; killed on drop.
pub struct Moto {
    port: u16,
    _child: Child,
}

impl Moto {
    /// Starts moto_server on a free loopback port and waits until it accepts connections.
    ///
    /// Finds the binary in `$MOTO_SERVER`, then `.venv/bin/moto_server` (what `.ci/run` installs),
    /// then `PATH`. Fails loudly when missing: a skipped test would prove nothing.
    pub async fn start() -> Moto {
        let binary = find_binary();
        let port = crate::free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start {} ({e}); run .ci/run or `pip install 'moto[server]'`",
                    binary.display()
                )
            });
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not listen on {port} within 60s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Moto {
            port,
            _child: child,
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
