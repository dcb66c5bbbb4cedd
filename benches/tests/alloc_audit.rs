//! The hot path never touches the heap: a counting global allocator proves
//! zero allocations per decision, per classified decision, per header parse
//! per uncontended `acquire().await` (with its permit dropped or reported),
//! and per waiter that sleeps and is cancelled.
//!
//! Allocations are counted per thread, so the test harness's other threads
//! (and tests running in parallel) cannot disturb a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use upbit_limiter_benches::{
    always_admits, every_group, never_admits, ADMIT_INTERVAL, HEADERS, REQUESTS, START,
};
use upbit_limiter_core::upbit::RemainingReq;
use upbit_limiter_core::{classify, Group, GroupLimiter, Request, Response, SyncLimiter};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: during thread teardown the slot may already be gone.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local without a destructor, so
// touching it never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made on this thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const ROUNDS: usize = 10_000;

#[test]
fn the_counter_sees_heap_allocations() {
    // The audit means nothing if the allocator is not the one counting.
    let n = allocations_during(|| {
        black_box(vec![1u8; 64]);
        black_box(Box::new(7u64));
    });
    assert_eq!(n, 2);
}

#[test]
fn group_decisions_do_not_allocate() {
    let admits = GroupLimiter::new(Group::Default, always_admits()).expect("valid configuration");
    let denies = GroupLimiter::new(Group::Default, never_admits()).expect("valid configuration");
    let mut admitted = 0;
    let mut denied = 0;
    let n = allocations_during(|| {
        let mut now = START;
        for _ in 0..ROUNDS {
            now += ADMIT_INTERVAL;
            admitted += usize::from(admits.try_acquire(now).is_ok());
            denied += usize::from(denies.try_acquire(now).is_err());
        }
    });
    assert_eq!(n, 0, "allocations in {ROUNDS} allow + {ROUNDS} deny decisions");
    assert_eq!(admitted, ROUNDS);
    assert_eq!(denied, ROUNDS - 1, "the saturated group admits exactly once");
}

#[test]
fn classified_decisions_and_header_parsing_do_not_allocate() {
    let limiter = SyncLimiter::new(&every_group(always_admits())).expect("valid configuration");
    let mut admitted = 0;
    let mut parsed = 0;
    let mut groups = [0usize; Group::COUNT];
    let n = allocations_during(|| {
        for i in 0..ROUNDS {
            let (method, path) = REQUESTS[i % REQUESTS.len()];
            groups[classify(method, path).index()] += 1;
            admitted += usize::from(limiter.try_acquire(method, path, START).is_ok());
            parsed += usize::from(RemainingReq::parse(HEADERS[i % HEADERS.len()]).is_ok());
        }
    });
    assert_eq!(
        n, 0,
        "allocations in {ROUNDS} classified decisions and header parses"
    );
    assert_eq!(admitted, ROUNDS);
    assert_eq!(parsed, ROUNDS);
    assert!(
        groups.iter().filter(|&&k| k > 0).count() >= 6,
        "the requests span the groups"
    );
}

#[test]
fn reported_responses_do_not_allocate() {
    let limiter = SyncLimiter::new(&every_group(always_admits())).expect("valid configuration");
    let (mut reported, mut rejected) = (0, 0);
    let n = allocations_during(|| {
        let mut now = START;
        for i in 0..ROUNDS {
            now += ADMIT_INTERVAL;
            let (method, path) = REQUESTS[i % REQUESTS.len()];
            if let Ok(admission) = limiter.try_acquire(method, path, now) {
                let response = Response::status(200).with_remaining_req(HEADERS[i % HEADERS.len()]);
                let feedback = limiter.on_response(&admission, response, now);
                reported += 1;
                rejected += usize::from(feedback.header_rejected);
            }
        }
    });
    assert_eq!(
        n, 0,
        "allocations in {ROUNDS} decisions and their reported responses"
    );
    assert!(reported >= REQUESTS.len(), "every group admitted at least once");
    assert_eq!(rejected, 0, "every header was read and applied");
}

#[test]
fn uncontended_acquire_does_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let limiter = rt
        .block_on(async { upbit_limiter_tokio::RateLimiter::new(&every_group(always_admits())) })
        .expect("valid configuration");
    let (mut dropped, mut reported, mut classified) = (0, 0, 0);
    // The future is built and awaited inside one `block_on`, on this thread:
    // the count covers the acquire, the permit and the runtime's polling.
    let n = rt.block_on(async {
        // A first round outside the count, so one-off lazy set-up in the
        // runtime or the clock does not pass for a per-acquire cost.
        drop(limiter.acquire_request(Request::group(Group::Default)).await);
        allocations_during_async(async {
            for i in 0..ROUNDS {
                if let Ok(permit) = limiter.acquire_request(Request::group(Group::Default)).await {
                    drop(permit);
                    dropped += 1;
                }
                if let Ok(permit) = limiter.acquire_request(Request::group(Group::Order)).await {
                    black_box(permit.report_with_feedback(Response::status(201)));
                    reported += 1;
                }
                let (method, path) = REQUESTS[i % REQUESTS.len()];
                if let Ok(permit) = limiter.acquire(method, path).await {
                    drop(permit);
                    classified += 1;
                }
            }
        })
        .await
    });
    assert_eq!(n, 0, "allocations in {} uncontended acquisitions", 3 * ROUNDS);
    assert_eq!((dropped, reported, classified), (ROUNDS, ROUNDS, ROUNDS));
    let status = limiter.limiter().group(Group::Default).status(limiter.now());
    assert_eq!(status.counters.waits, 0, "no acquisition had to wait");
}

async fn allocations_during_async(f: impl std::future::Future<Output = ()>) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f.await;
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn a_cancelled_waiter_does_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let limiter = rt
        .block_on(async { upbit_limiter_tokio::RateLimiter::new(&every_group(never_admits())) })
        .expect("valid configuration");
    let group = limiter.limiter().group(Group::Default);
    assert!(
        group.try_acquire(limiter.now()).is_ok(),
        "the only admission for an hour"
    );
    let (n, pending) = rt.block_on(async {
        // One waiter outside the count: the timer wheel's first registration.
        let mut pending = poll_once(limiter.acquire_request(Request::group(Group::Default))).await;
        let n = allocations_during_async(async {
            for _ in 0..ROUNDS {
                // Queued, sleeping on its timer, then dropped: unlinked and deregistered.
                pending += poll_once(limiter.acquire_request(Request::group(Group::Default))).await;
            }
        })
        .await;
        (n, pending)
    });
    assert_eq!(n, 0, "allocations in {ROUNDS} cancelled waiters");
    assert_eq!(pending, ROUNDS + 1, "every waiter had to sleep");
    let status = group.status(limiter.now());
    assert_eq!(status.counters.cancelled, ROUNDS as u64 + 1);
    assert_eq!(status.queue_depth, 0, "every cancelled waiter left the queue");
}

/// Polls `fut` once with the task's own waker and drops it; 1 if it was pending.
async fn poll_once<F: std::future::Future>(fut: F) -> usize {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| std::task::Poll::Ready(usize::from(fut.as_mut().poll(cx).is_pending()))).await
}
