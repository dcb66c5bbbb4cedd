//! Reading a block duration out of a 418 response.
//!
//! Upbit says the body states how long the block lasts but documents neither
//! the field nor the format, so this reads what it can and otherwise says
//! nothing; the caller then falls back to its own safe schedule (see
//! [`crate::adaptive::AdaptiveConfig`]). Three forms are read:
//!
//! - a length in the body ([`parse_ban_duration`]);
//! - an absolute end in the body ([`parse_ban_end`]: `blocked until
//!   2026-12-01T12:10:00+09:00`), which needs the current wall-clock time;
//! - a `Retry-After` header ([`parse_retry_after`]), as delta-seconds or an
//!   HTTP-date (RFC 9110 §10.2.3), the latter again against a wall clock.
//!
//! Core never reads a clock: the wall-clock time comes from the response's
//! own `Date` header (the server's clock, the same one that wrote the end
//! time, so the two agree even when ours is off) or, failing that, from the
//! caller ([`WallClock`]). [`stated_ban`] combines them: the longest
//! credible length wins, and nothing credible gives `None`.

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

/// A wall-clock time: milliseconds since 1970-01-01T00:00:00Z (UTC).
///
/// Core never reads a wall clock; pass one in with
/// [`Response::with_wall_clock`](crate::Response::with_wall_clock) when the
/// response has no readable `Date` header, e.g. from
/// `std::time::SystemTime::now().duration_since(UNIX_EPOCH)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallClock(u64);

impl WallClock {
    /// `ms` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(ms: u64) -> Self {
        Self(ms)
    }
    /// `secs` seconds after the Unix epoch (saturating).
    pub const fn from_unix_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000))
    }
    /// Milliseconds after the Unix epoch.
    pub const fn unix_millis(self) -> u64 {
        self.0
    }
    /// How long after `earlier` this is (zero if it is not later).
    pub fn since(self, earlier: WallClock) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// The longest ban length [`stated_ban`] believes: anything longer reads as
/// a parsing accident (or a permanent block, which no schedule can wait out
/// better than the safe one) and is ignored.
pub const MAX_CREDIBLE_BAN: Duration = Duration::from_secs(24 * 3_600);

/// The ban length a 418 response states, from every form this module reads:
/// a length in `body`, an absolute end in `body`, and the `Retry-After`
/// header. Absolute forms are measured from the `Date` header when it
/// parses, else from `wall_clock`, else ignored. Each candidate must be
/// longer than zero and at most [`MAX_CREDIBLE_BAN`]; the longest credible
/// one wins. `None` (nothing credible) means "unknown": the caller uses its
/// safe schedule. Never panics.
pub fn stated_ban(
    body: Option<&str>,
    retry_after: Option<&str>,
    date: Option<&str>,
    wall_clock: Option<WallClock>,
) -> Option<Duration> {
    let now = date.and_then(parse_http_date).or(wall_clock);
    let credible = |d: Option<Duration>| d.filter(|d| !d.is_zero() && *d <= MAX_CREDIBLE_BAN);
    let from_body = credible(body.and_then(parse_ban_duration));
    let until = credible(body.zip(now).and_then(|(b, now)| parse_ban_end(b, now)));
    let header = credible(retry_after.and_then(|v| parse_retry_after(v, now)));
    from_body.max(until).max(header)
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delta-seconds (`120`), or an
/// HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`, also the obsolete RFC 850 and
/// asctime forms) measured from `now` (`None`: the date form is not read).
/// Zero, a date not after `now`, or anything else gives `None`; huge
/// numbers saturate. Surrounding whitespace is ignored.
pub fn parse_retry_after(value: &str, now: Option<WallClock>) -> Option<Duration> {
    let v = value.trim_matches(|c: char| c == ' ' || c == '\t');
    if !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_digit()) {
        let secs = v.bytes().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        let d = Duration::from_nanos(secs.saturating_mul(NS_SEC));
        return (!d.is_zero()).then_some(d);
    }
    let end = parse_http_date(v)?;
    let d = end.since(now?);
    (!d.is_zero()).then_some(d)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];
