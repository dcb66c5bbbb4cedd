//! The shared store configured from the ops crate's TOML and environment.

mod support;

use std::time::Duration;

use support::redis_server::RedisServer;
use upbit_limiter_ops::{OpsConfig, TomlText};
use upbit_limiter_redis::{FailureMode, SharedLimiter};
use upbit_limiter_tokio::Response;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<OpsConfig, String> {
    let file = TomlText {
        name: "test.toml",
        text: toml,
    };
    OpsConfig::from_layers(Some(file), env.iter().copied()).map_err(|e| e.to_string())
}

#[test]
fn the_shared_table_and_variables_fill_the_shared_config() {
    let c = load(
        "[shared]\nurl = \"redis://127.0.0.1:7000\"\npocket_id = \"sub-1\"\ntimeout_ms = 100\nfailure_mode = \"closed\"\n",
        &[
            ("UPBIT_RATE_LIMIT_SHARED_KEY_PREFIX", "bots"),
            ("UPBIT_RATE_LIMIT_SHARED_POCKET_ID", "sub-2"),
        ],
    )
    .unwrap();
    let s = c.shared.unwrap();
    assert_eq!(s.url, "redis://127.0.0.1:7000");
    assert_eq!(
        (s.key_prefix.as_str(), s.pocket_id.as_str(), s.ip_id.as_str()),
        ("bots", "sub-2", "default")
    );
    assert_eq!(s.store_timeout, Duration::from_millis(100));
    assert_eq!(s.failure_mode, FailureMode::Closed);
    assert!(load("", &[]).unwrap().shared.is_none());
    // The limiter's pocket is the shared one unless the table names another.
    let c = load(
        "pocket = \"sub-7\"\n[shared]\nurl = \"redis://127.0.0.1:7000\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.shared.unwrap().pocket_id, "sub-7");
}

#[test]
fn nonsense_shared_settings_are_reported_with_their_key() {
    for (toml, env, needle) in [
        ("[shared]\npocket_id = \"p\"\n", vec![], "shared.url"),
        (
            "[shared]\nurl = \"redis://x\"\nfailure_mode = \"open\"\n",
            vec![],
            "closed",
        ),
        (
            "[shared]\nurl = \"redis://x\"\npocket_id = \"a:b\"\n",
            vec![],
            "pocket_id",
        ),
        (
            "[shared]\nurl = \"redis://x\"\ntimeout_ms = 0\n",
            vec![],
            "timeout_ms",
        ),
        ("[shared]\nurl = \"redis://x\"\nport = 1\n", vec![], "shared.port"),
        ("", vec![("UPBIT_RATE_LIMIT_SHARED_URL", "no scheme")], "URL"),
        (
            "",
            vec![("UPBIT_RATE_LIMIT_SHARED_TIMEOUT_MS", "-5")],
            "SHARED_TIMEOUT_MS",
        ),
    ] {
        let e = load(toml, &env).unwrap_err();
        assert!(e.contains(needle), "{toml:?} {env:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_built_from_the_ops_configuration_shares_through_redis() {
    let server = RedisServer::start();
    let toml = "[all]\npolicy = \"interval-log\"\nmax_flight_ms = 200\n";
    let url = server.url();
    let c = load(toml, &[("UPBIT_RATE_LIMIT_SHARED_URL", url.as_str())]).unwrap();
    let limiter = SharedLimiter::new(&c.limiter, c.shared.unwrap()).unwrap();
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    assert!(permit.ticket().is_some());
    permit.report_and_wait(Response::status(200)).await.unwrap();
}
