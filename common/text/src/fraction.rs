//! Fractions written as a percentage (`"1%"`, `"0.5%"`) or a plain number (`0.01`).

use crate::UnitError;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_accept_percentages_and_plain_numbers() {
        let table = [
            ("1%", Some(0.01)),
            ("0.5%", Some(0.005)),
            (" 100% ", Some(1.0)),
            ("0.25", Some(0.25)),
            ("0", Some(0.0)),
            ("101%", None),
            ("-1%", None),
            ("1.5", None),
            ("lots", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_fraction(text).ok(), want, "{text:?}");
        }
        let e = parse_fraction("lots").unwrap_err();
        assert!(e.to_string().contains("a percentage such as"), "{e}");
    }
}
