//! Alerts raised while a run goes: a rolling SLO breach, an error-rate spike, timeouts, client
//! saturation, an agent lost.
//!
//! Each condition is edge-triggered: an alert fires when its condition starts and is resolved
//! when it ends, so a breach that lasts a minute is one alert, not sixty. Both edges are shown
//! live and written to alerts.jsonl; summary.json counts the alerts fired, by kind.

use std::collections::{BTreeMap, BTreeSet};

use stampede_common::plan::Bound;

pub use stampede_results::alert::{Alert, AlertKind, AlertState, Severity};
use stampede_results::rows::TimeseriesRow;
use stampede_results::summary::SloVerdict;

/// An interval is an error spike when at least this many requests failed in it...
pub const SPIKE_MIN_FAILED: u64 = 3;
/// ...and at least this share of the requests that ended in it.
pub const SPIKE_SHARE: f64 = 0.1;

/// What the engine reads of one merged interval.
#[derive(Debug, Clone, Copy)]
pub struct IntervalFacts<'a> {
    pub step: &'a str,
    pub row: &'a TimeseriesRow,
    /// The interval's failed requests by class.
    pub errors: &'a BTreeMap<String, u64>,
    /// The step's thresholds over its last 10 s of merged intervals.
    pub window_slo: &'a SloVerdict,
    /// Requests sent, completed, failed and timed out over the same 10 s.
    pub window_sent: u64,
    pub window_completed: u64,
    pub window_failed: u64,
    pub window_timeouts: u64,
    /// An open-loop step, whose schedule lag tells whether the client kept up.
    pub open_loop: bool,
}

/// Decides which alerts fire and resolve, interval by interval.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    lag_limit_ms: f64,
    active: BTreeMap<String, Alert>,
    /// Agents lost and not back yet.
    lost: BTreeSet<String>,
    counts: BTreeMap<AlertKind, u64>,
}

