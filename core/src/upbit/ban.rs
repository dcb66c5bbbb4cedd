//! Reading a block duration out of a 418 body.
//!
//! Upbit says the body states how long the block lasts but documents neither
//! the field nor the format, so this reads what it can and otherwise says
//! nothing; the caller then falls back to its own (long) default.

use crate::time::Duration;

/// Only this much of a body is scanned, so a hostile body costs bounded work.
const SCAN_LIMIT: usize = 16 * 1024;

/// Keys longer than this cannot be one of ours.
const KEY_CAP: usize = 32;

/// Key names that carry a block duration, lower-case with `_` and `-`
/// removed. A key matches if it starts or ends with one, before or after
/// dropping a unit suffix (`ms`, `seconds`, ...): `retry_after_ms`,
/// `blocked_seconds`, `penalty_duration_min`. Matching only at the ends
/// keeps ids like `settlement` (which contains `ttl`) out.
const DURATION_KEYS: [&[u8]; 15] = [
    b"retryafter",
    b"retryin",
    b"remainingtime",
    b"remainingsec",
    b"blocktime",
    b"blockedtime",
    b"blockduration",
    b"blockedfor",
    b"bantime",
    b"banduration",
    b"ttl",
    b"seconds",
    b"waittime",
    b"cooldown",
    b"duration",
];

/// Unit suffixes of key names, longest first among those sharing an ending.
const KEY_UNIT_SUFFIXES: [(&[u8], u64); 11] = [
    (b"milliseconds", NS_MS),
    (b"millis", NS_MS),
    (b"ms", NS_MS),
    (b"seconds", NS_SEC),
    (b"secs", NS_SEC),
    (b"sec", NS_SEC),
    (b"minutes", NS_MIN),
    (b"mins", NS_MIN),
    (b"min", NS_MIN),
    (b"hours", NS_HOUR),
    (b"hour", NS_HOUR),
];

const NS_MS: u64 = 1_000_000;
const NS_SEC: u64 = 1_000_000_000;
const NS_MIN: u64 = 60 * NS_SEC;
const NS_HOUR: u64 = 60 * NS_MIN;
const NS_DAY: u64 = 24 * NS_HOUR;

/// English unit words, longest first among those sharing a prefix. Each must
/// end at a word boundary.
const ENGLISH_UNITS: [(&[u8], u64); 24] = [
    (b"milliseconds", NS_MS),
    (b"millisecond", NS_MS),
    (b"millis", NS_MS),
    (b"msecs", NS_MS),
    (b"msec", NS_MS),
    (b"ms", NS_MS),
    (b"seconds", NS_SEC),
    (b"second", NS_SEC),
    (b"secs", NS_SEC),
    (b"sec", NS_SEC),
    (b"s", NS_SEC),
    (b"minutes", NS_MIN),
    (b"minute", NS_MIN),
    (b"mins", NS_MIN),
    (b"min", NS_MIN),
    (b"m", NS_MIN),
    (b"hours", NS_HOUR),
    (b"hour", NS_HOUR),
    (b"hrs", NS_HOUR),
    (b"hr", NS_HOUR),
    (b"h", NS_HOUR),
    (b"days", NS_DAY),
    (b"day", NS_DAY),
    (b"d", NS_DAY),
];

/// Korean unit words (UTF-8). Korean attaches particles directly (`30초간`,
/// `5분 후`), so no boundary is needed after them.
const KOREAN_UNITS: [(&str, u64); 5] = [
    ("밀리초", NS_MS),
    ("초", NS_SEC),
    ("분", NS_MIN),
    ("시간", NS_HOUR),
    ("일", NS_DAY),
];

