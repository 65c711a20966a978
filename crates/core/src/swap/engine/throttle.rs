//! Polls AWS turns away (throttling, a moment's unavailability) in the swap sequence: each is skipped,
//! and a run of them is bounded by the plan's timeout, counted per kind of poll across invocations.

use std::time::SystemTime;

use super::{Plan, State, Throttled};
use crate::aws_error::AwsError;
use crate::clock::unix_seconds;
use crate::runner::ActionError;

/// A poll AWS answered: a run of turned-away polls of that kind is over.
pub(super) fn answered(state: &mut State, poll: &str) {
    if state.throttled.as_ref().is_some_and(|t| t.poll == poll) {
        state.throttled = None;
    }
}

/// A poll AWS turned away (throttling, a moment's unavailability): skipped, unless AWS has turned
/// that poll away without a break for the plan's timeout; then the job ends by the one rule
/// (throttling is SystemUnavailable), saying `what` could not be done and naming the call.
pub(super) fn turned_away(
    state: &mut State,
    poll: &str,
    e: AwsError,
    now: SystemTime,
    plan: &Plan,
    what: &str,
) -> Result<(), ActionError> {
    let now = unix_seconds(now);
    let since = match &state.throttled {
        Some(t) if t.poll == poll => t.since,
        _ => {
            state.throttled = Some(Throttled {
                since: now,
                poll: poll.to_string(),
            });
            now
        }
    };
    let waited = now.saturating_sub(since);
    if waited < plan.timeout.as_secs() {
        return Ok(());
    }
    let mut error = ActionError::from(e);
    error.message = format!(
        "{what}: AWS turned every attempt away for {waited} s (the action's timeout is {} s); the last: {}",
        plan.timeout.as_secs(),
        error.message
    );
    Err(error)
}
