//! The server's published limits per deployment, and the margins we add.

use core::fmt;
use core::str::FromStr;

use super::Group;
use crate::quota::ServerLimit;
use crate::time::Duration;

/// The jitter margin added to a group's window when deriving the client
/// quota, for groups without a wider one.
pub const MARGIN_STANDARD: Duration = Duration::from_millis(100);
/// The margin for `order` and `order-test`: a 429 there costs a trade.
pub const MARGIN_ORDER: Duration = Duration::from_millis(150);
/// The margin for `order-cancel-all`: a single request per window, so the
/// spacing must hold even when two sends land on either side of the
/// server's boundary.
pub const MARGIN_ORDER_CANCEL_ALL: Duration = Duration::from_millis(200);

/// Which Upbit deployment's published limits to use.
///
/// Limits change (2023, 2024 and twice in 2026), so these are starting
/// points; the header reconciliation and config can only tighten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Preset {
    /// Upbit Korea (`api.upbit.com`): `order` at 12/s since 2026-08-21.
    Korea,
    /// Upbit Global (Singapore, Indonesia, Thailand): as Korea, but `order`
    /// stays at 8/s until a raise there is confirmed.
    Global,
}

const fn per_sec(n: u32) -> ServerLimit {
    ServerLimit::per_second(n)
}

const fn per_secs(n: u32, secs: u64) -> ServerLimit {
    ServerLimit::new(n, Duration::from_secs(secs))
}

static QUOTATION: [ServerLimit; 1] = [per_sec(10)];
static DEFAULT: [ServerLimit; 1] = [per_sec(30)];
static ORDER_KOREA: [ServerLimit; 1] = [per_sec(12)];
static ORDER_GLOBAL: [ServerLimit; 1] = [per_sec(8)];
static ORDER_TEST: [ServerLimit; 1] = [per_sec(8)];
static ORDER_CANCEL_ALL: [ServerLimit; 1] = [per_secs(1, 2)];
static WEBSOCKET_CONNECT: [ServerLimit; 1] = [per_sec(5)];
static WEBSOCKET_MESSAGE: [ServerLimit; 2] = [per_sec(5), per_secs(100, 60)];
static ORIGIN: [ServerLimit; 1] = [per_secs(1, 10)];
static PUBLIC_FALLBACK: [ServerLimit; 1] = [per_sec(10)];

impl Preset {
    /// The lower-case name: `"korea"` or `"global"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Preset::Korea => "korea",
            Preset::Global => "global",
        }
    }

    /// The windows the server enforces for `group`; a request must fit all of
    /// them. One window for every group except `websocket-message`
    /// (5 per 1 s and 100 per 60 s).
    pub fn limits(self, group: Group) -> &'static [ServerLimit] {
        match group {
            Group::Market | Group::Candle | Group::Trade | Group::Ticker | Group::Orderbook => &QUOTATION,
            Group::Default => &DEFAULT,
            Group::Order => match self {
                Preset::Korea => &ORDER_KOREA,
                Preset::Global => &ORDER_GLOBAL,
            },
            Group::OrderTest => &ORDER_TEST,
            Group::OrderCancelAll => &ORDER_CANCEL_ALL,
            Group::WebsocketConnect => &WEBSOCKET_CONNECT,
            Group::WebsocketMessage => &WEBSOCKET_MESSAGE,
            Group::Origin => &ORIGIN,
            Group::PublicFallback => &PUBLIC_FALLBACK,
        }
    }

    /// The jitter margin added to each of `group`'s windows when deriving the
    /// client quota: [`MARGIN_ORDER_CANCEL_ALL`], [`MARGIN_ORDER`] for
    /// `order` and `order-test`, [`MARGIN_STANDARD`] otherwise.
    pub fn default_margin(self, group: Group) -> Duration {
        match group {
            Group::Order | Group::OrderTest => MARGIN_ORDER,
            Group::OrderCancelAll => MARGIN_ORDER_CANCEL_ALL,
            _ => MARGIN_STANDARD,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A preset name that is neither `korea`/`kr` nor `global`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownPreset;

impl fmt::Display for UnknownPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown Upbit preset (expected \"korea\", \"kr\" or \"global\")")
    }
}

