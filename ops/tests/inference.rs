//! The common case needs no type annotation: `Instrumented::new` is tokio's,
//! and `Instrumented::with_runtime` takes any other runtime. This file fails
//! to compile if either needs one.

use std::sync::Arc;

use upbit_limiter_core::{Group, Response};
use upbit_limiter_ops::{Instrumented, OpsConfig};

#[tokio::test(start_paused = true)]
async fn new_infers_the_tokio_runtime() {
    let limiter = Instrumented::new(&OpsConfig::default()).unwrap();
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    assert_eq!(permit.group(), Group::Ticker);
    permit.report(Response::status(200));
    assert_eq!(limiter.status().totals.admitted, 1);

    // Shared between tasks, still without an annotation.
    let shared = Arc::new(Instrumented::new(&OpsConfig::default()).unwrap());
    let task = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move { shared.acquire("POST", "/v1/orders").await.map(|p| p.group()) })
    };
    assert_eq!(task.await.unwrap().unwrap(), Group::Order);
}

#[tokio::test(start_paused = true)]
async fn with_runtime_infers_the_runtime_from_its_argument() {
    let runtime = upbit_limiter_tokio::Tokio::new();
    let limiter = Instrumented::with_runtime(&OpsConfig::default(), runtime).unwrap();
    let permit = limiter.acquire("GET", "/v1/candles/minutes/1").await.unwrap();
    assert_eq!(permit.group(), Group::Candle);
}
