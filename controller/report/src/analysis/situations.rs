//! Made-up runs, one per situation a user meets, each with the exact findings it must yield,
//! checked for contradictions and for words that match the numbers.

use stampede_common::stage::StepKind;
use stampede_results::facts::Facts;
use stampede_results::rows::TimeseriesRow;
use stampede_results::summary::{Analysis, StageSummary};
use stampede_results::table::{NumericTable, Sample};

use super::Evidence;
use super::consistency::contradictions;
use super::testing::*;

/// The findings of some evidence, worded in English, after checking they agree.
fn consistent(ev: &Evidence<'_>) -> Analysis {
    let a = analysed(ev);
    let wrong = contradictions(&a);
    assert!(wrong.is_empty(), "{wrong:?} in {:#?}", a.findings);
    a
}

/// One row per second for a step starting at `start`: (completed, failed) per interval.
fn rows(step: &str, start: f64, per_second: &[(u64, u64)]) -> Vec<TimeseriesRow> {
    per_second
        .iter()
        .enumerate()
        .map(|(k, &(completed, failed))| TimeseriesRow {
            elapsed_s: start + k as f64 + 1.0,
            step: step.into(),
            interval: k as u32,
            interval_s: 1.0,
            offered_qps: Some((completed + failed) as f64),
            achieved_qps: (completed + failed) as f64,
            completed_rps: completed as f64,
            completed,
            failed,
            e2e_p50_ms: 1000.0,
            output_tokens_per_s: completed as f64 * 100.0,
            ..Default::default()
        })
        .collect()
}

/// Steps at 4, 8, 16 and 32 requests/s: TTFT p99 triples at 16 (the knee is at 8) yet stays
/// within the 1500 ms SLO until 32.
fn knee_below_the_slo_limit() -> Vec<StageSummary> {
    let shape = [
        (4.0, 50.0, 80.0),
        (8.0, 55.0, 95.0),
        (16.0, 120.0, 600.0),
        (32.0, 900.0, 2400.0),
    ];
    shape
        .iter()
        .map(|&(q, p50, p99)| {
            let mut s = open_step("steps", q, 20.0);
            s.ttft_ms = lat(s.requests.completed, p50, p99);
            with_slo(s, "ttft_p99", 1500.0)
        })
        .collect()
}

#[test]
fn a_knee_below_the_slo_limit_sets_the_rate_to_plan_for() {
    let steps = knee_below_the_slo_limit();
    let a = consistent(&Evidence::stages_only(&steps, true));
    assert_eq!(
        codes(&a),
        ["max-qps-within-slo", "knee", "queueing-bound"],
        "{:#?}",
        a.findings
    );
    let Facts::MaxQpsWithinSlo(m) = &a.findings[0].facts else {
        panic!()
    };
    assert_eq!((m.qps, m.knee_below, m.plan_qps), (16.0, Some(8.0), 8.0));
    let advice = a.findings[0].suggestion.as_deref().unwrap();
    assert!(
        advice.contains("at most 8 requests/s") && advice.contains("held up to 16"),
        "{advice}"
    );
    let knee = a.findings[1].suggestion.as_deref().unwrap();
    assert!(knee.contains("at or below 8 requests/s"), "{knee}");
}

#[test]
fn an_slo_failure_above_the_knee_plans_with_the_headroom_it_names() {
    let mut steps = knee_below_the_slo_limit();
    // No knee in range: TTFT stays flat until the SLO fails at 32.
    steps[2].ttft_ms = lat(320, 55.0, 100.0);
    steps[3].ttft_ms = lat(640, 60.0, 1600.0);
    let steps: Vec<StageSummary> = steps
        .into_iter()
        .map(|s| with_slo(s, "ttft_p99", 1500.0))
        .collect();
    let a = consistent(&Evidence::stages_only(&steps, true));
    assert_eq!(codes(&a)[0], "max-qps-within-slo", "{:#?}", a.findings);
    let advice = a.findings[0].suggestion.as_deref().unwrap();
    assert!(
        advice.contains("about 12.8 requests/s") && advice.contains("(20% headroom)"),
        "{advice}"
    );
}