const WEEKDAYS: [&[u8]; 14] = [
    b"mon",
    b"tue",
    b"wed",
    b"thu",
    b"fri",
    b"sat",
    b"sun",
    b"monday",
    b"tuesday",
    b"wednesday",
    b"thursday",
    b"friday",
    b"saturday",
    b"sunday",
];

/// An HTTP-date (RFC 9110 §5.6.7) in any of its three forms:
/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate), `Sunday, 06-Nov-94
/// 08:49:37 GMT` (RFC 850; a two-digit year is 19xx from 70, else 20xx) and
/// `Sun Nov  6 08:49:37 1994` (asctime). Names compare ignoring case, the
/// weekday is optional and not checked against the date, and the zone must
/// be `GMT` or `UTC` when present. Anything else, or an impossible date,
/// gives `None`. Also reads a `Date` header.
pub fn parse_http_date(value: &str) -> Option<WallClock> {
    let b = value.as_bytes();
    if b.len() > 64 {
        return None;
    }
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    let mut zone = false;
    for token in b
        .split(|&c| matches!(c, b' ' | b',' | b'-' | b'\t'))
        .filter(|t| !t.is_empty())
    {
        let lower = |t: &[u8]| {
            let mut buf = [0u8; 9];
            let n = t.len().min(9);
            for (o, c) in buf.iter_mut().zip(t) {
                *o = c.to_ascii_lowercase();
            }
            (buf, n)
        };
        let (buf, n) = lower(token);
        let word = &buf[..n];
        if token.len() > 9 {
            return None;
        } else if token.contains(&b':') {
            if time.is_some() {
                return None;
            }
            time = Some(clock_time(token, true)?);
        } else if token.iter().all(u8::is_ascii_digit) {
            let n = digits(token)?;
            match token.len() {
                1 | 2 if day.is_none() => day = Some(n),
                2 if year.is_none() => year = Some(if n >= 70 { 1900 + n } else { 2000 + n }),
                4 if year.is_none() => year = Some(n),
                _ => return None,
            }
        } else if let Some(m) = MONTHS.iter().position(|m| word == &m[..]) {
            if month.is_some() {
                return None;
            }
            month = Some(m as u64 + 1);
        } else if WEEKDAYS.contains(&word) {
            if day.is_some() || month.is_some() {
                return None;
            }
        } else if word == b"gmt" || word == b"utc" {
            if zone || time.is_none() {
                return None;
            }
            zone = true;
        } else {
            return None;
        }
    }
    let (h, mi, sec, _) = time?;
    let secs = unix_secs(year?, month?, day?, h, mi, sec)?;
    Some(WallClock::from_unix_secs(secs))
}

/// An absolute ban end in a 418 body, as a length from `now`: an ISO 8601 /
/// RFC 3339 date-time with a zone (`2026-12-01T12:10:00+09:00`,
/// `2026-12-01T03:10:00Z`, `2026-12-01 12:10+09:00`, `+0900`, a fraction of
/// a second, `UTC`/`GMT`/`KST` after a space), preceded by a word that
/// announces an end (`until`, `till`, `expires`, `unblock`, `release`,
/// `end`, `retry`, `after`, within a few bytes, as in `"blocked_until":
/// "..."`) or followed by `까지`. A time without a zone, in the past, or not
/// announced as an end is not read (a body may carry other timestamps). The
/// latest end wins. Only the first 16 KiB are read; never panics.
pub fn parse_ban_end(body: &str, now: WallClock) -> Option<Duration> {
    let bytes = body.as_bytes();
    let b = &bytes[..bytes.len().min(SCAN_LIMIT)];
    let mut best: Option<u64> = None;
    let mut i = 0;
    while i + 10 <= b.len() {
        let starts = b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if let Some((end_ms, len)) = starts.then(|| iso_date_time(&b[i..])).flatten() {
            if announced(b, i, i + len) {
                best = best.max(Some(end_ms));
            }
            i += len;
        } else {
            i += 1;
        }
    }
    let d = WallClock::from_unix_millis(best?).since(now);
    (!d.is_zero()).then_some(d)
}

