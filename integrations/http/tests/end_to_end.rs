//! The layers against the mock Upbit (`upbit-limiter-sim`'s `serve`) and
//! small servers on 127.0.0.1, in real time, with bounded request counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use upbit_limiter_http::{tower::Error as LayerError, RateLimitLayer, RateLimitMiddleware, Refused};
use upbit_limiter_sim::serve::{Handle, Server, Settings, Stats};
use upbit_limiter_sim::server::Escalation;
use upbit_limiter_sim::ServerModel;
use upbit_limiter_tokio::{Group, LimiterConfig, Preset, RateLimiter, Reason};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// An unsigned JWT (`alg: none`) with an `access_key` claim: the mock takes
/// the pocket from it without checking a signature.
fn jwt(access_key: &str) -> String {
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
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(format!(r#"{{"access_key":"{access_key}","nonce":"n"}}"#).as_bytes());
    format!("Bearer {header}.{payload}.")
}

fn settings(limit_scale: f64) -> Settings {
    let mut s = Settings::new(Preset::Korea, ServerModel::Sliding);
    s.limit_scale = limit_scale;
    s
}

async fn start(addr: &str, settings: Settings) -> Result<(SocketAddr, Handle), Box<dyn std::error::Error>> {
    Ok(Server::bind(addr.parse()?, settings).await?)
}

fn limiter() -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(&LimiterConfig::preset(Preset::Korea)).expect("the preset is valid"))
}

/// (accepted, 429, 418) over every group.
fn totals(stats: &Stats) -> (u64, u64, u64) {
    stats.groups.values().fold((0, 0, 0), |(a, b, c), g| {
        (a + g.accepted, b + g.status_429, c + g.status_418)
    })
}

/// Every admission of every group was reported exactly once.
fn assert_all_reported(limiter: &RateLimiter) {
    for status in limiter.limiter().status(limiter.now()) {
        let c = status.counters;
        assert_eq!(
            c.admitted, c.responses,
            "{}: admitted {} reported {}",
            status.group, c.admitted, c.responses
        );
    }
}

/// The paths the concurrent tests cycle through: four Quotation groups and
/// two Exchange groups (on one pocket).
const PATHS: [(&str, &str); 6] = [
    ("GET", "/v1/ticker?markets=KRW-BTC"),
    ("GET", "/v1/orderbook?markets=KRW-BTC"),
    ("GET", "/v1/candles/minutes/1?market=KRW-BTC"),
    ("GET", "/v1/trades/ticks?market=KRW-BTC"),
    ("GET", "/v1/accounts"),
    ("POST", "/v1/orders"),
];

