//! `classify` never panics and always names one of the thirteen groups.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upbit_limiter_core::{classify, Group};

fuzz_target!(|data: &[u8]| {
    // The method is what comes before the first NUL byte, the path the rest.
    let (method, path) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let method = String::from_utf8_lossy(method);
    let path = String::from_utf8_lossy(path);
    let group = classify(&method, &path);
    assert!(group.index() < Group::COUNT);
    assert_eq!(Group::ALL[group.index()], group);
    assert_eq!(Group::from_name(group.as_str()), Some(group));
});