/// Words that announce an end time before it (lower-case).
const END_WORDS: [&[u8]; 8] = [
    b"until", b"till", b"expire", b"unblock", b"release", b"end", b"retry", b"after",
];

/// Whether the date-time at `b[start..end]` is announced as an end.
fn announced(b: &[u8], start: usize, end: usize) -> bool {
    if b.get(end..).is_some_and(|r| r.starts_with("까지".as_bytes())) {
        return true;
    }
    let from = start.saturating_sub(40);
    let before = &b[from..start];
    let mut buf = [0u8; 40];
    for (o, c) in buf.iter_mut().zip(before) {
        *o = c.to_ascii_lowercase();
    }
    let before = &buf[..before.len()];
    END_WORDS
        .iter()
        .any(|w| before.windows(w.len()).any(|win| win == *w))
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.frac]]zone` at the start of `b`: the instant in
/// Unix milliseconds and the length read.
fn iso_date_time(b: &[u8]) -> Option<(u64, usize)> {
    let year = digits(b.get(0..4)?)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b.get(5..7)?)?;
    let day = digits(b.get(8..10)?)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let mut j = 11;
    let mut k = j;
    while b.get(k).is_some_and(|c| c.is_ascii_digit() || *c == b':') {
        k += 1;
    }
    let (h, mi, sec, _) = clock_time(&b[j..k], false)?;
    j = k;
    let mut millis = 0;
    if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
        j += 1;
        let mut scale = 100;
        while let Some(d) = b.get(j).filter(|c| c.is_ascii_digit()) {
            millis += u64::from(d - b'0') * scale;
            scale /= 10;
            j += 1;
        }
    }
    let (offset_secs, east, zone_len) = zone(&b[j..])?;
    let local = unix_secs(year, month, day, h, mi, sec)?;
    let utc = if east {
        local.checked_sub(offset_secs)?
    } else {
        local.checked_add(offset_secs)?
    };
    Some((utc.checked_mul(1_000)?.checked_add(millis)?, j + zone_len))
}

/// A zone at the start of `b`: (offset in seconds, east of UTC, length).
fn zone(b: &[u8]) -> Option<(u64, bool, usize)> {
    match b.first()? {
        b'Z' | b'z' => Some((0, true, 1)),
        &sign @ (b'+' | b'-') => {
            let hh = digits(b.get(1..3)?)?;
            let (mm, len) = match b.get(3) {
                Some(b':') => (digits(b.get(4..6)?)?, 6),
                Some(c) if c.is_ascii_digit() => (digits(b.get(3..5)?)?, 5),
                _ => (0, 3),
            };
            if hh > 14 || mm > 59 || b.get(len).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            Some((hh * 3_600 + mm * 60, sign == b'+', len))
        }
        b' ' => {
            let w = b.get(1..4)?;
            let east = if w.eq_ignore_ascii_case(b"utc") || w.eq_ignore_ascii_case(b"gmt") {
                0
            } else if w.eq_ignore_ascii_case(b"kst") {
                9 * 3_600
            } else {
                return None;
            };
            if b.get(4).is_some_and(u8::is_ascii_alphanumeric) {
                return None;
            }
            Some((east, true, 4))
        }
        _ => None,
    }
}

/// `HH:MM:SS` (or `HH:MM` unless `seconds_required`): (h, m, s, length).
fn clock_time(t: &[u8], seconds_required: bool) -> Option<(u64, u64, u64, usize)> {
    let h = digits(t.get(0..2)?)?;
    if t.get(2) != Some(&b':') {
        return None;
    }
    let m = digits(t.get(3..5)?)?;
    let (s, len) = match t.get(5) {
        Some(b':') => (digits(t.get(6..8)?)?, 8),
        None if !seconds_required => (0, 5),
        _ => return None,
    };
    if t.len() != len || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // A leap second reads as the last second of its minute.
    Some((h, m, s.min(59), len))
}

/// All-digit bytes as a number (at most 9 digits), else `None`.
fn digits(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 9 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(t.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Seconds since the Unix epoch of a UTC civil date-time, for years 1970 to
/// 9999; `None` for an impossible date.
fn unix_secs(year: u64, month: u64, day: u64, h: u64, m: u64, s: u64) -> Option<u64> {
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > month_days[(month - 1) as usize] {
        return None;
    }
    // Days before this year since 1970, then before this month, then the day.
    let y = year - 1;
    let leaps = |y: u64| y / 4 - y / 100 + y / 400;
    let mut days = (year - 1970) * 365 + leaps(y) - leaps(1969);
    days += month_days[..(month - 1) as usize].iter().sum::<u64>();
    days += day - 1;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

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

    /// 2026-12-01T03:00:00Z.
    const T0: u64 = 1_796_094_000;

    fn wall(secs: u64) -> WallClock {
        WallClock::from_unix_secs(secs)
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let sunday = Some(wall(784_111_777));
        let cases = [
            ("Sun, 06 Nov 1994 08:49:37 GMT", sunday),
            ("Sunday, 06-Nov-94 08:49:37 GMT", sunday),
            ("Sun Nov  6 08:49:37 1994", sunday),
            ("sun, 06 nov 1994 08:49:37 gmt", sunday),
            ("06 Nov 1994 08:49:37 GMT", sunday),
            ("Sun, 06 Nov 1994 08:49:37 UTC", sunday),
            ("Wed, 21 Oct 2026 07:28:00 GMT", Some(wall(1_792_567_680))),
            ("Tue, 29 Feb 2028 00:00:00 GMT", Some(wall(1_835_395_200))),
            ("Wed, 01 Mar 2000 00:00:00 GMT", Some(wall(951_868_800))),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(wall(0))),
        ];
        for (v, want) in cases {
            assert_eq!(parse_http_date(v), want, "{v}");
        }
        for bad in [
            "",
            "GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 2027 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Nov 1994 08:49:37 GMT GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sun, 06 Nov 1994 1995 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 08:49:37 GMT",
            "120",
            "2026-12-01T03:00:00Z",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = Some(wall(1_792_567_680 - 90));
        assert_eq!(parse_retry_after("120", None), secs(120));
        assert_eq!(parse_retry_after(" 120 ", None), secs(120));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now), secs(90));
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-26 07:28:00 GMT", now),
            secs(90)
        );
        assert_eq!(parse_retry_after("Wed Oct 21 07:28:00 2026", now), secs(90));
        // The date form needs a wall clock; a date in the past is no ban.
        assert_eq!(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", None), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", Some(wall(1_792_567_680))),
            None
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", None),
            Some(Duration::MAX)
        );
        for bad in ["", "0", "-5", "1.5", "12 s", "soon", "+30", "0x10"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn absolute_ends_in_the_body() {
        let now = wall(T0);
        let cases = [
            ("blocked until 2026-12-01T12:10:00+09:00", secs(600)),
            ("blocked until 2026-12-01T03:10:00Z", secs(600)),
            ("blocked until 2026-12-01T03:10:00z.", secs(600)),
            ("blocked until 2026-12-01T12:10+09:00", secs(600)),
            ("blocked until 2026-12-01T03:10Z", secs(600)),
            ("blocked until 2026-12-01 12:10:00+0900", secs(600)),
            ("blocked until 2026-12-01T12:10:00+09", secs(600)),
            ("blocked until 2026-11-30T22:10:00-05:00", secs(600)),
            ("blocked until 2026-12-01T03:00:30.500Z", millis(30_500)),
            ("blocked until 2026-12-01 03:10:00 UTC", secs(600)),
            ("blocked until 2026-12-01 12:10:00 KST", secs(600)),
            (
                r#"{"error":{"name":"blocked","blocked_until":"2026-12-01T03:01:00Z"}}"#,
                secs(60),
            ),
            (r#"{"expires_at": "2026-12-01T03:05:00Z"}"#, secs(300)),
            ("2026-12-01 12:10:00+09:00까지 차단됩니다", secs(600)),
            // The latest announced end wins; a past one gives nothing.
            (
                "until 2026-12-01T03:01:00Z, retry after 2026-12-01T03:02:00Z",
                secs(120),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse_ban_end(body, now), want, "{body}");
        }
        for bad in [
            "blocked until 2026-12-01T02:59:00Z",
            "blocked until 2026-12-01T12:10:00",
            "blocked until 2026-12-01",
            "timestamp 2026-12-01T03:10:00Z",
            "blocked until 2026-13-01T03:10:00Z",
            "blocked until 2026-12-01T25:10:00Z",
            "blocked until 2026-12-01T03:10:00+15:00",
            "blocked until 2026-12-01T03:10:00 PST",
            "blocked until 12026-12-01T03:10:00Z",
            "blocked until 2026-12-01T03:10:00+09:00:00",
            "blocked until 2026-12-01X03:10:00Z",
        ] {
            assert_eq!(parse_ban_end(bad, now), None, "{bad}");
        }
        // No duration is read out of a date either.
        assert_eq!(
            parse_ban_duration("blocked until 2026-12-01T12:10:00+09:00"),
            None
        );
    }

    #[test]
    fn stated_ban_takes_the_longest_credible_form() {
        let date = "Tue, 01 Dec 2026 03:00:00 GMT";
        let body = "blocked until 2026-12-01T12:10:00+09:00";
        // Each form alone.
        assert_eq!(stated_ban(Some(body), None, Some(date), None), secs(600));
        assert_eq!(stated_ban(Some(body), None, None, Some(wall(T0))), secs(600));
        assert_eq!(stated_ban(None, Some("30"), None, None), secs(30));
        assert_eq!(
            stated_ban(None, Some("Tue, 01 Dec 2026 03:02:00 GMT"), Some(date), None),
            secs(120)
        );
        assert_eq!(
            stated_ban(Some("blocked for 45 seconds"), None, None, None),
            secs(45)
        );
        // The longest wins.
        assert_eq!(
            stated_ban(Some("blocked for 45 seconds"), Some("30"), None, None),
            secs(45)
        );
        assert_eq!(stated_ban(Some(body), Some("30"), Some(date), None), secs(600));
        // The Date header is preferred over the caller's clock.
        assert_eq!(
            stated_ban(Some(body), None, Some(date), Some(wall(T0 + 500))),
            secs(600)
        );
        // An unreadable Date falls back to the caller's clock.
        assert_eq!(
            stated_ban(Some(body), None, Some("yesterday"), Some(wall(T0 + 500))),
            secs(100)
        );
        // Without any clock the absolute forms are not read.
        assert_eq!(stated_ban(Some(body), None, None, None), None);
        // Incredible values are ignored, not obeyed: a huge one does not
        // beat a credible one, and alone it is "unknown".
        assert_eq!(stated_ban(None, Some("99999999999"), None, None), None);
        assert_eq!(
            stated_ban(Some("blocked for 30 seconds"), Some("99999999999"), None, None),
            secs(30)
        );
        assert_eq!(stated_ban(Some("99999 days"), None, None, None), None);
        assert_eq!(
            stated_ban(Some("blocked for 24 hours"), None, None, None),
            secs(86_400)
        );
        assert_eq!(stated_ban(Some("blocked for 25 hours"), None, None, None), None);
        assert_eq!(stated_ban(None, Some("0"), None, None), None);
        assert_eq!(
            stated_ban(Some("I'm a teapot"), Some("soon"), Some(date), None),
            None
        );
        assert_eq!(stated_ban(None, None, None, None), None);
    }

    #[test]
    fn random_inputs_never_panic_and_never_give_an_unbounded_ban() {
        // Pieces that the readers react to, glued at random (xorshift).
        let pieces = [
            "until ",
            "retry_after",
            "=",
            ":",
            "\"",
            " ",
            "2026-12-01",
            "T",
            "12:10",
            ":00",
            ".5",
            "+09:00",
            "Z",
            "-05",
            " KST",
            "까지",
            "Sun, ",
            "06 ",
            "Nov ",
            "1994 ",
            "08:49:37 ",
            "GMT",
            "-",
            ",",
            "99999999999",
            "0",
            "5",
            " seconds",
            "분",
            "ms",
            "🚀",
            "\u{0}",
            "h",
            "1s and ",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Under Miri (every step interpreted) 0.25 % of the inputs.
        for _ in 0..if cfg!(miri) { 50 } else { 20_000 } {
            let mut text = std::string::String::new();
            for _ in 0..(next() % 12) {
                text.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let now = WallClock::from_unix_millis(next() % 4_000_000_000_000);
            let (a, b) = text.split_at(
                text.char_indices()
                    .nth(text.chars().count() / 2)
                    .map_or(0, |(i, _)| i),
            );
            for wall in [None, Some(now)] {
                if let Some(d) = stated_ban(Some(&text), Some(a), Some(b), wall) {
                    assert!(!d.is_zero() && d <= MAX_CREDIBLE_BAN, "{text:?}");
                }
                if let Some(d) = parse_retry_after(&text, wall) {
                    assert!(!d.is_zero(), "{text:?}");
                }
            }
            if let Some(d) = parse_ban_end(&text, now) {
                assert!(!d.is_zero(), "{text:?}");
            }
            let _ = parse_http_date(&text);
        }
    }

    #[test]
    fn never_panics() {
        // Under Miri (every step interpreted) the long inputs are shorter; the
        // scan limit is still crossed (`late` below).
        let n = if cfg!(miri) { 1_000 } else { 100_000 };
        let long = "9".repeat(n);
        let long_key = format!(r#"{{"{}": 5}}"#, "retry_after_".repeat(n / 100));
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
        let dates = [
            "2026-12-01T",
            "2026-12-01T12",
            "2026-12-01T12:",
            "2026-12-01T12:10:",
            "2026-12-01T12:10:00.",
            "2026-12-01T12:10:00+",
            "2026-12-01T12:10:00+0",
            "2026-12-01T12:10:00+09:",
            "2026-12-01T12:10:00 ",
            "2026-12-01T12:10:00 K",
            "until 9999-12-31T23:59:60.999999999999-14:00",
            "until 1970-01-01T00:00:00+14:00",
            "until 0000-00-00T00:00:00Z",
            "until 2026-12-01T12:10:00+09:00까",
            "Sun,",
            ", , ,",
            "- - -",
            "Sun Nov 1994",
            "99 99 99",
            "a:b:c",
            "00:00:00",
            "1:2:3 GMT",
            "Wednesday, 31-Dec-99 23:59:60 GMT",
        ];
        for body in odd.iter().chain(&dates) {
            let _ = parse_ban_duration(body);
            for now in [
                WallClock::from_unix_millis(0),
                WallClock::from_unix_millis(u64::MAX),
            ] {
                let _ = parse_ban_end(body, now);
                let _ = parse_retry_after(body, Some(now));
                let _ = stated_ban(Some(body), Some(body), Some(body), Some(now));
            }
            let _ = parse_http_date(body);
        }
        let long_date = format!("until {}", "2026-12-01T12:10:00Z ".repeat(n / 50));
        let _ = parse_ban_end(&long_date, WallClock::from_unix_secs(0));
        // Scanning stops at the limit.
        let late = format!("{}retry_after=30", " ".repeat(SCAN_LIMIT));
        assert_eq!(parse_ban_duration(&late), None);
    }
}
