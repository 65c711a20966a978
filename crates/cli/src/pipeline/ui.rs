//! What a person (or, with `--json`, a program) sees of a run: progress lines and spinners, a wait's
//! bar, Beanstalk's events as they come (kept for the report), and the manual approval's prompt.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::RunResult;
use crate::local::LocalCloud;
use crate::report;

/// Prints progress for a person (spinners, lines) or a machine (`--json`: one JSON object per line).
pub struct Ui {
    pub json: bool,
}

impl Ui {
    pub fn line(&self, text: &str) {
        if self.json {
            println!("{}", json!({"event": "log", "message": text}));
        } else {
            eprintln!("{text}");
        }
    }

    pub fn event(&self, value: Value) {
        if self.json {
            println!("{value}");
        }
    }

    pub(super) fn spinner(&self, label: &str) -> ProgressBar {
        let bar = if self.json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        };
        bar.set_style(spinner_style());
        bar.set_prefix(label.to_string());
        bar
    }
}

pub(super) fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A long wait that reports how far it is: the job's percentComplete as the bar, the time so far and,
/// when known, the time it is expected to take.
pub struct Wait {
    pub percent: u8,
    pub elapsed: Duration,
    pub expected: Option<Duration>,
    /// What it is waiting for (the job's latest summary line).
    pub waiting_for: String,
}

impl Wait {
    /// The line beside the bar: `12% · 3s of ~2m expected (launch delay) · waiting for ...`.
    pub fn line(&self) -> String {
        let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        let expected = match self.expected {
            Some(e) if self.elapsed > e => format!(
                " of ~{} expected (launch delay), {} over",
                secs(e),
                secs(self.elapsed - e)
            ),
            Some(e) => format!(" of ~{} expected (launch delay)", secs(e)),
            None => String::new(),
        };
        format!(
            "{}% · {}{expected} · waiting for: {}",
            self.percent.min(100),
            secs(self.elapsed),
            self.waiting_for
        )
    }

    /// The wait for `--json`.
    pub fn event(&self, action: &str) -> Value {
        json!({
            "event": "waiting",
            "action": action,
            "percent": self.percent.min(100),
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "expected_seconds": self.expected.map(|e| e.as_secs_f64()),
            "waiting_for": self.waiting_for,
        })
    }

    /// Turns `bar` into a progress bar at this wait's percent, saying what it waits for.
    pub fn show(&self, bar: &ProgressBar) {
        if bar.length() != Some(100) {
            bar.set_length(100);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{bar:24}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
        }
        bar.set_position(u64::from(self.percent.min(100)));
        bar.set_message(self.line());
    }
}

/// Reads one line from `input` on a thread of its own: a read blocked on the terminal must not hold up
/// the exit on Ctrl-C, as a runtime's blocking task would. `None` at the end of the input.
pub async fn read_line<R: std::io::BufRead + Send + 'static>(
    mut input: R,
) -> Result<Option<String>, String> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = input.read_line(&mut line).map(|n| (n > 0).then_some(line));
        let _ = answer.send(read);
    });
    answered
        .await
        .map_err(|e| format!("manual approval: {e}"))?
        .map_err(|e| format!("manual approval: reading the answer: {e}"))
}

/// The manual approval's outcome from the line typed at its prompt (`None`: the input ended).
pub fn decide(answer: Option<&str>) -> Result<String, String> {
    match answer.map(str::trim) {
        None => Err(
            "manual approval: no answer (the input ended); run with --approve to approve".into(),
        ),
        Some("y" | "Y" | "yes") => Ok("approved".into()),
        Some(_) => Err("rejected at the manual approval".into()),
    }
}

/// Shows and keeps the Beanstalk events that came after `result`'s run ended: a termination retire
/// began finishes later, and a running local-aws is asked at most once a second, so the last action's
/// last events can come after it.
pub async fn later_events(cloud: &LocalCloud, ui: &Ui, result: &mut RunResult, epoch: Instant) {
    let events = std::cell::RefCell::new(std::mem::take(&mut result.events));
    let cursor = std::cell::Cell::new(result.event_cursor);
    let seen = Seen {
        cursor: &cursor,
        events: &events,
        epoch,
    };
    show_events(cloud, ui, &seen, &ProgressBar::hidden()).await;
    result.events = events.take();
    result.event_cursor = cursor.get();
}

/// Beanstalk's events as they are shown: where the last one shown is, and each one with when it was
/// seen, for the report.
pub(super) struct Seen<'a> {
    pub(super) cursor: &'a std::cell::Cell<u64>,
    pub(super) events: &'a std::cell::RefCell<Vec<report::Event>>,
    pub(super) epoch: Instant,
}

/// Prints Beanstalk events recorded since the cursor (read from an in-process local-aws directly: no API
/// call) and keeps them for the report. The last one, `environment: message`, if any came.
pub(super) async fn show_events(
    cloud: &LocalCloud,
    ui: &Ui,
    seen: &Seen<'_>,
    spinner: &ProgressBar,
) -> Option<String> {
    let mut last = None;
    for (sequence, severity, environment, message) in cloud.events_after(seen.cursor.get()).await {
        last = Some(format!("{environment}: {message}"));
        seen.cursor.set(sequence);
        spinner.suspend(|| ui.line(&format!("    {environment}: {severity} {message}")));
        ui.event(json!({"event": "beanstalk", "environment": environment, "severity": severity, "message": message}));
        seen.events.borrow_mut().push(report::Event {
            at: seen.epoch.elapsed(),
            severity,
            environment,
            message,
        });
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_shows_the_jobs_percent_its_time_against_the_launch_delay_and_what_it_waits_for() {
        let bar = ProgressBar::hidden();
        let mut wait = Wait {
            percent: 12,
            elapsed: Duration::from_millis(3_400),
            expected: Some(Duration::from_secs(120)),
            waiting_for: "shop-1a2b is Launching / Grey after 3s".into(),
        };
        wait.show(&bar);
        assert_eq!((bar.length(), bar.position()), (Some(100), 12));
        assert_eq!(
            bar.message(),
            "12% · 3s of ~2m expected (launch delay) · waiting for: shop-1a2b is Launching / Grey after 3s"
        );
        wait.elapsed = Duration::from_secs(150);
        wait.percent = 200;
        wait.show(&bar);
        assert_eq!(bar.position(), 100, "never past the end");
        assert!(
            bar.message()
                .starts_with("100% · 2m 30s of ~2m expected (launch delay), 30s over · "),
            "{}",
            bar.message()
        );
        wait.expected = None;
        assert!(wait.line().contains(" · 2m 30s · waiting for: shop-1a2b"));
    }

    #[tokio::test]
    async fn the_approval_reads_one_line_and_approves_only_on_yes() {
        let input = std::io::Cursor::new(b"y\nmore\n".to_vec());
        let line = read_line(input).await.unwrap();
        assert_eq!(line.as_deref(), Some("y\n"));
        assert_eq!(decide(line.as_deref()).unwrap(), "approved");
        assert_eq!(decide(Some("yes\n")).unwrap(), "approved");
        assert_eq!(
            decide(Some("\n")).unwrap_err(),
            "rejected at the manual approval"
        );
        assert_eq!(
            decide(Some("n\n")).unwrap_err(),
            "rejected at the manual approval"
        );
        let ended = read_line(std::io::Cursor::new(Vec::new())).await.unwrap();
        assert_eq!(ended, None);
        assert!(decide(ended.as_deref()).unwrap_err().contains("--approve"));
    }
}
