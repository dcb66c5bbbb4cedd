//! The 418 readers never panic on any input, and what `stated_ban` accepts
//! is always a real, bounded ban: longer than zero and at most
//! `MAX_CREDIBLE_BAN`, never "unlimited".
#![no_main]

use libfuzzer_sys::fuzz_target;
use upbit_limiter_core::upbit::{
    parse_ban_duration, parse_ban_end, parse_http_date, parse_retry_after, stated_ban, WallClock, MAX_CREDIBLE_BAN,
};

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes are the wall clock; the rest splits at NUL bytes into
    // body, Retry-After and Date.
    let (clock, rest) = data.split_at(data.len().min(8));
    let mut ms = [0u8; 8];
    ms[..clock.len()].copy_from_slice(clock);
    let now = WallClock::from_unix_millis(u64::from_le_bytes(ms));
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split('\0');
    let body = parts.next().unwrap_or("");
    let retry_after = parts.next();
    let date = parts.next();

    let _ = parse_ban_duration(body);
    if let Some(d) = parse_ban_end(body, now) {
        assert!(!d.is_zero(), "{body:?}");
    }
    if let Some(v) = retry_after {
        if let Some(d) = parse_retry_after(v, Some(now)) {
            assert!(!d.is_zero(), "{v:?}");
        }
    }
    let _ = date.map(parse_http_date);
    for wall in [None, Some(now)] {
        if let Some(d) = stated_ban(Some(body), retry_after, date, wall) {
            assert!(!d.is_zero() && d <= MAX_CREDIBLE_BAN, "{d:?} from {data:?}");
        }
    }
});
