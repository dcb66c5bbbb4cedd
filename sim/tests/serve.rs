//! The mock Upbit over real HTTP: headers, 429/418, scopes, 401/404, stats,
//! shutdown, and a differential check against the in-process model.
//!
//! Everything binds 127.0.0.1 (and connects from 127.0.0.2 where the loopback
//! network allows it), sends a bounded number of requests and is bounded in
//! time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration as StdDuration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use upbit_limiter_core::upbit::parse_ban_duration;
use upbit_limiter_core::{Duration, Group, Preset};
use upbit_limiter_sim::serve::{Handle, Server, Settings, Stats, Unit};
use upbit_limiter_sim::server::{Escalation, ServerModel, Source};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// No single exchange with the server may take longer than this.
const REQUEST_TIMEOUT: StdDuration = StdDuration::from_secs(5);

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn remaining_req(&self) -> Option<&str> {
        self.header("remaining-req")
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), from
/// `from` when given.
async fn send(
    addr: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let exchange = async {
        let mut stream = match from {
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
            None => TcpStream::connect(addr).await?,
        };
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::other("request timed out"))??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {text:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: body.to_owned(),
    })
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    send(addr, None, "GET", path, &[]).await.unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(TABLE[((acc >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `Bearer <jwt>` for `access_key` (signed with nothing: the mock does not check).
fn bearer(access_key: &str) -> String {
    let header = b64url(br#"{"alg":"HS512","typ":"JWT"}"#);
    let claims = b64url(format!(r#"{{"access_key":"{access_key}","nonce":"n-1"}}"#).as_bytes());
    format!("Bearer {header}.{claims}.c2lnbmF0dXJl")
}

async fn exchange(addr: SocketAddr, method: &str, path: &str, key: &str) -> Resp {
    let auth = bearer(key);
    send(addr, None, method, path, &[("Authorization", &auth)])
        .await
        .unwrap()
}

async fn start(settings: Settings) -> (SocketAddr, Handle) {
    Server::bind(SocketAddr::new(LOCALHOST, 0), settings)
        .await
        .expect("binds 127.0.0.1:0")
}

fn settings(model: ServerModel, scale: f64) -> Settings {
    Settings {
        limit_scale: scale,
        ..Settings::new(Preset::Korea, model)
    }
}

#[tokio::test]
async fn every_served_response_carries_remaining_req_with_the_wire_names() {
    let (addr, handle) = start(settings(ServerModel::Sliding, 1.0)).await;
    for (path, header) in [
        ("/v1/market/all", "group=market; min=600; sec=9"),
        (
            "/v1/candles/minutes/5?market=KRW-BTC",
            "group=candles; min=600; sec=9",
        ),
        (
            "/v1/trades/ticks?market=KRW-BTC",
            "group=crix-trades; min=600; sec=9",
        ),
        ("/v1/ticker?markets=KRW-BTC", "group=ticker; min=600; sec=9"),
        ("/v1/orderbook?markets=KRW-BTC", "group=orderbook; min=600; sec=9"),
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.remaining_req(), Some(header), "{path}");
        assert_eq!(r.header("limit-by-ip"), Some("Yes"), "{path}");
        assert!(r.header("content-type").unwrap().starts_with("application/json"));
        serde_json::from_str::<serde_json::Value>(&r.body).expect("a JSON body");
    }
    for (method, path, header) in [
        ("GET", "/v1/accounts", "group=default; min=1800; sec=29"),
        ("POST", "/v1/orders", "group=order; min=720; sec=11"),
        ("POST", "/v1/orders/test", "group=order-test; min=480; sec=7"),
        (
            "DELETE",
            "/v1/orders/open",
            "group=order-cancel-all; min=30; sec=0",
        ),
        ("GET", "/v1/orders/open", "group=default; min=1800; sec=28"),
    ] {
        let r = exchange(addr, method, path, "pocket-a").await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        assert_eq!(r.remaining_req(), Some(header), "{method} {path}");
        assert_eq!(r.header("limit-by-ip"), None);
    }
    // An `Origin` header moves a Quotation request to the origin group.
    let r = send(
        addr,
        None,
        "GET",
        "/v1/ticker",
        &[("Origin", "https://example.invalid")],
    )
    .await
    .unwrap();
    assert_eq!(r.remaining_req(), Some("group=origin; min=6; sec=0"));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn exceeding_a_limit_gets_429_then_a_418_block_of_the_whole_pocket() {
    let mut s = settings(ServerModel::Sliding, 1.0);
    s.escalation = Escalation {
        after: 2,
        window: Duration::from_secs(10),
        block: Duration::from_secs(30),
        block_max: Duration::from_secs(60),
        ..Escalation::default()
    };
    let (addr, handle) = start(s).await;
    // order-cancel-all is 1 per 2 s: the whole sequence fits in its window.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                exchange(addr, "DELETE", "/v1/orders/open", "pocket-a")
                    .await
                    .status,
            );
        }
        v
    };
    assert_eq!(statuses, [200, 429, 429]);
    let r = exchange(addr, "DELETE", "/v1/orders/open", "pocket-a").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.remaining_req(), Some("group=order-cancel-all; min=30; sec=0"));
    assert_eq!(parse_ban_duration(&r.body), Some(Duration::from_secs(30)));
    let error: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(error["error"]["name"].is_string());
    // The block covers the whole pocket, not the other pocket nor the IP.
    let r = exchange(addr, "POST", "/v1/orders", "pocket-a").await;
    assert_eq!(r.status, 418);
    let left = parse_ban_duration(&r.body).unwrap();
    assert!(
        left <= Duration::from_secs(30) && left >= Duration::from_secs(28),
        "{left:?}"
    );
    assert_eq!(exchange(addr, "POST", "/v1/orders", "pocket-b").await.status, 200);
    assert_eq!(get(addr, "/v1/ticker").await.status, 200);
    // The 429 body is Upbit's plain text.
    let r = exchange(addr, "DELETE", "/v1/orders/open", "pocket-b").await;
    assert_eq!(r.status, 200);
    let r = exchange(addr, "DELETE", "/v1/orders/open", "pocket-b").await;
    assert_eq!((r.status, r.body.as_str()), (429, "Too many API requests."));
    let stats = handle.shutdown().await.unwrap();
    assert_eq!(stats.groups["order-cancel-all"].accepted, 2);
    assert_eq!(stats.groups["order-cancel-all"].status_429, 3);
    assert_eq!(stats.groups["order-cancel-all"].status_418, 1);
    assert_eq!(stats.groups["order"].status_418, 1);
}

#[tokio::test]
async fn pockets_have_their_own_budgets_and_share_the_ip_budget() {
    // order 12 x 0.25 = 3 per second, ticker 10 x 0.25 = 2.5, rounded to 3.
    let (addr, handle) = start(settings(ServerModel::Sliding, 0.25)).await;
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(exchange(addr, "POST", "/v1/orders", "pocket-a").await.status);
    }
    assert_eq!(a, [200, 200, 200, 429]);
    let r = exchange(addr, "POST", "/v1/orders", "pocket-b").await;
    assert_eq!(
        (r.status, r.remaining_req()),
        (200, Some("group=order; min=180; sec=2"))
    );
    // Quotation counts per IP whatever the token says.
    let ta = bearer("pocket-a");
    let tb = bearer("pocket-b");
    let mut t = Vec::new();
    for auth in [ta.as_str(), tb.as_str(), "", ta.as_str()] {
        let headers: &[(&str, &str)] = if auth.is_empty() {
            &[]
        } else {
            &[("Authorization", auth)]
        };
        t.push(
            send(addr, None, "GET", "/v1/ticker", headers)
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(t, [200, 200, 200, 429]);
    // Another client IP has its own Quotation budget (where loopback aliases work).
    match send(addr, Some(OTHER_LOOPBACK), "GET", "/v1/ticker", &[]).await {
        Ok(r) => {
            assert_eq!(r.status, 200);
            assert_eq!(r.remaining_req(), Some("group=ticker; min=180; sec=2"));
            let stats = handle.stats();
            assert!(stats
                .units
                .iter()
                .any(|u| u.scope == "ip" && u.id == "127.0.0.2" && u.groups["ticker"].accepted == 1));
        }
        Err(e) => eprintln!("skipped the second client IP: {e}"),
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn exchange_paths_need_a_jwt_and_unknown_paths_are_404() {
    let (addr, handle) = start(settings(ServerModel::Fixed, 1.0)).await;
    let no_key = format!("Bearer {}.{}.x", b64url(b"{}"), b64url(br#"{"nonce":"1"}"#));
    let cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("Authorization", "Bearer not-a-jwt")],
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        &[("Authorization", "Bearer a.%%%.c")],
        &[("Authorization", &no_key)],
    ];
    for headers in cases {
        let r = send(addr, None, "GET", "/v1/accounts", headers).await.unwrap();
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.remaining_req(), None);
        let e: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(e["error"]["name"].is_string() && e["error"]["message"].is_string());
    }
    // Quotation needs no token.
    assert_eq!(get(addr, "/v1/market/all").await.status, 200);
    for (method, path) in [
        ("GET", "/v1/nope"),
        ("GET", "/v2/ticker"),
        ("GET", "/v1/candles/minutes/7"),
        ("GET", "/"),
        ("GET", "/v1/orders/test"),
        ("GET", "/__sim/nothing"),
    ] {
        let r = send(addr, None, method, path, &[]).await.unwrap();
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.remaining_req(), None);
        let e: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(e["error"]["name"], "not_found");
    }
    // Garbage on the wire does not bring the server down.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"\x00\xffGARBAGE / HTTP/9.9\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, raw.read_to_end(&mut sink)).await;
    assert_eq!(get(addr, "/v1/ticker").await.status, 200);
    let stats = handle.shutdown().await.unwrap();
    assert_eq!((stats.unauthorized, stats.not_found), (5, 5));
}

#[tokio::test]
async fn the_stats_endpoint_counts_per_group_and_per_unit() {
    let (addr, handle) = start(settings(ServerModel::TokenBucket, 0.2)).await;
    // ticker: 2 per second; orders: 2 per second (12 x 0.2 = 2.4).
    for _ in 0..3 {
        get(addr, "/v1/ticker").await;
    }
    for _ in 0..3 {
        exchange(addr, "POST", "/v1/orders", "pocket-a").await;
    }
    exchange(addr, "GET", "/v1/accounts", "pocket-b").await;
    let r = get(addr, "/__sim/stats").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.remaining_req(), None);
    let stats: Stats = serde_json::from_str(&r.body).unwrap();
    assert_eq!(stats, handle.stats());
    assert_eq!(
        (stats.model.as_str(), stats.preset.as_str()),
        ("token-bucket", "korea")
    );
    let raw: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        raw["groups"]["ticker"],
        serde_json::json!({"accepted": 2, "429": 1, "418": 0})
    );
    assert_eq!(
        raw["groups"]["order"],
        serde_json::json!({"accepted": 2, "429": 1, "418": 0})
    );
    assert_eq!(raw["groups"]["default"]["accepted"], 1);
    assert_eq!(raw["groups"]["candle"]["accepted"], 0);
    let units: Vec<(String, String)> = stats
        .units
        .iter()
        .map(|u| (u.scope.clone(), u.id.clone()))
        .collect();
    assert_eq!(
        units,
        [
            ("ip".to_owned(), "127.0.0.1".to_owned()),
            ("pocket".to_owned(), "pocket-a".to_owned()),
            ("pocket".to_owned(), "pocket-b".to_owned()),
        ]
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let (addr, handle) = start(settings(ServerModel::Anchored, 1.0)).await;
    assert_eq!(get(addr, "/v1/ticker").await.status, 200);
    // An idle open connection does not hold the shutdown up.
    let idle = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let stats = handle.shutdown().await.unwrap();
    assert!(
        started.elapsed() < StdDuration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.groups["ticker"].accepted, 1);
    drop(idle);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );

    let (addr, handle) = start(settings(ServerModel::Anchored, 1.0)).await;
    assert_eq!(get(addr, "/v1/ticker").await.status, 200);
    drop(handle);
    let mut stopped = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(stopped, "still listening 2 s after the handle was dropped");
}

/// What the client sends at which offset from the start of the stream.
#[derive(Clone, Copy, Debug)]
struct Planned {
    offset_ms: u64,
    method: &'static str,
    path: &'static str,
    group: Group,
}

/// About 2.3 s of traffic on one IP and one pocket: bursts over the limits, a
/// 418 block of the IP that ends within the stream, and steady traffic.
fn stream() -> Vec<Planned> {
    let mut plan = Vec::new();
    let mut at = |offset_ms, method, path, group| {
        plan.push(Planned {
            offset_ms,
            method,
            path,
            group,
        })
    };
    // Ticker 3/s, orderbook 3/s, order 4/s, default 9/s at scale 0.3.
    for i in 0..8 {
        at(i * 5, "GET", "/v1/ticker", Group::Ticker); // 3 accepted, 5 over: 3 429s then 418s
    }
    for i in 0..6 {
        at(60 + i * 5, "POST", "/v1/orders", Group::Order); // 4 accepted, 2 429s
    }
    at(100, "GET", "/v1/orderbook", Group::Orderbook); // the IP is blocked: 418
    for i in 0..12 {
        at(120 + i * 20, "GET", "/v1/accounts", Group::Default); // 9 in a second, then 429
    }
    // The IP block (0.8 s) ends; steady ticker and candle traffic, then a second burst.
    for i in 0..10 {
        at(900 + i * 70, "GET", "/v1/ticker", Group::Ticker);
        at(910 + i * 70, "GET", "/v1/candles/days", Group::Candle);
    }
    for i in 0..6 {
        at(1650 + i * 4, "GET", "/v1/trades/ticks", Group::Trade);
        at(1652 + i * 4, "POST", "/v1/orders", Group::Order);
    }
    for i in 0..8 {
        at(1800 + i * 60, "GET", "/v1/orderbook", Group::Orderbook);
    }
    plan.sort_by_key(|p| p.offset_ms);
    plan
}

/// Sends the stream in order, each request at its planned offset (or as soon
/// as the previous one is answered), and returns what the client saw.
async fn send_stream(addr: SocketAddr, plan: &[Planned]) -> Vec<Resp> {
    let auth = bearer("pocket-d");
    let start = tokio::time::Instant::now();
    let mut seen = Vec::new();
    for p in plan {
        tokio::time::sleep_until(start + StdDuration::from_millis(p.offset_ms)).await;
        let headers: &[(&str, &str)] = if p.group.is_quotation() {
            &[]
        } else {
            &[("Authorization", &auth)]
        };
        seen.push(send(addr, None, p.method, p.path, headers).await.unwrap());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_decisions_match_the_in_process_model_at_the_same_instants() {
    let plan = stream();
    let mut runs = Vec::new();
    for model in ServerModel::ALL {
        let mut s = settings(model, 0.3);
        s.fixed_phase = Duration::from_millis(370);
        s.escalation = Escalation {
            after: 3,
            window: Duration::from_secs(10),
            block: Duration::from_millis(800),
            block_max: Duration::from_secs(4),
            ..Escalation::default()
        };
        s.decision_log = 1000;
        let (addr, handle) = start(s).await;
        let plan = plan.clone();
        runs.push(tokio::spawn(async move {
            let seen = send_stream(addr, &plan).await;
            (s, seen, handle)
        }));
    }
    for run in runs {
        let (s, seen, handle) = run.await.unwrap();
        let model = s.model;
        let decisions = handle.decisions();
        handle.shutdown().await.unwrap();
        assert_eq!(decisions.len(), plan.len(), "{model}");
        // Replay the instants the server used through one in-process model:
        // the simulator's topology (one IP, one pocket).
        let mut replay = s.model_server();
        let mut by_status = [0usize; 3];
        for (i, ((d, p), r)) in decisions.iter().zip(&plan).zip(&seen).enumerate() {
            assert_eq!(d.group, p.group, "{model} #{i}: classified as planned");
            let unit = if p.group.is_quotation() {
                Unit::Ip(LOCALHOST)
            } else {
                Unit::Pocket("pocket-d".to_owned())
            };
            assert_eq!(d.unit, unit, "{model} #{i}");
            assert_eq!(d.status, r.status, "{model} #{i}: recorded as answered");
            let expected = replay.handle(d.at, d.group, Source::Ours);
            assert_eq!(
                (expected.status, expected.remaining_req.as_deref()),
                (r.status, r.remaining_req()),
                "{model} #{i} at {:?}",
                d.at
            );
            if let Some(body) = &expected.body {
                assert_eq!(body, &r.body, "{model} #{i}");
            }
            by_status[match r.status {
                200 => 0,
                429 => 1,
                _ => 2,
            }] += 1;
        }
        assert!(
            decisions.windows(2).all(|w| w[0].at <= w[1].at),
            "{model}: instants in order"
        );
        // The stream is worth comparing: it got every kind of answer.
        assert!(by_status.iter().all(|&n| n > 0), "{model}: {by_status:?}");
    }
}
