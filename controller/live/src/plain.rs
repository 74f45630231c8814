//! The live view in plain text, for logs and CI: one line per merged interval, a line per
//! alert, and a table at the end. Generic over `Write`, so what it prints is testable; and
//! [`parse_interval_line`] reads a line back, so a log can be turned into numbers again.

use std::io::Write;

use crate::state::{ErrorSample, LiveEvent, StepDone};
use stampede_results::rows::TimeseriesRow;
use stampede_results::summary::StageSummary;

/// Prints one interval as a compact line. A drain interval (after the step's window) says
/// what finished in it and over how long: its fraction of a second is no rate.
///
/// # Errors
/// When the writer fails.
pub fn interval_line(out: &mut impl Write, row: &TimeseriesRow) -> std::io::Result<()> {
    if row.drain {
        return writeln!(
            out,
            "[{:>7.1}s] {:<24} drain {:.2}s: done {} err {} timeout {} in-flight {} | ttft p99 {:.1} ms | e2e p99 {:.1} ms",
            row.elapsed_s,
            row.step,
            row.interval_s,
            row.completed,
            row.failed,
            row.timeouts,
            row.in_flight,
            row.ttft_p99_ms,
            row.e2e_p99_ms,
        );
    }
    let offered = row
        .offered_qps
        .map_or_else(|| "closed".to_string(), |q| format!("{q:.1}/s"));
    // Resources, when sampled: the busiest agent's CPU, the GPUs, and the guard's mark.
    let pct = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}%"));
    let resources = if row.client_cpu_pct.is_some() || row.gpu_util_pct.is_some() {
        format!(
            " | cpu {} gpu {}{}",
            pct(row.client_cpu_pct),
            pct(row.gpu_util_pct),
            if row.client_bound {
                " CLIENT-BOUND"
            } else {
                ""
            }
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "[{:>7.1}s] {:<24} offered {:>8} sent {:>7.1}/s done {:>7.1}/s in-flight {:>4} | ttft p50 {:>7.1} p99 {:>7.1} ms | itl p50 {:>6.1} p99 {:>6.1} ms | e2e p99 {:>8.1} ms | {:>8.0} tok/s | err {} timeout {} dropped {}{}",
        row.elapsed_s,
        row.step,
        offered,
        row.achieved_qps,
        row.completed_rps,
        row.in_flight,
        row.ttft_p50_ms,
        row.ttft_p99_ms,
        row.itl_p50_ms,
        row.itl_p99_ms,
        row.e2e_p99_ms,
        row.output_tokens_per_s,
        row.failed,
        row.timeouts,
        row.dropped,
        resources,
    )
}

/// Prints the final table, one row per step; a step that did not run as planned says how it
/// ended and how long it ran, and one with a drain says what finished in it.
///
/// # Errors
/// When the writer fails.
pub fn final_table(out: &mut impl Write, stages: &[StageSummary]) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{:<28} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>7} {:>5}",
        "step",
        "offered",
        "achieved",
        "ttft p50",
        "ttft p99",
        "itl p50",
        "itl p99",
        "e2e p99",
        "tok/s",
        "err%",
        "slo"
    )?;
    for s in stages {
        let offered = offered_label(s.offered_qps, s.concurrency);
        writeln!(
            out,
            "{:<28} {:>8} {:>8.1} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>9.1} {:>9.0} {:>7.2} {:>5}",
            truncate(&s.name, 28),
            offered,
            s.achieved_qps,
            s.ttft_ms.p50,
            s.ttft_ms.p99,
            s.itl_ms.p50,
            s.itl_ms.p99,
            s.e2e_ms.p99,
            s.tokens.output_per_s,
            s.rates.error_rate * 100.0,
            if s.slo.checks.is_empty() {
                "-"
            } else if s.slo.pass {
                "pass"
            } else {
                "FAIL"
            },
        )?;
        if !s.ran_as_planned() {
            let planned = s
                .planned_duration_s
                .map_or_else(String::new, |p| format!(" of {p:.1}s planned"));
            writeln!(
                out,
                "  {}: ran {:.1}s{planned}, rates over that",
                s.ended.label(s.paused_s),
                s.duration_s
            )?;
        }
    }
    Ok(())
}

