use upbit_limiter_tokio::{LimiterConfig, Preset, RateLimiter, Response};

#[tokio::test(start_paused = true)]
async fn paused_time_drives_the_limiter() {
    let limiter = RateLimiter::new(&LimiterConfig::preset(Preset::Korea)).unwrap();
    let start = tokio::time::Instant::now();
    for _ in 0..11 {
        let p = limiter.acquire("GET", "/v1/ticker").await.unwrap();
        p.report(Response::status(200));
    }
    // 10/s on the interval log, each reported at once: ten at once, the
    // eleventh one window (and 1 ns) after the first's report; tokio's timer
    // fires on the next whole millisecond.
    assert_eq!(start.elapsed(), std::time::Duration::from_millis(1_001));
}
