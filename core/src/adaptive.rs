//! The adaptive rate ratio: 429 / 418 / success / lazy recovery.

use core::fmt;

/// A rate multiplier in `(0, 1]`, fixed point in parts per million.
///
/// The effective emission interval is the quota's interval divided by the ratio,
/// so a ratio below one only ever slows a group down.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Ratio(u32);

/// Why a number is not a [`Ratio`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RatioError {
    /// NaN, zero, negative, or above one.
    OutOfRange,
}

impl fmt::Display for RatioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ratio must be a number in (0, 1]")
    }
}

impl core::error::Error for RatioError {}

impl Ratio {
    /// Parts per million that make one.
    pub const SCALE: u32 = 1_000_000;
    /// Full speed.
    pub const ONE: Self = Self(Self::SCALE);

    /// `ppm` parts per million; `None` unless `1 <= ppm <= 1_000_000`.
    pub const fn from_ppm(ppm: u32) -> Option<Self> {
        if ppm == 0 || ppm > Self::SCALE {
            None
        } else {
            Some(Self(ppm))
        }
    }
    /// From a float in `(0, 1]`.
    pub fn try_from_f64(r: f64) -> Result<Self, RatioError> {
        // NaN fails both comparisons.
        if !(r > 0.0 && r <= 1.0) {
            return Err(RatioError::OutOfRange);
        }
        let ppm = (r * Self::SCALE as f64).round() as u32;
        Self::from_ppm(ppm.max(1)).ok_or(RatioError::OutOfRange)
    }
    /// Parts per million.
    pub const fn ppm(self) -> u32 {
        self.0
    }
    /// As a float (for reports).
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / f64::from(Self::SCALE)
    }
}

impl fmt::Debug for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ratio({})", self.as_f64())
    }
}
