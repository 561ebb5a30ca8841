//! The retry loop: what is retried, how long it waits, and when it gives up.
//!
//! One attempt is any async closure that returns an [`Outcome`], so the loop is tested with
//! fake operations under paused time, without HTTP (paused time and real sockets do not mix).
//!
//! - **429 rate limited** waits exactly `Retry-After` (no jitter: the server said when), and
//!   does not use up the transient budget; [`RetryTuning::max_rate_limit_waits`] in a row, or a
//!   `Retry-After` above [`RetryTuning::max_retry_after`], ends in
//!   [`ApiError::RateLimitedTooLong`].
//! - **Transient** faults (5xx, timeouts, dropped connections, cut bodies, an envelope that
//!   makes no sense) wait on an exponential schedule with jitter from `backon`'s
//!   [`ExponentialBuilder`]; after `max_retries` retries the loop reports what failed how often
//!   ([`ApiError::RetriesExhausted`], or [`ApiError::Malformed`] when the last answer was
//!   nonsense).
//! - **Permanent** errors return at once.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::clock::Clock;
use super::{ApiError, Counters};

/// First transient backoff (before jitter).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(250);
/// No single transient wait is longer than this, jitter included.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// 429 waits in a row before giving up.
pub const DEFAULT_MAX_RATE_LIMIT_WAITS: u32 = 30;
/// The wait after a 429 whose `Retry-After` is missing or not in seconds.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A longer `Retry-After` is not waited out: the job fails and says to try later.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// How the retry loop waits. The number of transient retries is
/// [`ClientOptions::max_retries`](super::ClientOptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryTuning {
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub max_rate_limit_waits: u32,
    pub max_retry_after: Duration,
}

