//! The time source of the rate limiter and the retry loop.
//!
//! Production uses [`TokioClock`] (`tokio::time`). Tests drive the same code with
//! [`ManualClock`], whose sleeps move virtual time forward at once: waits are measured exactly
//! and no test sleeps. The production clock itself is tested under tokio's paused time
//! (`api::paused_tests`).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Now, and sleeping until a deadline.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send;
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        self.sleep_until(self.now() + d)
    }
}

/// Real time, through `tokio::time` (so it also follows tokio's paused time).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(deadline)
    }
}

/// Virtual time for tests: `sleep_until` jumps to the deadline and returns at once.
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset: std::sync::Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            base: Instant::now(),
            offset: std::sync::Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    /// Virtual time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send {
        let mut o = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        let target = deadline.saturating_duration_since(self.base);
        if target > *o {
            *o = target;
        }
        // Let other tasks run, as a real sleep would.
        tokio::task::yield_now()
    }
}
