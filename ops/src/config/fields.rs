//! The settings an operator can write, once for both sources: the key in the
//! TOML file and the suffix of the environment variable, with the parser that
//! turns either spelling into a typed value.

use core::str::FromStr;

use toml::de::DeValue;
use upbit_limiter_core::adaptive::{Ratio, Strategy};
use upbit_limiter_core::limiter::Policy;
use upbit_limiter_core::{Duration, ServerLimit};

use super::{Problem, Set};
use crate::health::Thresholds;

/// A raw value from one of the two sources.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raw<'a, 'i> {
    /// A value from the TOML file.
    Toml(&'a DeValue<'i>),
    /// The text of an environment variable.
    Env(&'a str),
}

impl Raw<'_, '_> {
    /// How the value was written, for "expected X, found Y".
    fn found(&self) -> String {
        match self {
            Raw::Env(s) => format!("{s:?}"),
            Raw::Toml(v) => match v {
                DeValue::String(s) => format!("string {:?}", s.as_ref()),
                DeValue::Integer(i) => format!("integer {i}"),
                DeValue::Float(f) => format!("float {f}"),
                DeValue::Boolean(b) => format!("boolean {b}"),
                DeValue::Datetime(d) => format!("datetime {d}"),
                DeValue::Array(_) => "an array".to_owned(),
                DeValue::Table(_) => "a table".to_owned(),
            },
        }
    }

    fn too_large(&self, what: &'static str) -> Problem {
        Problem::TooLarge {
            what,
            found: self.found(),
        }
    }

    fn expected(&self, what: &'static str) -> Problem {
        Problem::Expected {
            what,
            found: self.found(),
        }
    }

    /// An integer (any sign), from a TOML integer or decimal env text.
    fn integer(&self, what: &'static str) -> Result<i128, Problem> {
        let parsed = match self {
            Raw::Toml(DeValue::Integer(i)) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            Raw::Toml(_) => None,
            Raw::Env(s) => s.trim().parse::<i128>().ok(),
        };
        let digits = match self {
            Raw::Env(s) => {
                let s = s.trim();
                let s = s.strip_prefix('+').unwrap_or(s);
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
            }
            Raw::Toml(_) => false,
        };
        match parsed {
            Some(n) => Ok(n),
            None if digits => Err(self.too_large(what)),
            None => Err(self.expected(what)),
        }
    }

    /// A finite number, from a TOML float or integer or env text.
    fn number(&self, what: &'static str) -> Result<f64, Problem> {
        let (text, parsed) = match self {
            Raw::Toml(DeValue::Float(f)) => (f.as_str(), f.as_str().parse::<f64>().ok()),
            Raw::Toml(DeValue::Integer(i)) => (
                i.as_str(),
                i64::from_str_radix(i.as_str(), i.radix()).ok().map(|i| i as f64),
            ),
            Raw::Toml(_) => ("", None),
            Raw::Env(s) => (s.trim(), s.trim().parse::<f64>().ok()),
        };
        match parsed {
            Some(x) if x.is_finite() => Ok(x),
            // Digits whose value overflows (`1e400`), as opposed to the
            // words `inf` and `NaN`.
            Some(x) if x.is_infinite() && !text.to_ascii_lowercase().contains("inf") => {
                Err(self.too_large(what))
            }
            _ => Err(self.expected(what)),
        }
    }

    fn text(&self, what: &'static str) -> Result<&str, Problem> {
        match self {
            Raw::Toml(DeValue::String(s)) => Ok(s.as_ref()),
            Raw::Toml(_) => Err(self.expected(what)),
            Raw::Env(s) => Ok(s.trim()),
        }
    }
}

const NON_NEGATIVE_INTEGER: &str = "a non-negative integer";

pub(crate) fn parse_u32(raw: Raw<'_, '_>) -> Result<u32, Problem> {
    const WHAT: &str = "an integer from 0 to 4294967295";
    let n = raw.integer(WHAT)?;
    u32::try_from(n).map_err(|_| raw.expected(WHAT))
}

