//! Findings checked against each other: the pairs that cannot both be true of one run, and
//! the sentences that would quote a count of zero as news. The analysis is built so none of
//! these happen; the situation tests hold it to that.

use stampede_results::facts::{Facts, LoadUnit};
use stampede_results::summary::Analysis;

/// Every contradiction among the findings of one analysis, in words (empty when consistent).
pub fn contradictions(a: &Analysis) -> Vec<String> {
    let facts: Vec<&Facts> = a.findings.iter().map(|f| &f.facts).collect();
    let mut out = capacity(a, &facts);
    out.extend(knee_verdicts(&facts));
    out.extend(empty_news(&facts));
    out.extend(zero_counts(a));
    out
}

/// The rate to plan for against the SLO's limit, the knee and the headline.
fn capacity(a: &Analysis, facts: &[&Facts]) -> Vec<String> {
    let mut out = Vec::new();
    let max = facts.iter().find_map(|f| match f {
        Facts::MaxQpsWithinSlo(m) => Some(m),
        _ => None,
    });
    let none_within = facts.iter().any(|f| matches!(f, Facts::NoQpsWithinSlo(_)));
    let Some(m) = max else {
        return out;
    };
    if none_within {
        out.push("both a highest rate within the SLO and no rate within it".into());
    }
    if m.plan_qps > m.qps {
        out.push(format!(
            "plans for {} requests/s, above the SLO's limit {}",
            m.plan_qps, m.qps
        ));
    }
    for f in facts {
        if let Facts::Knee(k) = f
            && k.unit == LoadUnit::Qps
            && k.knee < m.qps
            && m.plan_qps > k.knee
        {
            out.push(format!(
                "plans for {} requests/s, above the knee of {} at {}",
                m.plan_qps, k.stage, k.knee
            ));
        }
    }
    if a.max_qps_within_slo != Some(m.qps) {
        out.push(format!(
            "the headline says {:?}, the finding {}",
            a.max_qps_within_slo, m.qps
        ));
    }
    out
}

/// One verdict on the knee per stage: a knee, no knee, or saturated from the start.
fn knee_verdicts(facts: &[&Facts]) -> Vec<String> {
    let stage_of = |f: &Facts| match f {
        Facts::Knee(k) => Some(k.stage.clone()),
        Facts::NoKnee(k) => Some(k.stage.clone()),
        Facts::SaturatedAtLowestLoad(k) => Some(k.stage.clone()),
        _ => None,
    };
    let stages: Vec<String> = facts.iter().filter_map(|f| stage_of(f)).collect();
    let mut out = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        if stages[..i].contains(stage) {
            out.push(format!("{stage} has more than one verdict on its knee"));
        }
    }
    out
}

/// Findings whose facts say nothing happened, or that a clean background was not clean.
fn empty_news(facts: &[&Facts]) -> Vec<String> {
    let all_failed: Vec<&str> = facts
        .iter()
        .filter_map(|f| match f {
            Facts::AllFailed(x) => Some(x.step.as_str()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for f in facts {
        match f {
            Facts::ErrorBurst(b) if !all_failed.is_empty() => out.push(format!(
                "a burst between {} s and {} s in a mostly clean run, but {} failed every request",
                b.from_s,
                b.to_s,
                all_failed.join(", ")
            )),
            Facts::QueueingBound(t) if t.waiting_peak.is_some_and(|w| w <= 0.0) => {
                out.push(format!("{}: queueing-bound on a queue of zero", t.stage))
            }
            Facts::Dropped(d) if d.dropped == 0 => out.push(format!("{}: dropped 0", d.step)),
            Facts::StreamBacklog(b) if b.coalesced_intervals == 0 && b.records_dropped == 0 => {
                out.push(format!("{}: a backlog of nothing", b.step))
            }
            Facts::KvCachePressure(k)
                if k.preemptions < 1.0 && k.kv_cache_peak_pct.is_none_or(|p| p < 90.0) =>
            {
                out.push("KV-cache pressure with neither a full cache nor preemptions".into())
            }
            _ => {}
        }
    }
    out
}

/// A count of zero in a sentence is not news.
fn zero_counts(a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    for f in &a.findings {
        let words: Vec<&str> = f.message.split_whitespace().collect();
        let zero = words.windows(2).any(|w| {
            w[0] == "0" && matches!(w[1], "requests" | "intervals" | "request" | "arrivals")
        });
        if zero {
            out.push(format!("{}: \"{}\"", f.code(), f.message));
        }
    }
    out
}
