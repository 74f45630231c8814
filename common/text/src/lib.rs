//! The grammar of quantities as people write them in plans, simulator settings and flags, in one
//! place so that `"1m30s"` means the same everywhere and fails with the same words.
//!
//! - [`parse_duration`] / [`format_duration`]: `"250us"`, `"1500ms"`, `"1h30m"`, `"0"`;
//! - [`parse_fraction`]: `"1%"` or `0.01`;
//! - [`UnitError`]: what was found and what was expected;
//! - [`locate`]: the line, column and dotted field of a byte of a TOML text, for errors.
//!
//! No dependency beyond `thiserror`: the simulator and every other crate can use it without
//! pulling in the plan or the wire contract.

mod duration;
mod fraction;
mod location;

pub use duration::{format_duration, parse_duration};
pub use fraction::parse_fraction;
pub use location::{Location, locate};

/// A parse failure of a human-written quantity, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found:?} is not {expected}")]
pub struct UnitError {
    /// The text as written.
    pub found: String,
    /// What the text should look like, with examples.
    pub expected: &'static str,
}
