//! Tests of the stage checks and of each driver's expansion.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::plan::{Bound, SloCheck};
use crate::schedule::ArrivalKind;

fn defaults<'a>(checks: &'a [SloCheck]) -> StageDefaults<'a> {
    StageDefaults {
        input_tokens: 100,
        output_tokens: 10,
        checks,
        plan_dir: Path::new("."),
    }
}

fn stage(text: &str) -> StagePlan {
    toml::from_str(&format!("name = \"s\"\n{text}")).unwrap()
}

fn fixed(p: StageProgram) -> Vec<StepPlan> {
    match p {
        StageProgram::Fixed(s) => s,
        StageProgram::Adaptive { .. } => panic!("expected fixed steps"),
    }
}

#[test]
fn sweeps_vary_one_parameter_at_the_stage_load() {
    let s = stage("qps = 5\nsweep = { input_tokens = [1000, 2048, 4096], each = \"2m\" }");
    assert!(
        s.problems(&defaults(&[])).is_empty(),
        "{:?}",
        s.problems(&defaults(&[]))
    );
    let steps = fixed(s.resolve(&defaults(&[])).unwrap().program(0));
    assert_eq!(
        steps.iter().map(|s| s.input_tokens).collect::<Vec<_>>(),
        vec![1000, 2048, 4096]
    );
    assert!(
        steps
            .iter()
            .all(|s| s.load.offered_qps(s.duration) == Some(5.0) && s.output_tokens == 10)
    );
    assert_eq!(steps[2].name, "s/input_tokens=4096");
}

#[test]
fn soak_is_cut_into_checkpoints_and_warmup_comes_first() {
    let s = stage("qps = 2\nduration = \"2h30m\"\nsoak = { checkpoint = \"1h\" }\nwarmup = \"1m\"");
    let steps = fixed(s.resolve(&defaults(&[])).unwrap().program(3));
    let lens: Vec<_> = steps.iter().map(|s| s.duration.as_secs()).collect();
    assert_eq!(lens, vec![60, 3600, 3600, 1800]);
    assert!(steps[0].is_warmup());
    assert_eq!(steps[3].name, "s/3");
    assert_eq!(steps[3].step_index, 3);
}

#[test]
fn spike_is_base_burst_base() {
    let s =
        stage("spike = { base = 5, burst = 50, base_duration = \"20s\", burst_duration = \"5s\" }");
    let steps = fixed(s.resolve(&defaults(&[])).unwrap().program(0));
    let kinds: Vec<_> = steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            StepKind::SpikeBase,
            StepKind::SpikeBurst,
            StepKind::SpikeAfter
        ]
    );
    assert_eq!(steps[1].load.offered_qps(steps[1].duration), Some(50.0));
}

#[test]
fn stage_slo_adds_to_and_replaces_the_plans() {
    let plan_checks = vec![
        SloCheck {
            name: "e2e_p99".into(),
            limit: 1500.0,
            bound: Bound::AtMost,
        },
        SloCheck {
            name: "error_rate".into(),
            limit: 0.01,
            bound: Bound::AtMost,
        },
    ];
    let s = stage("qps = 1\nduration = \"1s\"\nslo = { e2e_p99 = \"3s\", ttft_p50 = \"200ms\" }");
    let checks = s.checks(&defaults(&plan_checks));
    assert_eq!(checks.len(), 3);
    assert_eq!(
        checks.iter().find(|c| c.name == "e2e_p99").unwrap().limit,
        3000.0
    );
}

#[test]
fn search_needs_ordered_bounds_and_known_thresholds() {
    let d = defaults(&[]);
    let s = stage("search = { qps = [100, 10], each = \"10s\", slo = \"e2e_p99\" }");
    let fields: Vec<String> = s.problems(&d).into_iter().map(|(f, _)| f).collect();
    assert!(fields.contains(&"search.qps".to_string()), "{fields:?}");
    assert!(fields.contains(&"search".to_string()), "{fields:?}");
    assert!(fields.contains(&"search.slo".to_string()), "{fields:?}");
}

#[test]
fn conflicting_and_missing_drivers_are_reported() {
    let d = defaults(&[]);
    assert!(
        !stage("qps = 1\nconcurrency = 2\nduration = \"1s\"")
            .problems(&d)
            .is_empty()
    );
    assert!(!stage("duration = \"1s\"").problems(&d).is_empty());
    assert!(
        !stage("qps = 1\nduration = \"1s\"\narrival = \"gamma\"")
            .problems(&d)
            .is_empty()
    );
    assert!(
        stage("qps = 1\nduration = \"1s\"\narrival = \"gamma\"\nburstiness = 0.5")
            .problems(&d)
            .is_empty()
    );
    assert!(
        !stage("limits = { input_tokens = [4096, 1000], each = \"5s\" }")
            .problems(&d)
            .is_empty()
    );
}

