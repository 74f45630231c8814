//! The report's tables as text cells, shared by the HTML and Markdown printers: steps, SLO
//! verdicts, errors, the run's facts and the headline numbers.

use super::i18n::{Labels, num, pct};
use crate::analysis::capacity::Knee;
use stampede_results::kinds::StepEnd;
use stampede_results::read::{Note, RunData};
use stampede_results::summary::{Analysis, StageSummary};

/// A table: headers, rows of cells, and per row an optional state (`pass`, `fail`) to colour.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// How many leading columns hold text (aligned left); the rest hold numbers.
    pub text_columns: usize,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub states: Vec<Option<&'static str>>,
    /// How many trailing columns hold text (a message after the numbers).
    pub trailing_text: usize,
}

impl Table {
    /// True when column `i` holds text (aligned left).
    pub fn is_text(&self, i: usize) -> bool {
        i < self.text_columns || i + self.trailing_text >= self.headers.len()
    }
}

/// One row per step, and one per request class of a mixed workload under its step.
pub fn steps(run: &RunData, l: &Labels) -> Table {
    let headers = [
        l.col_step,
        l.col_offered,
        l.col_duration,
        l.col_ended,
        l.col_sent,
        l.col_completed_rate,
        l.col_drain,
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "TPOT p50",
        "E2E p50",
        "E2E p99",
        l.col_tokens,
        l.col_goodput,
        l.col_error_pct,
        l.col_slo,
    ];
    let mut t = Table {
        text_columns: 1,
        headers: headers.iter().map(|h| h.to_string()).collect(),
        ..Default::default()
    };
    let ms = |v: f64, count: u64| if count == 0 { "-".to_string() } else { num(v) };
    for s in &run.summary.stages {
        let offered = match (s.offered_qps, s.concurrency) {
            (Some(q), _) => format!("{}/s", num(q)),
            (None, Some(c)) => format!("c={c}"),
            _ => "-".into(),
        };
        let (slo, state) = if s.slo.checks.is_empty() {
            ("-".to_string(), None)
        } else if s.slo.pass {
            (l.pass.to_string(), Some("pass"))
        } else {
            (l.fail.to_string(), Some("fail"))
        };
        let name = if s.warmup {
            format!("{} ({})", s.name, l.warmup)
        } else {
            s.name.clone()
        };
        t.rows.push(vec![
            name,
            offered,
            num(s.duration_s),
            step_end(s, l),
            num(s.achieved_qps),
            num(s.throughput_rps),
            s.drain.completed.to_string(),
            ms(s.ttft_ms.p50, s.ttft_ms.count),
            ms(s.ttft_ms.p99, s.ttft_ms.count),
            ms(s.itl_ms.p50, s.itl_ms.count),
            ms(s.itl_ms.p99, s.itl_ms.count),
            ms(s.tpot_ms.p50, s.tpot_ms.count),
            ms(s.e2e_ms.p50, s.e2e_ms.count),
            ms(s.e2e_ms.p99, s.e2e_ms.count),
            num(s.tokens.output_per_s),
            num(s.goodput_qps),
            num(s.rates.error_rate * 100.0),
            slo,
        ]);
        t.states.push(state);
        // A mixed workload's classes, under their step.
        for c in &s.classes {
            t.rows.push(vec![
                format!("{} · {}", s.name, c.name),
                c.offered_qps
                    .map_or_else(|| "-".to_string(), |q| format!("{}/s", num(q))),
                num(c.duration_s),
                "-".to_string(),
                num(c.achieved_qps),
                num(c.throughput_rps),
                "-".to_string(),
                ms(c.ttft_ms.p50, c.ttft_ms.count),
                ms(c.ttft_ms.p99, c.ttft_ms.count),
                ms(c.itl_ms.p50, c.itl_ms.count),
                ms(c.itl_ms.p99, c.itl_ms.count),
                ms(c.tpot_ms.p50, c.tpot_ms.count),
                ms(c.e2e_ms.p50, c.e2e_ms.count),
                ms(c.e2e_ms.p99, c.e2e_ms.count),
                num(c.tokens.output_per_s),
                num(c.goodput_qps),
                num(c.rates.error_rate * 100.0),
                "-".to_string(),
            ]);
            t.states.push(None);
        }
    }
    t
}

/// How a step ended, in the report's language: a pause with its length, a stop with the time
/// the step ran of its planned length.
pub fn step_end(s: &StageSummary, l: &Labels) -> String {
    let of_planned = || {
        s.planned_duration_s.map_or_else(String::new, |p| {
            format!(" ({}/{} s)", num(s.window_s()), num(p))
        })
    };
    match s.ended {
        StepEnd::Complete => l.end_complete.to_string(),
        StepEnd::Interrupted => format!("{}{}", l.end_interrupted, of_planned()),
        StepEnd::Paused => format!("{} {} s", l.end_paused, num(s.paused_s)),
        StepEnd::RateChanged => l.end_rate_changed.to_string(),
        StepEnd::Aborted => format!("{}{}", l.end_aborted, of_planned()),
    }
}

/// A threshold's value in its unit: rates as percentages, latencies in milliseconds.
fn check_value(name: &str, v: f64) -> String {
    if name.ends_with("_rate") || name.ends_with("_ratio") {
        pct(v)
    } else {
        format!("{} ms", num(v))
    }
}

