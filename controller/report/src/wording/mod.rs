//! Findings in words: each finding's typed facts turned into a message and a suggestion, in
//! English or Chinese. The analysis decides what is true; this module only says it, so the
//! numbers in a sentence are the numbers in the facts.
//!
//! - [`capacity`]: the SLO's limit, the knee, queueing- and decode-bound.
//! - [`steps`]: failures, errors, the client as the bottleneck, tokens, accounting, drops.
//! - [`resources`]: the KV cache and the GPU.
//! - [`stability`]: error bursts, soak drift, fluctuation, agents lost.

mod capacity;
mod resources;
mod stability;
mod steps;

use stampede_results::facts::{Facts, LoadUnit};
use stampede_results::summary::{Analysis, Finding};

use crate::i18n::{Lang, tr};

/// A finding's message and its suggestion (what to change), in one language.
#[derive(Debug, Clone, PartialEq)]
pub struct Words {
    pub message: String,
    pub suggestion: Option<String>,
}

impl Words {
    fn new(message: String, suggestion: String) -> Words {
        Words {
            message,
            suggestion: Some(suggestion),
        }
    }
}

/// The words of one finding's facts.
pub fn words(facts: &Facts, lang: Lang) -> Words {
    match facts {
        Facts::MaxQpsWithinSlo(f) => capacity::max_qps_within_slo(f, lang),
        Facts::NoQpsWithinSlo(f) => capacity::no_qps_within_slo(f, lang),
        Facts::Knee(f) => capacity::knee(f, lang),
        Facts::SaturatedAtLowestLoad(f) => capacity::saturated_at_lowest_load(f, lang),
        Facts::NoKnee(f) => capacity::no_knee(f, lang),
        Facts::QueueingBound(f) => capacity::queueing_bound(f, lang),
        Facts::DecodeBound(f) => capacity::decode_bound(f, lang),
        Facts::AllFailed(f) => steps::all_failed(f, lang),
        Facts::Errors(f) => steps::errors(f, lang),
        Facts::ClientBound(f) => steps::client_bound(f, lang),
        Facts::StreamBacklog(f) => steps::stream_backlog(f, lang),
        Facts::InputTokenGap(f) => steps::input_token_gap(f, lang),
        Facts::CoalescedTokens(f) => steps::coalesced_tokens(f, lang),
        Facts::Accounting(f) => steps::accounting(f, lang),
        Facts::Dropped(f) => steps::dropped(f, lang),
        Facts::KvCachePressure(f) => resources::kv_cache_pressure(f, lang),
        Facts::GpuIdle(f) => resources::gpu_idle(f, lang),
        Facts::ErrorBurst(f) => stability::error_burst(f, lang),
        Facts::ShortSteps(f) => steps::short_steps(f, lang),
        Facts::SoakDrift(f) => stability::soak_drift(f, lang),
        Facts::Fluctuation(f) => stability::fluctuation(f, lang),
        Facts::AgentLost(f) => stability::agent_lost(f, lang),
        Facts::UnplannedSteps(f) => steps::unplanned_steps(f, lang),
    }
}

/// One finding with its words filled in `lang`.
pub fn word(mut f: Finding, lang: Lang) -> Finding {
    let Words {
        message,
        suggestion,
    } = words(&f.facts, lang);
    f.message = message;
    f.suggestion = suggestion;
    f
}

/// Every finding of an analysis worded in `lang`.
pub fn worded(mut a: Analysis, lang: Lang) -> Analysis {
    a.findings = a.findings.into_iter().map(|f| word(f, lang)).collect();
    a
}

/// A load unit in words.
fn unit(u: LoadUnit, lang: Lang) -> String {
    match u {
        LoadUnit::Qps => tr!(lang, "requests/s", "请求/秒"),
        LoadUnit::Users => tr!(lang, "users", "并发"),
    }
}