/// A burst: at least one request (at most the group's server limit, which
/// the quota check enforces once the limits are known).
pub(crate) fn parse_burst(raw: Raw<'_, '_>) -> Result<u32, Problem> {
    const WHAT: &str = "a whole number of requests from 1 to the group's server limit";
    let n = raw.integer(WHAT)?;
    match u32::try_from(n) {
        Ok(b) if b > 0 => Ok(b),
        Ok(_) => Err(raw.expected(WHAT)),
        Err(_) if n > 0 => Err(raw.too_large(WHAT)),
        Err(_) => Err(raw.expected(WHAT)),
    }
}

pub(crate) fn parse_u8(raw: Raw<'_, '_>) -> Result<u8, Problem> {
    const WHAT: &str = "an integer from 0 to 255";
    let n = raw.integer(WHAT)?;
    u8::try_from(n).map_err(|_| raw.expected(WHAT))
}

pub(crate) fn parse_usize(raw: Raw<'_, '_>) -> Result<usize, Problem> {
    let n = raw.integer(NON_NEGATIVE_INTEGER)?;
    usize::try_from(n).map_err(|_| raw.expected(NON_NEGATIVE_INTEGER))
}

pub(crate) fn parse_millis(raw: Raw<'_, '_>) -> Result<Duration, Problem> {
    const WHAT: &str = "a non-negative number of milliseconds";
    let n = raw.integer(WHAT)?;
    u64::try_from(n)
        .map(Duration::from_millis)
        .map_err(|_| raw.expected(WHAT))
}

pub(crate) fn parse_positive_millis(raw: Raw<'_, '_>) -> Result<Duration, Problem> {
    const WHAT: &str = "a positive number of milliseconds";
    let n = raw.integer(WHAT)?;
    match u64::try_from(n) {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(raw.expected(WHAT)),
    }
}

pub(crate) fn parse_bool(raw: Raw<'_, '_>) -> Result<bool, Problem> {
    const WHAT: &str = "true or false";
    match raw {
        Raw::Toml(DeValue::Boolean(b)) => Ok(*b),
        Raw::Toml(_) => Err(raw.expected(WHAT)),
        Raw::Env(s) => {
            let s = s.trim();
            if ["1", "true", "yes", "on"]
                .iter()
                .any(|t| s.eq_ignore_ascii_case(t))
            {
                Ok(true)
            } else if ["0", "false", "no", "off"]
                .iter()
                .any(|t| s.eq_ignore_ascii_case(t))
            {
                Ok(false)
            } else {
                Err(Problem::Expected {
                    what: "1, 0, true, false, yes, no, on or off",
                    found: raw.found(),
                })
            }
        }
    }
}

/// A ratio in `(0, 1]`.
pub(crate) fn parse_ratio(raw: Raw<'_, '_>) -> Result<Ratio, Problem> {
    const WHAT: &str = "a number above 0 and at most 1";
    let x = raw.number(WHAT)?;
    Ratio::try_from_f64(x).map_err(|_| raw.expected(WHAT))
}

/// A non-negative share, stored in parts per million (range checks are core's).
pub(crate) fn parse_share_ppm(raw: Raw<'_, '_>) -> Result<u32, Problem> {
    const WHAT: &str = "a number from 0 to 1";
    let x = raw.number(WHAT)?;
    if x < 0.0 {
        return Err(raw.expected(WHAT));
    }
    // Saturating float-to-int conversion; core refuses anything above one.
    Ok((x * 1e6 + 0.5) as u32)
}

pub(crate) fn parse_non_negative(raw: Raw<'_, '_>) -> Result<f64, Problem> {
    const WHAT: &str = "a non-negative number";
    let x = raw.number(WHAT)?;
    if x < 0.0 {
        return Err(raw.expected(WHAT));
    }
    Ok(x)
}

