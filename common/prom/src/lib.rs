//! Prometheus' text exposition format 0.0.4, written: the one writer behind the simulator's
//! `/metrics` and the live exporter's (`--metrics-listen`).
//!
//! The model is the format's: an exposition is a list of metric families, each opened once by
//! its `# HELP` and `# TYPE` lines and followed by its samples. A histogram is one family whose
//! samples are cumulative `_bucket` lines (one per upper bound `le`, then `+Inf`), `_sum` and
//! `_count`; [`Exposition::histogram`] writes them from per-bucket counts.
//!
//! - [`exposition`]: [`Exposition`] (families and samples) and [`MetricKind`].
//! - [`histogram`]: [`Buckets`], a histogram's bounds, counts and sum, and its rendering.
//! - [`escape`]: label values and help text escaped as the format wants them.
//!
//! The crate depends on nothing but std, so the simulator can use it without pulling in the
//! rest of Stampede. Reading the format is left to a real parser (`prom_text_format_parser`),
//! which this crate's tests use to check what it writes.

pub mod escape;
pub mod exposition;
pub mod histogram;

pub use escape::{escape_help, escape_label_value};
pub use exposition::{Exposition, MetricKind};
pub use histogram::Buckets;

/// The `Content-Type` of a response carrying this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
