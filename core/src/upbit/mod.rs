//! The Upbit model: rate-limit groups, their published limits, which group a
//! request falls in, and the two things the server tells us back (the
//! `Remaining-Req` header and the 418 body).
//!
//! Everything here is a pure function of its input: no clock, no allocation,
//! no panics on any string.
//!
//! # Groups and presets
//!
//! [`Group`] names the budget a request is counted in and [`Group::scope`]
//! the unit it is counted per (IP, pocket or connection). [`Preset`] gives the
//! server's windows per group ([`Preset::limits`]) for Upbit Korea or Global,
//! and the jitter margin added to them when deriving the client quota
//! ([`Preset::default_margin`]).
//!
//! # Classification
//!
//! [`classify`] keys on (method, path), because the same path can belong to
//! two groups (`GET` vs `DELETE /v1/orders/open`). First row that matches wins:
//!
//! | Method | Path | Group |
//! |---|---|---|
//! | any | `/websocket/v1`, `/websocket/v1/private`, anything under `/websocket/v1/` | `websocket-connect` |
//! | any | `/v1/market`, `/v1/market/...` | `market` |
//! | any | `/v1/candles/...` (seconds, minutes/{unit}, days, weeks, months, years, unknown) | `candle` |
//! | any | `/v1/trades/...` | `trade` |
//! | any | `/v1/ticker`, `/v1/ticker/...` | `ticker` |
//! | any | `/v1/orderbook`, `/v1/orderbook/...` (instruments, supported_levels) | `orderbook` |
//! | `POST` | `/v1/orders`, `/v1/orders/cancel_and_new` | `order` |
//! | `POST` | `/v1/orders/test` | `order-test` |
//! | `DELETE` | `/v1/orders/open` | `order-cancel-all` |
//! | any | anything else under `/v1` (accounts, order, orders/*, withdraws, deposits, travel_rule, status, api_keys, pockets, unknown) | `default` |
//! | any | anything else (`/`, `/v2/...`, `/websocket/...` without `v1`, empty, garbage) | `public-fallback` |
//!
//! The path is read leniently: a scheme and host are dropped
//! (`https://api.upbit.com/v1/ticker`, also `api.upbit.com/v1/ticker`), the
//! query and fragment are ignored, empty segments (repeated or trailing
//! slashes) are skipped, `.` and `..` are resolved, and segments compare
//! ignoring ASCII case. Percent-escapes are not decoded (`/v1/ticker%2Fall`
//! is an unknown `/v1` path). The method is trimmed and compared ignoring case.
//!
//! Conservative choices, where the docs leave a gap:
//!
//! - Unknown paths under a Quotation prefix take that prefix's group: Upbit
//!   counts Quotation groups by family, so a new candle unit is still `candle`.
//! - Unknown paths elsewhere under `/v1` are `default`, as Upbit advises for
//!   unknown authenticated endpoints. This includes other methods on
//!   `/v1/orders` (the legacy `GET /v1/orders` list) and deeper paths such as
//!   `POST /v1/orders/test/x`.
//! - Quotation groups ignore the method: the server counts them per family
//!   and a wrong method still costs a request.
//! - Any method counts as a WebSocket handshake (HTTP/2 uses `CONNECT`).
//! - Paths outside the API get [`Group::PublicFallback`], a separate
//!   10/s-per-IP bucket, so a typo never spends a real group's budget and is
//!   never unlimited.
//! - [`Group::Origin`] is never returned: it depends on the `Origin` header,
//!   which a server-side client should never send. [`Group::WebsocketMessage`]
//!   is never returned either: it counts messages on an open connection.
//!
//! # Server feedback
//!
//! [`RemainingReq::parse`] reads the `Remaining-Req` header leniently and
//! rejects anything it cannot read exactly, so the header can only ever be
//! used to tighten a bucket. The group name it carries is a hint that may
//! differ from the documented name (`candles`, `crix-trades`); the bucket is
//! still chosen by [`classify`].
//!
//! [`parse_ban_duration`] makes a best-effort guess at the block duration in
//! a 418 body, whose format Upbit does not document; [`parse_ban_end`] reads
//! an absolute end there and [`parse_retry_after`] a `Retry-After` header,
//! both against a [`WallClock`] (the `Date` header, see
//! [`parse_http_date`]); [`stated_ban`] keeps the longest credible of them.

mod ban;
mod classify;
mod group;
mod header;
mod pocket;
mod preset;

pub use ban::{
    parse_ban_duration, parse_ban_end, parse_http_date, parse_retry_after, stated_ban, WallClock,
    MAX_CREDIBLE_BAN,
};
pub use classify::classify;
pub use group::{Group, Scope, UnknownGroup};
pub use header::{Key, RemainingReq, RemainingReqError};
pub use pocket::{PocketId, PocketIdError};
pub use preset::{Preset, UnknownPreset, MARGIN_ORDER, MARGIN_ORDER_CANCEL_ALL, MARGIN_STANDARD};
