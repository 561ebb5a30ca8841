//! The production clock (`tokio::time`) under tokio's paused time: the rate limiter and the
//! retry loop wait exactly as long as they should, and no test sleeps for real.

use std::time::Duration;

use tokio::time::Instant;

use super::clock::TokioClock;
use super::ratelimit::RateLimiter;
use super::retry::{self, Fault, Outcome, RetryTuning};
use super::{ApiError, Counters};

#[tokio::test(start_paused = true)]
async fn limiter_admits_a_minute_of_requests_then_waits_for_the_window() {
    let limiter: RateLimiter<TokioClock> = RateLimiter::new(60);
    let start = Instant::now();
    for _ in 0..60 {
        limiter.acquire().await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "60 at once");
    limiter.acquire().await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(60) && waited <= Duration::from_millis(60_500),
        "the 61st waits for the first to leave the window: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn steady_state_is_one_request_per_second_at_60_per_minute() {
    let limiter: RateLimiter<TokioClock> = RateLimiter::new(60);
    let start = Instant::now();
    for _ in 0..150 {
        limiter.acquire().await;
    }
    // 60 at t=0, 60 at t≈60 s, 30 at t≈120 s: never more than 60 in any minute.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(120) && took <= Duration::from_secs(121),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_exactly_and_backoff_is_bounded() {
    let counters = Counters::default();
    let start = Instant::now();
    let mut calls = 0;
    let v = retry::run(
        "leads",
        8,
        &RetryTuning::default(),
        &counters,
        &TokioClock,
        || {
            calls += 1;
            let n = calls;
            async move {
                match n {
                    1 | 2 => Outcome::RateLimited {
                        retry_after: Duration::from_secs(7),
                    },
                    _ => Outcome::Done(n),
                }
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(v, 3);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(14),
        "two Retry-After: 7"
    );

    let start = Instant::now();
    let err = retry::run::<(), _, _>(
        "leads",
        4,
        &RetryTuning::default(),
        &counters,
        &TokioClock,
        || async { Outcome::Transient(Fault::Failed("503 Service Unavailable".into())) },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ApiError::RetriesExhausted { attempts: 5, .. }),
        "{err}"
    );
    let took = start.elapsed();
    // 4 waits from 250 ms doubling, with jitter of up to one more step each.
    assert!(
        took >= Duration::from_millis(250 + 500 + 1000 + 2000)
            && took <= Duration::from_millis(2 * (250 + 500 + 1000 + 2000)),
        "{took:?}"
    );
}
