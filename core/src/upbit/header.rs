//! The `Remaining-Req` response header.
//!
//! Documented form: `group=default; min=1800; sec=29`. `sec` is what is left in
//! the current second after this request; `min` is deprecated (a fixed 60 ×
//! the per-second limit) and may disappear. The parser is lenient about
//! spelling and strict about numbers: a value it cannot read is an error, so
//! the caller never loosens a bucket on a guess.

use core::fmt;

use super::Group;

/// A parsed `Remaining-Req` header value, borrowing the group name from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemainingReq<'a> {
    /// The `group` field as sent (trimmed): a documented name or an alias.
    pub group_name: &'a str,
    /// Requests left in the current second, after this one.
    pub sec: u32,
    /// The deprecated `min` field, if present. Informational only.
    pub min: Option<u32>,
}

/// A key of the `Remaining-Req` header, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// `group`
    Group,
    /// `sec`
    Sec,
    /// `min`
    Min,
}

impl Key {
    /// The key as written in the header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Key::Group => "group",
            Key::Sec => "sec",
            Key::Min => "min",
        }
    }

    fn from_name(name: &str) -> Option<Key> {
        [Key::Group, Key::Sec, Key::Min]
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.as_str()))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a `Remaining-Req` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemainingReqError {
    /// The value is empty, blank, or only separators.
    Empty,
    /// A part has no `=`, or nothing before it.
    MalformedPart,
    /// A key appears twice.
    DuplicateKey {
        /// The repeated key.
        key: Key,
    },
    /// `sec` or `min` is not a plain decimal `u32` (empty, signed, fractional,
    /// non-numeric, or too large).
    InvalidNumber {
        /// The key whose value is bad.
        key: Key,
    },
    /// `group=` with nothing after it.
    EmptyGroup,
    /// No `group` key.
    MissingGroup,
    /// No `sec` key.
    MissingSec,
}

impl fmt::Display for RemainingReqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("Remaining-Req is empty"),
            Self::MalformedPart => f.write_str("Remaining-Req has a part that is not `key=value`"),
            Self::DuplicateKey { key } => write!(f, "Remaining-Req repeats `{key}`"),
            Self::InvalidNumber { key } => {
                write!(f, "Remaining-Req `{key}` is not an unsigned 32-bit number")
            }
            Self::EmptyGroup => f.write_str("Remaining-Req `group` is empty"),
            Self::MissingGroup => f.write_str("Remaining-Req has no `group`"),
            Self::MissingSec => f.write_str("Remaining-Req has no `sec`"),
        }
    }
}

impl core::error::Error for RemainingReqError {}

impl<'a> RemainingReq<'a> {
    /// Parses a header value.
    ///
    /// Parts are split on `;`; whitespace around parts, keys and values is
    /// ignored, keys are case-insensitive and may come in any order, unknown
    /// keys and empty parts (a trailing `;`) are skipped, and `min` is
    /// optional. The group name is kept as sent; [`RemainingReq::group`]
    /// resolves it.
    pub fn parse(value: &'a str) -> Result<Self, RemainingReqError> {
        let mut group_name = None;
        let mut sec = None;
        let mut min = None;
        let mut any_part = false;

        for part in value.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            any_part = true;
            let (key, val) = part.split_once('=').ok_or(RemainingReqError::MalformedPart)?;
            let (key, val) = (key.trim(), val.trim());
            if key.is_empty() {
                return Err(RemainingReqError::MalformedPart);
            }
            let Some(key) = Key::from_name(key) else {
                continue;
            };
            let duplicate = match key {
                Key::Group => group_name.is_some(),
                Key::Sec => sec.is_some(),
                Key::Min => min.is_some(),
            };
            if duplicate {
                return Err(RemainingReqError::DuplicateKey { key });
            }
            match key {
                Key::Group if val.is_empty() => return Err(RemainingReqError::EmptyGroup),
                Key::Group => group_name = Some(val),
                Key::Sec => sec = Some(parse_u32(val, key)?),
                Key::Min => min = Some(parse_u32(val, key)?),
            }
        }

        if !any_part {
            return Err(RemainingReqError::Empty);
        }
        Ok(RemainingReq {
            group_name: group_name.ok_or(RemainingReqError::MissingGroup)?,
            sec: sec.ok_or(RemainingReqError::MissingSec)?,
            min,
        })
    }

    /// The group named in the header, through [`Group::from_name`] (so
    /// `candles` and `crix-trades` resolve). `None` for a name we do not know.
    pub fn group(&self) -> Option<Group> {
        Group::from_name(self.group_name)
    }
}

