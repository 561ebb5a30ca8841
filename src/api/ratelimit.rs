//! A sliding-window rate limiter, so that the client never sends more than the API allows.
//!
//! The API counts requests per key in a **sliding 60-second window** (60 by default). A token
//! bucket (governor and friends) does not fit that rule: a full bucket lets a burst of N go,
//! then refills at N per minute, so N + a few requests can land inside one 60 s window and the
//! API answers 429. This limiter keeps the send times of the requests in the window (a
//! `VecDeque<Instant>`) and admits a request only while fewer than N were sent in the last
//! 60 s plus a small margin ([`DEFAULT_WINDOW_MARGIN`]); the margin absorbs the difference
//! between when we admit a request and when the server counts it.
//!
//! The server's headers are honoured on top of our budget:
//! - `X-RateLimit-Limit` below our budget lowers it (never raises it above the configured one);
//! - `X-RateLimit-Remaining: 0` means the window is full (another client may share the key):
//!   the next request waits until our oldest request in the window is 60 s old. Every request
//!   the server counts in its window is at least as old as that one, so at least one slot is
//!   free by then, but only one: until an answer says some remain again, no more requests are
//!   admitted than were in the window when it was full, so the requests queued behind the
//!   wait go one slot at a time, not together into a window with room for one.
//!
//! A budget of 0 means no budget of our own (simulator, benches); the server's headers still
//! apply, because a refused request costs more than a wait. Time is `tokio::time`, so tests
//! run it paused.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::clock::{Clock, TokioClock};

/// The API's window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Added to the window before a slot counts as free again.
pub const DEFAULT_WINDOW_MARGIN: Duration = Duration::from_millis(100);
/// How many send times are kept without a budget (only the oldest ones matter then).
const MAX_TRACKED: usize = 4096;

#[derive(Debug)]
pub struct RateLimiter<C: Clock = TokioClock> {
    clock: C,
    /// Our own budget per window; `None` = unlimited.
    budget: Option<u32>,
    window: Duration,
    margin: Duration,
    state: Mutex<State>,
    /// Milliseconds during which at least one request waited here (see [`Self::waited`]).
    waited_ms: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// The latest `X-RateLimit-Limit`, when positive.
    server_limit: Option<u32>,
    /// Send times in the current window, oldest first.
    sent: VecDeque<Instant>,
    /// `X-RateLimit-Remaining: 0` was seen: no request before this instant.
    blocked_until: Option<Instant>,
    /// `X-RateLimit-Remaining: 0` was seen with this many of our requests in the window (and
    /// when): no more are admitted at once until an answer says some remain, or a window
    /// has passed.
    full_at: Option<(usize, Instant)>,
    /// Waits are counted up to here already (two requests waiting together count once).
    waited_to: Option<Instant>,
}

impl State {
    /// No request before `until` (a later block stays); whether this one is the latest.
    fn block_until(&mut self, until: Instant) -> bool {
        let later = self.blocked_until.is_none_or(|b| b < until);
        if later {
            self.blocked_until = Some(until);
        }
        later
    }
}

impl RateLimiter<TokioClock> {
    /// `requests_per_minute = 0` means no budget of our own.
    pub fn new(requests_per_minute: u32) -> Self {
        Self::with_clock(requests_per_minute, TokioClock)
    }
}

impl<C: Clock> RateLimiter<C> {
    /// The API's window and the default margin, on another clock.
    pub fn with_clock(requests_per_minute: u32, clock: C) -> Self {
        Self::with_window(
            requests_per_minute,
            RATE_WINDOW,
            DEFAULT_WINDOW_MARGIN,
            clock,
        )
    }

