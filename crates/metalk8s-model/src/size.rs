//! Sizes written the Kubernetes way (`10Gi`, `500M`, `4096`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written in the inventory with an optional Kubernetes quantity suffix:
/// binary (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`) or decimal (`k`, `M`, `G`, `T`, `P`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("a size cannot be empty")]
    Empty,
    #[error("`{0}` is not a number followed by an optional unit")]
    NotANumber(String),
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
    #[error("`{0}` does not fit in 64 bits")]
    TooLarge(String),
    #[error("a size must be greater than zero")]
    Zero,
}

const UNITS: &[(&str, u64)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("k", 1_000),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("", 1),
];

impl ByteSize {
    pub const fn gib(n: u64) -> Self {
        ByteSize(n << 30)
    }

    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(text: &str) -> Result<Self, SizeError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SizeError::Empty);
        }
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        if digits_end == 0 {
            return Err(SizeError::NotANumber(text.to_owned()));
        }
        let (number, unit) = text.split_at(digits_end);
        let multiplier = UNITS
            .iter()
            .find(|(suffix, _)| *suffix == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| SizeError::UnknownUnit(unit.to_owned()))?;
        let number: u64 = number
            .parse()
            .map_err(|_| SizeError::TooLarge(text.to_owned()))?;
        let bytes = number
            .checked_mul(multiplier)
            .ok_or_else(|| SizeError::TooLarge(text.to_owned()))?;
        if bytes == 0 {
            return Err(SizeError::Zero);
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    /// Prints the largest binary unit that divides the size exactly, so that the printed
    /// form parses back to the same number of bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, multiplier) in UNITS[..5].iter().rev() {
            if self.0 >= *multiplier && self.0.is_multiple_of(*multiplier) {
                return write!(f, "{}{}", self.0 / multiplier, suffix);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(0) => Err(serde::de::Error::custom(SizeError::Zero)),
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size: a number of bytes, optionally followed by Ki, Mi, Gi, Ti, Pi, k, M, G, T or P.",
            "type": ["string", "integer"],
            "pattern": "^[0-9]+(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!("10Gi".parse::<ByteSize>().unwrap(), ByteSize(10 << 30));
        assert_eq!("500M".parse::<ByteSize>().unwrap(), ByteSize(500_000_000));
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
    }

    #[test]
    fn refuses_bad_sizes() {
        assert_eq!("".parse::<ByteSize>(), Err(SizeError::Empty));
        assert_eq!(
            "Gi".parse::<ByteSize>(),
            Err(SizeError::NotANumber("Gi".into()))
        );
        assert_eq!(
            "10GB".parse::<ByteSize>(),
            Err(SizeError::UnknownUnit("GB".into()))
        );
        assert_eq!("0Gi".parse::<ByteSize>(), Err(SizeError::Zero));
        assert!(matches!(
            "99999999999Pi".parse::<ByteSize>(),
            Err(SizeError::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn display_round_trips(bytes in 1u64..u64::MAX) {
            let printed = ByteSize(bytes).to_string();
            prop_assert_eq!(printed.parse::<ByteSize>().unwrap(), ByteSize(bytes));
        }

        #[test]
        fn parsing_never_panics(text in ".{0,40}") {
            let _ = text.parse::<ByteSize>();
        }
    }
}