pub(crate) fn parse_rps(raw: Raw<'_, '_>) -> Result<f64, Problem> {
    const WHAT: &str = "a positive number of requests per second";
    let x = raw.number(WHAT)?;
    if x <= 0.0 {
        return Err(raw.expected(WHAT));
    }
    Ok(x)
}

pub(crate) fn parse_policy(raw: Raw<'_, '_>) -> Result<Policy, Problem> {
    const WHAT: &str = "\"interval-log\" or \"gcra\"";
    let s = raw.text(WHAT)?;
    Policy::from_str(s).map_err(|_| raw.expected(WHAT))
}

pub(crate) fn parse_strategy(raw: Raw<'_, '_>) -> Result<Strategy, Problem> {
    const WHAT: &str = "\"conservative\", \"balanced\" or \"aggressive\"";
    let s = raw.text(WHAT)?;
    Strategy::from_str(s).map_err(|_| raw.expected(WHAT))
}

const LIMITS: &str = "server limits such as \"10/1s\" or [\"5/1s\", \"100/60s\"] (one to three windows)";

/// `"N/DURATION"`, e.g. `10/1s`, `1/2s`, `100/60s`, `500/1m`, `8/1000ms`.
pub(crate) fn parse_one_limit(s: &str) -> Option<ServerLimit> {
    let (n, window) = s.trim().split_once('/')?;
    let n: u32 = n.trim().parse().ok()?;
    let window = window.trim();
    let digits = window.find(|c: char| !c.is_ascii_digit()).unwrap_or(window.len());
    let (value, unit) = window.split_at(digits);
    let value: u64 = value.parse().ok()?;
    let window = match unit.trim() {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" | "min" => Duration::from_secs(value.checked_mul(60)?),
        "h" => Duration::from_secs(value.checked_mul(3_600)?),
        _ => return None,
    };
    (n > 0 && !window.is_zero()).then_some(ServerLimit::new(n, window))
}

pub(crate) fn parse_limits(raw: Raw<'_, '_>) -> Result<Vec<ServerLimit>, Problem> {
    let bad = |found: String| Problem::Expected { what: LIMITS, found };
    let limits = match raw {
        Raw::Toml(DeValue::String(s)) => vec![parse_one_limit(s).ok_or_else(|| bad(raw.found()))?],
        Raw::Toml(DeValue::Array(a)) => {
            let mut limits = Vec::new();
            for (i, v) in a.iter().enumerate() {
                let item = Raw::Toml(v.get_ref());
                let limit = v.get_ref().as_str().and_then(parse_one_limit);
                limits.push(limit.ok_or_else(|| bad(format!("{} (element {})", item.found(), i + 1)))?);
            }
            limits
        }
        Raw::Toml(_) => return Err(raw.expected(LIMITS)),
        Raw::Env(s) => {
            let mut limits = Vec::new();
            for part in s.split(',') {
                limits.push(parse_one_limit(part).ok_or_else(|| bad(format!("{:?}", part.trim())))?);
            }
            limits
        }
    };
    if (1..=upbit_limiter_core::limiter::MAX_WINDOWS).contains(&limits.len()) {
        Ok(limits)
    } else {
        Err(bad(format!("{} windows", limits.len())))
    }
}