impl core::error::Error for UnknownPreset {}

impl FromStr for Preset {
    type Err = UnknownPreset;
    /// `korea` or `kr`, `global`; case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("korea") || s.eq_ignore_ascii_case("kr") {
            Ok(Preset::Korea)
        } else if s.eq_ignore_ascii_case("global") {
            Ok(Preset::Global)
        } else {
            Err(UnknownPreset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn one(p: Preset, g: Group) -> (u32, Duration) {
        let l = p.limits(g);
        assert_eq!(l.len(), 1, "{p} {g}");
        (l[0].max_requests, l[0].window)
    }

    const S1: Duration = Duration::from_secs(1);

    #[test]
    fn korea_numbers() {
        let p = Preset::Korea;
        for g in [
            Group::Market,
            Group::Candle,
            Group::Trade,
            Group::Ticker,
            Group::Orderbook,
        ] {
            assert_eq!(one(p, g), (10, S1));
        }
        assert_eq!(one(p, Group::Default), (30, S1));
        assert_eq!(one(p, Group::Order), (12, S1));
        assert_eq!(one(p, Group::OrderTest), (8, S1));
        assert_eq!(one(p, Group::OrderCancelAll), (1, Duration::from_secs(2)));
        assert_eq!(one(p, Group::WebsocketConnect), (5, S1));
        assert_eq!(one(p, Group::Origin), (1, Duration::from_secs(10)));
        assert_eq!(one(p, Group::PublicFallback), (10, S1));
    }

    #[test]
    fn global_differs_only_in_order() {
        assert_eq!(one(Preset::Global, Group::Order), (8, S1));
        for g in Group::ALL {
            if g != Group::Order {
                assert_eq!(Preset::Global.limits(g), Preset::Korea.limits(g), "{g}");
            }
        }
    }

    #[test]
    fn websocket_message_has_two_windows() {
        for p in [Preset::Korea, Preset::Global] {
            assert_eq!(
                p.limits(Group::WebsocketMessage),
                [
                    ServerLimit::new(5, Duration::from_secs(1)),
                    ServerLimit::new(100, Duration::from_secs(60)),
                ]
            );
        }
    }

    #[test]
    fn every_limit_is_usable() {
        for p in [Preset::Korea, Preset::Global] {
            for g in Group::ALL {
                let limits = p.limits(g);
                assert!(!limits.is_empty());
                for l in limits {
                    assert!(l.max_requests > 0 && !l.window.is_zero(), "{p} {g}");
                }
            }
        }
    }

    #[test]
    fn margins() {
        assert_eq!(MARGIN_STANDARD, Duration::from_millis(100));
        assert_eq!(MARGIN_ORDER, Duration::from_millis(150));
        assert_eq!(MARGIN_ORDER_CANCEL_ALL, Duration::from_millis(200));
        for p in [Preset::Korea, Preset::Global] {
            for g in Group::ALL {
                let want = match g {
                    Group::Order | Group::OrderTest => 150,
                    Group::OrderCancelAll => 200,
                    _ => 100,
                };
                assert_eq!(p.default_margin(g), Duration::from_millis(want), "{p} {g}");
            }
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!("korea".parse(), Ok(Preset::Korea));
        assert_eq!(" KR ".parse(), Ok(Preset::Korea));
        assert_eq!("Korea".parse(), Ok(Preset::Korea));
        assert_eq!("global".parse(), Ok(Preset::Global));
        assert_eq!("GLOBAL\n".parse(), Ok(Preset::Global));
        assert_eq!("".parse::<Preset>(), Err(UnknownPreset));
        assert_eq!("sg".parse::<Preset>(), Err(UnknownPreset));
        assert_eq!("koreaa".parse::<Preset>(), Err(UnknownPreset));
        for p in [Preset::Korea, Preset::Global] {
            assert_eq!(p.as_str().parse(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert!(UnknownPreset.to_string().contains("korea"));
    }
}
