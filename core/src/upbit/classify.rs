//! Which group a request is counted in, from its method and path.
//!
//! The rules are in the [module documentation](super#classification).

use super::Group;

/// The methods the rules tell apart. Anything else is `Other`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Post,
    Delete,
    Other,
}

impl Method {
    fn parse(method: &str) -> Method {
        let m = method.trim();
        if m.eq_ignore_ascii_case("POST") {
            Method::Post
        } else if m.eq_ignore_ascii_case("DELETE") {
            Method::Delete
        } else {
            Method::Other
        }
    }
}

/// How many leading segments are kept. Every Upbit path has at most four; the
/// rest only need counting.
const KEPT: usize = 4;

/// The path's segments after dropping empty ones and resolving `.` and `..`.
/// `len` counts every segment; only the first [`KEPT`] are stored.
struct Segments<'a> {
    kept: [&'a str; KEPT],
    len: usize,
}

impl<'a> Segments<'a> {
    fn split(path: &'a str) -> Self {
        let mut s = Segments {
            kept: [""; KEPT],
            len: 0,
        };
        let bytes = path.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(bytes.len(), |i| start + i);
            // `start` and `end` sit next to a `/` or at an end: char boundaries.
            match path.get(start..end).unwrap_or("") {
                "" | "." => {}
                ".." => s.len = s.len.saturating_sub(1),
                seg => {
                    if let Some(slot) = s.kept.get_mut(s.len) {
                        *slot = seg;
                    }
                    s.len += 1;
                }
            }
            start = end + 1;
        }
        s
    }

    /// Whether segment `i` exists and equals `name` ignoring ASCII case.
    fn is(&self, i: usize, name: &str) -> bool {
        i < self.len && self.kept.get(i).is_some_and(|s| s.eq_ignore_ascii_case(name))
    }
}

/// The path part of a request target: no scheme, host, query or fragment.
fn path_of(target: &str) -> &str {
    let target = target.trim();
    let end = target
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let target = &target[..end];
    if target.starts_with('/') {
        return target;
    }
    // `scheme://host/...`: a scheme is an ASCII letter, then letters, digits,
    // `+`, `-`, `.`.
    let scheme_len = target
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .unwrap_or(target.len());
    let authority = match target.get(scheme_len..) {
        Some(rest) if scheme_len > 0 && rest.starts_with("://") => &rest[3..],
        // `api.upbit.com/v1/...` or `localhost:8080/v1/...`: a first segment
        // with a dot or a colon is a host, never an Upbit path segment.
        _ => target,
    };
    let host_end = authority.find('/').unwrap_or(authority.len());
    if authority.len() != target.len() || authority[..host_end].contains(['.', ':']) {
        &authority[host_end..]
    } else {
        target
    }
}

/// The group Upbit counts a request to `path` with `method` in.
///
/// `path` may be a bare path or a full URL; see the
/// [module documentation](super#classification) for the rules and the
/// tolerated spellings. Never panics and does not allocate.
///
/// [`Group::Origin`] and [`Group::WebsocketMessage`] are never returned: the
/// first depends on a header, the second is a message on an open connection.
pub fn classify(method: &str, path: &str) -> Group {
    canonical(method, path).unwrap_or_else(|| by_segments(method, path))
}

