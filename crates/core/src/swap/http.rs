//! [`Verify`] over [`crate::http_check`]: the same version check smoke-test runs, repeated until it
//! passes or the check's time is up (resolvers may hold the old answer for a while after a move).

use std::time::{Duration, Instant};

use crate::http_check::{parse_base_url, spec::parse_resolve, Checker, Options, VersionCheck};

use super::{Check, Verify};

/// Runs [`Check`]s with the shared HTTP check engine.
#[derive(Debug, Clone, Default)]
pub struct HttpVerifier;

impl HttpVerifier {
    pub fn new() -> Self {
        HttpVerifier
    }
}

impl Verify for HttpVerifier {
    async fn verify(&self, check: &Check) -> Result<String, String> {
        let base = parse_base_url(&check.base).map_err(|e| format!("base URL: {e}"))?;
        let resolve = match &check.resolve {
            Some(addr) => vec![parse_resolve(base.host_str().unwrap_or_default(), addr)
                .map_err(|e| e.to_string())?],
            None => vec![],
        };
        let version = VersionCheck {
            path: check.path.clone(),
            expected: check.expected.clone(),
            json_pointer: None,
            header: None,
        };
        let options = Options {
            resolve,
            ..Options::default()
        };
        let checker =
            Checker::new(&base, &[], Some(&version), &options).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let round = checker.round(attempt).await;
            let Some(failure) = round.first_failure() else {
                return Ok(format!(
                    "GET {}{} answered `{}` (attempt {attempt})",
                    check.base.trim_end_matches('/'),
                    check.path,
                    check.expected
                ));
            };
            let elapsed = started.elapsed();
            if elapsed >= check.timeout {
                return Err(format!(
                    "after {attempt} attempts over {}s, {}",
                    elapsed.as_secs(),
                    failure.describe().trim_end()
                ));
            }
            let pause = Duration::from_millis(250u64 << attempt.min(5)).min(Duration::from_secs(5));
            tokio::time::sleep(pause.min(check.timeout.saturating_sub(elapsed))).await;
        }
    }
}
