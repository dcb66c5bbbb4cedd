//! Rate-limit groups and the unit each one is counted per.

use core::fmt;
use core::str::FromStr;

/// An Upbit rate-limit group: the budget a request is counted against.
///
/// The first twelve are the server's own groups (Upbit's names, see
/// [`Group::as_str`]). [`Group::PublicFallback`] is ours: a conservative bucket
/// for paths outside the documented API, so they never share a budget with a
/// real group.
///
/// With the `serde` feature the variants (de)serialize as their documented
/// names (`"order-cancel-all"`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Group {
    /// `market`: the trading-pair list. 10/s per IP.
    Market,
    /// `candle`: every candle endpoint (seconds to years). 10/s per IP.
    Candle,
    /// `trade`: recent trades. 10/s per IP.
    Trade,
    /// `ticker`: tickers by pair or by quote currency. 10/s per IP.
    Ticker,
    /// `orderbook`: orderbooks and orderbook instruments. 10/s per IP.
    Orderbook,
    /// `default`: every Exchange endpoint without a group of its own. 30/s per pocket.
    Default,
    /// `order`: create an order, cancel-and-new. 12/s per pocket (8/s on Upbit Global).
    Order,
    /// `order-test`: the order dry run. 8/s per pocket.
    OrderTest,
    /// `order-cancel-all`: the batch cancel. 1 per 2 s per pocket.
    OrderCancelAll,
    /// `websocket-connect`: WebSocket handshakes. 5/s.
    WebsocketConnect,
    /// `websocket-message`: data requests sent on one WebSocket connection.
    /// 5/s and 100/min per connection.
    WebsocketMessage,
    /// `origin`: Quotation requests that carry an `Origin` header. 1 per 10 s.
    Origin,
    /// Not an Upbit group: requests to paths outside the documented API.
    PublicFallback,
}

/// The unit a group's budget is counted per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Scope {
    /// Shared by everything leaving one egress IP.
    Ip,
    /// Shared by every API key of one pocket (main or sub-account).
    Pocket,
    /// Private to one WebSocket connection.
    Connection,
}

impl Group {
    /// Every group, in declaration order (`ALL[g.index()] == g`).
    pub const ALL: [Group; 13] = [
        Group::Market,
        Group::Candle,
        Group::Trade,
        Group::Ticker,
        Group::Orderbook,
        Group::Default,
        Group::Order,
        Group::OrderTest,
        Group::OrderCancelAll,
        Group::WebsocketConnect,
        Group::WebsocketMessage,
        Group::Origin,
        Group::PublicFallback,
    ];

    /// The number of groups.
    pub const COUNT: usize = 13;

    /// A dense index in `0..COUNT`, for per-group arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The group at `index`, the inverse of [`Group::index`].
    pub fn from_index(index: usize) -> Option<Group> {
        Self::ALL.get(index).copied()
    }

    /// The name Upbit's documentation uses (ours for [`Group::PublicFallback`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Market => "market",
            Group::Candle => "candle",
            Group::Trade => "trade",
            Group::Ticker => "ticker",
            Group::Orderbook => "orderbook",
            Group::Default => "default",
            Group::Order => "order",
            Group::OrderTest => "order-test",
            Group::OrderCancelAll => "order-cancel-all",
            Group::WebsocketConnect => "websocket-connect",
            Group::WebsocketMessage => "websocket-message",
            Group::Origin => "origin",
            Group::PublicFallback => "public-fallback",
        }
    }

    /// Looks a group up by name, as written in config or in the `group` field
    /// of a `Remaining-Req` header.
    ///
    /// Case-insensitive, surrounding whitespace ignored, `_` accepted for `-`.
    /// Besides the documented names it knows the values seen on the wire:
    /// `candles` (candle), `crix-trades` and `trades` (trade), `markets`
    /// (market), `websocket` (websocket-connect) and `exchange.default`
    /// (default).
    pub fn from_name(name: &str) -> Option<Group> {
        let name = name.trim();
        if let Some(&g) = Self::ALL.iter().find(|g| name_eq(name, g.as_str())) {
            return Some(g);
        }
        ALIASES
            .iter()
            .find(|(alias, _)| name_eq(name, alias))
            .map(|&(_, g)| g)
    }

    /// The unit the server counts this group per.
    ///
    /// `websocket-connect` reports [`Scope::Ip`]: that is the unit for public
    /// connects. Upbit counts connects that carry a JWT (the private endpoint)
    /// per pocket instead; a caller opening authenticated connections keys
    /// that bucket by pocket.
    pub const fn scope(self) -> Scope {
        match self {
            Group::Market
            | Group::Candle
            | Group::Trade
            | Group::Ticker
            | Group::Orderbook
            | Group::WebsocketConnect
            | Group::Origin
            | Group::PublicFallback => Scope::Ip,
            Group::Default | Group::Order | Group::OrderTest | Group::OrderCancelAll => Scope::Pocket,
            Group::WebsocketMessage => Scope::Connection,
        }
    }

    /// Whether this is one of the five Quotation REST groups (market, candle,
    /// trade, ticker, orderbook), each with its own budget per IP.
    pub const fn is_quotation(self) -> bool {
        matches!(
            self,
            Group::Market | Group::Candle | Group::Trade | Group::Ticker | Group::Orderbook
        )
    }
}

