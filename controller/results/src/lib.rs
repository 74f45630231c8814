//! Stampede's results folder: the one contract between a run and everything that reads it
//! afterwards (the report, `compare`, other tools).
//!
//! - [`summary`]: summary.json, the `stampede.summary/v1` schema, written and read by the same
//!   types.
//! - [`facts`]: what each finding rests on, typed; the report words it.
//! - [`kinds`]: the closed vocabularies: severity, step mode, run status, agent events, share
//!   ends, finding codes.
//! - [`rows`]: the rows of timeseries.csv, requests.csv and stages.csv.
//! - [`alert`]: a line of alerts.jsonl.
//! - [`exit`]: the exit codes a run's verdict maps to.
//! - [`hlog`]: histograms/*.hlog, HdrHistogram interval logs.
//! - [`table`]: a CSV of whatever numeric columns it has (resources.csv).
//! - [`read`]: a results folder read back, for `controller report` and `controller compare`.
//! - [`writer`]: the writer thread that keeps the folder current while a run goes.
//!
//! It links no async runtime and no gRPC code: a report can be built wherever the folder is.

pub mod alert;
pub mod exit;
pub mod facts;
pub mod hlog;
pub mod kinds;
pub mod read;
pub mod rows;
pub mod summary;
pub mod table;
pub mod writer;

pub use self::writer::{ResultsWriter, WriteError, WriterMsg, write_atomic};
