//! `RemainingReq::parse` never panics, and whatever it accepts prints (via
//! `Display`) to a value that parses back to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upbit_limiter_core::upbit::RemainingReq;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(header) = RemainingReq::parse(text) {
        let printed = header.to_string();
        let again = RemainingReq::parse(&printed)
            .unwrap_or_else(|e| panic!("{text:?} parsed, but its print {printed:?} does not: {e}"));
        assert_eq!(again, header, "{text:?} -> {printed:?}");
        let _ = header.group();
    }
});
