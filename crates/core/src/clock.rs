//! Time, injected: every wait and every "how long has it been" in the actions goes through a [`Clock`],
//! so the sequences run in unit tests on a [`FakeClock`] whose sleeps pass instantly, and a bake of ten
//! minutes is tested in microseconds.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now and waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;

    /// How long since `then` (zero when `then` is in the future).
    fn since(&self, then: SystemTime) -> Duration {
        self.now().duration_since(then).unwrap_or_default()
    }
}

/// The real clock: the system time and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock for tests: it starts at a fixed moment and moves only when something sleeps on it (or the
/// test advances it), so waits cost nothing and every timestamp is reproducible.
#[derive(Debug, Clone)]
pub struct FakeClock {
    now: Arc<Mutex<SystemTime>>,
    slept: Arc<Mutex<Vec<Duration>>>,
}

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock::at(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
    }
}

impl FakeClock {
    pub fn at(now: SystemTime) -> Self {
        FakeClock {
            now: Arc::new(Mutex::new(now)),
            slept: Arc::default(),
        }
    }

    /// Every sleep so far, in order.
    pub fn slept(&self) -> Vec<Duration> {
        self.slept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sleep(&self, duration: Duration) {
        self.slept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(duration);
        self.advance(duration);
    }
}

/// Whole seconds since the Unix epoch: how continuation tokens carry moments (compact, and exact enough
/// for waits counted in seconds).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, for event cursors (Beanstalk's events carry milliseconds).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The moment `seconds` after the Unix epoch.
pub fn from_unix_seconds(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// The moment `ms` milliseconds after the Unix epoch.
pub fn from_unix_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// RFC 3339 to the second, as tags and summaries show moments.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fake_clock_moves_only_when_slept_on() {
        let clock = FakeClock::default();
        let start = clock.now();
        clock.sleep(Duration::from_secs(600)).await;
        assert_eq!(clock.since(start), Duration::from_secs(600));
        assert_eq!(
            clock.since(start + Duration::from_secs(9999)),
            Duration::ZERO
        );
        assert_eq!(unix_seconds(from_unix_seconds(42)), 42);
        assert_eq!(unix_millis(from_unix_millis(4_200)), 4_200);
        assert_eq!(rfc3339(from_unix_seconds(0)), "1970-01-01T00:00:00Z");
    }
}
