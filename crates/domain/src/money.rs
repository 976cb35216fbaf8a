//! Money as integer micro-units of the platform's currency: never floats.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Add, AddAssign};
use std::str::FromStr;

/// An amount of the platform's currency in millionths (micro-units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

pub const MICROS_PER_UNIT: i64 = 1_000_000;

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn micros(self) -> i64 {
        self.0
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl fmt::Display for Money {
    /// Decimal with six places, e.g. `0.002000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:06}",
            abs / MICROS_PER_UNIT as u64,
            abs % MICROS_PER_UNIT as u64
        )
    }
}

impl FromStr for Money {
    type Err = String;
    /// Parse a non-negative decimal with at most six fractional digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("'{s}' is not an amount: expected a decimal such as 0.002");
        if s.is_empty() || s.starts_with('-') {
            return Err(bad());
        }
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        if frac.len() > 6 {
            return Err(format!(
                "'{s}' has more than six decimal places: prices are kept to the millionth"
            ));
        }
        let int: i64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let frac_val: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().map_err(|_| bad())?
        };
        int.checked_mul(MICROS_PER_UNIT)
            .and_then(|v| v.checked_add(frac_val))
            .map(Money)
            .ok_or_else(|| format!("'{s}' is too large"))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "Amount in the platform's currency as a decimal string with six places",
            ))
            .examples(["0.002000"])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!("0.002".parse::<Money>().unwrap(), Money(2000));
        assert_eq!("1".parse::<Money>().unwrap(), Money(1_000_000));
        assert_eq!(".5".parse::<Money>().unwrap(), Money(500_000));
        assert_eq!(Money(2000).to_string(), "0.002000");
        assert_eq!(Money(12_345_678).to_string(), "12.345678");
        assert!("0.0000001".parse::<Money>().is_err());
        assert!("-1".parse::<Money>().is_err());
        assert!("abc".parse::<Money>().is_err());
        assert!(".".parse::<Money>().is_err());
        assert!("99999999999999999".parse::<Money>().is_err());
    }

    #[test]
    fn sums_do_not_drift() {
        let mut total = Money::ZERO;
        for _ in 0..1000 {
            total += "0.001".parse().unwrap();
        }
        assert_eq!(total.to_string(), "1.000000");
    }
}