/// Best-effort block duration from the body of a 418 response.
///
/// Looks for
/// - a numeric field whose key names a duration (`retry_after`,
///   `remaining_time`, `block_time`, `seconds`, `ttl`, ...; any case, `_` or
///   `-` or camelCase), in seconds unless the key ends in `ms`/`millis`
///   (milliseconds), `min`/`minutes` or `hours`, or the value carries its own
///   unit (`"30s"`);
/// - a number followed by a unit in English (`30 seconds`, `30 sec`, `500ms`,
///   `5 minutes`, `1h`) or Korean (`30초`, `5분`, `1시간`); adjacent pairs add
///   up (`1 minute 30 seconds`, `1시간 30분`).
///
/// When several are found the longest wins. Zero, negative and missing values
/// give `None`, as does a body with nothing recognisable. Huge values
/// saturate instead of overflowing. Only the first 16 KiB are read. Never
/// panics and does not allocate.
pub fn parse_ban_duration(body: &str) -> Option<Duration> {
    let bytes = body.as_bytes();
    let bytes = &bytes[..bytes.len().min(SCAN_LIMIT)];
    let longest = keyed_values(bytes).max(spelled_out(bytes));
    (!longest.is_zero()).then_some(longest)
}

/// The longest duration among `key: number` / `key=number` fields whose key
/// names a duration.
fn keyed_values(b: &[u8]) -> Duration {
    let mut best = Duration::ZERO;
    let mut i = 0;
    while i < b.len() {
        if !is_key_byte(b[i]) || (i > 0 && is_key_byte(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_key_byte(b[i]) {
            i += 1;
        }
        let key = &b[start..i];
        if let Some(d) = keyed_value(key, &b[i..]) {
            best = best.max(d);
        }
    }
    best
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Bytes that may follow a value in JSON, a query string or a header.
fn is_value_end(b: u8) -> bool {
    matches!(b, b'"' | b'\'' | b',' | b'}' | b']' | b';' | b'&')
}

/// The duration in `rest` (what follows `key`), if `key` names one and `rest`
/// is `"?\s*[:=]\s*"?`, a non-negative number, an optional unit, and then
/// the end of the value (so `"2026-10-07T..."` is not read as 2026 s).
fn keyed_value(key: &[u8], rest: &[u8]) -> Option<Duration> {
    let mut buf = [0u8; KEY_CAP];
    let mut n = 0;
    for &c in key {
        if c == b'_' || c == b'-' {
            continue;
        }
        *buf.get_mut(n)? = c.to_ascii_lowercase();
        n += 1;
    }
    let norm = &buf[..n];
    let (base, key_unit) = split_unit_suffix(norm);
    let names_duration = DURATION_KEYS
        .iter()
        .any(|k| norm.starts_with(k) || norm.ends_with(k) || base.ends_with(k));
    if !names_duration {
        return None;
    }

    let mut j = usize::from(matches!(rest.first(), Some(b'"' | b'\'')));
    j = skip_spaces(rest, j);
    if !matches!(rest.get(j), Some(b':' | b'=')) {
        return None;
    }
    j = skip_spaces(rest, j + 1);
    j += usize::from(matches!(rest.get(j), Some(b'"' | b'\'')));
    let (value, mut j) = number(rest, j)?;
    let mut unit = key_unit;
    if let Some((u, end)) = unit_at(rest, skip_spaces(rest, j)) {
        unit = u;
        j = end;
    }
    let value_ends = rest
        .get(j)
        .is_none_or(|&c| is_value_end(c) || c.is_ascii_whitespace());
    value_ends.then(|| value.scaled(unit))
}

/// Splits a unit suffix off a normalized key: `ttlms` is (`ttl`, ms). Keys
/// without one are in seconds.
fn split_unit_suffix(norm: &[u8]) -> (&[u8], u64) {
    KEY_UNIT_SUFFIXES
        .iter()
        .find_map(|&(suffix, unit)| norm.strip_suffix(suffix).map(|base| (base, unit)))
        .unwrap_or((norm, NS_SEC))
}

/// The longest run of `number unit` pairs in free text.
fn spelled_out(b: &[u8]) -> Duration {
    let mut best = Duration::ZERO;
    let mut i = 0;
    while i < b.len() {
        // Not inside a word, a decimal or a signed or dashed number.
        let at_number_start =
            b[i].is_ascii_digit() && (i == 0 || !(is_key_byte(b[i - 1]) || b[i - 1] == b'.'));
        if !at_number_start {
            i += 1;
            continue;
        }
        let mut total = Duration::ZERO;
        let mut j = i;
        while let Some((value, after_number)) = number(b, j) {
            let unit = unit_at(b, skip_spaces(b, after_number))
                .filter(|&(_, after_unit)| !is_status_plural(value, after_number, after_unit));
            let Some((unit, after_unit)) = unit else {
                // A bare number ends the run; resume scanning after it.
                j = after_number;
                break;
            };
            total = total.saturating_add(value.scaled(unit));
            j = after_unit;
            // Joiners between pairs: spaces, commas, "and".
            let mut k = skip_spaces(b, j);
            if b.get(k) == Some(&b',') {
                k = skip_spaces(b, k + 1);
            }
            if b.get(k..).is_some_and(|r| r.starts_with(b"and ")) {
                k = skip_spaces(b, k + 3);
            }
            if !b.get(k).is_some_and(u8::is_ascii_digit) {
                break;
            }
            j = k;
        }
        best = best.max(total);
        i = j.max(i + 1);
    }
    best
}

/// "429s" or "418s" in prose is the plural of a status code, not seconds.
fn is_status_plural(value: Number, after_number: usize, after_unit: usize) -> bool {
    after_unit == after_number + 1 && value.frac == 0 && (400..=599).contains(&value.whole)
}

/// A unit word starting at `i`: its length in nanoseconds and where it ends.
fn unit_at(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let rest = b.get(i..)?;
    for (word, ns) in ENGLISH_UNITS {
        if rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word) {
            let end = i + word.len();
            if !b.get(end).is_some_and(u8::is_ascii_alphabetic) {
                return Some((ns, end));
            }
        }
    }
    for (word, ns) in KOREAN_UNITS {
        if rest.starts_with(word.as_bytes()) {
            return Some((ns, i + word.len()));
        }
    }
    None
}

/// A non-negative decimal number: whole part saturated to `u64`, and up to
/// nine fractional digits (more are read and ignored).
#[derive(Clone, Copy)]
struct Number {
    whole: u64,
    frac: u64,
    frac_scale: u64,
}

impl Number {
    /// `self × unit_ns` nanoseconds, saturating.
    fn scaled(self, unit_ns: u64) -> Duration {
        let whole = Duration::from_nanos(self.whole.saturating_mul(unit_ns));
        // frac < frac_scale, so this is below `unit_ns` and fits.
        let frac = u128::from(self.frac) * u128::from(unit_ns) / u128::from(self.frac_scale);
        whole.saturating_add(Duration::from_nanos(u64::try_from(frac).unwrap_or(u64::MAX)))
    }
}

/// Reads a number at `i`: digits, optionally `.` and more digits.
fn number(b: &[u8], i: usize) -> Option<(Number, usize)> {
    let mut j = i;
    let mut whole = 0u64;
    while let Some(d) = b.get(j).filter(|c| c.is_ascii_digit()) {
        whole = whole.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        j += 1;
    }
    if j == i {
        return None;
    }
    let mut frac = 0;
    let mut frac_scale = 1;
    if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
        j += 1;
        while let Some(d) = b.get(j).filter(|c| c.is_ascii_digit()) {
            if frac_scale < NS_SEC {
                frac = frac * 10 + u64::from(d - b'0');
                frac_scale *= 10;
            }
            j += 1;
        }
    }
    Some((
        Number {
            whole,
            frac,
            frac_scale,
        },
        j,
    ))
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
    {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }
    fn millis(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn json_fields() {
        let cases = [
            (r#"{"retry_after": 30}"#, secs(30)),
            (r#"{"retry_after":30}"#, secs(30)),
            (r#"{"Retry-After": "30"}"#, secs(30)),
            (r#"{"retryAfter": 12}"#, secs(12)),
            (r#"{"RETRY_AFTER": 1.5}"#, millis(1500)),
            (r#"{"remaining_time": 600}"#, secs(600)),
            (r#"{"remainingTime":600}"#, secs(600)),
            (r#"{"block_time": 45}"#, secs(45)),
            (r#"{"blockTime" : 45 }"#, secs(45)),
            (r#"{"seconds": 7}"#, secs(7)),
            (r#"{"ttl": 90}"#, secs(90)),
            (r#"{"TTL":90}"#, secs(90)),
            (r#"{"retry_after_ms": 2500}"#, millis(2500)),
            (r#"{"retryAfterMs": 2500}"#, millis(2500)),
            (r#"{"block_time_millis": 800}"#, millis(800)),
            (r#"{"ttl_ms": 250}"#, millis(250)),
            (r#"{"blocked_seconds": 40}"#, secs(40)),
            (r#"{"penalty_duration_ms": 1200}"#, millis(1200)),
            (r#"{"remaining_seconds": 8}"#, secs(8)),
            (r#"{"cooldown": 15}"#, secs(15)),
            ("retry_after=30&x=1", secs(30)),
            (r#"{"block_duration_minutes": 5}"#, secs(300)),
            (r#"{"ban_duration_hours": 2}"#, secs(7200)),
            (r#"{"retry_after": "30s"}"#, secs(30)),
            (r#"{"retry_after": "2 minutes"}"#, secs(120)),
            (r#"{"retry_after_ms": "3s"}"#, secs(3)),
            (r#"{'retry_after': 30}"#, secs(30)),
            ("retry_after=30", secs(30)),
            ("Retry-After: 30", secs(30)),
            (
                r#"{"error":{"name":418,"message":"I'm a teapot","retry_after":60}}"#,
                secs(60),
            ),
            (
                r#"{"error":{"name":"blocked","data":{"remaining_time":3600}}}"#,
                secs(3600),
            ),
            (r#"{"retry_after":{"seconds":20}}"#, secs(20)),
        ];
        for (body, want) in cases {
            assert_eq!(parse_ban_duration(body), want, "{body}");
        }
    }

    #[test]
    fn english_text() {
        let cases = [
            ("blocked for 30 seconds", secs(30)),
            ("Blocked for 30 Seconds.", secs(30)),
            ("retry in 30 sec", secs(30)),
            ("retry in 30 sec. please", secs(30)),
            ("wait 30s", secs(30)),
            ("30secs left", secs(30)),
            ("5 minutes", secs(300)),
            ("blocked for 5 min", secs(300)),
            ("5m", secs(300)),
            ("1 hour", secs(3600)),
            ("2 hrs", secs(7200)),
            ("1h", secs(3600)),
            ("1 day", secs(86_400)),
            ("500ms", millis(500)),
            ("500 milliseconds", millis(500)),
            ("1.5 seconds", millis(1500)),
            ("0.25s", millis(250)),
            ("1 minute 30 seconds", secs(90)),
            ("1 minute, 30 seconds", secs(90)),
            ("1 minute and 30 seconds", secs(90)),
            ("1h30m", secs(5400)),
            ("1h 30m 15s", secs(5415)),
            ("blocked 10 seconds then 5 minutes", secs(300)),
        ];
        for (body, want) in cases {
            assert_eq!(parse_ban_duration(body), want, "{body}");
        }
    }

    #[test]
    fn korean_text() {
        let cases = [
            ("30초", secs(30)),
            ("30초간 요청이 차단되었습니다", secs(30)),
            ("요청 수 제한 초과: 5분 후 다시 시도하세요", secs(300)),
            ("5 분", secs(300)),
            ("1시간", secs(3600)),
            ("1시간 30분", secs(5400)),
            ("2분 30초 동안 차단", secs(150)),
            ("500밀리초", millis(500)),
            ("1일", secs(86_400)),
            (
                r#"{"error":{"name":"teapot","message":"10분 동안 차단됩니다"}}"#,
                secs(600),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse_ban_duration(body), want, "{body}");
        }
    }

    #[test]
    fn nothing_found() {
        let cases = [
            "",
            "I'm a teapot",
            "Too many API requests.",
            r#"{"error":{"name":418,"message":"I'm a teapot"}}"#,
            r#"{"error":{"name":"too_many_requests","message":"Too Many Requests"}}"#,
            "418",
            "status 418 at 2026-10-07 12:00:00",
            r#"{"retry_after": 0}"#,
            r#"{"retry_after": -5}"#,
            r#"{"retry_after": null}"#,
            r#"{"retry_after": "soon"}"#,
            "0 seconds",
            "-5 seconds",
            "v2s",
            "abc30s",
            "id_5m",
            "x.5s",
            "30 apples",
            "30 secondary",
            "5 months",
            "3f2sd1-uuid",
            r#"{"expires_at": 1790000000}"#,
            r#"{"timestamp": 1790000000000}"#,
            "초분시간",
            r#"{"retry_after": "2026-10-07T12:00:00Z"}"#,
            r#"{"settlement_id": 12345}"#,
            r#"{"x_ratelimit_remaining": 5}"#,
            r#"{"unblock_time_id": 5}"#,
            r#"{"retry_after": 30x}"#,
        ];
        for body in cases {
            assert_eq!(parse_ban_duration(body), None, "{body}");
        }
    }

    #[test]
    fn status_code_plurals_are_not_seconds() {
        assert_eq!(
            parse_ban_duration("too many requests after repeated 429s: blocked for 30 seconds"),
            secs(30)
        );
        assert_eq!(parse_ban_duration("repeated 429s"), None);
        assert_eq!(parse_ban_duration("blocked for 30s"), secs(30));
    }

    #[test]
    fn longest_wins() {
        assert_eq!(
            parse_ban_duration(r#"{"retry_after": 30, "message": "blocked for 10 minutes"}"#),
            secs(600)
        );
        assert_eq!(parse_ban_duration(r#"{"ttl": 900, "note": "5 sec"}"#), secs(900));
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(
            parse_ban_duration("99999999999999999999999999 days"),
            Some(Duration::MAX)
        );
        assert_eq!(
            parse_ban_duration(r#"{"ttl": 18446744073709551616}"#),
            Some(Duration::MAX)
        );
        assert_eq!(
            parse_ban_duration("18446744073 seconds 18446744073 seconds"),
            Some(Duration::MAX)
        );
        assert_eq!(
            parse_ban_duration("1.99999999999999999999 seconds"),
            Some(Duration::from_nanos(1_999_999_999))
        );
    }

    #[test]
    fn never_panics() {
        let long = "9".repeat(100_000);
        let long_key = format!(r#"{{"{}": 5}}"#, "retry_after_".repeat(1_000));
        let odd = [
            ".",
            "..5",
            "5.",
            "5.s",
            "5 .",
            ":",
            "=",
            "\"",
            "'",
            "ttl",
            "ttl:",
            "ttl=\"",
            "초",
            "5\u{0}s",
            "🚀5🚀s",
            "5🚀",
            "1시",
            "1시간간",
            "and",
            "1 and",
            "1s and",
            "1s,",
            "1s ,",
            long.as_str(),
            long_key.as_str(),
        ];
        for body in odd {
            let _ = parse_ban_duration(body);
        }
        // Scanning stops at the limit.
        let late = format!("{}retry_after=30", " ".repeat(SCAN_LIMIT));
        assert_eq!(parse_ban_duration(&late), None);
    }
}
