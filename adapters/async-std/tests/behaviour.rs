//! The shared behaviour suite on async-std and smol, in real time with a fast
//! quota (order and lower bounds only; see `upbit_limiter_suite::Timing`).

use upbit_limiter_async_std::upbit_limiter_core::Duration;
use upbit_limiter_async_std::RateLimiter;
use upbit_limiter_suite::{self as suite, Timing};

fn fast() -> RateLimiter {
    RateLimiter::new(&suite::fast_config()).unwrap()
}

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

#[async_std::test]
async fn fifo_in_one_task() {
    suite::fifo_in_arrival_order(leak(fast()), Timing::Real).await;
}

#[async_std::test]
async fn fifo_across_tasks() {
    suite::fifo_across_tasks(leak(fast()), Timing::Real, async_std::task::spawn).await;
}

#[async_std::test]
async fn cancellation() {
    suite::cancellation(fast, Timing::Real, 11).await;
}

#[async_std::test]
async fn leaked_waiter_does_not_stall_the_queue() {
    suite::leaked_waiter(fast, Timing::Real, 0).await;
    suite::leaked_waiter(fast, Timing::Real, 2).await;
}

#[async_std::test]
async fn deadline_fails_fast() {
    suite::deadline_fails_fast(leak(fast()), Timing::Real).await;
}

#[async_std::test]
async fn circuit_open_fails_fast() {
    suite::circuit_open_fails_fast(leak(fast()), Timing::Real).await;
}

#[async_std::test]
async fn ban_418_blocks_until_it_ends() {
    let body = r#"{"error":{"name":"blocked","message":"Too many requests"},"retry_after_ms":300}"#;
    suite::ban_blocks(leak(fast()), Timing::Real, body, Duration::from_millis(300)).await;
}

#[async_std::test]
async fn sec0_blocks_for_a_window() {
    suite::sec0_blocks(leak(fast()), Timing::Real).await;
}

/// The same limiter type on smol's executor: the timer is async-io's.
#[test]
fn runs_on_smol() {
    smol::block_on(async {
        suite::fifo_in_arrival_order(leak(fast()), Timing::Real).await;
        suite::deadline_fails_fast(leak(fast()), Timing::Real).await;
    });
    let ex = leak(smol::Executor::new());
    smol::block_on(ex.run(suite::fifo_across_tasks(leak(fast()), Timing::Real, |f| {
        ex.spawn(f)
    })));
}

/// And on async-io's bare `block_on`.
#[test]
fn runs_on_async_io() {
    async_io::block_on(suite::sec0_blocks(leak(fast()), Timing::Real));
}

#[async_std::test]
async fn fifo_after_a_late_executor() {
    suite::fifo_after_a_late_executor(leak(fast()), Timing::Real).await;
}