const TASKS: usize = 50;
const RUN_FOR: Duration = Duration::from_millis(2_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_middleware_50_tasks_draw_no_429() -> TestResult {
    let (addr, server) = start("127.0.0.1:0", settings(1.0)).await?;
    let limiter = limiter();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(Arc::clone(&limiter)))
        .build();
    let auth = jwt("pocket-reqwest");
    let ok = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + RUN_FOR;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (client, auth, ok) = (client.clone(), auth.clone(), Arc::clone(&ok));
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while Instant::now() < end {
                let (method, path) = PATHS[i % PATHS.len()];
                i += 1;
                let url = format!("http://{addr}{path}");
                let request = match method {
                    "POST" => client.post(url).header("authorization", &auth),
                    _ => client.get(url).header("authorization", &auth),
                };
                let request =
                    request.with_extension(upbit_limiter_http::AcquireTimeout(Duration::from_secs(1)));
                match request.send().await {
                    Ok(r) => {
                        assert_eq!(r.status(), 200, "{method} {path}");
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let refused =
                            Refused::from_middleware(&e).unwrap_or_else(|| panic!("not a refusal: {e}"));
                        assert!(refused.error().is_timeout(), "{refused}");
                        tokio::time::sleep_until(refused.retry_at().min(end)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let stats = server.shutdown().await?;
    let (accepted, s429, s418) = totals(&stats);
    println!(
        "reqwest: {accepted} accepted, {s429} 429, {s418} 418 in {:?}",
        started.elapsed()
    );
    assert_eq!((s429, s418), (0, 0), "{stats:?}");
    assert_eq!(accepted, ok.load(Ordering::Relaxed));
    // Every group ran near its limit: 10/s Quotation, 30/s default, 12/s order.
    for group in ["ticker", "orderbook", "candle", "trade"] {
        assert!(stats.groups[group].accepted >= 15, "{group}: {stats:?}");
    }
    assert!(stats.groups["order"].accepted >= 20, "{stats:?}");
    assert_all_reported(&limiter);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_layer_on_hyper_50_tasks_draw_no_429() -> TestResult {
    let (addr, server) = start("127.0.0.1:0", settings(1.0)).await?;
    let limiter = limiter();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Arc::clone(&limiter)))
        .service(client);
    let auth = jwt("pocket-hyper");
    let ok = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + RUN_FOR;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (service, auth, ok) = (service.clone(), auth.clone(), Arc::clone(&ok));
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while Instant::now() < end {
                let (method, path) = PATHS[i % PATHS.len()];
                i += 1;
                let mut request = http::Request::builder()
                    .method(method)
                    .uri(format!("http://{addr}{path}"))
                    .header("authorization", &auth)
                    .body(Empty::<Bytes>::new())
                    .expect("a valid request");
                request
                    .extensions_mut()
                    .insert(upbit_limiter_http::AcquireTimeout(Duration::from_secs(1)));
                match service.clone().oneshot(request).await {
                    Ok(r) => {
                        assert_eq!(r.status(), 200, "{method} {path}");
                        let body = r.into_body().collect().await.expect("a body").to_bytes();
                        assert!(!body.is_empty());
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(LayerError::Refused(refused)) => {
                        assert!(refused.error().is_timeout(), "{refused}");
                        tokio::time::sleep_until(refused.retry_at().min(end)).await;
                    }
                    Err(LayerError::Service(e)) => panic!("transport error: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let stats = server.shutdown().await?;
    let (accepted, s429, s418) = totals(&stats);
    println!(
        "hyper: {accepted} accepted, {s429} 429, {s418} 418 in {:?}",
        started.elapsed()
    );
    assert_eq!((s429, s418), (0, 0), "{stats:?}");
    assert_eq!(accepted, ok.load(Ordering::Relaxed));
    for group in ["ticker", "orderbook", "candle", "trade"] {
        assert!(stats.groups[group].accepted >= 15, "{group}: {stats:?}");
    }
    assert_all_reported(&limiter);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_stops_the_client_until_it_ends_and_the_caller_gets_the_418_body() -> TestResult {
    const BLOCK: Duration = Duration::from_secs(2);
    let mut s = settings(1.0);
    s.escalation = Escalation {
        after: 3,
        block: upbit_limiter_tokio::upbit_limiter_core::Duration::from_secs(2),
        block_max: upbit_limiter_tokio::upbit_limiter_core::Duration::from_secs(2),
        ..Escalation::default()
    };
    let (addr, server) = start("127.0.0.1:0", s).await?;
    let url = format!("http://{addr}/v1/ticker?markets=KRW-BTC");

    // Another program on the same IP floods without a limiter until the IP is banned.
    let raw = reqwest::Client::new();
    let flood: Vec<_> = (0..20).map(|_| raw.get(&url).send()).collect();
    for r in futures::future::join_all(flood).await {
        r?;
    }
    let before = totals(&server.stats());
    assert!(before.2 >= 1, "the flood was not banned: {before:?}");

    let limiter = limiter();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(Arc::clone(&limiter)))
        .build();
    let events = Arc::new(Mutex::new(Vec::<(Instant, u16)>::new()));
    let refusals = Arc::new(AtomicU64::new(0));
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let start_at = Instant::now();
    let end = start_at + BLOCK + Duration::from_millis(2_000);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (client, url, events, refusals, bodies) = (
            client.clone(),
            url.clone(),
            Arc::clone(&events),
            Arc::clone(&refusals),
            Arc::clone(&bodies),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                match client.get(&url).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        events.lock().unwrap().push((Instant::now(), status));
                        // The response handed on after reading a 418 keeps its URL.
                        assert_eq!(r.url().as_str(), url);
                        let content_type = r.headers().get("content-type").cloned();
                        let body = r.text().await.expect("the body");
                        if status == 418 {
                            assert!(content_type.is_some());
                            bodies.lock().unwrap().push(body);
                        }
                    }
                    Err(e) => {
                        let refused = Refused::from_middleware(&e).expect("a refusal");
                        assert_eq!(refused.group(), Group::Ticker);
                        if refused.reason() == Reason::Banned {
                            refusals.fetch_add(1, Ordering::Relaxed);
                            assert!(
                                refused.retry_after() <= BLOCK + Duration::from_secs(1),
                                "{refused}"
                            );
                        }
                        tokio::time::sleep_until(refused.retry_at().min(end)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let after = totals(&server.shutdown().await?);
    let events = events.lock().unwrap().clone();
    let first_418 = events
        .iter()
        .find(|e| e.1 == 418)
        .map(|e| e.0)
        .expect("the client met the ban");
    let last_418 = events
        .iter()
        .filter(|e| e.1 == 418)
        .map(|e| e.0)
        .max()
        .unwrap_or(first_418);
    let first_ok = events
        .iter()
        .filter(|e| e.1 == 200 && e.0 > first_418)
        .map(|e| e.0)
        .min()
        .expect("the client resumed after the ban");
    let ours_418 = events.iter().filter(|e| e.1 == 418).count();
    let oks = events.iter().filter(|e| e.1 == 200).count();
    println!(
        "ban: {ours_418} 418 seen by the limited client, {} refusals while banned, first 200 {:?} after the first 418, {oks} 200s",
        refusals.load(Ordering::Relaxed),
        first_ok - first_418
    );
    // Only requests already on their way when the first 418 came back met the ban.
    assert!(ours_418 <= 5, "{events:?}");
    assert!(last_418 - first_418 < Duration::from_millis(200), "{events:?}");
    assert_eq!(after.2 - before.2, ours_418 as u64, "the server saw other 418s");
    assert_eq!(after.1, before.1, "a 429 after the ban");
    // It stopped until the ban ended (the first 418 said at most 2 s were left), then resumed.
    assert!(first_ok - first_418 >= Duration::from_millis(1_000), "{events:?}");
    assert!(refusals.load(Ordering::Relaxed) >= 1);
    assert!(oks >= 5, "{events:?}");
    // The caller got the server's body, intact.
    for body in bodies.lock().unwrap().iter() {
        assert!(
            body.starts_with(r#"{"error":{"name":"too_many_requests_blocked""#),
            "{body}"
        );
        assert!(body.contains("blocked for "), "{body}");
    }
    assert_all_reported(&limiter);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_lowered_on_the_server_costs_few_429s_then_none() -> TestResult {
    let (addr, server) = start("127.0.0.1:0", settings(1.0)).await?;
    let limiter = limiter();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(Arc::clone(&limiter)))
        .build();
    // Requests hold the gate for reading; the switch takes it for writing,
    // so no request meets the gap between the two servers.
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let events = Arc::new(Mutex::new(Vec::<(Instant, u16)>::new()));
    let end = Instant::now() + Duration::from_millis(5_000);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (client, gate, events) = (client.clone(), Arc::clone(&gate), Arc::clone(&events));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let _pass = gate.read().await;
                match client
                    .get(format!("http://{addr}/v1/ticker?markets=KRW-BTC"))
                    .send()
                    .await
                {
                    Ok(r) => events.lock().unwrap().push((Instant::now(), r.status().as_u16())),
                    Err(e) => {
                        let refused = Refused::from_middleware(&e).unwrap_or_else(|| panic!("{e}"));
                        drop(_pass);
                        tokio::time::sleep_until(refused.retry_at().min(end)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let switch = {
        let _closed = gate.write().await;
        let first = server.shutdown().await?;
        assert_eq!(totals(&first).1, 0, "{first:?}");
        // The same address, half the limits (ticker 5/s).
        let second = start(&addr.to_string(), settings(0.5)).await?;
        (Instant::now(), second.1)
    };
    let (switched_at, server) = switch;
    for t in tasks {
        t.await?;
    }
    let stats = server.shutdown().await?;
    let events = events.lock().unwrap().clone();
    let late: Vec<_> = events
        .iter()
        .filter(|e| e.1 == 429)
        .map(|e| e.0 - switched_at)
        .collect();
    let after: Vec<_> = events.iter().filter(|e| e.0 > switched_at).collect();
    let last = after.last().map_or(switched_at, |e| e.0);
    // The last 2 s of the run, not of the last answer: a request that was
    // still waiting when the run ended is answered later, alone.
    let last_second = after
        .iter()
        .filter(|e| e.0 > end - Duration::from_secs(2) && e.0 <= end && e.1 == 200)
        .count();
    println!(
        "lowered: {} 429 after the switch (at {:?}), {} accepted by the second server in {:?}; {last_second} in the run's last 2 s",
        stats.groups["ticker"].status_429,
        late,
        stats.groups["ticker"].accepted,
        last - switched_at
    );
    assert_eq!(stats.groups["ticker"].status_418, 0, "{stats:?}");
    // A fresh server at half the limit shows no sign of it until our
    // earlier requests have left the window; then the interval log, which
    // lets a window's worth go at once, can have up to `N - N'` (5) on their
    // way before the first 429 comes back. After that the learned ceiling
    // and the headers hold it.
    assert!(stats.groups["ticker"].status_429 <= 5, "{stats:?}");
    // None once adapted: every 429 came soon after the switch (the run
    // goes on for 3 s more).
    assert!(late.iter().all(|d| *d < Duration::from_millis(1_500)), "{late:?}");
    // And it still uses the lower limit (5/s): at least half of it over the last 2 s.
    assert!(last_second >= 5, "{last_second}");
    assert_all_reported(&limiter);
    Ok(())
}

/// Accepts connections, reads a request head and closes the socket without
/// answering (a server killed mid-request), or with `hold`, keeps it open
/// without answering.
async fn dying_server(hold: bool) -> Result<SocketAddr, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            if hold {
                held.push(socket);
            }
        }
    });
    Ok(addr)
}

fn failures(limiter: &RateLimiter, group: Group) -> (u64, u64, u64) {
    let c = limiter.limiter().group(group).status(limiter.now()).counters;
    (c.admitted, c.responses, c.failures)
}

#[tokio::test]
async fn transport_errors_are_reported_as_no_response_and_reach_the_caller() -> TestResult {
    let addr = dying_server(false).await?;
    let url = format!("http://{addr}/v1/ticker");

    let limiter = limiter();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(Arc::clone(&limiter)))
        .build();
    let err = client.get(&url).send().await.expect_err("the server died");
    assert!(matches!(err, reqwest_middleware::Error::Reqwest(_)), "{err:?}");
    assert!(Refused::from_middleware(&err).is_none());
    assert_eq!(failures(&limiter, Group::Ticker), (1, 1, 1));

    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Arc::clone(&limiter)))
        .service(hyper);
    let request = http::Request::get(&url).body(Empty::new())?;
    match service.clone().oneshot(request).await {
        Err(LayerError::Service(_)) => {}
        other => panic!("expected the transport error, got {other:?}"),
    }
    assert_eq!(failures(&limiter, Group::Ticker), (2, 2, 2));
    Ok(())
}

#[tokio::test]
async fn client_timeouts_and_dropped_requests_are_reported_as_no_response() -> TestResult {
    let addr = dying_server(true).await?;
    let url = format!("http://{addr}/v1/orderbook");
    let limiter = limiter();

    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()?,
    )
    .with(RateLimitMiddleware::new(Arc::clone(&limiter)))
    .build();
    let err = client.get(&url).send().await.expect_err("no answer");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(failures(&limiter, Group::Orderbook), (1, 1, 1));

    // The caller gives up: the future is dropped mid-request.
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Arc::clone(&limiter)))
        .service(hyper);
    let call = service.oneshot(http::Request::get(&url).body(Empty::new())?);
    assert!(tokio::time::timeout(Duration::from_millis(200), call)
        .await
        .is_err());
    assert_eq!(failures(&limiter, Group::Orderbook), (2, 2, 2));

    // reqwest too.
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(Arc::clone(&limiter)))
        .build();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), client.get(&url).send())
            .await
            .is_err()
    );
    assert_eq!(failures(&limiter, Group::Orderbook), (3, 3, 3));
    Ok(())
}