/// Everything one layer (the file's `[all]`, a file group, the `ALL` env
/// variables, a group's env variables) may set for a group. Unset is `None`.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupLayer {
    pub limits: Option<Set<Vec<ServerLimit>>>,
    pub margin: Option<Set<Duration>>,
    pub policy: Option<Set<Policy>>,
    pub max_flight: Option<Set<Duration>>,
    pub ceiling_hold: Option<Set<Duration>>,
    pub burst: Option<Set<u32>>,
    pub rps: Option<Set<f64>>,
    pub allow_unsafe: Option<Set<bool>>,
    pub strategy: Option<Set<Strategy>>,
    pub timeout: Option<Set<Duration>>,
    pub error_threshold: Option<Set<u32>>,
    pub reduction: Option<Set<Ratio>>,
    pub min_ratio: Option<Set<Ratio>>,
    pub recovery_delay: Option<Set<Duration>>,
    pub recovery_interval: Option<Set<Duration>>,
    pub recovery_step_ppm: Option<Set<u32>>,
    pub ban_default: Option<Set<Duration>>,
    pub ban_max: Option<Set<Duration>>,
    pub consecutive_failures: Option<Set<u32>>,
    pub failure_rate_ppm: Option<Set<u32>>,
    pub window: Option<Set<u8>>,
    pub minimum_calls: Option<Set<u8>>,
    pub open_wait: Option<Set<Duration>>,
    pub open_wait_max: Option<Set<Duration>>,
    pub open_wait_multiplier: Option<Set<u32>>,
    pub half_open_probes: Option<Set<u32>>,
    pub half_open_successes: Option<Set<u32>>,
    pub half_open_max_wait: Option<Set<Duration>>,
}

macro_rules! overlay {
    ($dst:ident, $src:ident; $($f:ident),*) => {
        $(if $src.$f.is_some() { $dst.$f = $src.$f.clone(); })*
    };
}

impl GroupLayer {
    /// Lays `top` over `self`: every field `top` sets wins.
    pub fn overlay(&mut self, top: &GroupLayer) {
        overlay!(self, top; limits, margin, policy, max_flight, ceiling_hold, burst, rps, allow_unsafe, strategy, timeout,
            error_threshold, reduction, min_ratio, recovery_delay, recovery_interval,
            recovery_step_ppm, ban_default, ban_max, consecutive_failures, failure_rate_ppm,
            window, minimum_calls, open_wait, open_wait_max, open_wait_multiplier,
            half_open_probes, half_open_successes, half_open_max_wait);
    }
}

/// One group setting: its TOML key (dotted within the group's table), its env
/// suffix, and how to store it.
pub(crate) struct GroupField {
    pub file: &'static str,
    pub env: &'static str,
    pub store: fn(&mut GroupLayer, Raw<'_, '_>, super::Origin, &str) -> Result<(), Problem>,
}

macro_rules! group_fields {
    ($($file:literal, $env:literal => $slot:ident: $parse:ident;)*) => {
        /// Every group setting (see the crate docs for the table).
        pub(crate) const GROUP_FIELDS: &[GroupField] = &[$(
            GroupField {
                file: $file,
                env: $env,
                store: |layer, raw, origin, key| {
                    layer.$slot = Some(Set { value: $parse(raw)?, origin, key: key.to_owned() });
                    Ok(())
                },
            },
        )*];
    };
}

