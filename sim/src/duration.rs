//! Human-readable durations ("50ms", "1.5s", "250us", "2m") for flags and config files.

use std::fmt;
use std::time::Duration;

/// A duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (expected a number and a unit: ns, us, ms, s, m or h, e.g. \"50ms\" or \"1.5s\")"
)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a duration written as a decimal number followed by a unit (`ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h`); a bare `0` is also accepted.
///
/// # Errors
/// Returns [`DurationError`] when the number or the unit is missing or invalid, or the value is
/// negative, not finite or too large.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("missing unit"))?;
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(err("missing number"));
    }
    let value: f64 = number.parse().map_err(|_| err("invalid number"))?;
    let nanos_per_unit = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return Err(err("unknown unit")),
    };
    let nanos = value * nanos_per_unit;
    // u64 nanoseconds cover 584 years; anything beyond is a typo, not a plan.
    if !nanos.is_finite() || nanos < 0.0 || nanos > u64::MAX as f64 {
        return Err(err("out of range"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Formats a duration the way [`parse_duration`] reads it, with the largest unit that keeps
/// the value exact up to three decimals.
#[derive(Debug, Clone, Copy)]
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.as_nanos();
        let units: [(u128, &str); 5] = [
            (3_600_000_000_000, "h"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        if n == 0 {
            return f.write_str("0s");
        }
        for (scale, unit) in units {
            if n >= scale {
                let whole = n / scale;
                let frac = (n % scale) * 1000 / scale;
                return if frac == 0 {
                    write!(f, "{whole}{unit}")
                } else {
                    let s = format!("{whole}.{frac:03}");
                    write!(f, "{}{unit}", s.trim_end_matches('0'))
                };
            }
        }
        write!(f, "{n}ns")
    }
}

/// Serde adapters so config files write durations as strings ("50ms").
pub(crate) mod serde_duration {
    use super::{DisplayDuration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub(crate) fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&DisplayDuration(*v))
    }

    /// The same for `Option<Duration>`.
    pub(crate) mod option {
        use super::super::{DisplayDuration, parse_duration};
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
                .transpose()
        }

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.collect_str(&DisplayDuration(*v)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let table = [
            ("50ms", Duration::from_millis(50)),
            ("1.5s", Duration::from_millis(1500)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("40ns", Duration::from_nanos(40)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0", Duration::ZERO),
            (" 7s ", Duration::from_secs(7)),
        ];
        for (input, want) in table {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        for input in [
            "",
            "ms",
            "5",
            "5 parsecs",
            "-1s",
            "1e400s",
            "1.2.3s",
            "9999999999999h",
        ] {
            assert!(parse_duration(input).is_err(), "{input}");
        }
    }

    #[test]
    fn display_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(50),
            Duration::from_millis(1500),
            Duration::from_micros(250),
            Duration::from_nanos(40),
            Duration::from_secs(7200),
            Duration::from_micros(1234),
        ] {
            let s = DisplayDuration(d).to_string();
            assert_eq!(parse_duration(&s), Ok(d), "{s}");
        }
    }
}