/// The common case, without splitting the path: `/v1/<family>...` written
/// canonically (lower case, no `.` segments, no empty first segment), and the
/// four `/v1/orders` endpoints exactly as documented. Returns `None` for
/// anything else; [`by_segments`] decides those.
fn canonical(method: &str, path: &str) -> Option<Group> {
    let rest = path.strip_prefix("/v1/")?;
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let family = &rest[..end];
    // A `.` segment anywhere (`/v1/ticker/../orders`) can change the family.
    let tail = rest[end..].split(['?', '#']).next().unwrap_or("");
    if tail.contains("/.") {
        return None;
    }
    match family {
        "ticker" => Some(Group::Ticker),
        "orderbook" => Some(Group::Orderbook),
        "candles" => Some(Group::Candle),
        "trades" => Some(Group::Trade),
        "market" => Some(Group::Market),
        "orders" => match (Method::parse(method), tail) {
            (Method::Post, "" | "/cancel_and_new") => Some(Group::Order),
            (Method::Post, "/test") => Some(Group::OrderTest),
            (Method::Delete, "/open") => Some(Group::OrderCancelAll),
            // Every other documented `/v1/orders...` endpoint is `default`;
            // anything less plain (a trailing slash, deeper paths) goes the
            // general way.
            (_, "" | "/chance" | "/uuids" | "/open" | "/closed" | "/test" | "/cancel_and_new") => {
                Some(Group::Default)
            }
            _ => None,
        },
        "" | "." | ".." => None,
        f if f
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
        {
            Some(Group::Default)
        }
        _ => None,
    }
}

