//! Starting moto's server (PyPI `moto[server]`) as a child process.
//!
//! moto is asked for port 0 and its own startup line says which port the kernel gave it. Choosing a
//! free port first and passing it on left a window of seconds (moto's imports) in which a parallel test's
//! app could take the same port; the "is it listening yet" probe then connected to that app, and the
//! first moto call got the app's 404 (CI, 2026-12-02: "Secrets Manager CreateSecret failed (404 Not
//! Found)").

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long moto may take to import and listen; it usually takes one to three seconds.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A moto_server that has said it listens, and its endpoint.
pub struct Spawned {
    /// Killed on drop.
    pub child: Child,
    pub port: u16,
}

impl Spawned {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts `binary` on a loopback port of the kernel's choosing and waits for its startup line.
///
/// The rest of moto's output (a line per request) keeps being read and dropped, so a full pipe never
/// stalls it.
pub async fn spawn(binary: &Path) -> Result<Spawned, String> {
    let mut child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| "moto_server's stderr was not captured".to_string())?;
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let port = tokio::time::timeout(STARTUP_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
            if let Some(port) = listening_port(&line) {
                return Ok(port);
            }
            seen.push(line);
        }
        Err(format!(
            "moto_server ended before listening: {}",
            seen.join(" | ")
        ))
    })
    .await
    .map_err(|_| {
        format!(
            "moto_server did not say it listens within {}s",
            STARTUP_TIMEOUT.as_secs()
        )
    })??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Spawned { child, port })
}

/// The port in Werkzeug's startup line, ` * Running on http://127.0.0.1:37071`.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("Running on http://127.0.0.1:").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::listening_port;

    #[test]
    fn the_port_is_read_from_werkzeugs_startup_line() {
        assert_eq!(
            listening_port(" * Running on http://127.0.0.1:37071"),
            Some(37071)
        );
        assert_eq!(
            listening_port("\u{1b}[33m * Running on http://127.0.0.1:5000\u{1b}[0m"),
            Some(5000)
        );
        assert_eq!(listening_port("Press CTRL+C to quit"), None);
    }
}
