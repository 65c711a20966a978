//! The pure half of the checks: judging a response, the per-check table, body excerpts. No I/O.

use std::time::Duration;

use regex::Regex;

use super::spec::{CheckSpec, StatusSet, VersionCheck};
use super::HttpCheckError;

/// What a response looked like, as much as a check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub status: u16,
    /// Lower-case names, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as (lossy) UTF-8, at most [`super::engine::MAX_BODY_BYTES`] of it.
    pub body: String,
    /// True when the body was longer than what was read.
    pub body_truncated: bool,
    /// The URL that answered (differs from the request's after followed redirects).
    pub final_url: String,
    /// Where a redirect pointed that the redirect policy did not follow.
    pub unfollowed_redirect: Option<String>,
}

impl Observed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no response came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Nothing answered: refused, reset, no route, name not resolving (yet).
    Connect,
    /// A TLS handshake or certificate problem.
    Tls,
    /// Connected, but the whole answer did not arrive within the request timeout.
    Timeout,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    pub kind: TransportKind,
    pub message: String,
}

impl Transport {
    /// One line for the table and the problem list.
    pub fn short(&self) -> String {
        match self.kind {
            TransportKind::Connect => format!("could not connect: {}", self.message),
            TransportKind::Tls => format!("TLS handshake failed: {}", self.message),
            TransportKind::Timeout => self.message.clone(),
            TransportKind::Other => format!("request failed: {}", self.message),
        }
    }
}

/// One check's request in one round, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub method: String,
    pub url: String,
    pub latency: Duration,
    pub response: Result<Observed, Transport>,
    /// Empty when the check passed.
    pub problems: Vec<String>,
    /// The failure looks like an environment that does not answer yet (nothing listening, or a
    /// gateway status from the load balancer), which a warm-up may wait out.
    pub not_answering: bool,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// A multi-line account of this result for a failure message: what was asked, what came back.
    pub fn describe(&self) -> String {
        let verdict = if self.passed() {
            "passed".to_string()
        } else {
            format!("failed: {}", self.problems.join("; "))
        };
        let mut out = format!("check `{}` {verdict}\n", self.name);
        out.push_str(&format!("  request: {} {}\n", self.method, self.url));
        match &self.response {
            Ok(o) => {
                out.push_str(&format!(
                    "  response: {}{} in {}\n",
                    status_line(o.status),
                    if o.final_url != self.url {
                        format!(" from {}", o.final_url)
                    } else {
                        String::new()
                    },
                    ms(self.latency)
                ));
                let headers = interesting_headers(&o.headers);
                if !headers.is_empty() {
                    let shown: Vec<String> =
                        headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
                    out.push_str(&format!("  headers: {}\n", shown.join("; ")));
                }
                out.push_str(&format!("  body: {}\n", excerpt(&o.body, BODY_EXCERPT)));
            }
            Err(t) => {
                out.push_str(&format!(
                    "  no response after {}: {}\n",
                    ms(self.latency),
                    t.short()
                ));
            }
        }
        out
    }
}

/// Characters of a body quoted in a failure message.
pub const BODY_EXCERPT: usize = 600;

/// All checks of one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// 1-based.
    pub number: u32,
    pub results: Vec<CheckResult>,
}

impl Round {
    pub fn passed(&self) -> bool {
        self.results.iter().all(CheckResult::passed)
    }

    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.results.iter().find(|r| !r.passed())
    }

    /// Failed only in ways an environment that is still starting fails.
    pub fn not_answering(&self) -> bool {
        !self.passed()
            && self
                .results
                .iter()
                .filter(|r| !r.passed())
                .all(|r| r.not_answering)
    }
}