#[test]
fn flat_latency_has_no_knee_and_says_where_to_look() {
    let steps = [open_step("steps", 4.0, 20.0), open_step("steps", 8.0, 20.0)];
    let a = consistent(&Evidence::stages_only(&steps, false));
    assert_eq!(codes(&a), ["no-knee"]);
    assert!(a.findings[0].message.contains("up to 8 requests/s"));
}

#[test]
fn a_sweep_of_lengths_at_one_rate_is_not_told_to_raise_the_rate() {
    let steps: Vec<StageSummary> = [1000, 2000, 4000]
        .iter()
        .map(|n| {
            let mut s = open_step("lengths", 4.0, 20.0);
            s.name = format!("lengths/in={n}");
            s.kind = StepKind::Sweep;
            with_slo(s, "ttft_p99", 1500.0)
        })
        .collect();
    let a = consistent(&Evidence::stages_only(&steps, true));
    assert_eq!(codes(&a), Vec::<&str>::new(), "{:#?}", a.findings);
    assert_eq!(a.max_qps_within_slo, None);
}

#[test]
fn closed_loop_that_scales_without_queueing_has_no_knee_in_users() {
    let steps = [
        closed_step("users", 1, 1.0, 20.0),
        closed_step("users", 4, 3.9, 20.0),
        closed_step("users", 16, 15.2, 20.0),
    ];
    let a = consistent(&Evidence::stages_only(&steps, false));
    assert_eq!(codes(&a), ["no-knee"], "{:#?}", a.findings);
    assert!(
        a.findings[0].message.contains("up to 16 users"),
        "{}",
        a.findings[0].message
    );
}

#[test]
fn a_server_refusing_every_request_is_all_failed_and_not_a_burst() {
    // Nine requests at a low rate, all answered 401: some seconds hold three failures.
    let mut s = open_step("auth", 0.45, 20.0);
    s.requests.completed = 0;
    s.requests.failed = 9;
    s.requests.sent = 9;
    s.rates.error_rate = 1.0;
    s.errors.insert("http_4xx".into(), 9);
    let steps = [s];
    let per_second = [
        (0, 1),
        (0, 0),
        (0, 3),
        (0, 1),
        (0, 0),
        (0, 3),
        (0, 1),
        (0, 0),
        (0, 0),
        (0, 0),
    ];
    let series = rows("auth", 0.0, &per_second);
    let mut ev = Evidence::stages_only(&steps, false);
    ev.timeseries = &series;
    let a = consistent(&ev);
    assert_eq!(codes(&a), ["all-failed"], "{:#?}", a.findings);
}

#[test]
fn one_burst_in_a_clean_run_is_named_with_its_time() {
    let mut s = open_step("soak", 20.0, 20.0);
    s.requests.completed = 385;
    s.requests.failed = 15;
    s.rates.error_rate = 15.0 / 400.0;
    s.errors.insert("http_5xx".into(), 15);
    let steps = [s];
    let per_second: Vec<(u64, u64)> = (0..20)
        .map(|k| {
            if (8..11).contains(&k) {
                (15, 5)
            } else {
                (20, 0)
            }
        })
        .collect();
    let series = rows("soak", 0.0, &per_second);
    let mut ev = Evidence::stages_only(&steps, false);
    ev.timeseries = &series;
    let a = consistent(&ev);
    assert_eq!(codes(&a), ["errors", "error-burst"], "{:#?}", a.findings);
    let burst = &a.findings[1].message;
    assert!(
        burst.contains("between 8 s and 11 s, 15 requests failed"),
        "{burst}"
    );
}