/// The general case: every tolerated spelling.
fn by_segments(method: &str, path: &str) -> Group {
    let seg = Segments::split(path_of(path));

    if seg.is(0, "websocket") {
        return if seg.is(1, "v1") {
            Group::WebsocketConnect
        } else {
            Group::PublicFallback
        };
    }
    if !seg.is(0, "v1") {
        return Group::PublicFallback;
    }

    // Quotation prefixes take everything under them, whatever the method.
    if seg.is(1, "market") {
        return Group::Market;
    }
    if seg.is(1, "candles") {
        return Group::Candle;
    }
    if seg.is(1, "trades") {
        return Group::Trade;
    }
    if seg.is(1, "ticker") {
        return Group::Ticker;
    }
    if seg.is(1, "orderbook") {
        return Group::Orderbook;
    }

    if seg.is(1, "orders") {
        let method = Method::parse(method);
        match (seg.len, method) {
            (2, Method::Post) => return Group::Order,
            (3, Method::Post) if seg.is(2, "cancel_and_new") => return Group::Order,
            (3, Method::Post) if seg.is(2, "test") => return Group::OrderTest,
            (3, Method::Delete) if seg.is(2, "open") => return Group::OrderCancelAll,
            _ => {}
        }
    }

    // Every other Exchange endpoint, known or not, is `default`.
    Group::Default
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_shortcut_agrees_with_the_general_rules() {
        let methods = ["GET", "POST", "DELETE", "get", " post ", "delete", "PUT", ""];
        let mut paths: std::vec::Vec<String> = DOCUMENTED.iter().map(|(_, p, _)| String::from(*p)).collect();
        for extra in [
            "/v1/ticker/../orders",
            "/v1/ticker/./x",
            "/v1/ticker?x=/../",
            "/v1//ticker",
            "/v1/TICKER",
            "/v1/orders",
            "/v1/orders/open",
            "/v1/unknown_thing/x",
            "/v1/Accounts",
            "/v1/",
            "/v1/.",
            "/v1/ticker#frag",
            "/v1/candles/minutes/5?count=200",
            "/v1/ticker/..",
            "/v1/a-b",
        ] {
            paths.push(String::from(extra));
        }
        // Under Miri, every seventh path only.
        let stride = if cfg!(miri) { 7 } else { 1 };
        for p in paths.iter().step_by(stride) {
            for m in methods {
                if let Some(g) = canonical(m, p) {
                    assert_eq!(g, by_segments(m, p), "{m} {p}");
                }
                assert_eq!(classify(m, p), by_segments(m, p), "{m} {p}");
            }
        }
        // The shortcut is taken for the documented quotation and default paths.
        assert_eq!(canonical("GET", "/v1/ticker"), Some(Group::Ticker));
        assert_eq!(canonical("GET", "/v1/accounts"), Some(Group::Default));
        assert_eq!(canonical("POST", "/v1/orders"), Some(Group::Order));
        assert_eq!(
            canonical("DELETE", "/v1/orders/open"),
            Some(Group::OrderCancelAll)
        );
        assert_eq!(canonical("POST", "/v1/orders/"), None);
    }
    use std::format;
    use std::string::String;

    use Group::*;

    /// Every endpoint in the reference, method and path as documented.
    const DOCUMENTED: &[(&str, &str, Group)] = &[
        // Quotation
        ("GET", "/v1/market/all", Market),
        ("GET", "/v1/candles/seconds", Candle),
        ("GET", "/v1/candles/minutes/1", Candle),
        ("GET", "/v1/candles/minutes/3", Candle),
        ("GET", "/v1/candles/minutes/5", Candle),
        ("GET", "/v1/candles/minutes/10", Candle),
        ("GET", "/v1/candles/minutes/15", Candle),
        ("GET", "/v1/candles/minutes/30", Candle),
        ("GET", "/v1/candles/minutes/60", Candle),
        ("GET", "/v1/candles/minutes/240", Candle),
        ("GET", "/v1/candles/days", Candle),
        ("GET", "/v1/candles/weeks", Candle),
        ("GET", "/v1/candles/months", Candle),
        ("GET", "/v1/candles/years", Candle),
        ("GET", "/v1/trades/ticks", Trade),
        ("GET", "/v1/ticker", Ticker),
        ("GET", "/v1/ticker/all", Ticker),
        ("GET", "/v1/orderbook", Orderbook),
        ("GET", "/v1/orderbook/instruments", Orderbook),
        ("GET", "/v1/orderbook/supported_levels", Orderbook),
        // Exchange: the groups of their own
        ("POST", "/v1/orders", Order),
        ("POST", "/v1/orders/cancel_and_new", Order),
        ("POST", "/v1/orders/test", OrderTest),
        ("DELETE", "/v1/orders/open", OrderCancelAll),
        // Exchange: default
        ("GET", "/v1/accounts", Default),
        ("GET", "/v1/orders/chance", Default),
        ("GET", "/v1/order", Default),
        ("DELETE", "/v1/order", Default),
        ("GET", "/v1/orders/uuids", Default),
        ("DELETE", "/v1/orders/uuids", Default),
        ("GET", "/v1/orders/open", Default),
        ("GET", "/v1/orders/closed", Default),
        ("POST", "/v1/withdraws/coin", Default),
        ("POST", "/v1/withdraws/krw", Default),
        ("DELETE", "/v1/withdraws/coin", Default),
        ("GET", "/v1/withdraws/chance", Default),
        ("GET", "/v1/withdraws/coin_addresses", Default),
        ("GET", "/v1/withdraw", Default),
        ("GET", "/v1/withdraws", Default),
        ("POST", "/v1/deposits/generate_coin_address", Default),
        ("POST", "/v1/deposits/krw", Default),
        ("GET", "/v1/deposits/coin_address", Default),
        ("GET", "/v1/deposits/coin_addresses", Default),
        ("GET", "/v1/deposits/chance/coin", Default),
        ("GET", "/v1/deposit", Default),
        ("GET", "/v1/deposits", Default),
        ("GET", "/v1/travel_rule/vasps", Default),
        ("POST", "/v1/travel_rule/deposit/uuid", Default),
        ("POST", "/v1/travel_rule/deposit/txid", Default),
        ("GET", "/v1/status/wallet", Default),
        ("GET", "/v1/api_keys", Default),
        ("GET", "/v1/pockets", Default),
        ("GET", "/v1/pockets/api_keys", Default),
        ("GET", "/v1/pockets/assets", Default),
        ("POST", "/v1/pockets/universal_transfers", Default),
        ("GET", "/v1/pockets/universal_transfers", Default),
        ("POST", "/v1/pockets/transfers", Default),
        ("GET", "/v1/pockets/transfers", Default),
        // Legacy order list
        ("GET", "/v1/orders", Default),
        // WebSocket handshakes
        ("GET", "/websocket/v1", WebsocketConnect),
        ("GET", "/websocket/v1/private", WebsocketConnect),
    ];

    #[test]
    fn every_documented_endpoint() {
        for &(method, path, want) in DOCUMENTED {
            assert_eq!(classify(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn documented_endpoints_survive_rewriting() {
        // Each documented endpoint, spelled the ways real callers spell it
        // (under Miri, every third endpoint).
        let stride = if cfg!(miri) { 3 } else { 1 };
        for &(method, path, want) in DOCUMENTED.iter().step_by(stride) {
            let variants = [
                format!("{path}/"),
                format!("{path}?market=KRW-BTC&count=1"),
                format!("{path}/?a=b#frag"),
                format!("{path}#frag"),
                format!("/{path}"),
                path.replace('/', "//"),
                path.to_ascii_uppercase(),
                format!("https://api.upbit.com{path}?x=1"),
                format!("HTTPS://API.UPBIT.COM:443{path}"),
                format!("wss://api.upbit.com{path}"),
                format!("api.upbit.com{path}"),
                format!("  {path}  "),
                String::from(&path[1..]),
            ];
            for p in &variants {
                assert_eq!(classify(method, p), want, "{method} {p}");
            }
            let lower = method.to_ascii_lowercase();
            assert_eq!(classify(&lower, path), want, "{lower} {path}");
            assert_eq!(classify(&format!(" {method} "), path), want, "{method} {path}");
        }
    }

    #[test]
    fn tolerance_cases() {
        let cases = [
            ("GET", "https://api.upbit.com/v1/ticker?markets=KRW-BTC", Ticker),
            ("GET", "/v1/candles/minutes/7", Candle),
            ("GET", "/v1/candles/minutes/abc?market=KRW-BTC&count=200", Candle),
            ("GET", "/V1/CANDLES/MINUTES/5/", Candle),
            ("get", "//v1///trades/ticks//", Trade),
            ("post", "/v1/orders/", Order),
            ("Post", "/V1/Orders/Test", OrderTest),
            ("delete", "/v1/orders/open?cancel_side=all", OrderCancelAll),
            ("DELETE", "/v1/orders/open/", OrderCancelAll),
            ("GET", "/v1/./ticker", Ticker),
            ("POST", "/v1/orders/open/../test", OrderTest),
            ("GET", "/v1/../../v1/orderbook", Orderbook),
            ("GET", "http://localhost:8080/v1/market/all", Market),
            ("GET", "localhost:8080/v1/market/all", Market),
            ("GET", "https://user@api.upbit.com/v1/accounts", Default),
            ("GET", "/v1/ticker%2Fall", Default),
            ("GET", "/v1/market/all;jsessionid=x", Market),
        ];
        for (method, path, want) in cases {
            assert_eq!(classify(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn keyed_on_method_and_path() {
        // The same path lands in different groups by method.
        assert_eq!(classify("GET", "/v1/orders/open"), Default);
        assert_eq!(classify("DELETE", "/v1/orders/open"), OrderCancelAll);
        assert_eq!(classify("GET", "/v1/orders/test"), Default);
        assert_eq!(classify("GET", "/v1/orders/cancel_and_new"), Default);
        assert_eq!(classify("DELETE", "/v1/orders"), Default);
        assert_eq!(classify("PUT", "/v1/orders"), Default);
        assert_eq!(classify("POSTX", "/v1/orders"), Default);
        assert_eq!(classify("", "/v1/orders"), Default);
        // Deeper paths under /v1/orders are not the order groups.
        assert_eq!(classify("POST", "/v1/orders/test/extra"), Default);
        assert_eq!(classify("DELETE", "/v1/orders/open/extra"), Default);
        assert_eq!(classify("POST", "/v1/orders/unknown"), Default);
        // Quotation groups ignore the method.
        assert_eq!(classify("POST", "/v1/ticker"), Ticker);
        assert_eq!(classify("", "/v1/candles/days"), Candle);
        // WebSocket handshakes may come as HTTP/2 CONNECT.
        assert_eq!(classify("CONNECT", "/websocket/v1"), WebsocketConnect);
    }

    #[test]
    fn unknown_paths() {
        let cases = [
            // Under a quotation prefix: that group.
            ("GET", "/v1/market/new_thing", Market),
            ("GET", "/v1/candles/decades", Candle),
            ("GET", "/v1/trades", Trade),
            ("GET", "/v1/ticker/everything/else", Ticker),
            ("GET", "/v1/orderbook/levels", Orderbook),
            // Anything else under /v1: default.
            ("GET", "/v1", Default),
            ("GET", "/v1/", Default),
            ("GET", "/v1/nope", Default),
            ("POST", "/v1/brand_new_exchange_endpoint", Default),
            ("GET", "/v1/markets", Default),
            ("GET", "/v1/candle/days", Default),
            ("GET", "/v1/tickers", Default),
            ("GET", "/v1/marketplace/all", Default),
            // Outside the API: public fallback.
            ("GET", "/", PublicFallback),
            ("GET", "", PublicFallback),
            ("GET", "/v2/ticker", PublicFallback),
            ("GET", "/api/v1/ticker", PublicFallback),
            ("GET", "/ticker", PublicFallback),
            ("GET", "/websocket", PublicFallback),
            ("GET", "/websocket/v2", PublicFallback),
            ("GET", "/v1x/ticker", PublicFallback),
            ("GET", "https://api.upbit.com", PublicFallback),
            ("GET", "https://api.upbit.com?x=/v1/ticker", PublicFallback),
            ("GET", "/health?path=/v1/orders", PublicFallback),
            ("GET", "/x/../../..", PublicFallback),
            ("GET", "garbage", PublicFallback),
            ("GET", "://", PublicFallback),
        ];
        for (method, path, want) in cases {
            assert_eq!(classify(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        // Under Miri (every step interpreted) the long inputs are 0.1 % as long.
        let n = if cfg!(miri) { 50 } else { 50_000 };
        let long_slashes = "/".repeat(2 * n);
        let long_segments = "/v1".repeat(n);
        let long_dots = "/..".repeat(n);
        let long_name = format!("/v1/{}", "a".repeat(2 * n));
        let odd = [
            "",
            "?",
            "#",
            "/",
            "//",
            ":",
            "://",
            "a://",
            "://x/v1/ticker",
            "é://host/v1/ticker",
            "/v1/티커",
            "/v1/ticker/🚀",
            "🚀://🚀/🚀?🚀#🚀",
            "\u{0}",
            "/v1/\u{0}/orders",
            "%",
            "%2F%2F",
            "\u{feff}/v1/ticker",
            "   ",
            "\t\n",
            ".",
            "..",
            "/././..",
            long_slashes.as_str(),
            long_segments.as_str(),
            long_dots.as_str(),
            long_name.as_str(),
        ];
        for path in odd {
            for method in ["", "GET", "POST", "DELETE", "ｐｏｓｔ", "\u{0}", "🚀"] {
                let _ = classify(method, path);
                let _ = classify(path, path);
            }
        }
        assert_eq!(classify("GET", &long_segments), Default);
        assert_eq!(classify("GET", &long_dots), PublicFallback);
    }

    #[test]
    fn never_panics_on_every_short_byte_string() {
        // All strings over a small alphabet that exercises the separators.
        let alphabet = ['/', '?', '#', ':', '.', 'v', '1', 'é'];
        let mut buf = String::new();
        // Under Miri (every step interpreted) strings up to 2 long only.
        let longest = if cfg!(miri) { 2 } else { 5 };
        for n in 0..=longest {
            for mut code in 0..alphabet.len().pow(n) {
                buf.clear();
                for _ in 0..n {
                    buf.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                let _ = classify("POST", &buf);
            }
        }
    }
}
