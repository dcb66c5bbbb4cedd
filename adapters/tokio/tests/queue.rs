//! The waiter queue under paused tokio time.
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Context;

use upbit_limiter_tokio::upbit_limiter_core::limiter::Policy;
use upbit_limiter_tokio::{LimiterConfig, Preset, RateLimiter};

/// The Korea preset on the GCRA policy with its margins 1 ns short, so that
/// the ticker's interval is the whole 110 ms that tokio's millisecond timer
/// hits and the queue's instants can be checked one interval apart.
fn limiter() -> Arc<RateLimiter> {
    let mut config = LimiterConfig::preset(Preset::Korea);
    for g in config.groups.iter_mut() {
        g.policy = Policy::Gcra;
        g.margin = g.margin - std::time::Duration::from_nanos(1).into();
    }
    Arc::new(RateLimiter::new(&config).unwrap())
}

#[tokio::test(start_paused = true)]
async fn twelve_waiters_finish_in_arrival_order() {
    let l = limiter();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (l, order) = (l.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let p = l.acquire("GET", "/v1/ticker").await.unwrap();
            order.lock().unwrap().push((i, p.admission().at));
        }));
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap();
    let ids: Vec<_> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, (0..12).collect::<Vec<_>>());
    // One every 110 ms, no gaps.
    for w in order.windows(2) {
        assert_eq!((w[1].1 - w[0].1).as_nanos(), 110_000_000);
    }
}

#[tokio::test(start_paused = true)]
async fn a_leaked_waiter_does_not_stall_the_queue() {
    let l = limiter();
    // Saturate, then leak the next waiter after one poll.
    let _first = l.acquire("GET", "/v1/ticker").await.unwrap();
    let mut leaked = Box::pin(l.acquire("GET", "/v1/ticker"));
    let waker = futures::task::noop_waker();
    assert!(leaked
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    std::mem::forget(leaked);
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        let _p = l.acquire("GET", "/v1/ticker").await.unwrap();
    }
    // Without the leaked one: 3 x 110 ms. The leaked head costs its own
    // unused slot plus two intervals of grace (suspected, then stepped around).
    let took = start.elapsed();
    assert!(
        took <= std::time::Duration::from_millis(3 * 110 + 3 * 110 + 10),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_waiters_hand_their_place_on() {
    let l = limiter();
    let _first = l.acquire("GET", "/v1/ticker").await.unwrap();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut futs: Vec<Pin<Box<_>>> = (0..10)
        .map(|_| Box::pin(l.acquire("GET", "/v1/ticker")))
        .collect();
    for f in futs.iter_mut() {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(
        l.limiter()
            .group(upbit_limiter_tokio::Group::Ticker)
            .status(l.now())
            .queue_depth,
        10
    );
    // Drop every other one, the head included.
    let mut kept = Vec::new();
    for (i, f) in futs.into_iter().enumerate() {
        if i % 2 == 1 {
            kept.push(f);
        }
    }
    assert_eq!(
        l.limiter()
            .group(upbit_limiter_tokio::Group::Ticker)
            .status(l.now())
            .queue_depth,
        5
    );
    let start = tokio::time::Instant::now();
    for f in kept {
        let p = f.await.unwrap();
        drop(p);
    }
    assert_eq!(start.elapsed(), std::time::Duration::from_millis(5 * 110));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_leaked_in_the_middle_of_the_queue_does_not_stall_it() {
    let l = limiter();
    let _first = l.acquire("GET", "/v1/ticker").await.unwrap();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut head = Box::pin(l.acquire("GET", "/v1/ticker"));
    assert!(head.as_mut().poll(&mut cx).is_pending());
    let mut leaked = Box::pin(l.acquire("GET", "/v1/ticker"));
    assert!(leaked.as_mut().poll(&mut cx).is_pending());
    std::mem::forget(leaked);
    let mut tail = Box::pin(l.acquire("GET", "/v1/ticker"));
    assert!(tail.as_mut().poll(&mut cx).is_pending());
    let start = tokio::time::Instant::now();
    let _ = head.await.unwrap();
    let _ = tail.await.unwrap();
    // Two slots (110 ms each), the leaked waiter's unused slot, and two
    // intervals of grace (suspected, then stepped around).
    let took = start.elapsed();
    assert!(took <= std::time::Duration::from_millis(5 * 110 + 10), "{took:?}");
}