/// Plain ASCII digits only: no sign, no fraction, no overflow.
fn parse_u32(s: &str, key: Key) -> Result<u32, RemainingReqError> {
    let err = RemainingReqError::InvalidNumber { key };
    if s.is_empty() {
        return Err(err);
    }
    s.bytes().try_fold(0u32, |acc, b| {
        if !b.is_ascii_digit() {
            return Err(err);
        }
        acc.checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(b - b'0')))
            .ok_or(err)
    })
}

impl fmt::Display for RemainingReq<'_> {
    /// Upbit's form, `group=default; min=1800; sec=29` (no `min` when absent).
    /// For any value returned by [`RemainingReq::parse`], parsing the output
    /// gives the same value back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group={}; ", self.group_name)?;
        if let Some(min) = self.min {
            write!(f, "min={min}; ")?;
        }
        write!(f, "sec={}", self.sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use RemainingReqError as E;

    fn ok(value: &str) -> RemainingReq<'_> {
        RemainingReq::parse(value).unwrap_or_else(|e| panic!("{value:?}: {e}"))
    }

    #[test]
    fn documented_form() {
        let r = ok("group=default; min=1800; sec=29");
        assert_eq!(
            r,
            RemainingReq {
                group_name: "default",
                sec: 29,
                min: Some(1800)
            }
        );
        assert_eq!(r.group(), Some(Group::Default));
    }

    #[test]
    fn lenient_spelling() {
        let cases = [
            ("sec=29; group=default; min=1800", "default", 29, Some(1800)),
            ("min=1800;sec=29;group=default", "default", 29, Some(1800)),
            (
                "  group = default ;  min = 1800 ;  sec = 29  ",
                "default",
                29,
                Some(1800),
            ),
            ("group=default;\tmin=1800;\tsec=29", "default", 29, Some(1800)),
            ("\tgroup\t=\tmarket\t;\tsec\t=\t9\t", "market", 9, None),
            ("GROUP=ticker; MIN=600; SEC=8", "ticker", 8, Some(600)),
            ("Group=ticker; Sec=8", "ticker", 8, None),
            ("group=order; sec=11; extra=1; note=hello", "order", 11, None),
            ("x=; group=order; y=z=w; sec=11", "order", 11, None),
            ("group=default; sec=29", "default", 29, None),
            ("group=default; min=1800; sec=29;", "default", 29, Some(1800)),
            ("group=default; min=1800; sec=29 ; ;", "default", 29, Some(1800)),
            (";group=default;;sec=0", "default", 0, None),
            ("group=candles; min=600; sec=9", "candles", 9, Some(600)),
            ("group=crix-trades; min=600; sec=7", "crix-trades", 7, Some(600)),
            ("group=order-cancel-all; sec=0", "order-cancel-all", 0, None),
            ("group=order-test; min=480; sec=7", "order-test", 7, Some(480)),
            ("group=websocket; min=300; sec=3", "websocket", 3, Some(300)),
            ("group=origin; min=6; sec=0", "origin", 0, Some(6)),
            ("group=brand-new; sec=4", "brand-new", 4, None),
            ("group=default; sec=4294967295", "default", u32::MAX, None),
            ("group=default; sec=007", "default", 7, None),
        ];
        for (value, group_name, sec, min) in cases {
            assert_eq!(ok(value), RemainingReq { group_name, sec, min }, "{value:?}");
        }
    }

    #[test]
    fn group_resolves_aliases() {
        let cases = [
            ("group=candles; sec=1", Some(Group::Candle)),
            ("group=crix-trades; sec=1", Some(Group::Trade)),
            ("group=trades; sec=1", Some(Group::Trade)),
            ("group=websocket; sec=1", Some(Group::WebsocketConnect)),
            ("group=order-cancel-all; sec=1", Some(Group::OrderCancelAll)),
            ("group=ORDER_TEST; sec=1", Some(Group::OrderTest)),
            ("group=exchange.default; sec=1", Some(Group::Default)),
            ("group=brand-new; sec=1", None),
        ];
        for (value, group) in cases {
            assert_eq!(ok(value).group(), group, "{value:?}");
        }
    }

    #[test]
    fn errors() {
        let cases = [
            ("", E::Empty),
            ("   ", E::Empty),
            (";", E::Empty),
            (" ; ;\t", E::Empty),
            ("group", E::MalformedPart),
            ("group=default; sec", E::MalformedPart),
            ("group=default; =5; sec=1", E::MalformedPart),
            ("garbage", E::MalformedPart),
            ("group=; sec=1", E::EmptyGroup),
            ("group=  ; sec=1", E::EmptyGroup),
            ("sec=1; min=60", E::MissingGroup),
            ("foo=bar", E::MissingGroup),
            ("group=default; min=1800", E::MissingSec),
            ("group=default", E::MissingSec),
            ("group=a; group=b; sec=1", E::DuplicateKey { key: Key::Group }),
            ("group=a; sec=1; SEC=2", E::DuplicateKey { key: Key::Sec }),
            ("group=a; min=1; sec=1; min=1", E::DuplicateKey { key: Key::Min }),
            ("group=a; sec=", E::InvalidNumber { key: Key::Sec }),
            ("group=a; sec=x", E::InvalidNumber { key: Key::Sec }),
            ("group=a; sec=-1", E::InvalidNumber { key: Key::Sec }),
            ("group=a; sec=+1", E::InvalidNumber { key: Key::Sec }),
            ("group=a; sec=1.5", E::InvalidNumber { key: Key::Sec }),
            ("group=a; sec=1 2", E::InvalidNumber { key: Key::Sec }),
            ("group=a; sec=4294967296", E::InvalidNumber { key: Key::Sec }),
            (
                "group=a; sec=99999999999999999999999",
                E::InvalidNumber { key: Key::Sec },
            ),
            ("group=a; sec=٣", E::InvalidNumber { key: Key::Sec }),
            ("group=a; min=abc; sec=1", E::InvalidNumber { key: Key::Min }),
            ("group=a; min=-5; sec=1", E::InvalidNumber { key: Key::Min }),
            ("group=a; min=; sec=1", E::InvalidNumber { key: Key::Min }),
        ];
        for (value, err) in cases {
            assert_eq!(RemainingReq::parse(value), Err(err), "{value:?}");
        }
    }

    #[test]
    fn error_messages_name_the_key() {
        assert_eq!(
            E::InvalidNumber { key: Key::Sec }.to_string(),
            "Remaining-Req `sec` is not an unsigned 32-bit number"
        );
        assert_eq!(
            E::DuplicateKey { key: Key::Min }.to_string(),
            "Remaining-Req repeats `min`"
        );
        for e in [
            E::Empty,
            E::MalformedPart,
            E::EmptyGroup,
            E::MissingGroup,
            E::MissingSec,
        ] {
            assert!(e.to_string().starts_with("Remaining-Req"));
        }
        assert_eq!(Key::Group.to_string(), "group");
    }

    #[test]
    fn display_is_the_canonical_form() {
        let r = RemainingReq {
            group_name: "default",
            sec: 29,
            min: Some(1800),
        };
        assert_eq!(r.to_string(), "group=default; min=1800; sec=29");
        let r = RemainingReq {
            group_name: "order",
            sec: 0,
            min: None,
        };
        assert_eq!(r.to_string(), "group=order; sec=0");
    }

    #[test]
    fn round_trip() {
        let inputs = [
            "group=default; min=1800; sec=29",
            "  SEC=0 ;GROUP = crix-trades;extra=1;",
            "group=order-cancel-all; sec=4294967295",
            "min=4294967295; group=x; sec=0",
            "group=a=b; sec=3",
            "group=한글; min=0; sec=1",
        ];
        for input in inputs {
            let parsed = ok(input);
            let shown: String = parsed.to_string();
            assert_eq!(RemainingReq::parse(&shown), Ok(parsed), "{input:?} -> {shown:?}");
        }
        for sec in [0, 1, 9, 29, u32::MAX] {
            for min in [None, Some(0), Some(600), Some(u32::MAX)] {
                for group_name in ["default", "candles", "order-test", "websocket"] {
                    let r = RemainingReq { group_name, sec, min };
                    assert_eq!(RemainingReq::parse(&r.to_string()), Ok(r));
                }
            }
        }
    }

    #[test]
    fn never_panics() {
        let odd = [
            "=",
            "==",
            ";=;",
            "=;=",
            "🚀=🚀",
            "group=🚀;sec=🚀",
            "\u{0}",
            "sec=1;group",
        ];
        for value in odd {
            let _ = RemainingReq::parse(value);
        }
        let long = "group=a; ".repeat(10_000);
        assert_eq!(
            RemainingReq::parse(&long),
            Err(E::DuplicateKey { key: Key::Group })
        );
    }
}
