//! The simulated Upbit server over real HTTP, in real time.
//!
//! [`MockUpbit`] is the whole behaviour and does no I/O: it takes a request
//! (method, path, client IP, `Authorization`, whether `Origin` was sent) and
//! the instant it arrived, and answers with a status, a `Remaining-Req` value
//! and a body. The decision itself is the simulator's model
//! ([`crate::server::Server`]), unchanged: one model instance per scope unit,
//! that is per client IP for Quotation groups (and `origin`) and per pocket
//! for Exchange groups, so budgets and 418 blocks are per IP and per pocket as
//! on Upbit. [`Server::bind`] puts it behind axum on a tokio runtime.
//!
//! - Routing: [`route`] says which paths Upbit serves
//!   (anything else is a 404 with Upbit's error shape and no `Remaining-Req`),
//!   and the core's [`classify`] names the group the request is counted in.
//! - Pockets: an Exchange request must carry `Authorization: Bearer <jwt>`;
//!   the pocket is the JWT's `access_key` claim, read from the payload
//!   without checking the signature. Each access key is its own pocket. A
//!   missing or unreadable token gets a 401 and costs no budget.
//! - Time: instants are nanoseconds since the Unix epoch, read from the wall
//!   clock once at start and advanced by a monotonic clock, so the `fixed`
//!   model's windows sit on calendar seconds (plus the phase) and time never
//!   goes back. The instant is read under the same lock that decides, so
//!   decisions are made in arrival order.
//! - Decisions can be recorded ([`Settings::decision_log`]): the instant
//!   used, the group, the unit and the status, so that the same stream can be
//!   replayed through the in-process model and compared.
//! - `GET /__sim/stats` answers the server's own counts ([`Stats`]);
//!   `GET /__sim/decisions` the recorded decisions.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant as MonoInstant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use upbit_limiter_core::upbit::{classify, Scope};
use upbit_limiter_core::{Duration, Group, Instant, Preset, ServerLimit};

use crate::scenario::ServerSpec;
use crate::server::{self, route, Escalation, ServerModel, Source};

/// The groups the mock serves, in the order [`Stats`] lists them.
pub const SERVED_GROUPS: [Group; 10] = [
    Group::Market,
    Group::Candle,
    Group::Trade,
    Group::Ticker,
    Group::Orderbook,
    Group::Origin,
    Group::Default,
    Group::Order,
    Group::OrderTest,
    Group::OrderCancelAll,
];

/// The longest access key accepted as a pocket name.
pub const MAX_ACCESS_KEY_LEN: usize = 128;

/// How long [`Handle::shutdown`] waits for open connections before it
/// drops them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the server is: the scenario's `[server]` settings plus a preset and
/// a scale on every limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Upbit's published limits to start from.
    pub preset: Preset,
    /// The window model.
    pub model: ServerModel,
    /// Where the `fixed` model's calendar windows begin, modulo the window.
    pub fixed_phase: Duration,
    /// The 429 → 418 escalation.
    pub escalation: Escalation,
    /// Every limit's request count is multiplied by this and rounded, and
    /// is at least 1 (windows keep their length). 1 is Upbit's limits.
    pub limit_scale: f64,
    /// Record up to this many decisions (0: none).
    pub decision_log: usize,
}

impl Settings {
    /// `preset`'s limits under `model`, with a scenario's default `[server]`
    /// settings (370 ms phase, the default escalation), unscaled.
    pub fn new(preset: Preset, model: ServerModel) -> Self {
        Self {
            preset,
            model,
            fixed_phase: Duration::from_millis(370),
            escalation: Escalation::default(),
            limit_scale: 1.0,
            decision_log: 0,
        }
    }

    /// A scenario's preset and `[server]` settings.
    pub fn from_spec(preset: Preset, spec: &ServerSpec) -> Self {
        Self {
            fixed_phase: spec.fixed_phase,
            escalation: spec.escalation,
            ..Self::new(preset, spec.model)
        }
    }

    /// The limits the server enforces for `group`.
    pub fn limits(&self, group: Group) -> Vec<ServerLimit> {
        self.preset
            .limits(group)
            .iter()
            .map(|l| scale_limit(*l, self.limit_scale))
            .collect()
    }