/// A load unit in a table-like sentence, short.
fn unit_short(u: LoadUnit, lang: Lang) -> String {
    match u {
        LoadUnit::Qps => tr!(lang, "req/s", "请求/秒"),
        LoadUnit::Users => tr!(lang, "users", "并发"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_results::facts::*;
    use stampede_results::kinds::Severity;

    /// One finding of each code, with made-up facts.
    fn one_of_each() -> Vec<Facts> {
        let point = |load: f64, ttft: f64, tpot: f64| LoadPoint {
            step: format!("s/qps={load}"),
            load,
            ttft_p50_ms: ttft,
            tpot_p50_ms: tpot,
            in_flight_mean: Some(load),
        };
        let trend = LoadTrend {
            stage: "s".into(),
            unit: LoadUnit::Qps,
            low: point(4.0, 50.0, 10.0),
            high: point(16.0, 900.0, 11.0),
            steps: vec![point(4.0, 50.0, 10.0), point(16.0, 900.0, 11.0)],
            waiting_peak: None,
        };
        let window = |n| WindowName::TenMinutes {
            step: "soak".into(),
            n,
        };
        vec![
            Facts::MaxQpsWithinSlo(MaxQpsWithinSlo {
                qps: 16.0,
                step: Some("s/qps=16".into()),
                first_failing: Some(SloStep {
                    step: "s/qps=32".into(),
                    qps: 32.0,
                    failed: vec![],
                }),
                passed_above_a_failure: vec![],
                capacity_search: None,
                plan_qps: 12.8,
                knee_below: None,
            }),
            Facts::NoQpsWithinSlo(SloStep {
                step: "s/qps=4".into(),
                qps: 4.0,
                failed: vec![FailedCheck {
                    check: "ttft_p99".into(),
                    value: Some(2400.0),
                    limit: 1500.0,
                    bound: stampede_common::plan::Bound::AtMost,
                }],
            }),
            Facts::Knee(Knee {
                stage: "s".into(),
                unit: LoadUnit::Qps,
                knee: 8.0,
                knee_step: "s/qps=8".into(),
                saturated_at: 16.0,
                saturated_step: "s/qps=16".into(),
                why: Saturation::Ttft {
                    p99: 2400.0,
                    base: 80.0,
                },
            }),
            Facts::SaturatedAtLowestLoad(SaturatedAtLowestLoad {
                stage: "s".into(),
                unit: LoadUnit::Users,
                step: "s/c=4".into(),
                load: 4.0,
                why: Saturation::Errors { rate: 0.2 },
            }),
            Facts::NoKnee(NoKnee {
                stage: "s".into(),
                unit: LoadUnit::Qps,
                highest: 16.0,
            }),
            Facts::QueueingBound(trend.clone()),
            Facts::DecodeBound(trend),
            Facts::AllFailed(AllFailed {
                step: "s".into(),
                sent: 9,
                errors: [("http_4xx".to_string(), 9)].into(),
                first: Some(stampede_results::summary::ErrorSample {
                    class: "http_4xx".into(),
                    http_status: Some(401),
                    count: 9,
                    message: "Invalid API key".into(),
                }),
            }),
            Facts::Errors(StepErrors {
                step: "s".into(),
                error_rate: 0.1,
                errors: [("http_5xx".to_string(), 3)].into(),
                top: Some(("http_5xx".into(), 3)),
                cause: ErrorCause::ServerErrors,
                first: None,
            }),
            Facts::ClientBound(ClientBound {
                step: "s".into(),
                limit: ClientLimit::Cpu {
                    limit_pct: 85.0,
                    intervals: 5,
                    of: 10,
                    peak_pct: Some(99.0),
                },
                agent_cpu_peak_pct: Some(99.0),
            }),
            Facts::StreamBacklog(StreamBacklog {
                step: "s".into(),
                agent: "a".into(),
                coalesced_intervals: 2,
                records_dropped: 7,
            }),
            Facts::InputTokenGap(InputTokenGap {
                step: "s".into(),
                gap_ratio: 0.489,
                workload_tokens: 1000,
                server_tokens: 1489,
            }),
            Facts::CoalescedTokens(CoalescedTokens {
                step: "s".into(),
                tokens_per_chunk: 4.0,
            }),
            Facts::Accounting(Accounting {
                step: "s".into(),
                mismatch: Mismatch::Outcomes {
                    sent: 10,
                    completed: 8,
                    failed: 1,
                    cancelled: 0,
                },
            }),
            Facts::Dropped(Dropped {
                step: "s".into(),
                dropped: 12,
            }),
            Facts::KvCachePressure(KvCachePressure {
                kv_cache_peak_pct: Some(97.0),
                column: Some("kv".into()),
                at_s: Some(3.0),
                step: Some("s".into()),
                preemptions: 2.0,
            }),
            Facts::GpuIdle(GpuIdle {
                steps: vec![IdleStep {
                    step: "s".into(),
                    gpu_util_mean_pct: 20.0,
                    cpu_mean_pct: Some(95.0),
                    ttft_p99_ms: 900.0,
                    schedule_lag_p99_ms: 0.2,
                }],
            }),
            Facts::ErrorBurst(ErrorBurst {
                from_s: 10.0,
                to_s: 14.0,
                failed: 30,
                completed: 10,
                timeouts: 0,
                steps: vec!["s".into()],
                bursts: 4,
                more: 1,
            }),
            Facts::ShortSteps(ShortSteps {
                steps: vec![ShortStep {
                    step: "search/qps=40".into(),
                    duration_s: 3.0,
                    completed: 120,
                }],
                min_duration_s: 10.0,
                min_completed: 20,
            }),
            Facts::SoakDrift(SoakDrift {
                soak: "soak".into(),
                windows: vec![],
                rises: vec![Rise {
                    metric: DriftMetric::Ttft,
                    from_ms: 100.0,
                    to_ms: 150.0,
                    from: window(1),
                    to: window(3),
                }],
                throughput_fell: Some((1000.0, 700.0)),
            }),
            Facts::Fluctuation(Fluctuation {
                step: "s".into(),
                intervals: 10,
                completed_per_interval: 20.0,
                throughput_cv: 0.4,
                expected_cv: 0.22,
                e2e_p50_cv: 0.1,
            }),
            Facts::AgentLost(AgentLost {
                agent: "a".into(),
                addr: "h:7070".into(),
                step: "s".into(),
                elapsed_s: 3.0,
                detail: "stream failed".into(),
                after: AfterLoss::WentOn,
            }),
            Facts::UnplannedSteps(UnplannedSteps {
                steps: vec![UnplannedStep {
                    step: "steps/qps=16".into(),
                    ended: stampede_results::kinds::StepEnd::Interrupted,
                    ran_s: 10.0,
                    planned_s: Some(20.0),
                    paused_s: 0.0,
                }],
            }),
        ]
    }

    #[test]
    fn every_code_is_covered_once_and_its_tag_is_the_pinned_name() {
        let all = one_of_each();
        let mut codes: Vec<_> = all.iter().map(Facts::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "a code twice");
        assert_eq!(codes, {
            let mut v = stampede_results::kinds::FindingCode::ALL.to_vec();
            v.sort();
            v
        });
        for facts in all {
            let f = Finding::new(Severity::Info, facts);
            let v = serde_json::to_value(&f).unwrap();
            assert_eq!(v["code"], f.code().as_str(), "{v}");
            assert!(v["facts"].is_object(), "{v}");
            let back: Finding = serde_json::from_value(v).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn every_finding_has_words_in_both_languages_and_they_differ() {
        for facts in one_of_each() {
            let en = words(&facts, Lang::En);
            let zh = words(&facts, Lang::Zh);
            assert!(
                !en.message.is_empty() && !zh.message.is_empty(),
                "{facts:?}"
            );
            assert_ne!(en.message, zh.message, "{facts:?}");
            assert!(!zh.message.is_ascii(), "{}", zh.message);
            assert_eq!(
                en.suggestion.is_some(),
                zh.suggestion.is_some(),
                "{facts:?}"
            );
        }
    }

    #[test]
    fn the_words_carry_the_numbers_of_the_facts() {
        let all = one_of_each();
        let text = |i: usize| {
            let w = words(&all[i], Lang::En);
            format!("{} {}", w.message, w.suggestion.unwrap_or_default())
        };
        // 80% of 16 is 12.8, and that is 20% headroom.
        assert!(
            text(0).contains("12.8") && text(0).contains("20% headroom"),
            "{}",
            text(0)
        );
        assert!(text(1).contains("ttft_p99 2400 > 1500"), "{}", text(1));
        assert!(text(2).contains("knee is at 8 requests/s") && text(2).contains("2400 ms"));
        assert!(text(11).contains("+48.9%"), "{}", text(11));
        assert!(text(17).contains("(1 more burst)"), "{}", text(17));
        assert!(
            text(18).contains("search/qps=40 (3 s, 120 answers)"),
            "{}",
            text(18)
        );
        assert!(
            text(7).contains("http_4xx 401: Invalid API key"),
            "{}",
            text(7)
        );
        assert!(
            text(22).contains("steps/qps=16 was interrupted after 10 s of 20 s"),
            "{}",
            text(22)
        );
    }
}
