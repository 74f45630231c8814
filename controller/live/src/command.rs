//! Rate commands: one grammar for every way a running step's rate is changed (typed on the
//! controller's standard input, pressed on the dashboard, sent by `controller set-qps` or by the
//! web page), and their form on the wire.
//!
//! The grammar: `+` and `-` (ten percent up or down), `N` or `qps N` (requests/s), `xF` or
//! `scale F` (F times the step's planned rate), `pause` (or `p`) and `resume`.

use std::str::FromStr;

use stampede_common::proto::{RateChange, RateReply, rate_change::Change};
use tokio::sync::oneshot;

/// A change of the offered rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateCommand {
    /// This many requests/s for the running step.
    Qps(f64),
    /// This factor on the step's planned rate.
    Scale(f64),
    /// The current factor multiplied by this.
    Multiply(f64),
    /// Stop sending until the rate is set again: the factor becomes 0, so the pause is on the
    /// timeline (offered 0) and in summary.json's `rate_changes`.
    Pause,
    /// Send again at the step's planned rate.
    Resume,
}

/// One step of `+` and `-`: ten percent.
pub const NUDGE: f64 = 1.1;

impl RateCommand {
    /// The new factor, given the current one and the step's planned rate (`None`: closed loop).
    pub fn apply(self, current: f64, planned_qps: Option<f64>) -> Option<f64> {
        let next = match self {
            RateCommand::Qps(q) => q / planned_qps?,
            RateCommand::Scale(s) => s,
            RateCommand::Multiply(m) => current * m,
            RateCommand::Pause => return Some(0.0),
            RateCommand::Resume => 1.0,
        };
        (next.is_finite() && next > 0.0 && next <= 1000.0).then_some(next)
    }
}

/// A command with the channel its answer goes back on.
pub type ControlRequest = (RateCommand, oneshot::Sender<Result<RateReply, String>>);

/// What the grammar accepts, for error messages.
pub const USAGE: &str = "expected + or - (ten percent up or down), N or qps N (requests/s), xF or \
     scale F (F times the planned rate), pause or resume";

impl FromStr for RateCommand {
    type Err = String;

    /// Parses a command in the grammar of the module docs.
    ///
    /// # Errors
    /// Says what is accepted, and what was given.
    fn from_str(line: &str) -> Result<RateCommand, String> {
        let bad = || format!("{USAGE}; got {:?}", line.trim());
        let number = |v: &str| v.parse::<f64>().map_err(|_| bad());
        let mut words = line.split_whitespace();
        let cmd = match (words.next(), words.next(), words.next()) {
            (Some("+"), None, None) => RateCommand::Multiply(NUDGE),
            (Some("-"), None, None) => RateCommand::Multiply(1.0 / NUDGE),
            (Some("pause" | "p"), None, None) => return Ok(RateCommand::Pause),
            (Some("resume"), None, None) => return Ok(RateCommand::Resume),
            (Some("qps"), Some(v), None) => RateCommand::Qps(number(v)?),
            (Some("scale"), Some(v), None) => RateCommand::Scale(number(v)?),
            (Some(w), None, None) => match w.strip_prefix('x') {
                Some(f) => RateCommand::Scale(number(f)?),
                None => RateCommand::Qps(number(w)?),
            },
            _ => return Err(bad()),
        };
        let value = match cmd {
            RateCommand::Qps(v) | RateCommand::Scale(v) | RateCommand::Multiply(v) => v,
            RateCommand::Pause | RateCommand::Resume => 1.0,
        };
        if !(value.is_finite() && value > 0.0) {
            return Err(format!("the value must be above 0; {}", bad()));
        }
        Ok(cmd)
    }
}

impl From<RateCommand> for RateChange {
    fn from(cmd: RateCommand) -> RateChange {
        let change = match cmd {
            RateCommand::Qps(q) => Change::Qps(q),
            RateCommand::Scale(s) => Change::Scale(s),
            RateCommand::Multiply(m) => Change::Multiply(m),
            RateCommand::Pause => Change::Pause(true),
            RateCommand::Resume => Change::Pause(false),
        };
        RateChange {
            change: Some(change),
        }
    }
}