/// What a response must look like; compiled from a [`CheckSpec`] or a [`VersionCheck`].
#[derive(Debug, Clone)]
pub struct Expect {
    pub status: StatusSet,
    pub body_contains: Option<String>,
    pub body_regex: Option<Regex>,
    pub json: Vec<(String, serde_json::Value)>,
    pub max_latency: Option<Duration>,
    pub version: Option<VersionExpect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionExpect {
    pub expected: String,
    pub json_pointer: Option<String>,
    pub header: Option<String>,
}

impl Expect {
    /// `at` names the check in errors, e.g. `checks[1]`.
    pub fn from_check(spec: &CheckSpec, at: &str) -> Result<Self, HttpCheckError> {
        spec.validate(at)?;
        let body_regex = spec
            .body_regex
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| HttpCheckError::field(format!("{at}.body_regex"), e.to_string()))?;
        Ok(Expect {
            status: spec.status.clone().unwrap_or_else(StatusSet::any_2xx),
            body_contains: spec.body_contains.clone(),
            body_regex,
            json: spec
                .json
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            max_latency: spec.max_latency_ms.map(Duration::from_millis),
            version: None,
        })
    }

    pub fn from_version(check: &VersionCheck, at: &str) -> Result<Self, HttpCheckError> {
        check.validate(at)?;
        Ok(Expect {
            status: StatusSet::any_2xx(),
            body_contains: None,
            body_regex: None,
            json: vec![],
            max_latency: None,
            version: Some(VersionExpect {
                expected: check.expected.trim().to_string(),
                json_pointer: check.json_pointer.clone(),
                header: check.header.clone(),
            }),
        })
    }
}

/// Everything wrong with `observed` (empty: it passes). Body rules are skipped when the status is already
/// wrong: they would only describe an error page.
pub fn evaluate(expect: &Expect, observed: &Observed, latency: Duration) -> Vec<String> {
    let mut problems = vec![];
    if !expect.status.matches(observed.status) {
        let mut p = format!("status {}, expected {}", observed.status, expect.status);
        if let Some(location) = &observed.unfollowed_redirect {
            p.push_str(&format!(
                " (redirect to {} not followed)",
                clip(location, 200)
            ));
        }
        problems.push(p);
    } else {
        let within = if observed.body_truncated {
            " (in the part read)"
        } else {
            ""
        };
        if let Some(needle) = &expect.body_contains {
            if !observed.body.contains(needle.as_str()) {
                problems.push(format!(
                    "body does not contain `{}`{within}",
                    clip(needle, 100)
                ));
            }
        }
        if let Some(re) = &expect.body_regex {
            if !re.is_match(&observed.body) {
                problems.push(format!(
                    "body does not match /{}/{within}",
                    clip(re.as_str(), 100)
                ));
            }
        }
        if !expect.json.is_empty() {
            problems.extend(json_problems(&expect.json, &observed.body));
        }
        if let Some(v) = &expect.version {
            if let Some(p) = version_problem(v, observed) {
                problems.push(p);
            }
        }
    }
    if let Some(max) = expect.max_latency {
        if latency > max {
            problems.push(format!(
                "took {}, more than the maximum of {}",
                ms(latency),
                ms(max)
            ));
        }
    }
    problems
}

fn json_problems(expected: &[(String, serde_json::Value)], body: &str) -> Vec<String> {
    let doc: serde_json::Value = match serde_json::from_str(body) {
        Ok(doc) => doc,
        Err(e) => return vec![format!("body is not JSON ({e})")],
    };
    expected
        .iter()
        .filter_map(|(pointer, want)| match doc.pointer(pointer) {
            None => Some(format!("JSON has nothing at `{pointer}`, expected {want}")),
            Some(got) if got != want => Some(format!(
                "JSON `{pointer}` is {}, expected {want}",
                clip(&got.to_string(), 100)
            )),
            Some(_) => None,
        })
        .collect()
}

