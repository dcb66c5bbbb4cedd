//! The one test that reads the real process environment. It is alone in its
//! test binary, so no other test can race with its `set_var`.

use upbit_limiter_core::{Duration, Group};
use upbit_limiter_ops::OpsConfig;

#[test]
fn the_process_environment_and_the_file_it_names_are_read() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ops-process-env.toml");
    std::fs::write(&path, "[groups.ticker]\nburst = 2\ntimeout_ms = 1000\n").unwrap();
    let vars = [
        ("UPBIT_RATE_LIMIT_FILE", path.to_str().unwrap()),
        ("UPBIT_RATE_LIMIT_TICKER_TIMEOUT_MS", "2500"),
        ("UPBIT_RATE_LIMIT_PRESET", "global"),
    ];
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let config = OpsConfig::load_from_process_env(None);
    std::env::set_var("UPBIT_RATE_LIMIT_ORDER_BURST", "lots");
    let refused = OpsConfig::load_from_process_env(None);
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    std::env::remove_var("UPBIT_RATE_LIMIT_ORDER_BURST");

    let config = config.unwrap();
    let ticker = config.limiter.group(Group::Ticker);
    assert_eq!(ticker.burst, 2, "from the file the variable names");
    assert_eq!(
        ticker.waiter_timeout,
        Duration::from_millis(2500),
        "the variable wins over the file"
    );
    assert_eq!(config.preset, upbit_limiter_core::Preset::Global);
    let err = refused.unwrap_err();
    assert_eq!(
        err.issues.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["environment variable UPBIT_RATE_LIMIT_ORDER_BURST: expected a whole number of requests from 1 to the group's server limit, found \"lots\""]
    );
    // With the variables gone, the default again.
    assert_eq!(
        OpsConfig::load_from_process_env(None).unwrap(),
        OpsConfig::default()
    );
}
