//! Waiting for something to become true: one loop for every health gate and wait, with
//! the clock passed in so that timeouts are tested without waiting.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time as the wait loops see it.
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    async fn sleep(&self, duration: Duration);
}

/// The real clock.
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock that moves only when slept on: tests of timeouts run instantly and count the
/// attempts made.
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    pub fn new() -> Self {
        ManualClock {
            now: Mutex::new(Instant::now()),
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().expect("clock lock")
    }

    async fn sleep(&self, duration: Duration) {
        *self.now.lock().expect("clock lock") += duration;
    }
}

/// How long to keep trying, and how long to wait between tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    pub timeout: Duration,
    pub interval: Duration,
}

impl Patience {
    pub const fn new(timeout: Duration, interval: Duration) -> Self {
        Patience { timeout, interval }
    }
}

/// Runs `attempt` until it succeeds or `patience.timeout` has passed since the first try;
/// returns the success, or the last failure. The first try is made at once, and one more
/// is always made at (or after) the deadline, so a check that takes long still gets its
/// last chance.
pub async fn poll_until<T, E, F, Fut>(
    clock: &dyn Clock,
    patience: Patience,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<T, E>> + Send,
{
    let deadline = clock.now() + patience.timeout;
    loop {
        let result = attempt().await;
        if result.is_ok() || clock.now() >= deadline {
            return result;
        }
        clock.sleep(patience.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn gives_up_after_the_timeout_with_the_last_failure() {
        let clock = ManualClock::new();
        let tries = AtomicUsize::new(0);
        let result: Result<(), String> = poll_until(
            &clock,
            Patience::new(Duration::from_secs(10), Duration::from_secs(1)),
            || async {
                let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
                Err(format!("try {n} failed"))
            },
        )
        .await;
        // Tries at 0 s, 1 s, ... 10 s.
        assert_eq!(result.unwrap_err(), "try 11 failed");
        assert_eq!(tries.load(Ordering::SeqCst), 11);
    }

    #[tokio::test]
    async fn stops_at_the_first_success() {
        let clock = ManualClock::new();
        let start = clock.now();
        let tries = AtomicUsize::new(0);
        let result: Result<usize, String> = poll_until(
            &clock,
            Patience::new(Duration::from_secs(60), Duration::from_secs(2)),
            || async {
                let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
                if n == 3 { Ok(n) } else { Err("not yet".into()) }
            },
        )
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(clock.now() - start, Duration::from_secs(4));
    }
}