/// One row per step and threshold.
pub fn slo(run: &RunData, l: &Labels) -> Table {
    let mut t = Table {
        text_columns: 2,
        headers: [
            l.col_step,
            l.col_check,
            l.col_limit,
            l.col_value,
            l.col_verdict,
        ]
        .iter()
        .map(|h| h.to_string())
        .collect(),
        ..Default::default()
    };
    for s in &run.summary.stages {
        for c in &s.slo.checks {
            let bound = match c.bound {
                stampede_common::plan::Bound::AtMost => "≤",
                stampede_common::plan::Bound::AtLeast => "≥",
            };
            t.rows.push(vec![
                s.name.clone(),
                c.name.clone(),
                format!("{bound} {}", check_value(&c.name, c.limit)),
                c.value
                    .map_or_else(|| "-".into(), |v| check_value(&c.name, v)),
                if c.pass { l.pass } else { l.fail }.to_string(),
            ]);
            t.states.push(Some(if c.pass { "pass" } else { "fail" }));
        }
    }
    t
}

/// One row per step and error class, split by HTTP status where the step kept each status's
/// first message: its count, its share of the step's requests and what the server said.
pub fn errors(run: &RunData, l: &Labels) -> Table {
    let mut t = Table {
        text_columns: 2,
        trailing_text: 1,
        headers: [
            l.col_step,
            l.col_class,
            l.col_count,
            l.error_rate,
            l.col_first_message,
        ]
        .iter()
        .map(|h| h.to_string())
        .collect(),
        ..Default::default()
    };
    for s in &run.summary.stages {
        let sent = s.requests.sent.max(1) as f64;
        for (class, n) in s.errors.iter().filter(|(_, n)| **n > 0) {
            let messages: Vec<_> = s
                .error_messages
                .iter()
                .filter(|m| m.class == *class)
                .collect();
            // What no message covers (a summary from before messages were kept, cancellations)
            // keeps its own row.
            let covered: u64 = messages.iter().map(|m| m.count).sum();
            for m in messages {
                t.rows.push(vec![
                    s.name.clone(),
                    m.label(),
                    m.count.to_string(),
                    pct(m.count as f64 / sent),
                    m.message.clone(),
                ]);
                t.states.push(None);
            }
            if covered < *n {
                let rest = n - covered;
                t.rows.push(vec![
                    s.name.clone(),
                    class.clone(),
                    rest.to_string(),
                    pct(rest as f64 / sent),
                    "-".into(),
                ]);
                t.states.push(None);
            }
        }
    }
    t
}

/// The run's facts as (label, value).
pub fn facts(run: &RunData, l: &Labels) -> Vec<(String, String)> {
    let s = &run.summary;
    let target = if s.target.simulator {
        format!("{} ({})", s.target.base_url, l.simulator)
    } else {
        s.target.base_url.clone()
    };
    let agents = s
        .agents
        .iter()
        .map(|a| format!("{} ({} cores)", a.id, a.cores))
        .collect::<Vec<_>>()
        .join(", ");
    let slo = if !run.has_slo() {
        l.no_slo
    } else if s.slo_pass {
        l.pass
    } else {
        l.fail
    };
    vec![
        (l.run.into(), s.plan.clone()),
        (l.target.into(), target),
        (l.model.into(), s.target.model.clone()),
        (l.started.into(), s.started_at.clone()),
        (
            l.finished.into(),
            s.finished_at.clone().unwrap_or_else(|| "-".into()),
        ),
        (l.status.into(), s.status.to_string()),
        (
            l.agents.into(),
            if agents.is_empty() {
                "-".into()
            } else {
                agents
            },
        ),
        (l.version.into(), s.manifest.stampede_version.clone()),
        (l.plan_hash.into(), s.manifest.plan_hash.clone()),
        (l.slo_result.into(), slo.into()),
    ]
}

/// The headline numbers as (label, value).
pub fn headline(
    run: &RunData,
    analysis: &Analysis,
    knees: &[Knee],
    l: &Labels,
) -> Vec<(String, String)> {
    let s = &run.summary;
    let max_qps = match analysis.max_qps_within_slo {
        Some(q) => format!("{} /s", num(q)),
        None if run.has_slo() => l.not_found.into(),
        None => l.no_slo.into(),
    };
    let knee = knees
        .iter()
        .filter(|k| k.first_saturated.is_some())
        .filter_map(|k| {
            k.knee.map(|(_, load)| {
                let unit = if k.closed {
                    format!(" {}", l.users)
                } else {
                    " /s".to_string()
                };
                format!("{}{unit} ({})", num(load), k.stage)
            })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let peak = s
        .stages
        .iter()
        .map(|st| st.tokens.output_per_s)
        .fold(0.0, f64::max);
    let (e2e, err) = s.overall.as_ref().map_or_else(
        || ("-".to_string(), "-".to_string()),
        |o| {
            let e2e = if o.e2e_ms.count > 0 {
                format!("{} ms", num(o.e2e_ms.p99))
            } else {
                "-".into()
            };
            (e2e, pct(o.rates.error_rate))
        },
    );
    vec![
        (l.max_qps_within_slo.into(), max_qps),
        (
            l.knee.into(),
            if knee.is_empty() { "-".into() } else { knee },
        ),
        (l.peak_tokens.into(), num(peak)),
        (l.overall_e2e_p99.into(), e2e),
        (l.error_rate.into(), err),
    ]
}

/// What the folder lacked, in words.
pub fn notes(run: &RunData, l: &Labels) -> Vec<String> {
    run.notes
        .iter()
        .map(|n| match n {
            Note::Missing(f) => format!("{f}: {}", l.note_missing),
            Note::Unreadable { file, detail } => {
                format!("{file}: {} ({detail})", l.note_unreadable)
            }
        })
        .collect()
}
