//! Durations and percentages as people write them in plans and flags: `"1500ms"`, `"5m"`, `"1%"`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parse failure of a human-written quantity, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found:?} is not {expected}")]
pub struct UnitError {
    pub found: String,
    pub expected: &'static str,
}

const DURATION_EXPECTED: &str =
    "a duration such as \"250us\", \"1500ms\", \"30s\", \"5m\", \"2h\" or \"1h30m\"";

/// Parses a duration made of one or more `<number><unit>` parts (`us`, `ms`, `s`, `m`, `h`, `d`).
///
/// # Errors
/// When the text is empty, has no unit, an unknown unit, or a negative or non-finite number.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        found: text.to_string(),
        expected: DURATION_EXPECTED,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| err())?;
        let after = &rest[num_end..];
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let seconds_per_unit = match &after[..unit_end] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(err()),
        };
        total += value * seconds_per_unit;
        rest = &after[unit_end..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way [`parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        "0s".to_string()
    } else if us.is_multiple_of(3_600_000_000) {
        format!("{}h", us / 3_600_000_000)
    } else if us.is_multiple_of(60_000_000) {
        format!("{}m", us / 60_000_000)
    } else if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// A [`Duration`] that reads and writes as human text in plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// A fraction written as a percentage (`"1%"`, `"0.5%"`) or a plain fraction (`0.01`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Fraction(pub f64);

/// Parses `"1%"` as 0.01 or `"0.01"` as 0.01; the result must lie in 0..=1.
///
/// # Errors
/// When the text is not a number, or lies outside 0%..100%.
pub fn parse_fraction(text: &str) -> Result<f64, UnitError> {
    let err = || UnitError {
        found: text.to_string(),
        expected: "a percentage such as \"1%\" or a fraction between 0 and 1",
    };
    let s = text.trim();
    let value = match s.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map_err(|_| err())? / 100.0,
        None => s.parse::<f64>().map_err(|_| err())?,
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(err());
    }
    Ok(value)
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Number(n) => n.to_string(),
        };
        parse_fraction(&text)
            .map(Fraction)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Fraction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0 * 100.0))
    }
}

/// The wall clock, in microseconds since the Unix epoch (0 if the clock is before it).
/// Read for metadata and cross-host start times only; measurements use the monotonic clock.
pub fn wall_clock_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// An error with its causes, `a: b: c`: HTTP and I/O libraries often say why only in a source.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Microseconds in a duration, saturating at `u64::MAX`.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_every_unit() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1500ms").unwrap(), ms(1500));
        assert_eq!(parse_duration("30s").unwrap(), ms(30_000));
        assert_eq!(parse_duration("5m").unwrap(), ms(300_000));
        assert_eq!(parse_duration("2h").unwrap(), ms(7_200_000));
        assert_eq!(parse_duration("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0.5s").unwrap(), ms(500));
        assert_eq!(parse_duration("1d").unwrap(), ms(86_400_000));
    }

    #[test]
    fn bad_durations_say_what_was_expected() {
        for bad in ["", "5", "ms", "-5s", "5 parsecs", "1.2.3s", "s5"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().contains("duration such as"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_format_back_to_what_parses() {
        for text in ["1h", "5m", "30s", "1500ms", "250us", "0s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn fractions_accept_percentages_and_plain_numbers() {
        assert_eq!(parse_fraction("1%").unwrap(), 0.01);
        assert_eq!(parse_fraction("0.25").unwrap(), 0.25);
        assert!(parse_fraction("101%").is_err());
        assert!(parse_fraction("-1%").is_err());
        assert!(parse_fraction("lots").is_err());
    }
}