impl AlertEngine {
    /// An engine whose client-saturation alert fires above `lag_limit_ms` of schedule lag p99
    /// (the monitor's CPU verdict comes with each row).
    pub fn new(lag_limit_ms: f64) -> Self {
        AlertEngine {
            lag_limit_ms,
            active: BTreeMap::new(),
            lost: BTreeSet::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Alerts fired so far, by kind, every kind present.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        AlertKind::ALL
            .into_iter()
            .map(|k| {
                (
                    k.name().to_string(),
                    self.counts.get(&k).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Fires `alert` if its condition was not firing, or resolves it if `firing` is false and
    /// it was.
    fn edge(&mut self, firing: bool, alert: Alert, out: &mut Vec<Alert>) {
        let key = alert.key();
        match (firing, self.active.contains_key(&key)) {
            (true, false) => {
                *self.counts.entry(alert.kind).or_default() += 1;
                self.active.insert(key, alert.clone());
                out.push(alert);
            }
            (false, true) => {
                if let Some(mut old) = self.active.remove(&key) {
                    old.state = AlertState::Resolved;
                    old.elapsed_s = alert.elapsed_s;
                    old.value = alert.value;
                    old.message = alert.message;
                    out.push(old);
                }
            }
            _ => {}
        }
    }

    /// The alerts one merged interval fires or resolves.
    pub fn interval(&mut self, f: &IntervalFacts<'_>) -> Vec<Alert> {
        let mut out = Vec::new();
        let (step, t, row) = (f.step, f.row.elapsed_s, f.row);
        for c in &f.window_slo.checks {
            let is_rate = is_rate(&c.name);
            let has_data = match c.name.as_str() {
                "goodput_ratio" => f.window_completed > 0,
                _ if is_rate => f.window_sent > 0,
                _ => c.value.is_some(),
            };
            let Some(value) = c.value.filter(|_| has_data) else {
                continue;
            };
            let (shown, limit, unit) = if is_rate {
                (value * 100.0, c.limit * 100.0, "%")
            } else {
                (value, c.limit, " ms")
            };
            let word = match c.bound {
                Bound::AtMost => "above",
                Bound::AtLeast => "below",
            };
            let message = if c.pass {
                format!(
                    "{} back within its threshold over the last 10 s: {shown:.1}{unit} (limit {limit:.1}{unit})",
                    c.name
                )
            } else {
                format!(
                    "{} over the last 10 s is {shown:.1}{unit}, {word} the {limit:.1}{unit} threshold",
                    c.name
                )
            };
            let alert = Alert::new(AlertKind::SloBreach, step, t, message).with(
                &c.name,
                Some(shown),
                Some(limit),
            );
            self.edge(!c.pass, alert, &mut out);
        }

        let ended = row.completed + row.failed;
        let share = |failed: u64, ended: u64| {
            if ended == 0 {
                0.0
            } else {
                failed as f64 / ended as f64
            }
        };
        let spike = row.failed >= SPIKE_MIN_FAILED && share(row.failed, ended) >= SPIKE_SHARE;
        let window_ended = f.window_completed + f.window_failed;
        let window_spike = f.window_failed >= SPIKE_MIN_FAILED
            && share(f.window_failed, window_ended) >= SPIKE_SHARE;
        let firing = self
            .active
            .contains_key(&Alert::new(AlertKind::ErrorSpike, step, t, String::new()).key());
        let (pct, message) = if spike || !firing {
            let pct = share(row.failed, ended) * 100.0;
            (
                pct,
                format!(
                    "{} of {ended} requests failed in the interval ({pct:.0}%){}",
                    row.failed,
                    top_errors(f.errors)
                ),
            )
        } else {
            let pct = share(f.window_failed, window_ended) * 100.0;
            (pct, format!("errors back to {pct:.1}% over the last 10 s"))
        };
        let alert = Alert::new(AlertKind::ErrorSpike, step, t, message).with(
            "",
            Some(pct),
            Some(SPIKE_SHARE * 100.0),
        );
        self.edge(spike || (firing && window_spike), alert, &mut out);

        let message = if row.timeouts > 0 {
            format!("{} requests timed out in the interval", row.timeouts)
        } else {
            "no timeout over the last 10 s".to_string()
        };
        let alert = Alert::new(AlertKind::Timeouts, step, t, message).with(
            "",
            Some(row.timeouts as f64),
            None,
        );
        let timeouts_firing = self.active.contains_key(&alert.key());
        self.edge(
            row.timeouts > 0 || (timeouts_firing && f.window_timeouts > 0),
            alert,
            &mut out,
        );

        let lag = row.schedule_lag_p99_ms;
        let lag_bound = f.open_loop && lag > self.lag_limit_ms;
        let saturated = lag_bound || row.client_bound;
        let message = if !saturated {
            format!("the client keeps up again: schedule lag p99 {lag:.1} ms")
        } else if lag_bound {
            format!(
                "requests left {lag:.1} ms late at p99 (limit {:.0} ms): the client sets the pace, results understate the server",
                self.lag_limit_ms
            )
        } else {
            format!(
                "a load agent's CPU is at {:.0}%: the client may set the pace, results may understate the server",
                row.client_cpu_pct.unwrap_or(0.0)
            )
        };
        let (value, limit) = if lag_bound || !row.client_bound {
            (Some(lag), Some(self.lag_limit_ms))
        } else {
            (row.client_cpu_pct, None)
        };
        let alert =
            Alert::new(AlertKind::ClientSaturation, step, t, message).with("", value, limit);
        self.edge(saturated, alert, &mut out);
        out
    }

    /// An agent's share failed: fires once per agent until a later share of it ends well.
    pub fn agent_lost(&mut self, step: &str, agent: &str, why: &str, elapsed_s: f64) -> Vec<Alert> {
        let mut out = Vec::new();
        if self.lost.insert(agent.to_string()) {
            let alert = Alert::new(
                AlertKind::AgentLost,
                "",
                elapsed_s,
                format!("agent {agent} lost during {step}: {why}"),
            )
            .with(agent, None, None);
            self.edge(true, alert, &mut out);
        }
        out
    }

    /// An agent's share ended well: resolves its lost alert, if any.
    pub fn agent_ok(&mut self, step: &str, agent: &str, elapsed_s: f64) -> Vec<Alert> {
        let mut out = Vec::new();
        if self.lost.remove(agent) {
            let alert = Alert::new(
                AlertKind::AgentLost,
                "",
                elapsed_s,
                format!("agent {agent} is back: it ran {step} to its end"),
            )
            .with(agent, None, None);
            self.edge(false, alert, &mut out);
        }
        out
    }

    /// A step ended: its conditions end with it.
    pub fn step_ended(&mut self, step: &str, elapsed_s: f64) -> Vec<Alert> {
        let keys: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| a.step == step)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.active.remove(&k))
            .map(|mut a| {
                a.state = AlertState::Resolved;
                a.elapsed_s = elapsed_s;
                a.message = format!("the step ended ({})", a.kind.name());
                a
            })
            .collect()
    }
}

/// True for thresholds on a rate (a fraction) rather than a latency.
pub fn is_rate(name: &str) -> bool {
    stampede_common::plan::RATE_SLOS.contains(&name)
}

/// `: http_5xx 10, timeout_total 2`: the interval's commonest error classes.
fn top_errors(errors: &BTreeMap<String, u64>) -> String {
    let mut by_count: Vec<(&String, &u64)> = errors.iter().filter(|(_, n)| **n > 0).collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = by_count
        .iter()
        .take(3)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    if top.is_empty() {
        String::new()
    } else {
        format!(": {}", top.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_results::summary::CheckResult;

    fn row(failed: u64, completed: u64, timeouts: u64, lag: f64) -> TimeseriesRow {
        TimeseriesRow {
            elapsed_s: 5.0,
            failed,
            completed,
            timeouts,
            schedule_lag_p99_ms: lag,
            ..Default::default()
        }
    }

    fn verdict(value: f64) -> SloVerdict {
        let pass = value <= 1500.0;
        SloVerdict {
            pass,
            checks: vec![CheckResult {
                name: "e2e_p99".into(),
                limit: 1500.0,
                bound: Bound::AtMost,
                value: Some(value),
                pass,
            }],
        }
    }

    fn facts<'a>(r: &'a TimeseriesRow, slo: &'a SloVerdict) -> IntervalFacts<'a> {
        static NONE: BTreeMap<String, u64> = BTreeMap::new();
        IntervalFacts {
            step: "s",
            row: r,
            errors: &NONE,
            window_slo: slo,
            window_sent: 10 + r.failed,
            window_completed: r.completed,
            window_failed: r.failed,
            window_timeouts: r.timeouts,
            open_loop: true,
        }
    }

    #[test]
    fn a_breach_fires_once_and_resolves_once() {
        let mut e = AlertEngine::new(25.0);
        let r = row(0, 10, 0, 1.0);
        let (bad, good) = (verdict(1800.0), verdict(900.0));
        assert!(e.interval(&facts(&r, &good)).is_empty());
        let fired = e.interval(&facts(&r, &bad));
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].kind, AlertKind::SloBreach);
        assert_eq!(fired[0].subject, "e2e_p99");
        assert!(
            fired[0].message.contains("1800.0 ms, above the 1500.0 ms"),
            "{}",
            fired[0].message
        );
        assert!(e.interval(&facts(&r, &bad)).is_empty(), "still firing");
        let resolved = e.interval(&facts(&r, &good));
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert_eq!(e.counts()["slo_breach"], 1);
        assert_eq!(e.counts()["agent_lost"], 0);
    }

    #[test]
    fn spikes_timeouts_and_saturation_fire() {
        let mut e = AlertEngine::new(25.0);
        let ok = verdict(10.0);
        let r = row(5, 10, 2, 40.0);
        let kinds: Vec<AlertKind> = e.interval(&facts(&r, &ok)).iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [
                AlertKind::ErrorSpike,
                AlertKind::Timeouts,
                AlertKind::ClientSaturation
            ]
        );
        // Two failures of a hundred is no spike.
        let mut e = AlertEngine::new(25.0);
        assert!(e.interval(&facts(&row(2, 100, 0, 1.0), &ok)).is_empty());
        let lost = e.agent_lost("s", "local-1", "stream failed", 3.0);
        assert_eq!(lost.len(), 1);
        assert!(e.agent_lost("t", "local-1", "refused", 4.0).is_empty());
        assert_eq!(
            e.agent_ok("u", "local-1", 5.0)[0].state,
            AlertState::Resolved
        );
        // The step's end resolves what still fires.
        let fired = e.interval(&facts(&row(0, 10, 1, 1.0), &ok));
        assert_eq!(fired.len(), 1);
        assert_eq!(e.step_ended("s", 9.0).len(), 1);
    }
}
