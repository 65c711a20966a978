//! smoke-test: proves the staged environment works before anyone approves the swap.
//!
//! It runs every check (and the version check) against the environment's URL, in several rounds when
//! asked, so one healthy instance behind the load balancer cannot hide a broken one: all rounds must pass.
//! While the environment does not answer yet (nothing listening, or the load balancer's 502/503/504), it
//! waits with a few short retries per invocation and then hands CodePipeline a continuation token, so a
//! long warm-up costs no Lambda time. The checks themselves live in `beanswap_core::http_check`, shared
//! with the swap action.
//!
//! The binary (`main.rs`) runs [`SmokeTest`] under Lambda; the pipeline template test parses this
//! action's UserParameters with [`Params`] and checks `#{SmokeTest.*}` references against
//! [`OUTPUT_VARIABLES`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use beanswap_core::http_check::spec::parse_resolve;
use beanswap_core::http_check::{
    eval, parse_base_url, CheckSpec, Checker, HttpCheckError, Options, Redirects, Round, StatusSet,
    VersionCheck,
};
use beanswap_core::outcome::limits;
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::{Deserialize, Serialize};
use tracing::info;

/// The output variables a successful run sets (later actions read them as `#{SmokeTest.Passed}`).
pub const OUTPUT_VARIABLES: &[&str] = &["Passed", "Summary"];

/// Longest a single invocation spends waiting between warm-up attempts, whatever the retries say.
pub const MAX_WAIT_PER_INVOCATION: Duration = Duration::from_secs(60);
/// Longest pause between two warm-up attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);

const MAX_CHECKS: usize = 20;
const MAX_ROUNDS: u32 = 10;
const MAX_CONCURRENCY: usize = 16;
const MAX_TIMEOUT_MS: u64 = 60_000;
/// CodePipeline gives a Lambda action 24 hours in all.
const MAX_WINDOW_SECONDS: u64 = 24 * 3600;

/// UserParameters of smoke-test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The environment's base URL or bare CNAME (`#{Stage.Url}`); `http://` when no scheme is given.
    pub url: String,
    /// What to request; `GET /` answering 2xx or 3xx when left out.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Where the app reports its version and what it must be; run last in every round.
    #[serde(default)]
    pub version: Option<VersionCheck>,
    /// Consecutive rounds of all checks that must pass (1 to 10).
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    /// Waiting for an environment that does not answer yet.
    #[serde(default)]
    pub warmup: Warmup,
    /// Requests in flight at once (1 to 16).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per request, connecting to last body byte, in milliseconds (at most 60000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Host name -> `ip[:port]` to connect to instead of resolving it (like `curl --resolve`); the
    /// Host header and TLS name stay the URL's.
    #[serde(default)]
    pub resolve: BTreeMap<String, String>,
    /// `none`, `same-host` (the default: a redirect to another host is judged as the redirect itself)
    /// or `any`.
    #[serde(default)]
    pub redirects: Redirects,
}

fn default_rounds() -> u32 {
    1
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// How long and how often to try an environment that does not answer yet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Warmup {
    /// From the first attempt; after it, not answering is a failure. 0: no waiting at all.
    pub window_seconds: u64,
    /// Extra attempts per invocation before handing back a continuation token.
    pub retries: u32,
    /// Pause before the first retry; doubles each time, up to 15 s.
    pub backoff_ms: u64,
    /// Statuses that mean "not ready yet" rather than "broken" (default 502-504, what a load balancer
    /// answers while no instance is healthy). A 500 from the app itself fails at once.
    pub statuses: StatusSet,
}

impl Default for Warmup {
    fn default() -> Self {
        Warmup {
            window_seconds: 600,
            retries: 3,
            backoff_ms: 2_000,
            statuses: StatusSet::gateway_errors(),
        }
    }
}

/// Everything the checks need, validated.
pub struct Plan {
    pub base: url::Url,
    pub checks: Vec<CheckSpec>,
    pub options: Options,
}

impl Params {
    /// The base URL, checks and client options, or the first mistake, named by its field.
    pub fn plan(&self) -> Result<Plan, HttpCheckError> {
        let base = parse_base_url(&self.url)?;
        let checks = if self.checks.is_empty() && self.version.is_none() {
            CheckSpec::default_set()
        } else {
            self.checks.clone()
        };
        for (i, c) in checks.iter().enumerate() {
            c.validate(&format!("checks[{i}]"))?;
        }
        if let Some(v) = &self.version {
            v.validate("version")?;
        }
        let resolve = self
            .resolve
            .iter()
            .map(|(host, addr)| parse_resolve(host, addr))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            base,
            checks,
            options: Options {
                timeout: Duration::from_millis(self.timeout_ms),
                concurrency: self.concurrency,
                redirects: self.redirects,
                resolve,
                not_ready: self.warmup.statuses.clone(),
            },
        })
    }
}

