//! The API a tokio user writes against, compiled and run: owned permits in
//! spawned tasks, paths built on the fly, the non-waiting try, tokio time at
//! the boundary, and a `Debug` that fits in a log line per group.

use std::sync::Arc;
use std::time::Duration;

use upbit_limiter_tokio::{LimiterConfig, OwnedPermit, Preset, RateLimiter, Reason, Request, Response};

fn limiter() -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(&LimiterConfig::preset(Preset::Korea)).expect("preset"))
}

#[tokio::test(start_paused = true)]
async fn owned_permits_move_into_spawned_tasks() {
    let limiter = limiter();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let limiter = Arc::clone(&limiter);
        tasks.push(tokio::spawn(async move {
            // The path is a temporary: the permit does not borrow it.
            let permit: OwnedPermit = limiter
                .acquire_owned("GET", &format!("/v1/ticker?markets=KRW-{i}"))
                .await
                .expect("admitted within the default deadline");
            // ... and the permit itself moves on to another task.
            tokio::spawn(async move { permit.report(Response::status(200)) })
                .await
                .expect("reported");
        }));
    }
    for t in tasks {
        t.await.expect("no panic");
    }
    let status = limiter
        .limiter()
        .group(upbit_limiter_tokio::Group::Ticker)
        .status(limiter.now());
    assert_eq!((status.counters.admitted, status.counters.responses), (50, 50));
}

#[tokio::test(start_paused = true)]
async fn try_acquire_answers_at_once_in_runtime_time() {
    let limiter = limiter();
    // The interval log admits the ticker's full 10 at once; each is reported
    // at once, so each may have reached the server at this instant.
    for i in 0..10 {
        let permit = limiter
            .try_acquire("GET", "/v1/ticker")
            .unwrap_or_else(|e| panic!("idle, {i}: {e}"));
        permit.report(Response::status(200));
    }
    // Room again one window (1 s) and 1 ns after those reports.
    let window = Duration::from_secs(1) + Duration::from_nanos(1);
    let e = limiter
        .try_acquire("GET", "/v1/ticker?markets=KRW-BTC")
        .expect_err("the window holds 10");
    assert_eq!(
        e.to_string(),
        "group ticker (GET /v1/ticker): deadline cannot be met: earliest admission in 1.0 s, 1.0 s after the deadline"
    );
    assert_eq!(e.retry_after(), window);
    assert_eq!(limiter.retry_at(&e), tokio::time::Instant::now() + window);
    // A timeout as a std Duration, a deadline as a tokio instant.
    let in_50ms = Request::http("GET", "/v1/ticker").timeout(Duration::from_millis(50));
    let e = limiter.acquire_request(in_50ms).await.expect_err("cannot be met");
    assert_eq!(
        e.reason(),
        Reason::Timeout {
            deadline: limiter.now() + upbit_limiter_tokio::upbit_limiter_core::Duration::from_millis(50)
        }
    );
    let until = limiter.instant(tokio::time::Instant::now() + Duration::from_millis(1_200));
    let p = limiter
        .acquire_request(Request::http("GET", "/v1/ticker").deadline(until))
        .await
        .expect("in time");
    // tokio's timer fires on the next whole millisecond.
    assert_eq!(p.waited(), Duration::from_millis(1_001));
}

#[test]
fn debug_is_a_summary_per_group() {
    let text = format!(
        "{:?}",
        RateLimiter::new(&LimiterConfig::preset(Preset::Korea)).expect("preset")
    );
    assert!(text.len() < 4_000, "{} bytes", text.len());
    for group in ["ticker", "order", "websocket-message"] {
        assert!(text.contains(&format!("group: \"{group}\"")), "{group} in {text}");
    }
}

#[test]
fn a_limiter_is_built_and_returned_on_a_small_stack() {
    // A limiter is a small value (its groups live on the heap): built in an
    // async block and handed back through a runtime's `block_on`, it fits a
    // thread with a quarter of the usual stack, even in a debug build.
    assert!(
        std::mem::size_of::<RateLimiter>() <= 256,
        "{} bytes",
        std::mem::size_of::<RateLimiter>()
    );
    let built = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a current-thread runtime");
            rt.block_on(async { RateLimiter::new(&LimiterConfig::preset(Preset::Korea)) })
                .map(|limiter| limiter.pocket().is_none())
        })
        .expect("a thread")
        .join()
        .expect("no stack overflow");
    assert_eq!(built, Ok(true));
}