impl Default for RetryTuning {
    fn default() -> Self {
        RetryTuning {
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_rate_limit_waits: DEFAULT_MAX_RATE_LIMIT_WAITS,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

impl RetryTuning {
    /// The transient delay schedule: doubling from `backoff_base`. `backon`'s jitter adds up to
    /// as much again as the nominal delay, so the nominal cap is half of `backoff_max`.
    fn schedule(&self, max_retries: u32) -> impl Iterator<Item = Duration> + use<> {
        let cap = (self.backoff_max / 2).max(self.backoff_base);
        ExponentialBuilder::new()
            .with_min_delay(self.backoff_base)
            .with_factor(2.0)
            .with_max_delay(cap)
            .with_jitter()
            .with_max_times(max_retries as usize)
            .build()
            .map(move |d| d.min(cap * 2))
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// 429 without `credits_exhausted`: wait this long, then try again.
    RateLimited {
        retry_after: Duration,
    },
    Transient(Fault),
    Permanent(ApiError),
}

/// A transient fault, described for the log and the final error.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 5xx, timeout, connection or body failure.
    Failed(String),
    /// A 2xx whose body is not the expected envelope.
    Malformed { what: &'static str, detail: String },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Failed(s) => f.write_str(s),
            Fault::Malformed { what, detail } => write!(f, "not a {what}: {detail}"),
        }
    }
}

/// Run `op` until it succeeds, fails permanently, or the budgets run out.
pub async fn run<T, F, Fut>(
    endpoint: &str,
    max_retries: u32,
    tuning: &RetryTuning,
    counters: &Counters,
    clock: &impl Clock,
    mut op: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome<T>>,
{
    let mut schedule = tuning.schedule(max_retries);
    let mut attempts: u32 = 0;
    let mut waits_in_a_row: u32 = 0;
    loop {
        attempts += 1;
        match op().await {
            Outcome::Done(v) => return Ok(v),
            Outcome::Permanent(e) => return Err(e),
            Outcome::RateLimited { retry_after } => {
                waits_in_a_row += 1;
                if waits_in_a_row > tuning.max_rate_limit_waits
                    || retry_after > tuning.max_retry_after
                {
                    return Err(ApiError::RateLimitedTooLong {
                        endpoint: endpoint.to_string(),
                        waits: waits_in_a_row,
                        last_wait_secs: retry_after.as_secs(),
                        max_wait_secs: tuning.max_retry_after.as_secs(),
                    });
                }
                counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    endpoint,
                    wait_s = retry_after.as_secs_f64(),
                    waits_in_a_row,
                    "Rate limited by the API (429); waiting as Retry-After says."
                );
                clock.sleep(retry_after).await;
            }
            Outcome::Transient(fault) => {
                waits_in_a_row = 0;
                match schedule.next() {
                    Some(wait) => {
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            endpoint,
                            attempt = attempts,
                            wait_ms = wait.as_millis() as u64,
                            reason = %fault,
                            "Transient API failure; retrying."
                        );
                        clock.sleep(wait).await;
                    }
                    None => {
                        return Err(match fault {
                            Fault::Malformed { what, detail } => ApiError::Malformed {
                                endpoint: endpoint.to_string(),
                                what,
                                attempts,
                                detail,
                            },
                            Fault::Failed(last) => ApiError::RetriesExhausted {
                                endpoint: endpoint.to_string(),
                                attempts,
                                last,
                            },
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::clock::ManualClock;
    use std::cell::{Cell, RefCell};

    fn tuning() -> RetryTuning {
        RetryTuning::default()
    }

    /// Plays `script` in order, then the last entry forever; records when each call happened.
    struct Fake {
        script: Vec<fn() -> Outcome<u32>>,
        calls: Cell<usize>,
        at: RefCell<Vec<Duration>>,
        clock: ManualClock,
    }

    impl Fake {
        fn new(script: Vec<fn() -> Outcome<u32>>) -> Self {
            Fake {
                script,
                calls: Cell::new(0),
                at: RefCell::new(Vec::new()),
                clock: ManualClock::default(),
            }
        }
        async fn call(&self) -> Outcome<u32> {
            let i = self.calls.get();
            self.calls.set(i + 1);
            self.at.borrow_mut().push(self.clock.elapsed());
            let f = self.script[i.min(self.script.len() - 1)];
            f()
        }
        fn gaps(&self) -> Vec<Duration> {
            self.at.borrow().windows(2).map(|w| w[1] - w[0]).collect()
        }
    }

    fn ok() -> Outcome<u32> {
        Outcome::Done(7)
    }
    fn rate_7s() -> Outcome<u32> {
        Outcome::RateLimited {
            retry_after: Duration::from_secs(7),
        }
    }
    fn unavailable() -> Outcome<u32> {
        Outcome::Transient(Fault::Failed("HTTP 503 Service Unavailable".into()))
    }
    fn nonsense() -> Outcome<u32> {
        Outcome::Transient(Fault::Malformed {
            what: "leads page",
            detail: "the body starts with: <html>".into(),
        })
    }
    fn credits() -> Outcome<u32> {
        Outcome::Permanent(ApiError::CreditsExhausted {
            endpoint: "/leads".into(),
            message: String::new(),
        })
    }

    #[tokio::test]
    async fn waits_exactly_retry_after_on_429() {
        let fake = Fake::new(vec![rate_7s, rate_7s, ok]);
        let c = Counters::default();
        let v = run("/leads", 8, &tuning(), &c, &fake.clock, || fake.call()).await;
        assert_eq!(v.expect("ok"), 7);
        assert_eq!(fake.gaps(), vec![Duration::from_secs(7); 2]);
        assert_eq!(c.rate_limited.load(Ordering::Relaxed), 2);
        assert_eq!(c.retries.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn backs_off_exponentially_and_bounded_on_503() {
        let fake = Fake::new(vec![unavailable, unavailable, unavailable, ok]);
        let c = Counters::default();
        let v = run("/leads", 8, &tuning(), &c, &fake.clock, || fake.call()).await;
        assert_eq!(v.expect("ok"), 7);
        let gaps = fake.gaps();
        assert_eq!(gaps.len(), 3);
        for (i, g) in gaps.iter().enumerate() {
            let nominal = DEFAULT_BACKOFF_BASE * 2u32.pow(i as u32);
            assert!(
                *g >= nominal && *g <= nominal * 2,
                "retry {i}: waited {g:?}"
            );
        }
        assert_eq!(c.retries.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn transient_budget_runs_out_with_a_count() {
        let fake = Fake::new(vec![unavailable]);
        let c = Counters::default();
        let err = run("/leads", 12, &tuning(), &c, &fake.clock, || fake.call())
            .await
            .expect_err("gives up");
        match &err {
            ApiError::RetriesExhausted {
                endpoint,
                attempts,
                last,
            } => {
                assert_eq!(endpoint, "/leads");
                assert_eq!(*attempts, 13);
                assert!(last.contains("503"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(fake.calls.get(), 13);
        assert!(err.to_string().contains("failed 13 times"), "{err}");
        // Every wait is bounded, jitter included, even deep into the schedule.
        for g in fake.gaps() {
            assert!(g <= DEFAULT_BACKOFF_MAX, "waited {g:?}");
        }
    }

    #[tokio::test]
    async fn persistent_nonsense_is_malformed() {
        let fake = Fake::new(vec![nonsense]);
        let c = Counters::default();
        let err = run("/leads", 2, &tuning(), &c, &fake.clock, || fake.call())
            .await
            .expect_err("gives up");
        assert!(
            matches!(err, ApiError::Malformed { attempts: 3, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("the API answered something that is not a leads page"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn nonsense_that_clears_is_retried() {
        let fake = Fake::new(vec![nonsense, ok]);
        let c = Counters::default();
        assert_eq!(
            run("/leads", 2, &tuning(), &c, &fake.clock, || fake.call())
                .await
                .expect("ok"),
            7
        );
    }

    #[tokio::test]
    async fn credits_exhausted_does_not_retry() {
        let fake = Fake::new(vec![credits, ok]);
        let c = Counters::default();
        let err = run("/leads", 8, &tuning(), &c, &fake.clock, || fake.call())
            .await
            .expect_err("permanent");
        assert!(matches!(err, ApiError::CreditsExhausted { .. }));
        assert_eq!(fake.calls.get(), 1);
        assert_eq!(fake.clock.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn rate_limit_waits_do_not_use_the_transient_budget() {
        // One transient retry allowed; many 429s around it still succeed.
        let fake = Fake::new(vec![
            unavailable,
            rate_7s,
            rate_7s,
            rate_7s,
            rate_7s,
            rate_7s,
            ok,
        ]);
        let c = Counters::default();
        assert_eq!(
            run("/leads", 1, &tuning(), &c, &fake.clock, || fake.call())
                .await
                .expect("ok"),
            7
        );
        assert_eq!(c.rate_limited.load(Ordering::Relaxed), 5);
        assert_eq!(c.retries.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn endless_429_gives_up_after_the_cap() {
        let fake = Fake::new(vec![rate_7s]);
        let c = Counters::default();
        let err = run("/leads", 8, &tuning(), &c, &fake.clock, || fake.call())
            .await
            .expect_err("gives up");
        assert!(
            matches!(err, ApiError::RateLimitedTooLong { waits: 31, .. }),
            "{err:?}"
        );
        assert_eq!(fake.clock.elapsed(), Duration::from_secs(7 * 30));
    }

    #[tokio::test]
    async fn an_overlong_retry_after_is_not_waited_out() {
        fn day() -> Outcome<u32> {
            Outcome::RateLimited {
                retry_after: Duration::from_secs(86_400),
            }
        }
        let fake = Fake::new(vec![day]);
        let c = Counters::default();
        let err = run("/leads", 8, &tuning(), &c, &fake.clock, || fake.call())
            .await
            .expect_err("gives up");
        assert!(matches!(
            err,
            ApiError::RateLimitedTooLong {
                last_wait_secs: 86_400,
                ..
            }
        ));
        assert!(
            err.to_string().contains("asked to wait 86400 s"),
            "one long Retry-After is said as such: {err}"
        );
        assert_eq!(fake.clock.elapsed(), Duration::ZERO);
    }
}