#[test]
fn time_scale_shrinks_every_duration() {
    let mut s = stage("qps = 2\nduration = \"24h\"\nsoak = { checkpoint = \"1h\" }");
    s.scale_time(1.0 / 1440.0);
    assert_eq!(s.duration.unwrap().0, Duration::from_secs(60));
    assert_eq!(s.soak.unwrap().checkpoint.0.as_millis(), 2500);
}

fn open(qps: f64) -> Load {
    Load::Open {
        qps,
        arrival: ArrivalKind::Poisson,
        max_in_flight: None,
    }
}

fn users(concurrency: u32) -> Load {
    Load::Closed {
        concurrency,
        think_time: Duration::ZERO,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A step as the table below writes it: name, kind, duration, load, input and output tokens.
type Row = (&'static str, StepKind, Duration, Load, u32, u32);

fn rows(stage_text: &str) -> Vec<(String, StepKind, Duration, Load, u32, u32)> {
    let resolved = stage(stage_text).resolve(&defaults(&[])).unwrap();
    fixed(resolved.program(0))
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            assert_eq!((s.step_index, s.stage_index), (i, 0), "{}", s.name);
            let t = (s.input_tokens, s.output_tokens);
            (s.name, s.kind, s.duration, s.load, t.0, t.1)
        })
        .collect()
}

#[test]
fn rate_user_step_and_sweep_drivers_expand_into_exactly_these_steps() {
    use StepKind::*;
    let table: Vec<(&str, Vec<Row>)> = vec![
        (
            "qps = 5\nduration = \"10s\"",
            vec![("s", Single, secs(10), open(5.0), 100, 10)],
        ),
        (
            "concurrency = 4\nduration = \"10s\"\nwarmup = \"2s\"",
            vec![
                ("s/warmup", Warmup, secs(2), users(4), 100, 10),
                ("s", Single, secs(10), users(4), 100, 10),
            ],
        ),
        (
            "steps = { qps = [10, 2.5], each = \"5s\" }\nwarmup = \"1s\"",
            vec![
                ("s/warmup", Warmup, secs(1), users(1), 100, 10),
                ("s/qps=10", Step, secs(5), open(10.0), 100, 10),
                ("s/qps=2.5", Step, secs(5), open(2.5), 100, 10),
            ],
        ),
        (
            "steps = { concurrency = [1, 8], each = \"5s\" }",
            vec![
                ("s/concurrency=1", Step, secs(5), users(1), 100, 10),
                ("s/concurrency=8", Step, secs(5), users(8), 100, 10),
            ],
        ),
        (
            "concurrency = 2\nsweep = { output_tokens = [64, 128], each = \"3s\" }",
            vec![
                ("s/output_tokens=64", Sweep, secs(3), users(2), 100, 64),
                ("s/output_tokens=128", Sweep, secs(3), users(2), 100, 128),
            ],
        ),
        (
            "qps = 3\nsweep = { input_tokens = [500], each = \"3s\" }\ninput_tokens = 7",
            vec![("s/input_tokens=500", Sweep, secs(3), open(3.0), 500, 10)],
        ),
        (
            "sweep = { concurrency = [2, 4], each = \"3s\" }\noutput_tokens = 5",
            vec![
                ("s/concurrency=2", Sweep, secs(3), users(2), 100, 5),
                ("s/concurrency=4", Sweep, secs(3), users(4), 100, 5),
            ],
        ),
    ];
    assert_table(table);
}

#[test]
fn ramp_spike_and_soak_drivers_expand_into_exactly_these_steps() {
    use StepKind::*;
    let table: Vec<(&str, Vec<Row>)> = vec![
        (
            "ramp = { from = 1, to = 9 }\nduration = \"20s\"",
            vec![(
                "s",
                Ramp,
                secs(20),
                Load::Open {
                    qps: 1.0,
                    arrival: ArrivalKind::Ramp {
                        to_qps: 9.0,
                        over: secs(20),
                    },
                    max_in_flight: None,
                },
                100,
                10,
            )],
        ),
        (
            "spike = { base = 5, burst = 50, base_duration = \"20s\", burst_duration = \"5s\" }",
            vec![
                ("s/base", SpikeBase, secs(20), open(5.0), 100, 10),
                ("s/burst", SpikeBurst, secs(5), open(50.0), 100, 10),
                ("s/after", SpikeAfter, secs(20), open(5.0), 100, 10),
            ],
        ),
        (
            "qps = 2\nduration = \"25s\"\nsoak = { checkpoint = \"10s\" }",
            vec![
                ("s/1", Soak, secs(10), open(2.0), 100, 10),
                ("s/2", Soak, secs(10), open(2.0), 100, 10),
                ("s/3", Soak, secs(5), open(2.0), 100, 10),
            ],
        ),
    ];
    assert_table(table);
}

/// Checks each stage of `table` expands into exactly its rows.
fn assert_table(table: Vec<(&str, Vec<Row>)>) {
    for (text, want) in table {
        let want: Vec<_> = want
            .into_iter()
            .map(|(n, k, d, l, i, o)| (n.to_string(), k, d, l, i, o))
            .collect();
        assert_eq!(rows(text), want, "{text}");
    }
}

#[test]
fn loop_settings_reach_every_load() {
    let text = "steps = { qps = [4], each = \"1s\" }\narrival = \"gamma\"\nburstiness = 0.5\nmax_in_flight = 9";
    let load = Load::Open {
        qps: 4.0,
        arrival: ArrivalKind::Gamma { burstiness: 0.5 },
        max_in_flight: Some(9),
    };
    assert_eq!(rows(text)[0].3, load);
    let text = "concurrency = 3\nduration = \"1s\"\nthink_time = \"250ms\"";
    let load = Load::Closed {
        concurrency: 3,
        think_time: Duration::from_millis(250),
    };
    assert_eq!(rows(text)[0].3, load);
}

#[test]
fn each_adaptive_driver_yields_its_template_and_probe() {
    let d = defaults(&[]);
    let e2e = [SloCheck {
        name: "e2e_p99".into(),
        limit: 1500.0,
        bound: Bound::AtMost,
    }];
    let with_slo = defaults(&e2e);
    let table = [
        (
            "search = { qps = [10, 100], each = \"10s\", slo = \"e2e_p99\" }\nwarmup = \"5s\"",
            &with_slo,
            StepKind::Search,
            open(10.0),
            Probe::Search {
                lo: 10.0,
                hi: 100.0,
                precision: 0.05,
                each: secs(10),
                slo: vec!["e2e_p99".into()],
            },
        ),
        (
            "limits = { input_tokens = [1000, 4096], each = \"5s\" }",
            &d,
            StepKind::LimitInput,
            users(1),
            Probe::InputLength {
                from: 1000,
                to: 4096,
                factor: 2.0,
                each: secs(5),
            },
        ),
        (
            "limits = { concurrency = [4, 64], each = \"5s\", factor = 4 }",
            &d,
            StepKind::LimitConcurrency,
            users(1),
            Probe::Concurrency {
                from: 4,
                to: 64,
                factor: 4.0,
                each: secs(5),
            },
        ),
    ];
    for (text, defaults, kind, load, want_probe) in table {
        let StageProgram::Adaptive {
            template,
            probe,
            warmup,
        } = stage(text).resolve(defaults).unwrap().program(2)
        else {
            panic!("adaptive expected: {text}");
        };
        assert_eq!(probe, want_probe, "{text}");
        assert_eq!(
            (template.name.as_str(), template.kind),
            ("s", kind),
            "{text}"
        );
        assert_eq!((template.load, template.stage_index), (load, 2), "{text}");
        assert_eq!(warmup.is_some(), text.contains("warmup"), "{text}");
    }
}

#[test]
fn a_trace_is_read_when_resolved_and_replayed_at_its_speed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.csv");
    std::fs::write(
        &file,
        "timestamp,input_tokens,output_tokens\n0,10,1\n2,20,2\n4,30,3\n",
    )
    .unwrap();
    let d = StageDefaults {
        plan_dir: dir.path(),
        ..defaults(&[])
    };
    let s = stage("trace = { file = \"t.csv\", speed = 2.0 }")
        .resolve(&d)
        .unwrap();
    // Expansion needs the file no more.
    std::fs::remove_file(&file).unwrap();
    let steps = fixed(s.program(0));
    let Load::Trace { entries, .. } = &steps[0].load else {
        panic!("trace load expected");
    };
    let offsets: Vec<_> = entries.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [secs(0), secs(1), secs(2)]);
    assert_eq!(steps[0].duration, Duration::from_millis(2001));
    assert_eq!(
        (steps[0].name.as_str(), steps[0].kind),
        ("s", StepKind::Trace)
    );
    let missing = stage("trace = { file = \"t.csv\" }").problems(&d);
    assert_eq!(missing[0].0, "trace.file", "{missing:?}");
}