group_fields! {
    "limits", "LIMITS" => limits: parse_limits;
    "margin_ms", "MARGIN_MS" => margin: parse_millis;
    "policy", "POLICY" => policy: parse_policy;
    "max_flight_ms", "MAX_FLIGHT_MS" => max_flight: parse_millis;
    "ceiling_hold_ms", "CEILING_HOLD_MS" => ceiling_hold: parse_millis;
    "burst", "BURST" => burst: parse_burst;
    "rps", "RPS" => rps: parse_rps;
    "allow_unsafe_quota", "ALLOW_UNSAFE" => allow_unsafe: parse_bool;
    "strategy", "STRATEGY" => strategy: parse_strategy;
    "timeout_ms", "TIMEOUT_MS" => timeout: parse_millis;
    "adaptive.error_threshold", "ERROR_THRESHOLD" => error_threshold: parse_u32;
    "adaptive.reduction", "REDUCTION" => reduction: parse_ratio;
    "adaptive.min_ratio", "MIN_RATIO" => min_ratio: parse_ratio;
    "adaptive.recovery_delay_ms", "RECOVERY_DELAY_MS" => recovery_delay: parse_millis;
    "adaptive.recovery_interval_ms", "RECOVERY_INTERVAL_MS" => recovery_interval: parse_millis;
    "adaptive.recovery_step", "RECOVERY_STEP" => recovery_step_ppm: parse_share_ppm;
    "adaptive.ban_default_ms", "BAN_DEFAULT_MS" => ban_default: parse_millis;
    "adaptive.ban_max_ms", "BAN_MAX_MS" => ban_max: parse_millis;
    "breaker.consecutive_failures", "BREAKER_FAILURES" => consecutive_failures: parse_u32;
    "breaker.failure_rate", "BREAKER_FAILURE_RATE" => failure_rate_ppm: parse_share_ppm;
    "breaker.window", "BREAKER_WINDOW" => window: parse_u8;
    "breaker.minimum_calls", "BREAKER_MINIMUM_CALLS" => minimum_calls: parse_u8;
    "breaker.open_wait_ms", "BREAKER_OPEN_WAIT_MS" => open_wait: parse_millis;
    "breaker.open_wait_max_ms", "BREAKER_OPEN_WAIT_MAX_MS" => open_wait_max: parse_millis;
    "breaker.open_wait_multiplier", "BREAKER_OPEN_WAIT_MULTIPLIER" => open_wait_multiplier: parse_u32;
    "breaker.half_open_probes", "BREAKER_HALF_OPEN_PROBES" => half_open_probes: parse_u32;
    "breaker.half_open_successes", "BREAKER_HALF_OPEN_SUCCESSES" => half_open_successes: parse_u32;
    "breaker.half_open_max_wait_ms", "BREAKER_HALF_OPEN_MAX_WAIT_MS" => half_open_max_wait: parse_millis;
}

pub(crate) fn group_field_by_file(key: &str) -> Option<&'static GroupField> {
    GROUP_FIELDS.iter().find(|f| f.file == key)
}

pub(crate) fn group_field_by_env(suffix: &str) -> Option<&'static GroupField> {
    GROUP_FIELDS.iter().find(|f| f.env == suffix)
}

/// A setting of the `[health]` table / `UPBIT_RATE_LIMIT_HEALTH_*`, or of
/// `[emergency]` / `UPBIT_RATE_LIMIT_EMERGENCY_*`, applied directly.
pub(crate) struct SimpleField<T: 'static> {
    pub file: &'static str,
    pub env: &'static str,
    pub store: fn(&mut T, Raw<'_, '_>) -> Result<(), Problem>,
}

macro_rules! simple_fields {
    ($name:ident: $ty:ty { $($file:literal, $env:literal => $slot:ident: $parse:ident;)* }) => {
        pub(crate) const $name: &[SimpleField<$ty>] = &[$(
            SimpleField {
                file: $file,
                env: $env,
                store: |t, raw| {
                    t.$slot = $parse(raw)?;
                    Ok(())
                },
            },
        )*];
    };
}

simple_fields!(HEALTH_FIELDS: Thresholds {
    "max_consecutive_429", "MAX_CONSECUTIVE_429" => max_consecutive_429: parse_u32;
    "max_queue_depth", "MAX_QUEUE_DEPTH" => max_queue_depth: parse_usize;
    "max_stalled_waiters", "MAX_STALLED_WAITERS" => max_stalled_waiters: parse_usize;
    "stall_grace_ms", "STALL_GRACE_MS" => stall_grace: parse_millis;
    "max_wait_p95_ms", "MAX_WAIT_P95_MS" => max_wait_p95: parse_millis;
    "max_utilisation", "MAX_UTILISATION" => max_utilisation: parse_non_negative;
    "max_tat_drift", "MAX_TAT_DRIFT" => max_tat_drift: parse_non_negative;
    "max_round_trips_over_margin", "MAX_ROUND_TRIPS_OVER_MARGIN" => max_round_trips_over_margin: parse_u32;
    "max_reserve", "MAX_RESERVE" => max_reserve: parse_u32;
    "window_ms", "WINDOW_MS" => window: parse_positive_millis;
});