/// The figures of an interval line, as [`interval_line`] printed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalFigures {
    pub elapsed_s: f64,
    pub step: String,
    /// `None` for a closed loop.
    pub offered_qps: Option<f64>,
    pub sent_qps: f64,
    pub done_rps: f64,
    pub in_flight: u64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p99_ms: f64,
    pub e2e_p99_ms: f64,
    pub output_tokens_per_s: f64,
    pub failed: u64,
    pub timeouts: u64,
    pub dropped: u64,
    pub client_bound: bool,
    pub paused: bool,
}

/// Reads back a line printed by [`interval_line`]; `None` for any other line.
pub fn parse_interval_line(line: &str) -> Option<IntervalFigures> {
    let rest = line.trim_end().strip_prefix('[')?;
    let (elapsed, rest) = rest.split_once("s] ")?;
    let (step, rest) = rest.rsplit_once(" offered ")?;
    let mut f = IntervalFigures {
        elapsed_s: elapsed.trim().parse().ok()?,
        step: step.trim_end().to_string(),
        client_bound: rest.contains("CLIENT-BOUND"),
        paused: rest.contains("PAUSED"),
        ..Default::default()
    };
    let rate = |t: &str| t.strip_suffix("/s").and_then(|v| v.parse::<f64>().ok());
    let words: Vec<&str> = rest.split_whitespace().collect();
    f.offered_qps = match *words.first()? {
        "closed" => None,
        w => Some(rate(w)?),
    };
    let mut section = "";
    let mut seen = 0;
    let mut i = 1;
    while i + 1 < words.len() {
        let (key, value) = (words[i], words[i + 1]);
        let num = value.parse::<f64>().ok();
        let count = value.parse::<u64>().ok();
        let hit = match (section, key) {
            (_, "ttft" | "itl" | "e2e") => {
                section = key;
                i += 1;
                continue;
            }
            (_, "sent") => rate(value).map(|v| f.sent_qps = v),
            (_, "done") => rate(value).map(|v| f.done_rps = v),
            (_, "in-flight") => count.map(|v| f.in_flight = v),
            ("ttft", "p50") => num.map(|v| f.ttft_p50_ms = v),
            ("ttft", "p99") => num.map(|v| f.ttft_p99_ms = v),
            ("itl", "p50") => num.map(|v| f.itl_p50_ms = v),
            ("itl", "p99") => num.map(|v| f.itl_p99_ms = v),
            ("e2e", "p99") => num.map(|v| f.e2e_p99_ms = v),
            (_, "err") => count.map(|v| f.failed = v),
            (_, "timeout") => count.map(|v| f.timeouts = v),
            (_, "dropped") => count.map(|v| f.dropped = v),
            (_, _) if value == "tok/s" => num_of(key).map(|v| f.output_tokens_per_s = v),
            _ => None,
        };
        if hit.is_some() {
            seen += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    // Every figure of the line was found.
    (seen == 12).then_some(f)
}

fn num_of(s: &str) -> Option<f64> {
    s.parse().ok()
}

/// What `controller watch --plain` prints for one event (nothing for some).
pub fn event_lines(ev: &LiveEvent) -> Vec<String> {
    match ev {
        LiveEvent::Run(r) => vec![format!(
            "watching {} against {} ({}) with {} agent(s); results {}",
            r.plan,
            r.target,
            r.model,
            r.agents.len(),
            r.results_dir
        )],
        LiveEvent::StepStarted(s) => {
            let load = match (s.offered_qps, s.concurrency) {
                (Some(q), _) => format!("{q:.1} requests/s"),
                (None, Some(c)) => format!("{c} users"),
                _ => "-".into(),
            };
            vec![format!(
                "step {} started at {:.1}s: {load} for {:.1}s{}",
                s.name,
                s.start_s,
                s.duration_s,
                if s.warmup { " (warm-up)" } else { "" }
            )]
        }
        LiveEvent::Interval(iv) => {
            let mut line = Vec::new();
            if interval_line(&mut line, &iv.row).is_err() {
                return Vec::new();
            }
            let mut text = String::from_utf8_lossy(&line).trim_end().to_string();
            if iv.paused {
                text.push_str(" PAUSED");
            }
            vec![text]
        }
        LiveEvent::StepFinished(d) => {
            let mut lines = vec![format!(
                "step {} finished: achieved {:.1}/s, ttft p99 {:.1} ms, e2e p99 {:.1} ms, {:.0} tok/s, errors {:.2}%, slo {}",
                d.name,
                d.achieved_qps,
                d.ttft_p99_ms,
                d.e2e_p99_ms,
                d.output_tokens_per_s,
                d.error_rate * 100.0,
                slo_word(d.slo_pass)
            )];
            lines.extend(error_message_lines(&d.name, &d.error_messages));
            lines
        }
        LiveEvent::Alert(a) => vec![a.line()],
        LiveEvent::Rate(r) => vec![if r.scale == 0.0 {
            format!("rate: {} paused", r.step)
        } else {
            format!(
                "rate: {} now {:.2}x its plan ({:.2} requests/s)",
                r.step, r.scale, r.qps
            )
        }],
        LiveEvent::Note(_) => Vec::new(),
        LiveEvent::Ended(status) => vec![format!("run {status}")],
        LiveEvent::Missed(n) => vec![format!(
            "warning: this watcher fell behind and missed {n} update(s)"
        )],
    }
}

/// One line per error class and status of a step: how many failed so and the first message,
/// the most frequent first, as the console and `controller watch --plain` print them.
pub fn error_message_lines(step: &str, messages: &[ErrorSample]) -> Vec<String> {
    let mut sorted: Vec<&ErrorSample> = messages.iter().collect();
    sorted.sort_by(|a, b| b.count.cmp(&a.count).then(a.label().cmp(&b.label())));
    sorted
        .into_iter()
        .map(|m| {
            let requests = if m.count == 1 { "request" } else { "requests" };
            format!(
                "  {step}: {} {requests} failed with {}: {}",
                m.count,
                m.label(),
                m.message
            )
        })
        .collect()
}

fn slo_word(pass: Option<bool>) -> &'static str {
    match pass {
        None => "-",
        Some(true) => "pass",
        Some(false) => "FAIL",
    }
}

/// The final table of a watcher: one row per step it saw end.
///
/// # Errors
/// When the writer fails.
pub fn steps_table<'a>(
    out: &mut impl Write,
    steps: impl IntoIterator<Item = &'a StepDone>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{:<28} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7} {:>5}",
        "step", "offered", "achieved", "ttft p99", "e2e p99", "tok/s", "err%", "slo"
    )?;
    for s in steps {
        let offered = offered_label(s.offered_qps, s.concurrency);
        writeln!(
            out,
            "{:<28} {:>8} {:>8.1} {:>9.1} {:>9.1} {:>9.0} {:>7.2} {:>5}",
            truncate(&s.name, 28),
            offered,
            s.achieved_qps,
            s.ttft_p99_ms,
            s.e2e_p99_ms,
            s.output_tokens_per_s,
            s.error_rate * 100.0,
            slo_word(s.slo_pass)
        )?;
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['~']).collect()
    }
}