#[test]
fn the_resolved_stage_scales_like_the_written_one() {
    let text = "qps = 2\nduration = \"24h\"\nsoak = { checkpoint = \"1h\" }\nwarmup = \"10m\"";
    let mut s = stage(text).resolve(&defaults(&[])).unwrap();
    s.scale_time(1.0 / 1440.0);
    let lens: Vec<_> = fixed(s.program(0))
        .iter()
        .map(|s| s.duration.as_millis())
        .collect();
    assert_eq!(lens[..3], [416, 2500, 2500]);
    assert_eq!(lens.len(), 25);
}

#[test]
fn a_sweep_cannot_also_be_a_soak() {
    let s = stage(
        "qps = 5\nsweep = { input_tokens = [1], each = \"2s\" }\nsoak = { checkpoint = \"1s\" }",
    );
    let fields: Vec<String> = s
        .problems(&defaults(&[]))
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, ["soak"]);
}

#[test]
fn each_way_of_writing_a_stage_resolves_to_its_driver() {
    let ms = Duration::from_millis;
    let table = [
        (
            "qps = 5\nduration = \"10s\"",
            StageDriver::Rate {
                qps: 5.0,
                duration: secs(10),
            },
        ),
        (
            "concurrency = 3\nduration = \"1m30s\"",
            StageDriver::Users {
                concurrency: 3,
                duration: secs(90),
            },
        ),
        (
            "steps = { concurrency = [1, 2], each = \"1s\" }",
            StageDriver::Steps {
                levels: Levels::Users(vec![1, 2]),
                each: secs(1),
            },
        ),
        (
            "qps = 2\nsweep = { output_tokens = [8], each = \"500ms\" }",
            StageDriver::Sweep {
                param: SweepParam::OutputTokens {
                    load: BaseLoad::Rate(2.0),
                    values: vec![8],
                },
                each: ms(500),
            },
        ),
        (
            "sweep = { concurrency = [4], each = \"1s\" }",
            StageDriver::Sweep {
                param: SweepParam::Concurrency(vec![4]),
                each: secs(1),
            },
        ),
    ];
    assert_resolves(&table);
}

