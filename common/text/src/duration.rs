//! Durations as people write them: one or more `<number><unit>` parts (`"1h30m"`, `"1.5s"`,
//! `"250us"`), or a bare `"0"`.

use std::time::Duration;

use crate::UnitError;

const DURATION_EXPECTED: &str =
    "a duration such as \"250us\", \"1500ms\", \"30s\", \"5m\", \"2h\" or \"1h30m\"";

/// Nanoseconds in one of a unit, by its name.
fn nanos_per(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "d" => 86_400e9,
        _ => return None,
    })
}

/// Parses a duration made of one or more `<number><unit>` parts (`ns`, `us`, `ms`, `s`, `m`,
/// `h`, `d`), such as `"1m30s"` or `"1.5s"`; a bare `"0"` is zero. Spaces around the text,
/// between a number and its unit, and between parts are allowed.
///
/// # Errors
/// When the text is empty, a part has no number or no unit, a unit is unknown, or the total is
/// not finite or beyond what a [`Duration`] of `u64` nanoseconds holds (584 years).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        found: text.to_string(),
        expected: DURATION_EXPECTED,
    };
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut nanos = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if number_end == 0 {
            return Err(err());
        }
        let value: f64 = rest[..number_end].parse().map_err(|_| err())?;
        let after = rest[number_end..].trim_start();
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        nanos += value * nanos_per(&after[..unit_end]).ok_or_else(err)?;
        rest = after[unit_end..].trim_start();
    }
    // u64 nanoseconds cover 584 years; anything beyond is a typo, not a plan.
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Formats a duration the way [`parse_duration`] reads it back, in the largest whole unit
/// (to the microsecond).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_reads_every_unit_and_combination() {
        let ms = Duration::from_millis;
        let table = [
            ("1500ms", ms(1500)),
            ("30s", ms(30_000)),
            ("5m", ms(300_000)),
            ("5min", ms(300_000)),
            ("2h", ms(7_200_000)),
            ("1d", ms(86_400_000)),
            ("1h30m", ms(5_400_000)),
            ("1m30s", ms(90_000)),
            ("1m 30s", ms(90_000)),
            ("1.5s", ms(1500)),
            ("0.5s", ms(500)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7500us", Duration::from_micros(7500)),
            ("40ns", Duration::from_nanos(40)),
            ("1s500ms", ms(1500)),
            ("5 s", ms(5000)),
            (" 7s ", ms(7000)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn bad_durations_say_what_was_expected() {
        let bad = [
            "",
            "5",
            "ms",
            "-5s",
            "-1s",
            "5 parsecs",
            "1.2.3s",
            "s5",
            "1e400s",
            "1h30",
            "9999999999999h",
        ];
        for text in bad {
            let e = parse_duration(text).unwrap_err();
            assert!(e.to_string().contains("duration such as"), "{text}: {e}");
            assert_eq!(e.found, text);
        }
    }

    #[test]
    fn durations_format_back_to_what_parses() {
        for text in ["1h", "5m", "30s", "1500ms", "250us", "0s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