fn out_of_range(field: &str, got: impl std::fmt::Display, range: &str) -> ParamsError {
    ParamsError::Field {
        field: field.into(),
        reason: format!("{got} is out of range; use {range}"),
    }
}

impl UserParameters for Params {
    const EXAMPLE: &'static str = r##"{"url":"#{Stage.Url}","checks":[{"path":"/health"}],"rounds":3,"version":{"path":"/version","expected":"#{SourceVariables.CommitId}"}}"##;

    fn validate(&self) -> Result<(), ParamsError> {
        if self.checks.len() > MAX_CHECKS {
            return Err(ParamsError::Field {
                field: "checks".into(),
                reason: format!("{} checks; at most {MAX_CHECKS}", self.checks.len()),
            });
        }
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(out_of_range(
                "rounds",
                self.rounds,
                &format!("1 to {MAX_ROUNDS}"),
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(out_of_range(
                "concurrency",
                self.concurrency,
                &format!("1 to {MAX_CONCURRENCY}"),
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(out_of_range(
                "timeout_ms",
                self.timeout_ms,
                &format!("1 to {MAX_TIMEOUT_MS}"),
            ));
        }
        if self.warmup.window_seconds > MAX_WINDOW_SECONDS {
            return Err(out_of_range(
                "warmup.window_seconds",
                self.warmup.window_seconds,
                &format!("0 to {MAX_WINDOW_SECONDS} (CodePipeline's 24 hours)"),
            ));
        }
        if self.warmup.retries > 10 {
            return Err(out_of_range(
                "warmup.retries",
                self.warmup.retries,
                "0 to 10",
            ));
        }
        if !(10..=60_000).contains(&self.warmup.backoff_ms) {
            return Err(out_of_range(
                "warmup.backoff_ms",
                self.warmup.backoff_ms,
                "10 to 60000",
            ));
        }
        self.plan()?;
        Ok(())
    }
}

/// Carried in the continuation token while the environment warms up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmingUp {
    /// Unix milliseconds of the first attempt: the warm-up window counts from here.
    pub since_ms: u64,
    /// Rounds tried so far, over all invocations.
    pub attempts: u32,
}

/// The action. It needs no AWS client: only HTTP to the environment.
#[derive(Debug, Default)]
pub struct SmokeTest;

impl SmokeTest {
    pub fn new(_aws: &SdkConfig) -> Self {
        SmokeTest
    }
}

/// Why a smoke test stops before judging anything.
#[derive(Debug, thiserror::Error)]
pub enum SmokeTestError {
    #[error("UserParameters field `{field}`: {reason}")]
    Params { field: String, reason: String },
    #[error("the smoke test could not start: {0}")]
    Client(String),
}

impl From<HttpCheckError> for SmokeTestError {
    fn from(e: HttpCheckError) -> Self {
        match e {
            HttpCheckError::Field { field, reason } => SmokeTestError::Params { field, reason },
            HttpCheckError::Client(reason) => SmokeTestError::Client(reason),
        }
    }
}

impl From<SmokeTestError> for ActionError {
    fn from(e: SmokeTestError) -> Self {
        match e {
            SmokeTestError::Params { .. } => ActionError::config(e.to_string()),
            SmokeTestError::Client(_) => ActionError::failed(e.to_string()),
        }
    }
}

impl Action for SmokeTest {
    type Params = Params;
    type State = WarmingUp;

    async fn run(
        &self,
        _job: &Job,
        params: Params,
        state: Option<WarmingUp>,
    ) -> Result<Outcome<WarmingUp>, ActionError> {
        let plan = params.plan().map_err(SmokeTestError::from)?;
        let checker = Checker::new(
            &plan.base,
            &plan.checks,
            params.version.as_ref(),
            &plan.options,
        )
        .map_err(SmokeTestError::from)?;
        Ok(smoke_test(&checker, &params, state).await)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Warm-up, then the rounds; every way out is an [`Outcome`].
pub async fn smoke_test(
    checker: &Checker,
    params: &Params,
    state: Option<WarmingUp>,
) -> Outcome<WarmingUp> {
    let started = Instant::now();
    let mut warm = state.unwrap_or(WarmingUp {
        since_ms: now_ms(),
        attempts: 0,
    });
    let window_ms = params.warmup.window_seconds.saturating_mul(1000);
    let window_end = warm.since_ms.saturating_add(window_ms);
    let mut backoff = Duration::from_millis(params.warmup.backoff_ms);
    let mut retries_left = params.warmup.retries;
    let base = checker.base().to_string();

    let first = loop {
        let round = checker.round(1).await;
        warm.attempts += 1;
        if !round.not_answering() {
            break round;
        }
        let now = now_ms();
        let waited = Duration::from_millis(now.saturating_sub(warm.since_ms));
        let problem = round
            .first_failure()
            .map(|r| format!("{} {}: {}", r.method, r.url, r.problems.join("; ")))
            .unwrap_or_default();
        if now >= window_end {
            return Outcome::failed(
                beanswap_core::FailureKind::JobFailed,
                fit(
                    &format!(
                        "the environment at {base} did not answer within the warm-up window of {} s ({} attempts over {} s); the last attempt:\n{}",
                        params.warmup.window_seconds,
                        warm.attempts,
                        waited.as_secs(),
                        describe_round(&round),
                    ),
                    &eval::summary_table(std::slice::from_ref(&round)),
                ),
            );
        }
        let pause = backoff.min(Duration::from_millis(window_end - now));
        if retries_left == 0 || started.elapsed() + pause > MAX_WAIT_PER_INVOCATION {
            let percent = (waited.as_millis() * 100 / u128::from(window_ms.max(1))).min(99);
            info!(attempts = warm.attempts, %problem, "environment not answering yet");
            return Outcome::InProgress {
                summary: format!(
                    "waiting for {base} to answer: attempt {} after {} s of a {} s warm-up window; {problem}",
                    warm.attempts,
                    waited.as_secs(),
                    params.warmup.window_seconds
                ),
                percent: u8::try_from(percent).unwrap_or(99),
                state: warm,
            };
        }
        retries_left -= 1;
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };

    let mut rounds = vec![first];
    if rounds[0].passed() && params.rounds > 1 {
        rounds.extend(checker.rounds(2, params.rounds).await);
    }
    let table = eval::summary_table(&rounds);
    info!(%table, "smoke test rounds");
    let warmed = if warm.attempts > 1 {
        format!(
            "; it answered after {} warm-up attempts over {} s",
            warm.attempts - 1,
            now_ms().saturating_sub(warm.since_ms) / 1000
        )
    } else {
        String::new()
    };
    match rounds.last() {
        Some(last) if !last.passed() => {
            let mut head = format!(
                "smoke test failed in round {} of {} against {base}",
                last.number, params.rounds
            );
            if last.number > 1 {
                head.push_str(&format!(
                    " (rounds 1 to {} passed: some instance behind the load balancer answers differently)",
                    last.number - 1
                ));
            }
            head.push_str(":\n");
            head.push_str(&describe_round(last));
            Outcome::failed(beanswap_core::FailureKind::JobFailed, fit(&head, &table))
        }
        _ => {
            let summary = format!(
                "smoke test passed: {} checks x {} rounds against {base} in {} ms{warmed}\n{table}",
                checker.len(),
                rounds.len(),
                started.elapsed().as_millis()
            );
            Outcome::succeeded(beanswap_core::outcome::truncate(&summary, limits::SUMMARY))
                .with_variable("Passed", "true")
                .with_variable("Summary", summary)
        }
    }
}

/// The first failing check in full, and how many others failed.
fn describe_round(round: &Round) -> String {
    let failed: Vec<_> = round.results.iter().filter(|r| !r.passed()).collect();
    let Some(first) = failed.first() else {
        return String::new();
    };
    let mut out = first.describe();
    if failed.len() > 1 {
        let others: Vec<String> = failed[1..]
            .iter()
            .map(|r| format!("`{}`", r.name))
            .collect();
        out.push_str(&format!(
            "  also failing in this round: {}\n",
            others.join(", ")
        ));
    }
    out
}

/// `head` and then as many whole table rows as fit CodePipeline's 5000 characters.
fn fit(head: &str, table: &str) -> String {
    let budget = limits::FAILURE_MESSAGE - 100;
    let head = eval::clip(head, budget - 200);
    let mut out = format!("{head}\nchecks:\n");
    let rows: Vec<&str> = table.lines().collect();
    for (i, row) in rows.iter().enumerate() {
        if out.chars().count() + row.chars().count() + 1 > budget {
            out.push_str(&format!(
                "({} more rows in the function's log)\n",
                rows.len() - i
            ));
            break;
        }
        out.push_str(row);
        out.push('\n');
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use beanswap_core::params::parse;

    #[test]
    fn the_pipeline_templates_parameters_parse() {
        let p: Params = parse(Some(r#"{"url":"shop-blue.us-east-1.elasticbeanstalk.com","checks":[{"path":"/"},{"path":"/health"}],"rounds":3,"version":{"path":"/version","expected":"abc123"}}"#)).unwrap();
        let plan = p.plan().unwrap();
        assert_eq!(
            plan.base.as_str(),
            "http://shop-blue.us-east-1.elasticbeanstalk.com/"
        );
        assert_eq!(plan.checks.len(), 2);
        assert_eq!(p.rounds, 3);
        assert_eq!(p.warmup.window_seconds, 600);
        assert_eq!(p.redirects, Redirects::SameHost);
        parse::<Params>(Some(
            Params::EXAMPLE
                .replace("#{Stage.Url}", "h.example")
                .as_str(),
        ))
        .unwrap();
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("### smoke-test").unwrap()..];
        let start = section.find("```json\n").unwrap() + "```json\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        assert!(example.len() <= 1000, "{} characters", example.len());
        let p: Params = parse(Some(&example.replace("#{Stage.Url}", "h.example"))).unwrap();
        assert_eq!((p.checks.len(), p.rounds), (3, 3));
    }

    #[test]
    fn no_checks_means_get_slash_expecting_2xx_or_3xx() {
        let p: Params = parse(Some(r#"{"url":"http://h.example"}"#)).unwrap();
        let plan = p.plan().unwrap();
        assert_eq!(plan.checks.len(), 1);
        assert_eq!(plan.checks[0].display_name(), "GET /");
        assert_eq!(
            plan.checks[0].status.as_ref().unwrap().to_string(),
            "2xx or 3xx"
        );
        // With only a version check, that is all that runs.
        let p: Params = parse(Some(r#"{"url":"h.example","version":{"expected":"v1"}}"#)).unwrap();
        assert!(p.plan().unwrap().checks.is_empty());
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (r#"{}"#, "field `url`: missing field `url`"),
            (
                r##"{"url":"#{Stage.Url}"}"##,
                "field `url`: `#{Stage.Url}` still holds an unresolved pipeline variable",
            ),
            (
                r#"{"url":"h.example","rounds":0}"#,
                "field `rounds`: 0 is out of range; use 1 to 10",
            ),
            (
                r#"{"url":"h.example","concurrency":99}"#,
                "field `concurrency`: 99 is out of range",
            ),
            (
                r#"{"url":"h.example","timeout_ms":0}"#,
                "field `timeout_ms`",
            ),
            (
                r#"{"url":"h.example","warmup":{"window_seconds":100000}}"#,
                "field `warmup.window_seconds`",
            ),
            (
                r#"{"url":"h.example","warmup":{"windows":1}}"#,
                "unknown field `windows`",
            ),
            (
                r#"{"url":"h.example","warmup":{"statuses":"9xx"}}"#,
                "`9xx` is not a status",
            ),
            (
                r#"{"url":"h.example","checks":[{"path":"/","status":"2xx","body_regex":"(("}]}"#,
                "field `checks[0].body_regex`: not a valid regular expression",
            ),
            (
                r#"{"url":"h.example","checks":[{"path":"/ok"},{"path":"nope"}]}"#,
                "field `checks[1].path`: `nope` must start with `/`",
            ),
            (
                r#"{"url":"h.example","version":{"path":"/v"}}"#,
                "missing field `expected`",
            ),
            (
                r#"{"url":"h.example","resolve":{"h.example":"not-an-ip"}}"#,
                "field `resolve.h.example`: `not-an-ip` is not an IP address",
            ),
            (
                r#"{"url":"h.example","redirects":"sometimes"}"#,
                "field `redirects`: unknown variant `sometimes`",
            ),
            (
                r#"{"url":"h.example","check":[]}"#,
                "field `check`: unknown field `check`",
            ),
        ];
        for (raw, expected) in cases {
            let err = parse::<Params>(Some(raw)).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{raw}: expected {expected:?} in {err:?}"
            );
        }
    }

    #[test]
    fn long_failure_messages_keep_the_head_and_whole_rows() {
        let head = "smoke test failed: check `GET /` ...";
        let table: String = (0..200)
            .map(|i| format!("GET /page{i:<40} 0/1 500 3 ms FAIL: status 500, expected 2xx\n"))
            .collect();
        let message = fit(head, &table);
        assert!(message.chars().count() <= limits::FAILURE_MESSAGE);
        assert!(message.starts_with(head));
        assert!(
            message.ends_with("more rows in the function's log)"),
            "{message}"
        );
        let short = fit(head, "check  passed\nGET /  1/1\n");
        assert_eq!(short, format!("{head}\nchecks:\ncheck  passed\nGET /  1/1"));
    }
}