    /// A fresh in-process model with these settings, as one scope unit of
    /// the HTTP server uses.
    pub fn model_server(&self) -> server::Server {
        server::Server::with_limits(self.model, self.fixed_phase, self.escalation, |g| self.limits(g))
    }

    /// Checks what a type cannot: the scale is finite and positive, and the
    /// escalation's longest block is not shorter than its first.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(self.limit_scale.is_finite() && self.limit_scale > 0.0) {
            return Err(SettingsError::LimitScale(self.limit_scale));
        }
        if self.escalation.block_max < self.escalation.block {
            return Err(SettingsError::BlockMax);
        }
        Ok(())
    }
}

fn scale_limit(limit: ServerLimit, scale: f64) -> ServerLimit {
    let n = (f64::from(limit.max_requests) * scale).round();
    let n = if n.is_finite() {
        n.clamp(1.0, f64::from(u32::MAX)) as u32
    } else {
        1
    };
    ServerLimit::new(n, limit.window)
}

/// Settings that cannot be served.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum SettingsError {
    /// The limit scale is not a finite number above zero.
    LimitScale(f64),
    /// The longest block is shorter than the first.
    BlockMax,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LimitScale(s) => write!(f, "limit scale {s} is not a number above 0"),
            Self::BlockMax => f.write_str("the longest block is shorter than the first"),
        }
    }
}

impl std::error::Error for SettingsError {}

/// The unit a budget is counted per.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// A client IP (Quotation groups and `origin`).
    Ip(IpAddr),
    /// A pocket, named by the access key (Exchange groups).
    Pocket(String),
}

impl Unit {
    /// `"ip"` or `"pocket"`.
    pub fn scope(&self) -> &'static str {
        match self {
            Self::Ip(_) => "ip",
            Self::Pocket(_) => "pocket",
        }
    }

    /// The IP address or the access key.
    pub fn id(&self) -> String {
        match self {
            Self::Ip(ip) => ip.to_string(),
            Self::Pocket(key) => key.clone(),
        }
    }
}

/// One decision of the window model, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The instant the model decided at (nanoseconds since the Unix epoch).
    pub at: Instant,
    /// The group the request was counted in.
    pub group: Group,
    /// The unit whose budget it was counted against.
    pub unit: Unit,
    /// 200, 429 or 418.
    pub status: u16,
}

/// Why an `Authorization` header names no pocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <three dot-separated base64url parts>` with a JSON payload.
    Malformed,
    /// The payload has no usable `access_key` string.
    NoAccessKey,
}

impl AuthError {
    fn body(self) -> String {
        let (name, message) = match self {
            Self::Missing => ("no_authorization_token", "Authorization token is missing."),
            Self::Malformed => ("jwt_verification", "Failed to read the JWT."),
            Self::NoAccessKey => ("invalid_access_key", "The access key is missing or invalid."),
        };
        error_body(name, message)
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "no Authorization header",
            Self::Malformed => "the Authorization header is not a Bearer JWT",
            Self::NoAccessKey => "the JWT has no usable access_key claim",
        })
    }
}

impl std::error::Error for AuthError {}

/// The `access_key` claim of `Authorization: Bearer <jwt>` (the signature is
/// not checked). At most [`MAX_ACCESS_KEY_LEN`] bytes.
pub fn access_key(authorization: Option<&str>) -> Result<String, AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let mut parts = token.trim().split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = base64url_decode(payload).ok_or(AuthError::Malformed)?;
    let claims: serde_json::Value = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    match claims.get("access_key").and_then(serde_json::Value::as_str) {
        Some(key) if !key.is_empty() && key.len() <= MAX_ACCESS_KEY_LEN => Ok(key.to_owned()),
        _ => Err(AuthError::NoAccessKey),
    }
}

/// Decodes base64url (the standard alphabet's `+` and `/` are taken too;
/// padding is optional). `None` on any other byte or an impossible length.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let sextet = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | sextet(c)?;
        }
        // A short last chunk of k chars carries k - 1 bytes.
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Upbit's error shape: `{"error":{"name":..,"message":..}}`.
fn error_body(name: &str, message: &str) -> String {
    serde_json::json!({ "error": { "name": name, "message": message } }).to_string()
}

/// One request as the mock sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path, with or without the query.
    pub path: &'a str,
    /// The client's address.
    pub ip: IpAddr,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// Whether the request carried an `Origin` header.
    pub origin: bool,
}