impl TryFrom<RateChange> for RateCommand {
    type Error = &'static str;

    fn try_from(change: RateChange) -> Result<RateCommand, &'static str> {
        Ok(match change.change {
            Some(Change::Qps(q)) => RateCommand::Qps(q),
            Some(Change::Scale(s)) => RateCommand::Scale(s),
            Some(Change::Multiply(m)) => RateCommand::Multiply(m),
            Some(Change::Pause(true)) => RateCommand::Pause,
            Some(Change::Pause(false)) => RateCommand::Resume,
            None => return Err("no change given: qps, scale, multiply or pause"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_apply() {
        assert_eq!(
            "+".parse::<RateCommand>().unwrap(),
            RateCommand::Multiply(NUDGE)
        );
        assert_eq!(
            " qps 50 ".parse::<RateCommand>().unwrap(),
            RateCommand::Qps(50.0)
        );
        assert!("qps -1".parse::<RateCommand>().is_err());
        assert!("faster".parse::<RateCommand>().is_err());
        assert_eq!(RateCommand::Qps(50.0).apply(1.0, Some(25.0)), Some(2.0));
        assert_eq!(
            RateCommand::Qps(50.0).apply(1.0, None),
            None,
            "closed loop has no rate"
        );
        assert_eq!(RateCommand::Multiply(2.0).apply(1.5, None), Some(3.0));
        assert_eq!(RateCommand::Scale(0.5).apply(3.0, Some(10.0)), Some(0.5));
        assert_eq!("pause".parse::<RateCommand>().unwrap(), RateCommand::Pause);
        assert_eq!(RateCommand::Pause.apply(1.5, Some(10.0)), Some(0.0));
        assert_eq!(
            RateCommand::Multiply(NUDGE).apply(0.0, Some(10.0)),
            None,
            "a paused step does not change by a factor"
        );
        assert_eq!(RateCommand::Resume.apply(0.0, Some(10.0)), Some(1.0));
        assert_eq!(RateCommand::Scale(2.0).apply(0.0, Some(10.0)), Some(2.0));
    }

    #[test]
    fn one_grammar_takes_every_form_and_refuses_the_rest() {
        let table: [(&str, Option<RateCommand>); 16] = [
            ("+", Some(RateCommand::Multiply(NUDGE))),
            ("-", Some(RateCommand::Multiply(1.0 / NUDGE))),
            ("50", Some(RateCommand::Qps(50.0))),
            ("qps 12.5", Some(RateCommand::Qps(12.5))),
            ("x1.5", Some(RateCommand::Scale(1.5))),
            ("scale 1.5", Some(RateCommand::Scale(1.5))),
            ("pause", Some(RateCommand::Pause)),
            ("p", Some(RateCommand::Pause)),
            (" resume ", Some(RateCommand::Resume)),
            ("0", None),
            ("x0", None),
            ("qps", None),
            ("qps 5 6", None),
            ("scale -2", None),
            ("NaN", None),
            ("faster", None),
        ];
        for (text, want) in table {
            assert_eq!(text.parse::<RateCommand>().ok(), want, "{text:?}");
        }
        let err = "faster".parse::<RateCommand>().unwrap_err();
        assert!(err.contains("x1.5") || err.contains("xF"), "{err}");
        assert!(err.contains("\"faster\""), "{err}");
    }

    #[test]
    fn commands_cross_the_wire_unchanged() {
        for cmd in [
            RateCommand::Qps(7.0),
            RateCommand::Scale(0.5),
            RateCommand::Multiply(NUDGE),
            RateCommand::Pause,
            RateCommand::Resume,
        ] {
            assert_eq!(RateCommand::try_from(RateChange::from(cmd)), Ok(cmd));
        }
        assert!(RateCommand::try_from(RateChange { change: None }).is_err());
    }
}