/// A step's load for the tables: its rate, `c=N` users for closed loop, or `-`.
fn offered_label(qps: Option<f64>, concurrency: Option<u32>) -> String {
    match (qps, concurrency) {
        (Some(q), _) => format!("{q:.1}"),
        (None, Some(c)) => format!("c={c}"),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_line_holds_its_figures() {
        let row = TimeseriesRow {
            elapsed_s: 12.0,
            step: "steps/qps=50".into(),
            interval: 3,
            interval_s: 1.0,
            offered_qps: Some(50.0),
            achieved_qps: 49.0,
            completed_rps: 48.0,
            in_flight: 7,
            ttft_p50_ms: 51.2,
            ttft_p99_ms: 60.1,
            ttft_corrected_p99_ms: 61.0,
            itl_p50_ms: 10.0,
            itl_p99_ms: 10.4,
            e2e_p50_ms: 300.0,
            e2e_p99_ms: 1234.5,
            schedule_lag_p99_ms: 0.2,
            output_tokens_per_s: 1500.0,
            completed: 48,
            failed: 2,
            timeouts: 1,
            dropped: 0,
            recorder_overflow: 0,
            client_cpu_pct: Some(12.4),
            gpu_util_pct: Some(87.0),
            ..Default::default()
        };
        let mut out = Vec::new();
        interval_line(&mut out, &row).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with("| cpu 12% gpu 87%\n"), "{line}");
        for part in [
            "12.0s",
            "steps/qps=50",
            "50.0/s",
            "49.0/s",
            "51.2",
            "1234.5",
            "err 2",
            "timeout 1",
        ] {
            assert!(line.contains(part), "{part} missing from {line}");
        }
        assert_eq!(line.lines().count(), 1);
    }

    /// 13 answers in a 0.2 s drain are shown as that, not as 65 requests/s.
    #[test]
    fn a_drain_interval_shows_its_count_and_length_not_a_rate() {
        let row = TimeseriesRow {
            elapsed_s: 20.2,
            step: "steps/qps=16".into(),
            interval_s: 0.2,
            offered_qps: Some(16.0),
            completed_rps: 65.0,
            completed: 13,
            drain: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        interval_line(&mut out, &row).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains("drain 0.20s: done 13 "), "{line}");
        assert!(!line.contains("/s"), "{line}");
        assert_eq!(parse_interval_line(&line), None);
    }

    #[test]
    fn an_interval_line_parses_back() {
        let row = TimeseriesRow {
            elapsed_s: 3.0,
            step: "steps/qps=50 (second try)".into(),
            offered_qps: Some(50.0),
            achieved_qps: 49.5,
            completed_rps: 48.25,
            in_flight: 12,
            ttft_p50_ms: 51.2,
            ttft_p99_ms: 60.1,
            itl_p50_ms: 10.0,
            itl_p99_ms: 10.4,
            e2e_p99_ms: 1234.5,
            output_tokens_per_s: 1500.4,
            failed: 2,
            timeouts: 1,
            dropped: 7,
            client_cpu_pct: Some(95.0),
            client_bound: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        interval_line(&mut out, &row).unwrap();
        let f = parse_interval_line(&String::from_utf8(out).unwrap()).unwrap();
        assert_eq!(
            f,
            IntervalFigures {
                elapsed_s: 3.0,
                step: "steps/qps=50 (second try)".into(),
                offered_qps: Some(50.0),
                sent_qps: 49.5,
                done_rps: 48.2,
                in_flight: 12,
                ttft_p50_ms: 51.2,
                ttft_p99_ms: 60.1,
                itl_p50_ms: 10.0,
                itl_p99_ms: 10.4,
                e2e_p99_ms: 1234.5,
                output_tokens_per_s: 1500.0,
                failed: 2,
                timeouts: 1,
                dropped: 7,
                client_bound: true,
                paused: false,
            }
        );
        let closed = TimeseriesRow {
            step: "c".into(),
            ..Default::default()
        };
        let mut out = Vec::new();
        interval_line(&mut out, &closed).unwrap();
        let line = String::from_utf8(out).unwrap();
        let f = parse_interval_line(&format!("{} PAUSED", line.trim_end())).unwrap();
        assert_eq!((f.offered_qps, f.paused), (None, true));
        assert_eq!(parse_interval_line("target http://x model m"), None);
        assert_eq!(parse_interval_line("[    1.0s] s offered 1.0/s sent"), None);
    }
}
