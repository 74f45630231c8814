//! What Stampede's processes share: the plan, the measurement definitions and the wire contract.
//!
//! - [`plan`]: the test plan's schema, its parsing with file/line/field errors, and its expansion
//!   into the steps that agents run.
//! - [`units`]: durations and percentages as written in plans and flags.
//! - [`workload`]: `[workload]` as written (request classes, length distributions, templates,
//!   datasets) and resolved into the [`workload::WorkloadSpec`] that agents build prompts from.
//! - [`timeline`]: one request's instants and the metrics derived from them (DESIGN.md's table).
//! - [`metrics`]: the histogram bundle (record, merge, V2 encode) and counters that add up.
//! - [`error_sample`]: the first server message of each error class, redacted for display.
//! - [`schedule`]: arrival processes as pure functions of a seed and an index.
//! - [`stage`]: a `[[stage]]`'s schema, checks and expansion into steps; [`probe`]: the
//!   capacity search and limit tests as pure state machines; [`trace`]: trace files for replay.
//! - [`server_metrics`]: servers' Prometheus series mapped to common names.
//! - [`proto`]: the generated gRPC code for `proto/stampede.proto`.
//! - [`handshake`]: protocol version and the line a child process prints when it listens.
//! - [`remote`]: what makes an agent safe on a network: the shared token and the target
//!   allow-list.

pub mod error_sample;
pub mod handshake;
pub mod metrics;
pub mod plan;
pub mod probe;
#[cfg(feature = "wire")]
pub mod proto;
pub mod remote;
pub mod schedule;
pub mod server_metrics;
#[cfg(feature = "wire")]
pub mod timeline;
pub mod trace;
pub mod units;
pub mod workload;

/// `crate::stage` as before the stage code moved under the plan.
pub use plan::stage;
