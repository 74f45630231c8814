//! The numbers a plan writes, checked as they are read: token counts, rates and users.

use serde::{Deserialize, Deserializer, Serialize};

/// A positive number of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenCount(pub u32);

impl<'de> Deserialize<'de> for TokenCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(v) if (1..=1 << 20).contains(&v) => Ok(TokenCount(v)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a token count between 1 and 1048576, got {n}"
            ))),
        }
    }
}

/// A request rate: positive and finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Qps(pub f64);

impl<'de> Deserialize<'de> for Qps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && v > 0.0 && v <= 1e6 {
            Ok(Qps(v))
        } else {
            Err(serde::de::Error::custom(format!(
                "expected a rate in requests per second, above 0 and at most 1000000, got {v}"
            )))
        }
    }
}

/// A number of concurrent users: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Concurrency(pub u32);

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(v) if (1..=100_000).contains(&v) => Ok(Concurrency(v)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a concurrency between 1 and 100000, got {n}"
            ))),
        }
    }
}