simple_fields!(EMERGENCY_FIELDS: crate::control::EmergencySettings {
    "recovery_delay_ms", "RECOVERY_DELAY_MS" => recovery_delay: parse_positive_millis;
});

/// The `[shared]` table / `UPBIT_RATE_LIMIT_SHARED_*`: where a budget shared
/// by several processes lives. Unset fields keep
/// [`SharedConfig::new`](upbit_limiter_redis::SharedConfig::new)'s defaults.
#[cfg(feature = "redis")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SharedLayer {
    pub url: Option<String>,
    pub key_prefix: Option<String>,
    pub pocket_id: Option<String>,
    pub ip_id: Option<String>,
    pub store_timeout: Option<Duration>,
    pub store_retry: Option<Duration>,
    pub report_poll: Option<Duration>,
    pub failure_mode: Option<upbit_limiter_redis::FailureMode>,
}

#[cfg(feature = "redis")]
fn some_text(raw: Raw<'_, '_>) -> Result<Option<String>, Problem> {
    Ok(Some(raw.text("a string")?.to_owned()))
}

#[cfg(feature = "redis")]
fn some_positive_millis(raw: Raw<'_, '_>) -> Result<Option<Duration>, Problem> {
    parse_positive_millis(raw).map(Some)
}

#[cfg(feature = "redis")]
fn some_failure_mode(raw: Raw<'_, '_>) -> Result<Option<upbit_limiter_redis::FailureMode>, Problem> {
    const WHAT: &str = "\"closed\" (a store that cannot decide refuses)";
    let text = raw.text(WHAT)?;
    text.parse().map(Some).map_err(|_| raw.expected(WHAT))
}

#[cfg(feature = "redis")]
simple_fields!(SHARED_FIELDS: SharedLayer {
    "url", "URL" => url: some_text;
    "key_prefix", "KEY_PREFIX" => key_prefix: some_text;
    "pocket_id", "POCKET_ID" => pocket_id: some_text;
    "ip_id", "IP_ID" => ip_id: some_text;
    "timeout_ms", "TIMEOUT_MS" => store_timeout: some_positive_millis;
    "retry_ms", "RETRY_MS" => store_retry: some_positive_millis;
    "report_poll_ms", "REPORT_POLL_MS" => report_poll: some_positive_millis;
    "failure_mode", "FAILURE_MODE" => failure_mode: some_failure_mode;
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_syntax() {
        assert_eq!(parse_one_limit("10/1s"), Some(ServerLimit::per_second(10)));
        assert_eq!(
            parse_one_limit(" 1 / 2s "),
            Some(ServerLimit::new(1, Duration::from_secs(2)))
        );
        assert_eq!(
            parse_one_limit("100/1m"),
            Some(ServerLimit::new(100, Duration::from_secs(60)))
        );
        assert_eq!(
            parse_one_limit("8/1000ms"),
            Some(ServerLimit::new(8, Duration::from_millis(1000)))
        );
        for bad in [
            "", "10", "10/", "/1s", "0/1s", "10/0s", "10/1", "10/1x", "-1/1s", "10/1.5s",
        ] {
            assert_eq!(parse_one_limit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_group_field_has_unique_names() {
        for (i, a) in GROUP_FIELDS.iter().enumerate() {
            for b in &GROUP_FIELDS[i + 1..] {
                assert_ne!(a.file, b.file);
                assert_ne!(a.env, b.env);
            }
        }
    }

    #[test]
    fn env_booleans() {
        for t in ["1", "true", "TRUE", " yes ", "on"] {
            assert_eq!(parse_bool(Raw::Env(t)), Ok(true), "{t}");
        }
        for f in ["0", "false", "No", "off"] {
            assert_eq!(parse_bool(Raw::Env(f)), Ok(false), "{f}");
        }
        assert!(parse_bool(Raw::Env("maybe")).is_err());
    }
}
