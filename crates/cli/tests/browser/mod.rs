//! Renders a report page in headless Chromium (Debian's `chromium`) and reads back what the page shows:
//! `--dump-dom` on a copy of the page with check.js at its end, which writes its findings into the DOM,
//! and Chromium's log on stderr for every console message (script errors, blocked loads).
//!
//! Without Chromium the test fails, saying how to install it, unless `BEANSWAP_NO_BROWSER` says why it
//! could not be installed (scripts/test sets it when `apt-get install chromium` fails): then it is
//! skipped, saying so.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use beanswap_cli::report::browser;
use serde_json::Value;

/// What the page's checks need to count (check.js reports how many of each it found).
pub const SELECTORS: &[&str] = &[
    "#verdict",
    "#stats [data-metric=failures]",
    "svg#timeline",
    "#timeline #before-production",
    "#timeline text.before-label",
    "#timeline rect.bar",
    "#timeline rect.bar[data-class=before]",
    "#timeline rect.bar[data-class=failed]",
    "#timeline rect.bar[data-class=v0]",
    "#timeline rect.bar[data-class=v1]",
    "#timeline polyline.p50",
    "#timeline polyline.p99",
    "#timeline g.marker",
    "#timeline g.marker[data-kind=swap]",
    "#timeline g.marker[data-kind=termination]",
    "#timeline g.event-tick",
    "#timeline g.lane",
    "#timeline g.action",
    "#timeline g.series",
    "table#summary tbody tr",
    "table#summary [data-metric=old-after-swap]",
    "table#summary [data-metric=cutover]",
    "table#summary [data-metric=calls]",
    "#run-verdict",
    "#events-list tbody tr",
];

const CHECK_JS: &str = include_str!("check.js");

/// The browser, or `None` when the test is to be skipped (and it said why).
pub fn chromium() -> Option<PathBuf> {
    if let Some(found) = browser::find() {
        return Some(found);
    }
    match std::env::var("BEANSWAP_NO_BROWSER") {
        Ok(why) if !why.is_empty() => {
            eprintln!("SKIPPED: the browser test needs Chromium, and {why}");
            None
        }
        _ => panic!(
            "no Chromium found (looked for ${} and chromium, chromium-browser, google-chrome on PATH): \
             install it with `apt-get install -y chromium`, or run scripts/test, which does",
            browser::ENV
        ),
    }
}

/// What the page showed in Chromium.
pub struct Rendered {
    /// Console messages Chromium logged (any is an error: the report logs nothing).
    pub console: Vec<String>,
    /// What check.js found.
    pub checks: Value,
    pub took: Duration,
}

impl Rendered {
    pub fn found(&self, selector: &str) -> u64 {
        self.checks["found"][selector]
            .as_u64()
            .unwrap_or_else(|| panic!("{selector} was not counted: {}", self.checks))
    }

    pub fn metric(&self, key: &str) -> String {
        self.checks["metrics"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no metric {key}: {}", self.checks["metrics"]))
            .to_string()
    }

    pub fn height(&self) -> u32 {
        self.checks["height"].as_u64().unwrap() as u32
    }
}

/// Renders `page` with the checks added, in a fresh profile, and returns what they found.
pub fn render(chromium: &Path, page: &Path) -> Rendered {
    let html = std::fs::read_to_string(page).unwrap();
    // The report allows no script; the checks are one, so the copy allows inline scripts and nothing
    // else more: loads from anywhere are still refused, and logged as the errors they are.
    let csp = "default-src 'none';";
    assert!(
        html.contains(csp),
        "the page no longer has its Content-Security-Policy"
    );
    let selectors = serde_json::to_string(SELECTORS).unwrap();
    let instrumented = html
        .replacen(csp, "default-src 'none'; script-src 'unsafe-inline';", 1)
        .replacen(
            "</body>",
            &format!(
                "<script>{}</script></body>",
                CHECK_JS.replace("__SELECTORS__", &selectors)
            ),
            1,
        );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("checked.html");
    std::fs::write(&copy, instrumented).unwrap();
    let profile = dir.path().join("profile");
    let started = Instant::now();
    let output = browser::run(
        browser::command(
            chromium,
            &profile,
            &[
                format!("--window-size={},1000", browser::WIDTH),
                "--enable-logging=stderr".into(),
                "--v=0".into(),
                "--dump-dom".into(),
                format!("file://{}", copy.display()),
            ],
        ),
        Duration::from_secs(60),
    )
    .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let console: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let start = stdout
        .find(r#"<pre id="beanswap-checks" style="display: none;">"#)
        .map(|i| i + r#"<pre id="beanswap-checks" style="display: none;">"#.len())
        .unwrap_or_else(|| {
            panic!(
                "the checks wrote nothing ({}); console: {console:#?}\nstdout:\n{}\nstderr:\n{stderr}",
                output.status,
                stdout.chars().take(2000).collect::<String>()
            )
        });
    let end = start + stdout[start..].find("</pre>").unwrap();
    let json = stdout[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    let checks: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    Rendered {
        console,
        checks,
        took,
    }
}

/// The width and height a PNG file says it has.
pub fn png_size(png: &Path) -> (u32, u32) {
    let bytes = std::fs::read(png).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        png.display()
    );
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The checks every report page must pass: nothing logged, no request made, no text over another
/// text, no label over a bar it does not belong to.
pub fn assert_clean(r: &Rendered) {
    assert!(r.console.is_empty(), "console: {:#?}", r.console);
    assert_eq!(r.checks["errors"], serde_json::json!([]), "{}", r.checks);
    assert_eq!(
        r.checks["resources"],
        serde_json::json!([]),
        "requests made"
    );
    assert_eq!(
        r.checks["overlaps"],
        serde_json::json!([]),
        "texts over texts"
    );
    assert_eq!(
        r.checks["barOverlaps"],
        serde_json::json!([]),
        "labels over bars"
    );
    assert!(r.checks["texts"].as_u64().unwrap() > 50, "{}", r.checks);
}
