//! Headless Chromium for the report: where it is, how it starts on a machine with a closed network and no
//! display, and the screenshot written next to the page. The browser test drives the same command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Set to a browser binary to use that one.
pub const ENV: &str = "BEANSWAP_CHROMIUM";

/// Names Chromium goes by, in the order they are looked for on PATH.
const NAMES: &[&str] = &[
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// Headless, as root, without a GPU, and without the background connections a closed network refuses
/// (each one a failed lookup and a delay otherwise).
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
];

/// The page's width in the screenshot: the timeline's 1200 px and the page's margins.
pub const WIDTH: u32 = 1280;

/// The browser to use: `$BEANSWAP_CHROMIUM`, else the first of [`NAMES`] on PATH.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    NAMES.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium with [`FLAGS`] and a fresh profile in `profile`, then `args`.
pub fn command(chromium: &Path, profile: &Path, args: &[String]) -> Command {
    let mut command = Command::new(chromium);
    command
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` to its end, killing it after `timeout`.
pub fn run(mut command: Command, timeout: Duration) -> Result<Output, String> {
    let mut child = command
        .spawn()
        .map_err(|e| format!("start {:?}: {e}", command.get_program()))?;
    // Read both pipes while it runs: a full pipe would stop it.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{:?} still running after {}s; stopped",
                    command.get_program(),
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("wait for {:?}: {e}", command.get_program())),
        }
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = vec![];
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// Writes a PNG of `page` (a local file) `height` px tall, [`WIDTH`] wide, to `png`.
pub fn screenshot(chromium: &Path, page: &Path, png: &Path, height: u32) -> Result<(), String> {
    let profile = tempfile::Builder::new()
        .prefix("beanswap-chromium-")
        .tempdir()
        .map_err(|e| format!("a profile directory for Chromium: {e}"))?;
    let page = page
        .canonicalize()
        .map_err(|e| format!("{}: {e}", page.display()))?;
    let _ = std::fs::remove_file(png);
    let output = run(
        command(
            chromium,
            profile.path(),
            &[
                format!("--window-size={WIDTH},{}", height.max(200)),
                format!("--screenshot={}", png.display()),
                format!("file://{}", page.display()),
            ],
        ),
        Duration::from_secs(60),
    )?;
    if !png.exists() {
        return Err(format!(
            "Chromium wrote no screenshot ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .filter(|l| !l.contains("dbus"))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(())
}

/// About how tall the page is: the timeline, and the rest above and below it.
pub fn page_height(run: &super::Run) -> u32 {
    let (_, timeline) = super::svg::timeline(run);
    (timeline + 700.0 + 80.0 * run.deployments.len() as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_is_found_where_it_is_said_to_be() {
        // Only this test sets the variable (no other test in this binary reads it).
        std::env::set_var(ENV, "/opt/some/chrome");
        assert_eq!(find(), Some(PathBuf::from("/opt/some/chrome")));
        std::env::remove_var(ENV);
        let c = command(
            Path::new("/usr/bin/chromium"),
            Path::new("/tmp/p"),
            &["--dump-dom".into()],
        );
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for flag in [
            "--headless",
            "--no-sandbox",
            "--disable-background-networking",
        ] {
            assert!(args.contains(&flag.to_string()), "{args:?}");
        }
        assert!(args.contains(&"--user-data-dir=/tmp/p".to_string()));
        assert_eq!(args.last().map(String::as_str), Some("--dump-dom"));
    }

    #[test]
    fn a_command_that_outlives_its_timeout_is_stopped() {
        let mut sleep = Command::new("sleep");
        sleep.arg("5").stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let e = run(sleep, Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("still running"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let mut echo = Command::new("echo");
        echo.arg("hi").stdout(Stdio::piped()).stderr(Stdio::piped());
        assert_eq!(run(echo, Duration::from_secs(5)).unwrap().stdout, b"hi\n");
    }
}
