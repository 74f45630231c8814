//! Findings checked against each other: the pairs that cannot both be true of one run, and
//! the sentences that would quote a count of zero as news. The analysis is built so none of
//! these happen; the situation tests hold it to that.

use stampede_results::facts::{Facts, LoadUnit};
use stampede_results::summary::Analysis;

/// Every contradiction among the findings of one analysis, in words (empty when consistent).
/// `words` is each finding's English message, when worded.
pub fn contradictions(a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    let facts: Vec<&Facts> = a.findings.iter().map(|f| &f.facts).collect();
    let any = |pred: &dyn Fn(&Facts) -> bool| facts.iter().any(|f| pred(f));

    let max = facts.iter().find_map(|f| match f {
        Facts::MaxQpsWithinSlo(m) => Some(m),
        _ => None,
    });
    if max.is_some() && any(&|f| matches!(f, Facts::NoQpsWithinSlo(_))) {
        out.push("both a highest rate within the SLO and no rate within it".into());
    }
    if let Some(m) = max {
        if m.plan_qps > m.qps {
            out.push(format!(
                "plans for {} requests/s, above the SLO's limit {}",
                m.plan_qps, m.qps
            ));
        }
        for f in &facts {
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
    }
    for f in &facts {
        let stage = match f {
            Facts::Knee(k) => &k.stage,
            Facts::NoKnee(k) => &k.stage,
            Facts::SaturatedAtLowestLoad(k) => &k.stage,
            _ => continue,
        };
        let verdicts = facts
            .iter()
            .filter(|g| match g {
                Facts::Knee(k) => &k.stage == stage,
                Facts::NoKnee(k) => &k.stage == stage,
                Facts::SaturatedAtLowestLoad(k) => &k.stage == stage,
                _ => false,
            })
            .count();
        if verdicts > 1 {
            out.push(format!("{stage} has {verdicts} verdicts on its knee"));
        }
    }
    let all_failed: Vec<&str> = facts
        .iter()
        .filter_map(|f| match f {
            Facts::AllFailed(x) => Some(x.step.as_str()),
            _ => None,
        })
        .collect();
    for f in &facts {
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
    // A count of zero in a sentence is not news.
    for f in &a.findings {
        let words: Vec<&str> = f.message.split_whitespace().collect();
        for w in words.windows(2) {
            if w[0] == "0"
                && matches!(
                    w[1],
                    "requests" | "intervals" | "request" | "arrivals" | "agents"
                )
            {
                out.push(format!("{}: \"{}\"", f.code(), f.message));
            }
        }
    }
    out
}