/// The mock's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Remaining-Req` value, on every answer the window model gave.
    pub remaining_req: Option<String>,
    /// The body.
    pub body: String,
    /// Its content type.
    pub content_type: &'static str,
    /// Whether the budget was the client IP's (`Limit-By-Ip: Yes`).
    pub limit_by_ip: bool,
}

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Counts of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Answered 200.
    pub accepted: u64,
    /// Answered 429.
    #[serde(rename = "429")]
    pub status_429: u64,
    /// Answered 418.
    #[serde(rename = "418")]
    pub status_418: u64,
}

/// One unit's counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStats {
    /// `ip` or `pocket`.
    pub scope: String,
    /// The IP address or the access key.
    pub id: String,
    /// Per group (wire-independent names: `candle`, `trade`, ...), only the
    /// groups the unit was asked for.
    pub groups: BTreeMap<String, Counts>,
}

/// What `GET /__sim/stats` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The window model.
    pub model: String,
    /// The preset.
    pub preset: String,
    /// The limit scale.
    pub limit_scale: f64,
    /// Per group over every unit, each of [`SERVED_GROUPS`].
    pub groups: BTreeMap<String, Counts>,
    /// Per unit, IPs first.
    pub units: Vec<UnitStats>,
    /// 401s (Exchange requests without a readable JWT).
    pub unauthorized: u64,
    /// 404s (paths Upbit does not serve).
    pub not_found: u64,
    /// Decisions recorded.
    pub decisions_recorded: usize,
    /// Decisions not recorded because the log was full.
    pub decisions_dropped: u64,
}

/// The simulated Upbit, without I/O: routing, authentication and one window
/// model per unit.
#[derive(Debug)]
pub struct MockUpbit {
    settings: Settings,
    units: BTreeMap<Unit, server::Server>,
    log: Vec<Decision>,
    dropped: u64,
    unauthorized: u64,
    not_found: u64,
}

impl MockUpbit {
    /// A mock with nothing seen yet.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            units: BTreeMap::new(),
            log: Vec::new(),
            dropped: 0,
            unauthorized: 0,
            not_found: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Answers `req` arriving at `at`. Arrivals should come in time order
    /// per unit (the model takes a late one as arriving at the latest
    /// instant it has seen).
    pub fn answer(&mut self, at: Instant, req: &Request<'_>) -> Answer {
        if route(req.method, req.path).is_none() {
            self.not_found += 1;
            return Answer {
                status: 404,
                remaining_req: None,
                body: error_body("not_found", "Not found"),
                content_type: JSON,
                limit_by_ip: false,
            };
        }
        let mut group = classify(req.method, req.path);
        if req.origin && group.is_quotation() {
            group = Group::Origin;
        }
        let unit = match group.scope() {
            Scope::Pocket => match access_key(req.authorization) {
                Ok(key) => Unit::Pocket(key),
                Err(e) => {
                    self.unauthorized += 1;
                    return Answer {
                        status: 401,
                        remaining_req: None,
                        body: e.body(),
                        content_type: JSON,
                        limit_by_ip: false,
                    };
                }
            },
            Scope::Ip | Scope::Connection => Unit::Ip(req.ip),
        };
        let limit_by_ip = matches!(unit, Unit::Ip(_));
        let settings = self.settings;
        let model = self
            .units
            .entry(unit.clone())
            .or_insert_with(|| settings.model_server());
        let reply = model.handle(at, group, Source::Ours);
        if self.log.len() < self.settings.decision_log {
            self.log.push(Decision {
                at,
                group,
                unit,
                status: reply.status,
            });
        } else if self.settings.decision_log > 0 {
            self.dropped += 1;
        }
        let (body, content_type) = match reply.body {
            Some(b) if reply.status == 429 => (b, TEXT),
            Some(b) => (b, JSON),
            None => (ok_body(group, req.method, req.path).to_owned(), JSON),
        };
        Answer {
            status: reply.status,
            remaining_req: reply.remaining_req,
            body,
            content_type,
            limit_by_ip,
        }
    }

    /// The decisions recorded so far, in the order they were made.
    pub fn decisions(&self) -> &[Decision] {
        &self.log
    }