#[test]
fn each_way_of_timing_a_stage_resolves_to_its_driver() {
    let table = [
        (
            "ramp = { from = 1, to = 3 }\nduration = \"5s\"",
            StageDriver::Ramp {
                from: 1.0,
                to: 3.0,
                duration: secs(5),
            },
        ),
        (
            "spike = { base = 1, burst = 9, base_duration = \"2s\", burst_duration = \"1s\" }",
            StageDriver::Spike {
                base: 1.0,
                burst: 9.0,
                base_duration: secs(2),
                burst_duration: secs(1),
            },
        ),
        (
            "concurrency = 2\nduration = \"1h\"\nsoak = { checkpoint = \"10m\" }",
            StageDriver::Soak {
                load: BaseLoad::Users(2),
                duration: secs(3600),
                checkpoint: secs(600),
            },
        ),
        (
            "limits = { concurrency = [2, 8], each = \"3s\" }",
            StageDriver::Limits {
                param: LimitParam::Concurrency { from: 2, to: 8 },
                factor: 2.0,
                each: secs(3),
            },
        ),
    ];
    assert_resolves(&table);
}

#[test]
fn a_resolved_stage_keeps_its_modifiers_and_lengths() {
    let ms = Duration::from_millis;
    let s = stage("concurrency = 2\nduration = \"1s\"\nwarmup = \"2s\"\ncooldown = \"3s\"\ninput_tokens = 7\nthink_time = \"5ms\"")
        .resolve(&defaults(&[]))
        .unwrap();
    assert_eq!((s.warmup, s.cooldown), (Some(secs(2)), Some(secs(3))));
    assert_eq!(
        (s.input_tokens, s.output_tokens, s.think_time),
        (7, 10, ms(5))
    );
}

fn assert_resolves(table: &[(&str, StageDriver)]) {
    for (text, want) in table {
        let s = stage(text).resolve(&defaults(&[])).unwrap();
        assert_eq!(&s.driver, want, "{text}");
    }
}