/// Names seen on the wire or in Upbit's own examples that differ from the
/// documented group names.
const ALIASES: [(&str, Group); 6] = [
    ("candles", Group::Candle),
    ("crix-trades", Group::Trade),
    ("trades", Group::Trade),
    ("markets", Group::Market),
    ("websocket", Group::WebsocketConnect),
    ("exchange.default", Group::Default),
];

/// `input == canonical`, ignoring ASCII case and reading `_` as `-`.
/// `canonical` is lower-case.
fn name_eq(input: &str, canonical: &str) -> bool {
    input.len() == canonical.len()
        && input.bytes().zip(canonical.bytes()).all(|(a, c)| {
            let a = if a == b'_' { b'-' } else { a.to_ascii_lowercase() };
            a == c
        })
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A group name that [`Group::from_name`] does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownGroup;

impl fmt::Display for UnknownGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown Upbit rate-limit group")
    }
}

impl core::error::Error for UnknownGroup {}

impl FromStr for Group {
    type Err = UnknownGroup;
    /// Same rules as [`Group::from_name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Group::from_name(s).ok_or(UnknownGroup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn index_round_trips_in_declaration_order() {
        assert_eq!(Group::ALL.len(), Group::COUNT);
        for (i, g) in Group::ALL.iter().enumerate() {
            assert_eq!(g.index(), i);
            assert_eq!(Group::from_index(i), Some(*g));
        }
        assert_eq!(Group::from_index(Group::COUNT), None);
        assert_eq!(Group::from_index(usize::MAX), None);
        assert_eq!(Group::Market.index(), 0);
        assert_eq!(Group::PublicFallback.index(), 12);
    }

    #[test]
    fn names_are_the_documented_ones() {
        let expected = [
            "market",
            "candle",
            "trade",
            "ticker",
            "orderbook",
            "default",
            "order",
            "order-test",
            "order-cancel-all",
            "websocket-connect",
            "websocket-message",
            "origin",
            "public-fallback",
        ];
        for (g, name) in Group::ALL.iter().zip(expected) {
            assert_eq!(g.as_str(), name);
            assert_eq!(g.to_string(), name);
            assert_eq!(Group::from_name(name), Some(*g));
            assert_eq!(name.parse::<Group>(), Ok(*g));
        }
    }

    #[test]
    fn from_name_is_lenient_about_spelling() {
        let cases = [
            ("  ORDER-CANCEL-ALL\t", Group::OrderCancelAll),
            ("order_cancel_all", Group::OrderCancelAll),
            ("Order_Test", Group::OrderTest),
            ("websocket_message", Group::WebsocketMessage),
            ("candles", Group::Candle),
            ("Candles", Group::Candle),
            ("crix-trades", Group::Trade),
            ("crix_trades", Group::Trade),
            ("trades", Group::Trade),
            ("markets", Group::Market),
            ("websocket", Group::WebsocketConnect),
            ("exchange.default", Group::Default),
            ("EXCHANGE.DEFAULT", Group::Default),
            ("public_fallback", Group::PublicFallback),
        ];
        for (name, g) in cases {
            assert_eq!(Group::from_name(name), Some(g), "{name:?}");
        }
    }

    #[test]
    fn unknown_names_are_rejected() {
        for name in [
            "",
            " ",
            "orders",
            "order-",
            "exchange",
            "exchange_default",
            "candle s",
            "websocket-",
            "tickers",
            "주문",
            "default\0",
        ] {
            assert_eq!(Group::from_name(name), None, "{name:?}");
            assert_eq!(name.parse::<Group>(), Err(UnknownGroup));
        }
        assert_eq!(UnknownGroup.to_string(), "unknown Upbit rate-limit group");
    }

    #[test]
    fn scopes_follow_the_docs() {
        for g in Group::ALL {
            let want = match g {
                Group::Default | Group::Order | Group::OrderTest | Group::OrderCancelAll => Scope::Pocket,
                Group::WebsocketMessage => Scope::Connection,
                _ => Scope::Ip,
            };
            assert_eq!(g.scope(), want, "{g}");
        }
    }

    #[test]
    fn quotation_groups_are_the_five_rest_groups() {
        let quotation: std::vec::Vec<Group> = Group::ALL.into_iter().filter(|g| g.is_quotation()).collect();
        assert_eq!(
            quotation,
            [
                Group::Market,
                Group::Candle,
                Group::Trade,
                Group::Ticker,
                Group::Orderbook
            ]
        );
    }
}