    /// The server's own counts.
    pub fn stats(&self) -> Stats {
        let counts = |m: &server::Server, g: Group| {
            let l = m.load(g);
            Counts {
                accepted: l.accepted,
                status_429: l.status_429,
                status_418: l.status_418,
            }
        };
        let mut groups: BTreeMap<String, Counts> = SERVED_GROUPS
            .iter()
            .map(|g| (g.as_str().to_owned(), Counts::default()))
            .collect();
        let mut units = Vec::new();
        for (unit, model) in &self.units {
            let mut per = BTreeMap::new();
            for g in SERVED_GROUPS {
                if model.load(g).arrived == 0 {
                    continue;
                }
                let c = counts(model, g);
                let total = groups.entry(g.as_str().to_owned()).or_default();
                total.accepted += c.accepted;
                total.status_429 += c.status_429;
                total.status_418 += c.status_418;
                per.insert(g.as_str().to_owned(), c);
            }
            units.push(UnitStats {
                scope: unit.scope().to_owned(),
                id: unit.id(),
                groups: per,
            });
        }
        Stats {
            model: self.settings.model.as_str().to_owned(),
            preset: self.settings.preset.as_str().to_owned(),
            limit_scale: self.settings.limit_scale,
            groups,
            units,
            unauthorized: self.unauthorized,
            not_found: self.not_found,
            decisions_recorded: self.log.len(),
            decisions_dropped: self.dropped,
        }
    }
}

/// A small plausible body for an accepted request.
fn ok_body(group: Group, method: &str, path: &str) -> &'static str {
    let path = path.split(['?', '#']).next().unwrap_or("").trim_end_matches('/');
    match group {
        Group::Market => {
            r#"[{"market":"KRW-BTC","korean_name":"비트코인","english_name":"Bitcoin"},{"market":"KRW-ETH","korean_name":"이더리움","english_name":"Ethereum"}]"#
        }
        Group::Candle => {
            r#"[{"market":"KRW-BTC","candle_date_time_utc":"2026-01-01T00:00:00","candle_date_time_kst":"2026-01-01T09:00:00","opening_price":140000000.0,"high_price":140500000.0,"low_price":139800000.0,"trade_price":140200000.0,"timestamp":1767225600000,"candle_acc_trade_price":1234567890.0,"candle_acc_trade_volume":8.8}]"#
        }
        Group::Trade => {
            r#"[{"market":"KRW-BTC","trade_date_utc":"2026-01-01","trade_time_utc":"00:00:00","timestamp":1767225600000,"trade_price":140200000.0,"trade_volume":0.01,"prev_closing_price":139000000.0,"change_price":1200000.0,"ask_bid":"BID","sequential_id":1767225600000000}]"#
        }
        Group::Ticker | Group::Origin if path.ends_with("/v1/ticker") || path.ends_with("/all") => {
            r#"[{"market":"KRW-BTC","trade_price":140200000.0,"change":"RISE","change_rate":0.0086,"acc_trade_volume_24h":1234.5,"timestamp":1767225600000}]"#
        }
        Group::Orderbook => {
            r#"[{"market":"KRW-BTC","timestamp":1767225600000,"total_ask_size":5.1,"total_bid_size":7.3,"orderbook_units":[{"ask_price":140210000.0,"bid_price":140200000.0,"ask_size":0.4,"bid_size":0.6}]}]"#
        }
        Group::Order | Group::OrderTest => {
            r#"{"uuid":"cdd92199-2897-4e14-9448-f923320408ad","side":"bid","ord_type":"limit","price":"140000000","state":"wait","market":"KRW-BTC","created_at":"2026-01-01T09:00:00+09:00","volume":"0.001","remaining_volume":"0.001","reserved_fee":"70","remaining_fee":"70","paid_fee":"0","locked":"140070","executed_volume":"0","trades_count":0}"#
        }
        Group::OrderCancelAll => r#"{"success":{"count":0,"orders":[]},"failed":{"count":0,"orders":[]}}"#,
        Group::Default if path.ends_with("/v1/accounts") => {
            r#"[{"currency":"KRW","balance":"1000000.0","locked":"0.0","avg_buy_price":"0","avg_buy_price_modified":false,"unit_currency":"KRW"}]"#
        }
        Group::Default if path.ends_with("/v1/order") || method.eq_ignore_ascii_case("POST") => {
            r#"{"uuid":"cdd92199-2897-4e14-9448-f923320408ad","state":"wait","created_at":"2026-01-01T09:00:00+09:00"}"#
        }
        Group::Default => "[]",
        _ => "{}",
    }
}

