//! Human-readable durations ("50ms", "1.5s", "250us", "2m", "1m30s") for flags and config files:
//! parsed by `stampede-text`'s grammar, displayed and (de)serialized here.

use std::fmt;
use std::time::Duration;

/// The workspace's one duration grammar (`"50ms"`, `"1.5s"`, `"1m30s"`, `"0"`), the same a plan's
/// stages use, so a plan's `[target.sim]` reads as the rest of the plan.
pub use stampede_text::{UnitError, parse_duration};

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
