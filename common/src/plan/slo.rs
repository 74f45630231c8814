//! SLO thresholds: `[slo]` entries (`e2e_p99 = "1500ms"`, `error_rate = "1%"`) resolved into
//! [`SloCheck`]s.

use serde::{Deserialize, Serialize};

use crate::metrics::METRIC_NAMES;
use crate::units::{parse_duration, parse_fraction};

/// Which way a threshold points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The measured value must be at most the limit.
    AtMost,
    /// The measured value must be at least the limit.
    AtLeast,
}

/// One SLO threshold, resolved: a metric name as summary.json spells it, a limit and a bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloCheck {
    /// As written in the plan, such as `e2e_p99` or `error_rate`.
    pub name: String,
    /// Milliseconds for latencies, a fraction for rates.
    pub limit: f64,
    pub bound: Bound,
}

/// Throughput thresholds, in requests per second, that must be reached.
pub const THROUGHPUT_SLOS: [&str; 2] = ["goodput_qps", "throughput_rps"];
/// Rate thresholds and what they measure.
pub const RATE_SLOS: [&str; 5] = [
    "error_rate",
    "timeout_rate",
    "abnormal_rate",
    "drop_rate",
    "goodput_ratio",
];
/// Statistics a latency threshold may name.
pub const STATS: [&str; 7] = ["mean", "p50", "p90", "p95", "p99", "p999", "max"];

/// Resolves one `[slo]` entry, or says what is wrong with it.
pub(crate) fn parse_slo(name: &str, value: &toml::Value) -> Result<SloCheck, String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Integer(i) => i.to_string(),
        other => {
            return Err(format!(
                "expected a string such as \"1500ms\" or \"1%\", got {other}"
            ));
        }
    };
    if THROUGHPUT_SLOS.contains(&name) {
        let limit: f64 = text.trim().parse().map_err(|_| {
            format!("expected a number of requests per second, such as 10, got {text:?}")
        })?;
        if !(limit.is_finite() && limit >= 0.0) {
            return Err(format!("expected a rate of 0 or more, got {limit}"));
        }
        return Ok(SloCheck {
            name: name.to_string(),
            limit,
            bound: Bound::AtLeast,
        });
    }
    if RATE_SLOS.contains(&name) {
        let limit = parse_fraction(&text).map_err(|e| e.to_string())?;
        let bound = if name == "goodput_ratio" {
            Bound::AtLeast
        } else {
            Bound::AtMost
        };
        return Ok(SloCheck {
            name: name.to_string(),
            limit,
            bound,
        });
    }
    let known = || {
        format!(
            "unknown SLO metric {name:?}: expected <metric>_<stat> with metric one of {} and stat one of {}, or one of {}, {}",
            METRIC_NAMES.join(", "),
            STATS.join(", "),
            RATE_SLOS.join(", "),
            THROUGHPUT_SLOS.join(", ")
        )
    };
    let (metric, stat) = name.rsplit_once('_').ok_or_else(known)?;
    if !METRIC_NAMES.contains(&metric) || !STATS.contains(&stat) {
        return Err(known());
    }
    let limit = parse_duration(&text).map_err(|e| e.to_string())?;
    Ok(SloCheck {
        name: name.to_string(),
        limit: limit.as_secs_f64() * 1000.0,
        bound: Bound::AtMost,
    })
}