    pub fn with_window(
        requests_per_minute: u32,
        window: Duration,
        margin: Duration,
        clock: C,
    ) -> Self {
        RateLimiter {
            clock,
            budget: (requests_per_minute > 0).then_some(requests_per_minute),
            window,
            margin,
            state: Mutex::new(State::default()),
            waited_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The number of requests admitted per window right now (`None` = unlimited).
    pub async fn current_limit(&self) -> Option<u32> {
        let s = self.state.lock().await;
        self.limit(&s)
    }

    fn limit(&self, s: &State) -> Option<u32> {
        let limit = match (self.budget, s.server_limit) {
            (Some(b), Some(l)) => Some(b.min(l)),
            (Some(b), None) => Some(b),
            (None, l) => l,
        };
        let full = s
            .full_at
            .filter(|(_, at)| *at + self.span() > self.clock.now())
            .map(|(n, _)| u32::try_from(n).unwrap_or(u32::MAX));
        match (limit, full) {
            (Some(l), Some(f)) => Some(l.min(f)),
            (l, f) => l.or(f),
        }
    }

    fn span(&self) -> Duration {
        self.window + self.margin
    }

    /// How long requests have waited here for the budget, the API's `Remaining: 0` or a
    /// 429's `Retry-After`: the time during which at least one did (as planned when it began
    /// waiting).
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Wait until a request may be sent, and count it as sent now.
    pub async fn acquire(&self) {
        loop {
            let wake = {
                let mut s = self.state.lock().await;
                let now = self.clock.now();
                let span = self.span();
                while s.sent.front().is_some_and(|t| *t + span <= now) {
                    s.sent.pop_front();
                }
                let mut wake = s.blocked_until.filter(|b| *b > now);
                if let Some(n) = self.limit(&s) {
                    let n = n as usize;
                    if s.sent.len() >= n {
                        // The (len - n)th send must leave the window before we are below n.
                        let free_at = s.sent[s.sent.len() - n] + span;
                        wake = Some(wake.map_or(free_at, |w| w.max(free_at)));
                    }
                }
                match wake {
                    None => {
                        s.blocked_until = None;
                        s.sent.push_back(now);
                        let keep = self.limit(&s).map_or(MAX_TRACKED, |n| n as usize);
                        while s.sent.len() > keep.max(1) {
                            s.sent.pop_front();
                        }
                        return;
                    }
                    Some(w) => {
                        let from = s.waited_to.map_or(now, |t| t.max(now));
                        if w > from {
                            self.waited_ms.fetch_add(
                                (w - from).as_millis() as u64,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            s.waited_to = Some(w);
                        }
                        w
                    }
                }
            };
            tracing::debug!(
                wait_ms = wake.saturating_duration_since(self.clock.now()).as_millis() as u64,
                "Rate limit: waiting for the window to move."
            );
            self.clock.sleep_until(wake).await;
        }
    }

    /// No request before `d` from now (a 429's `Retry-After`).
    pub async fn hold_for(&self, d: Duration) {
        let mut s = self.state.lock().await;
        let until = self.clock.now() + d;
        s.block_until(until);
    }

    /// Take the server's `X-RateLimit-Limit` / `X-RateLimit-Remaining` into account.
    pub async fn observe(&self, limit: Option<u32>, remaining: Option<u32>) {
        let mut s = self.state.lock().await;
        if let Some(l) = limit.filter(|l| *l > 0) {
            if self.budget.is_some_and(|b| l < b) && s.server_limit != Some(l) {
                tracing::info!(
                    server_limit = l,
                    budget = self.budget,
                    "The API allows fewer requests per minute than configured; lowering the rate."
                );
            }
            s.server_limit = Some(l);
        }
        if remaining.is_some_and(|r| r > 0) {
            s.full_at = None;
        }
        if remaining == Some(0) {
            let now = self.clock.now();
            // (At least one: the window may be full of other clients' requests.)
            s.full_at = Some((s.sent.len().max(1), now));
            let oldest = s.sent.front().copied().unwrap_or(now);
            let until = oldest + self.span();
            if s.block_until(until) {
                tracing::debug!(
                    wait_ms = until.saturating_duration_since(now).as_millis() as u64,
                    "X-RateLimit-Remaining is 0; the next request waits for the window to move."
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::clock::ManualClock;

    fn limiter(rpm: u32) -> RateLimiter<ManualClock> {
        RateLimiter::with_clock(rpm, ManualClock::default())
    }

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[tokio::test]
    async fn admits_60_at_once_then_the_61st_when_the_window_moves() {
        let l = limiter(60);
        for _ in 0..60 {
            l.acquire().await;
        }
        assert_eq!(ms(l.clock().elapsed()), 0, "the first 60 go at once");
        l.acquire().await;
        assert_eq!(
            ms(l.clock().elapsed()),
            60_100,
            "the 61st waits for the window plus margin"
        );
    }

    #[tokio::test]
    async fn the_window_slides_instead_of_refilling() {
        let l = limiter(60);
        for _ in 0..30 {
            l.acquire().await;
        }
        l.clock().advance(Duration::from_secs(30));
        for _ in 0..30 {
            l.acquire().await;
        }
        assert_eq!(ms(l.clock().elapsed()), 30_000);
        // 60 in the window: the next 30 become free when the first 30 age out...
        for _ in 0..30 {
            l.acquire().await;
        }
        assert_eq!(ms(l.clock().elapsed()), 60_100);
        // ...and the 31st after that only when the second batch ages out.
        l.acquire().await;
        assert_eq!(ms(l.clock().elapsed()), 90_100);
        // Waited: from 30 s to 60.1 s, and from 60.1 s to 90.1 s.
        assert_eq!(ms(l.waited()), 60_100);
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let l = limiter(0);
        for _ in 0..10_000 {
            l.acquire().await;
        }
        assert_eq!(l.clock().elapsed(), Duration::ZERO);
        assert_eq!(l.current_limit().await, None);
    }

    #[tokio::test]
    async fn server_limit_lowers_but_never_raises_the_budget() {
        let l = limiter(60);
        l.observe(Some(10), Some(9)).await;
        assert_eq!(l.current_limit().await, Some(10));
        l.observe(Some(1000), None).await;
        assert_eq!(l.current_limit().await, Some(60));
        l.observe(Some(10), None).await;
        for _ in 0..10 {
            l.acquire().await;
        }
        assert_eq!(ms(l.clock().elapsed()), 0);
        l.acquire().await;
        assert_eq!(ms(l.clock().elapsed()), 60_100);
    }

    #[tokio::test]
    async fn a_429_holds_every_request_for_its_retry_after() {
        // Also without a budget of our own (`--requests-per-minute 0`).
        for rpm in [60, 0] {
            let l = limiter(rpm);
            l.acquire().await;
            l.hold_for(Duration::from_secs(7)).await;
            // A shorter hold (another 429) does not shorten it.
            l.hold_for(Duration::from_secs(2)).await;
            l.acquire().await;
            assert_eq!(ms(l.clock().elapsed()), 7_000, "rpm {rpm}");
            l.acquire().await;
            assert_eq!(
                ms(l.clock().elapsed()),
                7_000,
                "rpm {rpm}: the hold is over"
            );
        }
    }

    #[tokio::test]
    async fn remaining_zero_waits_for_our_oldest_request_to_leave_the_window() {
        let l = limiter(60);
        l.acquire().await;
        l.clock().advance(Duration::from_secs(20));
        l.acquire().await;
        // Another client used up the key's window.
        l.observe(Some(60), Some(0)).await;
        l.acquire().await;
        assert_eq!(ms(l.clock().elapsed()), 60_100);
        // One slot freed, not two: the next waits for our second request to leave the window
        // too, as long as no answer says that some remain.
        l.acquire().await;
        assert_eq!(ms(l.clock().elapsed()), 80_100);
        l.observe(Some(60), Some(12)).await;
        l.acquire().await;
        assert_eq!(ms(l.clock().elapsed()), 80_100, "the window has room again");
    }

    #[tokio::test]
    async fn remaining_zero_applies_without_a_budget() {
        let l = limiter(0);
        l.acquire().await;
        l.observe(None, Some(0)).await;
        l.acquire().await;
        assert_eq!(ms(l.clock().elapsed()), 60_100);
    }

    #[tokio::test]
    async fn concurrent_callers_share_the_window() {
        let l = std::sync::Arc::new(limiter(5));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                l.acquire().await;
                l.clock().elapsed()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(ms(t.await.expect("task")));
        }
        times.sort_unstable();
        // Callers waiting together count once: the wall time spent waiting.
        assert_eq!(ms(l.waited()), 120_200);
        assert_eq!(
            times,
            vec![
                0, 0, 0, 0, 0, 60_100, 60_100, 60_100, 60_100, 60_100, 120_200, 120_200
            ]
        );
    }
}