#[test]
fn steps_too_short_to_trust_are_named() {
    let steps: Vec<StageSummary> = [10.0, 20.0]
        .iter()
        .map(|&q| {
            let mut s = open_step("search", q, 3.0);
            s.kind = StepKind::Search;
            s
        })
        .collect();
    let a = consistent(&Evidence::stages_only(&steps, false));
    assert_eq!(codes(&a), ["no-knee", "short-steps"], "{:#?}", a.findings);
    let m = &a.findings[1].message;
    assert!(
        m.contains("search/qps=10 (3 s, 30 answers)")
            && m.contains("search/qps=20 (3 s, 60 answers)"),
        "{m}"
    );
    // Long enough and answered enough: nothing to say.
    let steps = [open_step("s", 2.0, 10.0)];
    assert!(codes(&consistent(&Evidence::stages_only(&steps, false))).is_empty());
}

#[test]
fn a_queue_the_server_reported_empty_is_not_quoted() {
    let mut steps = vec![
        open_step("steps", 4.0, 20.0),
        open_step("steps", 8.0, 20.0),
        open_step("steps", 16.0, 20.0),
    ];
    steps[2].ttft_ms = lat(320, 900.0, 2400.0);
    let waiting = NumericTable {
        columns: vec!["vllm:num_requests_waiting".into()],
        samples: (0..60)
            .map(|k| Sample {
                t: k as f64,
                source: "local-0".into(),
                values: vec![Some(0.0)],
            })
            .collect(),
    };
    let mut ev = Evidence::stages_only(&steps, false);
    ev.resources = Some(&waiting);
    let a = consistent(&ev);
    let q = a
        .findings
        .iter()
        .find(|f| matches!(f.facts, Facts::QueueingBound(_)))
        .expect("queueing-bound");
    assert!(!q.message.contains("waited"), "{}", q.message);
}

#[test]
fn the_checker_finds_findings_that_disagree() {
    let steps = knee_below_the_slo_limit();
    let mut a = analysed(&Evidence::stages_only(&steps, true));
    assert!(contradictions(&a).is_empty());
    // The old advice: 80% of the SLO's limit, above the knee.
    if let Facts::MaxQpsWithinSlo(m) = &mut a.findings[0].facts {
        m.plan_qps = 12.8;
    }
    // A second verdict on the same stage's knee, and a count of zero in words.
    let no_knee = stampede_results::facts::NoKnee {
        stage: "steps".into(),
        unit: stampede_results::facts::LoadUnit::Qps,
        highest: 32.0,
    };
    let mut extra = stampede_results::summary::Finding::new(
        stampede_results::kinds::Severity::Info,
        Facts::NoKnee(no_knee),
    );
    extra.message = "steps: up to 0 requests waited".into();
    a.findings.push(extra);
    let wrong = contradictions(&a);
    assert_eq!(wrong.len(), 3, "{wrong:?}");
    assert!(
        wrong[0].contains("above the knee of steps at 8"),
        "{wrong:?}"
    );
    assert!(wrong[1].contains("more than one verdict"), "{wrong:?}");
    assert!(wrong[2].contains("up to 0 requests"), "{wrong:?}");
}

#[test]
fn an_interrupted_step_says_what_it_ran_and_a_refused_key_quotes_the_server() {
    let mut cut = open_step("steps", 8.0, 10.0);
    cut.ended = stampede_results::kinds::StepEnd::Interrupted;
    cut.planned_duration_s = Some(20.0);
    let mut refused = open_step("auth", 4.0, 20.0);
    refused.requests.completed = 0;
    refused.requests.failed = refused.requests.sent;
    refused
        .errors
        .insert("http_4xx".into(), refused.requests.sent);
    refused.error_messages = vec![stampede_results::summary::ErrorSample {
        class: "http_4xx".into(),
        http_status: Some(401),
        count: refused.requests.sent,
        message: "Invalid API key".into(),
    }];
    let steps = [cut, refused];
    let a = consistent(&Evidence::stages_only(&steps, false));
    assert_eq!(
        codes(&a),
        ["all-failed", "unplanned-steps"],
        "{:#?}",
        a.findings
    );
    assert!(
        a.findings[0]
            .message
            .contains("http_4xx 401: Invalid API key"),
        "{}",
        a.findings[0].message
    );
    assert!(
        a.findings[1]
            .message
            .contains("steps/qps=8 was interrupted after 10 s of 20 s"),
        "{}",
        a.findings[1].message
    );
}