/// The version a response reports: a header, a JSON field or the whole body, trimmed.
pub fn seen_version(v: &VersionExpect, observed: &Observed) -> Result<String, String> {
    if let Some(h) = &v.header {
        return observed
            .header(h)
            .map(|s| s.trim().to_string())
            .ok_or_else(|| format!("no `{h}` header to read the version from"));
    }
    if let Some(pointer) = &v.json_pointer {
        let doc: serde_json::Value = serde_json::from_str(&observed.body)
            .map_err(|e| format!("version body is not JSON ({e})"))?;
        return match doc.pointer(pointer) {
            Some(serde_json::Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Ok(other.to_string()),
            None => Err(format!("version JSON has nothing at `{pointer}`")),
        };
    }
    Ok(observed.body.trim().to_string())
}

fn version_problem(v: &VersionExpect, observed: &Observed) -> Option<String> {
    match seen_version(v, observed) {
        Ok(seen) if seen == v.expected => None,
        Ok(seen) if seen.is_empty() => Some(format!(
            "wrong version: expected `{}`, the app reports nothing",
            clip(&v.expected, 100)
        )),
        Ok(seen) => Some(format!(
            "wrong version: expected `{}`, the app serves `{}`",
            clip(&v.expected, 100),
            clip(&seen, 100)
        )),
        Err(why) => Some(format!(
            "{why} (expected version `{}`)",
            clip(&v.expected, 100)
        )),
    }
}

/// Headers worth showing when a check fails.
const INTERESTING: &[&str] = &[
    "location",
    "content-type",
    "content-length",
    "server",
    "retry-after",
    "www-authenticate",
    "via",
    "x-cache",
    "x-request-id",
    "x-amzn-requestid",
    "x-amzn-trace-id",
];

/// The headers of interest (plus any whose name mentions a version), at most 8, values clipped.
pub fn interesting_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            INTERESTING.contains(&n.as_str()) || n.contains("version")
        })
        .take(8)
        .map(|(n, v)| (n.to_ascii_lowercase(), clip(v, 200)))
        .collect()
}

/// A body made readable in one line: whitespace runs collapsed, control characters dropped, cut at
/// `max` characters with a count of what was left out.
pub fn excerpt(body: &str, max: usize) -> String {
    let mut flat = String::with_capacity(body.len().min(max * 4));
    let mut last_space = true;
    for c in body.chars() {
        if c.is_whitespace() {
            if !last_space {
                flat.push(' ');
                last_space = true;
            }
        } else if !c.is_control() {
            flat.push(c);
            last_space = false;
        }
    }
    let flat = flat.trim_end();
    if flat.is_empty() {
        return "(empty)".into();
    }
    let total = flat.chars().count();
    if total <= max {
        return flat.to_string();
    }
    let cut: String = flat.chars().take(max).collect();
    format!("{cut}… ({} more characters)", total - max)
}

/// `text` cut to `max` characters, marked with `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn status_line(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match reason {
        Some(r) => format!("{status} {r}"),
        None => status.to_string(),
    }
}

/// One row per check over all rounds: rounds passed, statuses seen, slowest answer, first problem.
pub fn summary_table(rounds: &[Round]) -> String {
    let Some(first) = rounds.first() else {
        return "(no checks ran)".into();
    };
    let rows: Vec<[String; 5]> = (0..first.results.len())
        .map(|i| {
            let results: Vec<&CheckResult> =
                rounds.iter().filter_map(|r| r.results.get(i)).collect();
            let passed = results.iter().filter(|r| r.passed()).count();
            let mut statuses: Vec<String> = vec![];
            for r in &results {
                let s = match &r.response {
                    Ok(o) => o.status.to_string(),
                    Err(t) => match t.kind {
                        TransportKind::Connect => "no connection".into(),
                        TransportKind::Tls => "TLS error".into(),
                        TransportKind::Timeout => "timeout".into(),
                        TransportKind::Other => "error".into(),
                    },
                };
                if !statuses.contains(&s) {
                    statuses.push(s);
                }
            }
            let slowest = results.iter().map(|r| r.latency).max().unwrap_or_default();
            let result = match results.iter().find(|r| !r.passed()) {
                None => "ok".to_string(),
                Some(r) => format!("FAIL: {}", clip(&r.problems.join("; "), 90)),
            };
            [
                clip(&first.results[i].name, 36),
                format!("{passed}/{}", results.len()),
                statuses.join(","),
                ms(slowest),
                result,
            ]
        })
        .collect();
    let header = ["check", "passed", "status", "slowest", "result"].map(String::from);
    let mut widths = [0usize; 4];
    for row in rows.iter().chain(std::iter::once(&header)) {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        line.push_str(&row[4]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
