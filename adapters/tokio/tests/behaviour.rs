//! The shared behaviour suite on tokio: paused (virtual) time on the
//! current-thread runtime, real time with a fast quota on the multi-thread one.

use upbit_limiter_suite::{self as suite, Timing};
use upbit_limiter_tokio::upbit_limiter_core::Duration;
use upbit_limiter_tokio::RateLimiter;

/// The scenarios that count in emission intervals run on the GCRA.
fn korea() -> RateLimiter {
    RateLimiter::new(&suite::korea_gcra_on_whole_milliseconds()).unwrap()
}

/// The Korea preset as it ships (the interval log on every HTTP group).
fn preset() -> RateLimiter {
    RateLimiter::new(&upbit_limiter_tokio::LimiterConfig::preset(
        upbit_limiter_tokio::Preset::Korea,
    ))
    .unwrap()
}

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

#[tokio::test(start_paused = true)]
async fn fifo_in_one_task() {
    suite::fifo_in_arrival_order(&korea(), Timing::Exact).await;
}

#[tokio::test(start_paused = true)]
async fn fifo_across_tasks_current_thread() {
    let l = leak(korea());
    suite::fifo_across_tasks(l, Timing::Exact, |f| async { tokio::spawn(f).await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_across_tasks_multi_thread() {
    let l = leak(RateLimiter::new(&suite::fast_config()).unwrap());
    suite::fifo_across_tasks(l, Timing::Real, |f| async { tokio::spawn(f).await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_in_one_task_multi_thread() {
    suite::fifo_in_arrival_order(&RateLimiter::new(&suite::fast_config()).unwrap(), Timing::Real).await;
}

#[tokio::test(start_paused = true)]
async fn market_shock() {
    suite::market_shock(&korea(), Timing::Exact).await;
}

#[tokio::test(start_paused = true)]
async fn market_shock_on_the_preset() {
    suite::market_shock(&preset(), Timing::Exact).await;
}

#[tokio::test(start_paused = true)]
async fn cancellation() {
    for seed in [1, 2, 3] {
        suite::cancellation(korea, Timing::Exact, seed).await;
    }
}

#[tokio::test(start_paused = true)]
async fn leaked_head_does_not_stall_the_queue() {
    suite::leaked_waiter(korea, Timing::Exact, 0).await;
}

#[tokio::test(start_paused = true)]
async fn leaked_waiter_in_the_middle_does_not_stall_the_queue() {
    suite::leaked_waiter(korea, Timing::Exact, 2).await;
}

#[tokio::test(start_paused = true)]
async fn deadline_fails_fast() {
    suite::deadline_fails_fast(&korea(), Timing::Exact).await;
}

#[tokio::test(start_paused = true)]
async fn circuit_open_fails_fast() {
    suite::circuit_open_fails_fast(&preset(), Timing::Exact).await;
}

#[tokio::test(start_paused = true)]
async fn ban_418_blocks_until_it_ends() {
    let body = r#"{"error":{"name":"blocked","message":"요청 수 제한을 초과하여 30초간 차단되었습니다."}}"#;
    suite::ban_blocks(&preset(), Timing::Exact, body, Duration::from_secs(30)).await;
}

#[tokio::test(start_paused = true)]
async fn sec0_blocks_for_a_window() {
    // The pause is the window plus the preset's margin, a whole 1.1 s.
    suite::sec0_blocks(&preset(), Timing::Exact).await;
}

#[tokio::test(start_paused = true)]
async fn fifo_after_a_late_executor() {
    suite::fifo_after_a_late_executor(&korea(), Timing::Exact).await;
}