/// Instants for the mock: nanoseconds since the Unix epoch, monotonic.
#[derive(Debug)]
struct WallClock {
    epoch_nanos: u64,
    start: MonoInstant,
}

impl WallClock {
    fn new() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            epoch_nanos: u64::try_from(since.as_nanos()).unwrap_or(u64::MAX / 2),
            start: MonoInstant::now(),
        }
    }

    fn now(&self) -> Instant {
        let elapsed = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Instant::from_nanos(self.epoch_nanos.saturating_add(elapsed))
    }
}

#[derive(Debug)]
struct Shared {
    clock: WallClock,
    mock: Mutex<MockUpbit>,
}

impl Shared {
    fn mock(&self) -> MutexGuard<'_, MockUpbit> {
        // Nothing under the lock panics; if something did, the state is still usable.
        self.mock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The mock Upbit over HTTP/1.1. [`Server::bind`] starts one.
#[derive(Debug)]
pub struct Server {
    _private: (),
}

/// Why a server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The settings cannot be served.
    Settings(SettingsError),
    /// The address could not be bound.
    Bind(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Settings(e) => write!(f, "bad settings: {e}"),
            Self::Bind(e) => write!(f, "cannot listen: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Settings(e) => Some(e),
            Self::Bind(e) => Some(e),
        }
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free one) and serves on the current
    /// tokio runtime until the handle is shut down or dropped. Returns the
    /// bound address. Must be called within a tokio runtime.
    pub async fn bind(addr: SocketAddr, settings: Settings) -> Result<(SocketAddr, Handle), ServeError> {
        settings.validate().map_err(ServeError::Settings)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(ServeError::Bind)?;
        let local = listener.local_addr().map_err(ServeError::Bind)?;
        let shared = Arc::new(Shared {
            clock: WallClock::new(),
            mock: Mutex::new(MockUpbit::new(settings)),
        });
        let app = Router::new().fallback(answer).with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await
        });
        Ok((
            local,
            Handle {
                addr: local,
                shared,
                stop: Some(stop),
                task: Some(task),
            },
        ))
    }
}

/// A running server. Dropping it stops the server (open connections finish
/// their current request); [`shutdown`](Self::shutdown) also waits for that.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Handle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's own counts.
    pub fn stats(&self) -> Stats {
        self.shared.mock().stats()
    }

    /// The decisions recorded so far.
    pub fn decisions(&self) -> Vec<Decision> {
        self.shared.mock().decisions().to_vec()
    }

    /// Stops accepting connections, lets open ones finish (for at most
    /// [`SHUTDOWN_GRACE`], then drops them) and returns the final counts.
    pub async fn shutdown(mut self) -> std::io::Result<Stats> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(result)) => result?,
                Ok(Err(join)) => return Err(std::io::Error::other(join)),
                Err(_) => task.abort(),
            }
        }
        Ok(self.stats())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let bare = uri.path().trim_end_matches('/');
    if let Some(what) = bare.strip_prefix("/__sim/") {
        return match (method == Method::GET, what) {
            (true, "stats") => json_response(200, &shared.mock().stats()),
            (true, "decisions") => {
                let list: Vec<serde_json::Value> = shared
                    .mock()
                    .decisions()
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "at_ns": d.at.as_nanos(),
                            "group": d.group.as_str(),
                            "scope": d.unit.scope(),
                            "unit": d.unit.id(),
                            "status": d.status,
                        })
                    })
                    .collect();
                json_response(200, &list)
            }
            _ => plain(404, JSON, error_body("not_found", "Not found")),
        };
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let req = Request {
        method: method.as_str(),
        path,
        ip: peer.ip().to_canonical(),
        authorization: match (headers.contains_key(header::AUTHORIZATION), authorization) {
            // A header that is not visible ASCII is still a header: malformed, not missing.
            (true, None) => Some(""),
            (_, a) => a,
        },
        origin: headers.contains_key(header::ORIGIN),
    };
    let a = {
        let mut mock = shared.mock();
        // Read the clock under the lock: decisions are made in the order of their instants.
        let at = shared.clock.now();
        mock.answer(at, &req)
    };
    let mut response = plain(a.status, a.content_type, a.body);
    let h = response.headers_mut();
    if let Some(v) = a.remaining_req.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert("remaining-req", v);
    }
    if a.limit_by_ip {
        h.insert("limit-by-ip", HeaderValue::from_static("Yes"));
    }
    response
}

