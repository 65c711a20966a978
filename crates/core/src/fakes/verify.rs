//! The version check in memory: answers what the test's function says and remembers each check.

use std::sync::Mutex;

use super::lock;
use crate::swap::{Check, Verify};

/// A version check that answers what its function says: e.g. from the fake Beanstalk, the version of
/// the environment that holds the checked name.
pub struct FakeVerifier<F> {
    pub answer: F,
    checks: Mutex<Vec<Check>>,
}

impl<F> FakeVerifier<F>
where
    F: Fn(&Check) -> Result<String, String> + Send + Sync,
{
    pub fn new(answer: F) -> Self {
        FakeVerifier {
            answer,
            checks: Mutex::default(),
        }
    }

    /// Every check made, in order.
    pub fn checks(&self) -> Vec<Check> {
        lock(&self.checks).clone()
    }
}

impl<F> Verify for FakeVerifier<F>
where
    F: Fn(&Check) -> Result<String, String> + Send + Sync,
{
    async fn verify(&self, check: &Check) -> Result<String, String> {
        lock(&self.checks).push(check.clone());
        (self.answer)(check)
    }
}
