//! The live view: what a run shows while it goes, locally and to whoever watches.
//!
//! The controller's feed publishes one stream of [`state::LiveEvent`]s to a [`hub::LiveHub`]; each reader
//! takes it at its own pace, so none can slow the run:
//!
//! - [`state`]: the events and the state they fold into ([`state::LiveState`]).
//! - [`command`]: rate commands, one grammar for stdin, the dashboard, `set-qps` and the wire.
//! - [`alerts`]: rolling SLO breach, error-rate spike, timeouts, client saturation, agent lost.
//! - [`hub`]: the channels: a `watch` of the state, a bounded `broadcast` of the events.
//! - [`plain`]: one line per interval and a final table, for logs and CI (`--plain`).
//! - [`tui`]: the terminal dashboard (ratatui), with its keys.
//! - [`watch`]: `controller watch ADDR`, and the Controller service's `Watch` stream.
//! - [`wire`]: events to and from the proto.
//! - [`metrics`]: `--metrics-listen ADDR`: the live stats for Prometheus.

pub mod alerts;
pub mod command;
pub mod hub;
pub mod metrics;
pub mod plain;
pub mod state;
pub mod tui;
pub mod watch;
pub mod wire;

#[cfg(test)]
pub(crate) mod fixture;

pub use self::hub::{LiveHub, NoteSink};
pub use self::plain::{final_table, interval_line};
