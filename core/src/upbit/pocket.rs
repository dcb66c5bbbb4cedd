//! Pocket names: which pocket (Upbit's main account or one of its
//! sub-accounts) a budget belongs to.

use core::fmt;
use core::num::NonZeroU8;

/// The name of a pocket, as the caller calls it (`main`, `sub-1`,
/// `market-maker`): it labels the pocket's budgets in status, metrics, logs
/// and errors. Upbit counts the exchange groups (and authenticated WebSocket
/// connects) per pocket, so every pocket has a budget of its own.
///
/// At most [`PocketId::CAPACITY`] bytes of ASCII letters, digits, `-`, `_`
/// and `.`; kept inline (`Copy`, no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PocketId {
    bytes: [u8; PocketId::CAPACITY],
    len: NonZeroU8,
}

/// Why a string is not a [`PocketId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PocketIdError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`PocketId::CAPACITY`] bytes.
    TooLong,
    /// The name holds a byte other than an ASCII letter, digit, `-`, `_` or `.`.
    InvalidCharacter,
}

impl fmt::Display for PocketIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "a pocket name must not be empty",
            Self::TooLong => "a pocket name has at most 23 bytes",
            Self::InvalidCharacter => "a pocket name holds only ASCII letters, digits, '-', '_' and '.'",
        })
    }
}

impl core::error::Error for PocketIdError {}

impl PocketId {
    /// The most bytes a name may have.
    pub const CAPACITY: usize = 23;

    /// The name `name`, or why it is not one.
    pub fn new(name: &str) -> Result<Self, PocketIdError> {
        let raw = name.as_bytes();
        if raw.len() > Self::CAPACITY {
            return Err(PocketIdError::TooLong);
        }
        let len = NonZeroU8::new(raw.len() as u8).ok_or(PocketIdError::Empty)?;
        if !raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(PocketIdError::InvalidCharacter);
        }
        let mut bytes = [0; Self::CAPACITY];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(Self { bytes, len })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        core::str::from_utf8(&self.bytes[..usize::from(self.len.get())]).unwrap_or("")
    }
}

impl core::str::FromStr for PocketId {
    type Err = PocketIdError;
    fn from_str(s: &str) -> Result<Self, PocketIdError> {
        Self::new(s)
    }
}

impl fmt::Display for PocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for name in ["main", "sub-1", "market_maker.2", "A", "x".repeat(23).as_str()] {
            let id = PocketId::new(name).unwrap();
            assert_eq!(id.as_str(), name);
            assert_eq!(id.to_string(), name);
            assert_eq!(name.parse::<PocketId>(), Ok(id));
        }
        assert_eq!(PocketId::new(""), Err(PocketIdError::Empty));
        assert_eq!(PocketId::new(&"x".repeat(24)), Err(PocketIdError::TooLong));
        for bad in ["sub 1", "주머니", "a/b", "a\0", "tab\t"] {
            assert_eq!(
                PocketId::new(bad),
                Err(PocketIdError::InvalidCharacter),
                "{bad:?}"
            );
        }
        assert_ne!(PocketId::new("a").unwrap(), PocketId::new("b").unwrap());
        assert_eq!(std::format!("{:?}", PocketId::new("sub-1").unwrap()), "\"sub-1\"");
        // Kept inline, and `Option<PocketId>` costs nothing more.
        assert_eq!(core::mem::size_of::<Option<PocketId>>(), 24);
    }
}
