//! Uses the core from a `#![no_std]` library with its own panic handler.
#![no_std]

use upbit_limiter_core::{classify, Group, GroupConfig, GroupLimiter, Instant, Preset, Response};

/// Classifies, decides and reports once; returns whether the request was admitted.
#[no_mangle]
pub extern "C" fn upbit_limiter_decide(now_ns: u64) -> bool {
    let group = classify("GET", "/v1/ticker");
    let Ok(limiter) = GroupLimiter::new(group, GroupConfig::preset(Preset::Korea, Group::Ticker)) else {
        return false;
    };
    let now = Instant::from_nanos(now_ns);
    match limiter.try_acquire(now) {
        Ok(admission) => {
            let response = Response::status(200).with_remaining_req("group=ticker; min=600; sec=9");
            limiter.on_response(&admission, response, now);
            true
        }
        Err(_) => false,
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
