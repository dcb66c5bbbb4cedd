//! A small trading bot behind the reqwest middleware, to run against the
//! mock Upbit before trading:
//!
//! ```sh
//! cargo run -p upbit-limiter-sim -- serve --listen 127.0.0.1:8080
//! cargo run -p upbit-limiter-http --example bot -- http://127.0.0.1:8080 20
//! ```
//!
//! Arguments: the base URL (default `http://127.0.0.1:8080`) and how many
//! seconds to trade (default 10). Twenty workers watch the market and place
//! orders as fast as the limiter lets them; at the end the bot prints what
//! it did and the server's own counts, and exits with 3 if the server
//! answered any 429 or 418.
//!
//! The JWT is unsigned (`alg: none`) with an `access_key` claim: the mock
//! takes the pocket from it and checks no signature. Against Upbit, sign it
//! with your secret key (HS512) as Upbit documents.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use upbit_limiter_http::upbit_limiter_tokio::{LimiterConfig, Preset, RateLimiter};
use upbit_limiter_http::{AcquireTimeout, RateLimitMiddleware, Refused};

const WORKERS: usize = 20;

/// base64url without padding.
fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// `Bearer <jwt>` with the `access_key` claim the mock reads the pocket from.
fn authorization(access_key: &str, nonce: u64) -> String {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(format!(r#"{{"access_key":"{access_key}","nonce":"{nonce}"}}"#).as_bytes());
    format!("Bearer {header}.{payload}.")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let base = base.trim_end_matches('/').to_owned();
    let seconds: u64 = match args.next() {
        Some(s) => s.parse().map_err(|_| format!("seconds: not a number: {s}"))?,
        None => 10,
    };

    let limiter = Arc::new(RateLimiter::new(&LimiterConfig::preset(Preset::Korea))?);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(Arc::clone(&limiter)))
        .build();

    let counts = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let started = Instant::now();
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (client, base, counts) = (client.clone(), base.clone(), Arc::clone(&counts));
        workers.push(tokio::spawn(async move {
            let mut nonce = (w as u64) << 32;
            while tokio::time::Instant::now() < end {
                nonce += 1;
                let auth = authorization("bot-pocket", nonce);
                // Watch, check the balance, then trade: each call in its own group.
                let request = match nonce % 4 {
                    0 => client.get(format!("{base}/v1/ticker?markets=KRW-BTC")),
                    1 => client.get(format!("{base}/v1/orderbook?markets=KRW-BTC")),
                    2 => client.get(format!("{base}/v1/accounts")).header("authorization", auth),
                    _ => client
                        .post(format!("{base}/v1/orders"))
                        .header("authorization", auth)
                        .header("content-type", "application/json")
                        .body(r#"{"market":"KRW-BTC","side":"bid","volume":"0.001","price":"140000000","ord_type":"limit"}"#),
                };
                let outcome = match request.with_extension(AcquireTimeout(Duration::from_secs(2))).send().await {
                    Ok(response) => response.status().as_u16().to_string(),
                    Err(e) => match Refused::from_middleware(&e) {
                        Some(refused) => {
                            tokio::time::sleep_until(refused.retry_at().min(end)).await;
                            "not sent (limiter)".to_owned()
                        }
                        None => format!("transport error: {e}"),
                    },
                };
                *counts.lock().unwrap_or_else(|e| e.into_inner()).entry(outcome).or_default() += 1;
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let wall = started.elapsed();

    println!("bot: {WORKERS} workers for {wall:.1?} against {base}");
    for (outcome, n) in counts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("  {outcome:>20}: {n}");
    }
    let stats = reqwest::get(format!("{base}/__sim/stats")).await?.bytes().await?;
    let stats: serde_json::Value = serde_json::from_slice(&stats)?;
    let mut bad = 0;
    println!("server's counts (accepted / 429 / 418):");
    if let Some(groups) = stats.get("groups").and_then(|g| g.as_object()) {
        for (group, c) in groups {
            let n = |k: &str| c.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            if n("accepted") + n("429") + n("418") > 0 {
                println!("  {group:>16}: {} / {} / {}", n("accepted"), n("429"), n("418"));
            }
            bad += n("429") + n("418");
        }
    }
    if bad > 0 {
        eprintln!("the server answered {bad} 429 or 418");
        std::process::exit(3);
    }
    Ok(())
}