fn plain(status: u16, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(s) => plain(status, JSON, s),
        Err(_) => plain(500, JSON, error_body("server_error", "cannot write JSON")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn b64(s: &str) -> String {
        // Only for tests: encode via the standard table, no padding.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let mut acc = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                acc |= u32::from(c) << (16 - 8 * i);
            }
            for i in 0..=chunk.len() {
                out.push(T[(acc >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    fn bearer(claims: &str) -> String {
        format!("Bearer {}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims))
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for s in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "{\"access_key\":\"k\"}",
            "héllo wörld",
        ] {
            assert_eq!(base64url_decode(&b64(s)).as_deref(), Some(s.as_bytes()), "{s}");
        }
        assert_eq!(base64url_decode("YQ=="), Some(b"a".to_vec()));
        assert_eq!(base64url_decode("Y"), None);
        assert_eq!(base64url_decode("Y!Q"), None);
    }

    #[test]
    fn access_key_reads_the_claim_and_rejects_the_rest() {
        let ok = bearer(r#"{"access_key":"pocket-a","nonce":"1"}"#);
        assert_eq!(access_key(Some(&ok)), Ok("pocket-a".to_owned()));
        assert_eq!(
            access_key(Some(&ok.replace("Bearer", "bearer"))),
            Ok("pocket-a".to_owned())
        );
        assert_eq!(access_key(None), Err(AuthError::Missing));
        for bad in [
            "",
            "Bearer",
            "Bearer x",
            "Bearer a.b",
            "Basic a.b.c",
            "Bearer a.!!.c",
            "Bearer a.b.c.d",
        ] {
            assert_eq!(access_key(Some(bad)), Err(AuthError::Malformed), "{bad}");
        }
        assert_eq!(access_key(Some(&bearer("[1,2]"))), Err(AuthError::NoAccessKey));
        assert_eq!(
            access_key(Some(&bearer(r#"{"access_key":7}"#))),
            Err(AuthError::NoAccessKey)
        );
        assert_eq!(
            access_key(Some(&bearer(r#"{"access_key":""}"#))),
            Err(AuthError::NoAccessKey)
        );
        let long = format!(r#"{{"access_key":"{}"}}"#, "k".repeat(MAX_ACCESS_KEY_LEN + 1));
        assert_eq!(access_key(Some(&bearer(&long))), Err(AuthError::NoAccessKey));
        assert_eq!(
            access_key(Some(&format!("Bearer a.{}.c", b64("not json")))),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn scale_rounds_and_keeps_at_least_one() {
        let s = |n, f| scale_limit(ServerLimit::per_second(n), f).max_requests;
        assert_eq!((s(10, 0.5), s(12, 0.25), s(1, 0.1), s(30, 2.0)), (5, 3, 1, 60));
        let mut settings = Settings::new(Preset::Korea, ServerModel::Sliding);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            settings.limit_scale = bad;
            assert!(settings.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn served_paths_are_classified_as_the_model_routes_them() {
        // Every documented endpoint: the core's classifier and the model's router agree.
        let endpoints = [
            ("GET", "/v1/market/all"),
            ("GET", "/v1/candles/seconds"),
            ("GET", "/v1/candles/minutes/1"),
            ("GET", "/v1/candles/minutes/240"),
            ("GET", "/v1/candles/days"),
            ("GET", "/v1/candles/weeks"),
            ("GET", "/v1/candles/months"),
            ("GET", "/v1/candles/years"),
            ("GET", "/v1/trades/ticks"),
            ("GET", "/v1/ticker"),
            ("GET", "/v1/ticker/all"),
            ("GET", "/v1/orderbook"),
            ("GET", "/v1/orderbook/instruments"),
            ("GET", "/v1/orderbook/supported_levels"),
            ("POST", "/v1/orders"),
            ("POST", "/v1/orders/cancel_and_new"),
            ("POST", "/v1/orders/test"),
            ("DELETE", "/v1/orders/open"),
            ("GET", "/v1/accounts"),
            ("GET", "/v1/orders/chance"),
            ("GET", "/v1/order"),
            ("DELETE", "/v1/order"),
            ("GET", "/v1/orders/uuids"),
            ("DELETE", "/v1/orders/uuids"),
            ("GET", "/v1/orders/open"),
            ("GET", "/v1/orders/closed"),
            ("POST", "/v1/withdraws/coin"),
            ("POST", "/v1/withdraws/krw"),
            ("DELETE", "/v1/withdraws/coin"),
            ("GET", "/v1/withdraws/chance"),
            ("GET", "/v1/withdraws/coin_addresses"),
            ("GET", "/v1/withdraw"),
            ("GET", "/v1/withdraws"),
            ("POST", "/v1/deposits/generate_coin_address"),
            ("POST", "/v1/deposits/krw"),
            ("GET", "/v1/deposits/coin_address"),
            ("GET", "/v1/deposits/coin_addresses"),
            ("GET", "/v1/deposits/chance/coin"),
            ("GET", "/v1/deposit"),
            ("GET", "/v1/deposits"),
            ("GET", "/v1/travel_rule/vasps"),
            ("POST", "/v1/travel_rule/deposit/uuid"),
            ("POST", "/v1/travel_rule/deposit/txid"),
            ("GET", "/v1/status/wallet"),
            ("GET", "/v1/api_keys"),
            ("GET", "/v1/pockets"),
            ("GET", "/v1/pockets/api_keys"),
            ("GET", "/v1/pockets/assets"),
            ("POST", "/v1/pockets/universal_transfers"),
            ("GET", "/v1/pockets/transfers"),
        ];
        for (m, p) in endpoints {
            assert_eq!(route(m, p), Some(classify(m, p)), "{m} {p}");
            let body = ok_body(classify(m, p), m, p);
            assert!(serde_json::from_str::<serde_json::Value>(body).is_ok(), "{m} {p}");
        }
    }

    #[test]
    fn mock_answers_404_401_and_scopes_budgets() {
        let mut settings = Settings::new(Preset::Korea, ServerModel::Sliding);
        settings.limit_scale = 0.2; // ticker 2/s, order 2/s (12 x 0.2 = 2.4)
        settings.decision_log = 100;
        let mut mock = MockUpbit::new(settings);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t = Instant::from_nanos(1_000_000_000);
        let req = |method, path, authorization| Request {
            method,
            path,
            ip,
            authorization,
            origin: false,
        };
        let a = mock.answer(t, &req("GET", "/v1/nope", None));
        assert_eq!((a.status, a.remaining_req), (404, None));
        assert!(a.body.contains("\"not_found\""));
        let a = mock.answer(t, &req("POST", "/v1/orders", None));
        assert_eq!((a.status, a.remaining_req), (401, None));
        let a = mock.answer(t, &req("POST", "/v1/orders", Some("Bearer garbage")));
        assert_eq!(a.status, 401);
        let (ka, kb) = (bearer(r#"{"access_key":"a"}"#), bearer(r#"{"access_key":"b"}"#));
        let statuses: Vec<u16> = (0..3)
            .map(|_| mock.answer(t, &req("POST", "/v1/orders", Some(&ka))).status)
            .collect();
        assert_eq!(statuses, [200, 200, 429]);
        let a = mock.answer(t, &req("POST", "/v1/orders", Some(&kb)));
        assert_eq!(a.remaining_req.as_deref(), Some("group=order; min=120; sec=1"));
        assert!(!a.limit_by_ip);
        let a = mock.answer(t, &req("GET", "/v1/ticker?markets=KRW-BTC", Some(&ka)));
        assert_eq!(a.remaining_req.as_deref(), Some("group=ticker; min=120; sec=1"));
        assert!(a.limit_by_ip);
        let origin = Request {
            origin: true,
            ..req("GET", "/v1/ticker", None)
        };
        let a = mock.answer(t, &origin);
        assert_eq!(a.remaining_req.as_deref(), Some("group=origin; min=6; sec=0"));
        let stats = mock.stats();
        assert_eq!((stats.not_found, stats.unauthorized), (1, 2));
        assert_eq!(
            stats.groups["order"],
            Counts {
                accepted: 3,
                status_429: 1,
                status_418: 0
            }
        );
        assert_eq!(stats.units.len(), 3);
        assert_eq!(mock.decisions().len(), 6);
    }
}