/// A 418 whose body is large, split in many chunks and not UTF-8: the
/// limiter reads a bounded start of it and the caller gets every byte.
#[tokio::test]
async fn a_large_418_body_is_read_bounded_and_handed_on_whole() -> TestResult {
    let mut body: Vec<u8> = b"{\"error\":{\"message\":\"blocked for 7 seconds\"}} \xff\xfe".to_vec();
    body.extend((0..100_000u32).map(|i| (i % 251) as u8));
    let expected = body.clone();
    let inner = tower::service_fn(move |_req: http::Request<Empty<Bytes>>| {
        let chunks: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = body
            .chunks(1_000)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let stream = http_body_util::StreamBody::new(futures::stream::iter(chunks));
        async move {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(418)
                    .body(stream)
                    .expect("a response"),
            )
        }
    });
    let limiter = limiter();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Arc::clone(&limiter)))
        .service(inner);
    let response = service
        .clone()
        .oneshot(http::Request::get("https://api.upbit.com/v1/ticker?markets=KRW-BTC").body(Empty::new())?)
        .await?;
    assert_eq!(response.status(), 418);
    let got = response.into_body().collect().await?.to_bytes();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the body changed");
    // The ban was read from the body (7 s), for the whole IP scope.
    let status = limiter.limiter().group(Group::Ticker).status(limiter.now());
    let left = status.banned_until.map(|u| Duration::from(u - limiter.now()));
    assert!(
        left.is_some_and(|d| d > Duration::from_secs(6) && d <= Duration::from_secs(7)),
        "{left:?}"
    );
    match service
        .oneshot(http::Request::get("/v1/candles/days").body(Empty::new())?)
        .await
    {
        Err(LayerError::Refused(r)) => {
            assert_eq!((r.group(), r.reason()), (Group::Candle, Reason::Banned));
            assert!(r.to_string().contains("banned by the server (418)"), "{r}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_all_reported(&limiter);
    Ok(())
}

mod websocket {
    use super::*;
    use futures::{Sink, SinkExt, StreamExt};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio_tungstenite::tungstenite::Message;
    use upbit_limiter_http::websocket::{connect, MessageSink};

    /// Records when each message reaches the inner sink.
    struct Recording<S> {
        inner: S,
        sent: Arc<Mutex<Vec<(Instant, Message)>>>,
    }

    impl<S: Sink<Message> + Unpin> Sink<Message> for Recording<S> {
        type Error = S::Error;
        fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            Pin::new(&mut self.inner).poll_ready(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), S::Error> {
            self.sent.lock().unwrap().push((Instant::now(), item.clone()));
            Pin::new(&mut self.inner).start_send(item)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            Pin::new(&mut self.inner).poll_close(cx)
        }
    }

    /// No more than `n` of `times` in any window of `w` (inclusive).
    fn at_most(times: &[Instant], n: usize, w: Duration) -> bool {
        times.windows(n + 1).all(|t| t[n] - t[0] > w)
    }

    async fn echo_server() -> Result<SocketAddr, std::io::Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.next().await {
                        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    #[tokio::test]
    async fn twenty_messages_over_a_real_socket_arrive_in_order_at_5_per_second() -> TestResult {
        let addr = echo_server().await?;
        let limiter = limiter();
        let (ws, upgrade) = connect(
            &limiter,
            tokio_tungstenite::connect_async(format!("ws://{addr}/websocket/v1")),
        )
        .await?;
        assert_eq!(upgrade.status(), 101);
        let c = limiter
            .limiter()
            .group(Group::WebsocketConnect)
            .status(limiter.now())
            .counters;
        assert_eq!((c.admitted, c.responses, c.failures), (1, 1, 0));

        let (write, mut read) = ws.split();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let recording = Recording {
            inner: write,
            sent: Arc::clone(&sent),
        };
        let mut sink = MessageSink::new(recording, &limiter)?;
        let started = Instant::now();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 20 {
                match read.next().await {
                    Some(Ok(Message::Text(t))) => got.push(t.to_string()),
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            got
        });
        for i in 0..20 {
            sink.send(Message::text(format!(
                r#"[{{"ticket":"t{i}"}},{{"type":"ticker","codes":["KRW-BTC"]}}]"#
            )))
            .await?;
        }
        let got = tokio::time::timeout(Duration::from_secs(10), reader).await??;
        let elapsed = started.elapsed();
        let expected: Vec<String> = (0..20)
            .map(|i| format!(r#"[{{"ticket":"t{i}"}},{{"type":"ticker","codes":["KRW-BTC"]}}]"#))
            .collect();
        assert_eq!(got, expected, "dropped or reordered");
        let times: Vec<Instant> = sent.lock().unwrap().iter().map(|s| s.0).collect();
        println!("websocket: 20 messages echoed in order in {elapsed:?}");
        assert_eq!(times.len(), 20);
        assert!(at_most(&times, 5, Duration::from_secs(1)), "{times:?}");
        Ok(())
    }

    /// In paused time: 5/s and 100/min on one connection, with pings in
    /// between that keep their place, and a second connection that has a
    /// budget of its own.
    #[tokio::test(start_paused = true)]
    async fn messages_keep_their_order_and_both_limits_per_connection() -> TestResult {
        let limiter = limiter();
        let mut runs = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = futures::channel::mpsc::unbounded::<Message>();
            let sent = Arc::new(Mutex::new(Vec::new()));
            let mut sink = MessageSink::new(
                Recording {
                    inner: tx,
                    sent: Arc::clone(&sent),
                },
                &limiter,
            )?;
            runs.push(tokio::spawn(async move {
                for i in 0..130u32 {
                    sink.feed(Message::text(i.to_string())).await.expect("open");
                    if i % 10 == 0 {
                        sink.feed(Message::Ping(Bytes::new())).await.expect("open");
                    }
                }
                sink.close().await.expect("open");
                let got: Vec<Message> = rx.collect().await;
                (got, sent)
            }));
        }
        let started = Instant::now();
        for run in runs {
            let (got, sent) = run.await?;
            let expected: Vec<Message> = (0..130u32)
                .flat_map(|i| {
                    let ping = (i % 10 == 0).then(|| Message::Ping(Bytes::new()));
                    std::iter::once(Message::text(i.to_string())).chain(ping)
                })
                .collect();
            assert_eq!(got, expected, "dropped or reordered");
            let times: Vec<Instant> = sent
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.1.is_text())
                .map(|s| s.0)
                .collect();
            assert!(at_most(&times, 5, Duration::from_secs(1)));
            assert!(at_most(&times, 100, Duration::from_secs(60)));
        }
        // Both connections ran side by side: 130 messages need one minute
        // and a little more, not two.
        let took = started.elapsed();
        assert!(
            took > Duration::from_secs(60) && took < Duration::from_secs(90),
            "{took:?}"
        );
        Ok(())
    }
}

/// A 418 whose body stalls after its first bytes: the limiter reports what
/// came within the wait, and the caller still gets those bytes first.
#[tokio::test(start_paused = true)]
async fn a_stalled_418_body_is_reported_after_the_wait() -> TestResult {
    let inner = tower::service_fn(|_req: http::Request<Empty<Bytes>>| async {
        let first: Result<http_body::Frame<Bytes>, std::convert::Infallible> = Ok(http_body::Frame::data(
            Bytes::from_static(b"blocked for 9 seconds"),
        ));
        let stream = futures::StreamExt::chain(futures::stream::iter([first]), futures::stream::pending());
        let body = http_body_util::StreamBody::new(stream);
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .status(418)
                .body(body)
                .expect("a response"),
        )
    });
    let limiter = limiter();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Arc::clone(&limiter)))
        .service(inner);
    let started = Instant::now();
    let response = service
        .oneshot(http::Request::get("/v1/orderbook").body(Empty::new())?)
        .await?;
    assert_eq!(started.elapsed(), upbit_limiter_http::BAN_BODY_WAIT);
    let status = limiter.limiter().group(Group::Orderbook).status(limiter.now());
    assert!(status.banned_until.is_some(), "{status:?}");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame")?.into_data().expect("data");
    assert_eq!(&first[..], b"blocked for 9 seconds");
    assert_all_reported(&limiter);
    Ok(())
}
