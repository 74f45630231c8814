//! The simulator's configuration: [`SimConfig`] as written in a file or a plan's `[target.sim]`
//! table, and the validated [`ResolvedConfig`] the server runs with.
//!
//! A plan's table can also be read from the plan itself ([`SimConfig::from_plan_str`]), so that
//! its errors name the plan's file, line and field.
//!
//! A config names a preset (the deterministic one or an engine model, see [`crate::presets`])
//! and may override any of the preset's figures; [`SimConfig::resolve`] applies the overrides and
//! reports every problem at once.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use stampede_text::{Location, locate};

use crate::duration::{DisplayDuration, serde_duration};
use crate::engine::EngineConfig;
use crate::faults::FaultSpec;
use crate::presets::{self, Preset};
pub use crate::presets::{DEFAULT_MODEL, GpuConfig};

/// The simulator's settings, as read from `--config FILE` (TOML) or a plan's `[target.sim]`
/// table. Every field is optional; unknown fields are an error so a typo is never ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Preset name: `deterministic` or an engine model (`sim --list-presets`).
    pub preset: String,
    /// Served model id (what `/v1/models` lists and requests must name); default: the preset's.
    pub model: Option<String>,
    /// Context length in tokens (prompt + completion); default: the preset's.
    pub max_model_len: Option<u32>,
    /// Deterministic preset: time from request received to the first token.
    #[serde(with = "serde_duration")]
    pub ttft: Duration,
    /// Deterministic preset: time between consecutive tokens.
    #[serde(with = "serde_duration")]
    pub itl: Duration,
    /// Completion length when a request gives no `max_tokens`.
    pub default_max_tokens: u32,
    /// Per-token chance of an end-of-sequence token (finish_reason `stop`) once `min_tokens`
    /// are out, for requests without `ignore_eos`; 0 means answers always run to `max_tokens`.
    pub eos_probability: f64,
    /// Seed of every random choice (faults, EOS positions, ids), so runs repeat exactly.
    pub seed: u64,
    /// Engine figures overriding the preset's (engine presets only).
    pub engine: EngineOverrides,
    /// Simulated GPU figures overriding the preset's.
    pub gpu: GpuOverrides,
    /// Injected faults.
    pub faults: Vec<FaultSpec>,
    /// What releases tokens at their due time: `thread` (a pacer thread) or `inline` (the
    /// serving thread busy-polls near deadlines); see [`PacerMode`].
    pub pacer: PacerMode,
    /// `thread` pacer: the most it spins before a token is due instead of sleeping (it learns
    /// how late this machine wakes a sleeper, 60-300 us, and spins that long). `0s` saves the
    /// CPU at the price of that lateness.
    #[serde(with = "serde_duration")]
    pub timer_spin: Duration,
    /// On shutdown, how long streams in flight may finish before their connections are cut.
    #[serde(with = "serde_duration")]
    pub shutdown_grace: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            preset: presets::DETERMINISTIC.to_owned(),
            model: None,
            max_model_len: None,
            ttft: Duration::from_millis(50),
            itl: Duration::from_millis(10),
            default_max_tokens: 16,
            eos_probability: 0.0,
            seed: 0,
            engine: EngineOverrides::default(),
            gpu: GpuOverrides::default(),
            faults: Vec::new(),
            pacer: PacerMode::Thread,
            timer_spin: Duration::from_micros(200),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// What releases tokens at their due time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacerMode {
    /// A dedicated thread sleeps until a learnt margin before each deadline, then spins
    /// (`timer_spin` at most) and wakes the serving thread. Light on CPU; on machines whose
    /// idle cores wake slowly (virtual machines) the wake-up adds its latency.
    #[default]
    Thread,
    /// The serving thread itself busy-polls from 2 ms before each deadline: the most precise,
    /// at the cost of that thread's whole core while tokens are due. For benchmarks on a
    /// machine with a core to spare.
    Inline,
}

/// Overrides of an engine preset's figures; see [`EngineConfig`] for each field's meaning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineOverrides {
    /// See [`EngineConfig::max_num_seqs`].
    pub max_num_seqs: Option<u32>,
    /// See [`EngineConfig::max_num_batched_tokens`].
    pub max_num_batched_tokens: Option<u32>,
    /// See [`EngineConfig::kv_cache_tokens`].
    pub kv_cache_tokens: Option<u64>,
    /// See [`EngineConfig::kv_block_tokens`].
    pub kv_block_tokens: Option<u32>,
    /// See [`EngineConfig::prefill_tokens_per_s`].
    pub prefill_tokens_per_s: Option<f64>,
    /// See [`EngineConfig::step_base`].
    #[serde(with = "serde_duration::option")]
    pub step_base: Option<Duration>,
    /// See [`EngineConfig::context_token_cost`].
    #[serde(with = "serde_duration::option")]
    pub context_token_cost: Option<Duration>,
}

/// Overrides of the preset's [`GpuConfig`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuOverrides {
    /// See [`GpuConfig::name`].
    pub name: Option<String>,
    /// See [`GpuConfig::count`].
    pub count: Option<u32>,
    /// See [`GpuConfig::memory_mib`].
    pub memory_mib: Option<u64>,
    /// See [`GpuConfig::used_mib`].
    pub used_mib: Option<u64>,
    /// See [`GpuConfig::power_idle_w`].
    pub power_idle_w: Option<f64>,
    /// See [`GpuConfig::power_max_w`].
    pub power_max_w: Option<f64>,
}

/// How tokens are timed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Timing {
    /// Fixed time to first token and gap, no queueing, any concurrency.
    Deterministic {
        /// Request received to first token.
        ttft: Duration,
        /// Gap between tokens.
        itl: Duration,
    },
    /// The continuous-batching engine model.
    Engine(EngineConfig),
}

/// A validated configuration: the preset applied, overrides checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// Served model id.
    pub model: String,
    /// Context length in tokens.
    pub max_model_len: u32,
    /// Token timing.
    pub timing: Timing,
    /// Simulated GPUs.
    pub gpu: GpuConfig,
    /// See [`SimConfig::default_max_tokens`].
    pub default_max_tokens: u32,
    /// See [`SimConfig::eos_probability`].
    pub eos_probability: f64,
    /// See [`SimConfig::seed`].
    pub seed: u64,
    /// Validated faults.
    pub faults: Vec<FaultSpec>,
    /// See [`SimConfig::pacer`].
    pub pacer: PacerMode,
    /// See [`SimConfig::timer_spin`].
    pub timer_spin: Duration,
    /// See [`SimConfig::shutdown_grace`].
    pub shutdown_grace: Duration,
}

/// Why a configuration could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read simulator config {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`SimConfig`] (the message names the line and field).
    #[error("invalid simulator config {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// One or more values are out of range; every problem is listed.
    #[error("invalid simulator config:\n  - {}", .problems.join("\n  - "))]
    Invalid {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// A plan's `[target.sim]` table cannot be used: each problem at the plan's line and field.
    #[error("{}", in_plan(path, problems))]
    InPlan {
        /// The plan file.
        path: String,
        /// Where each problem is in the plan, and what it is.
        problems: Vec<(Location, String)>,
    },
}

/// `plan.toml:12:8: target.sim.ttft: message`, one line per problem, as the plan's own errors.
fn in_plan(path: &str, problems: &[(Location, String)]) -> String {
    let lines = problems.iter().map(|(at, message)| {
        let mut line = path.to_owned();
        if at.line > 0 {
            line.push_str(&format!(":{}:{}", at.line, at.column));
        }
        let field = at.field.as_deref().unwrap_or("target.sim");
        format!("{line}: {field}: {message}")
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// A test plan as far as the simulator reads it: its `[target.sim]` table, nothing else.
#[derive(Deserialize)]
struct PlanDoc {
    #[serde(default)]
    target: PlanTarget,
}

#[derive(Default, Deserialize)]
struct PlanTarget {
    #[serde(default)]
    sim: SimConfig,
}

impl SimConfig {
    /// Parses a TOML document; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] when the TOML is malformed or has unknown or mistyped fields.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            source: Box::new(e),
        })
    }

    /// Reads a TOML file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Reads the settings of a test plan's `[target.sim]` table (the defaults when it has none)
    /// and checks them, so that a problem names the plan's `origin`, line and field.
    ///
    /// # Errors
    /// [`ConfigError::InPlan`] with the problem toml found, or every problem of the values.
    pub fn from_plan_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let in_plan = |problems| ConfigError::InPlan {
            path: origin.to_owned(),
            problems,
        };
        let doc: PlanDoc = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or_else(whole_table, |s| locate(text, s.start));
            in_plan(vec![(at, e.message().trim().to_owned())])
        })?;
        if let Err(ConfigError::Invalid { problems }) = doc.target.sim.resolve() {
            // The values are checked together, so their problems are placed at the table.
            let header = text.lines().position(|l| l.trim() == "[target.sim]");
            let at = header.map_or_else(whole_table, |i| Location {
                line: i + 1,
                column: 1,
                field: Some("target.sim".to_owned()),
            });
            return Err(in_plan(
                problems.into_iter().map(|p| (at.clone(), p)).collect(),
            ));
        }
        Ok(doc.target.sim)
    }

    /// Reads a test plan's `[target.sim]` table, as [`SimConfig::from_plan_str`].
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::InPlan`].
    pub fn load_plan(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_plan_str(&text, &path.display().to_string())
    }

    /// Applies the preset and the overrides, and checks every value.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every problem found.
    pub fn resolve(&self) -> Result<ResolvedConfig, ConfigError> {
        let mut problems = Vec::new();
        let Some(preset) = presets::find(&self.preset) else {
            problems.push(format!(
                "unknown preset {:?}; known presets: {}",
                self.preset,
                presets::names().join(", ")
            ));
            return Err(ConfigError::Invalid { problems });
        };
        let resolved = self.apply(&preset);
        resolved.check(&mut problems);
        if self.engine != EngineOverrides::default() && preset.engine.is_none() {
            problems.push(format!(
                "[engine] settings need an engine preset, not {:?}",
                self.preset
            ));
        }
        if problems.is_empty() {
            Ok(resolved)
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    fn apply(&self, preset: &Preset) -> ResolvedConfig {
        let timing = match &preset.engine {
            None => Timing::Deterministic {
                ttft: self.ttft,
                itl: self.itl,
            },
            Some(base) => {
                let mut e = base.clone();
                let o = &self.engine;
                macro_rules! over {
                    ($($f:ident),*) => { $( if let Some(v) = o.$f { e.$f = v; } )* };
                }
                over!(
                    max_num_seqs,
                    max_num_batched_tokens,
                    kv_cache_tokens,
                    kv_block_tokens,
                    prefill_tokens_per_s,
                    step_base,
                    context_token_cost
                );
                Timing::Engine(e)
            }
        };
        let mut gpu = preset.gpu();
        let g = &self.gpu;
        if let Some(v) = &g.name {
            gpu.name.clone_from(v);
        }
        macro_rules! over_gpu {
            ($($f:ident),*) => { $( if let Some(v) = g.$f { gpu.$f = v; } )* };
        }
        over_gpu!(count, memory_mib, used_mib, power_idle_w, power_max_w);
        ResolvedConfig {
            model: self
                .model
                .clone()
                .unwrap_or_else(|| preset.model.to_owned()),
            max_model_len: self.max_model_len.unwrap_or(preset.max_model_len),
            timing,
            gpu,
            default_max_tokens: self.default_max_tokens,
            eos_probability: self.eos_probability,
            seed: self.seed,
            faults: self.faults.clone(),
            pacer: self.pacer,
            timer_spin: self.timer_spin,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// Where a problem of the whole `[target.sim]` table is, when its header cannot be found.
fn whole_table() -> Location {
    Location {
        line: 0,
        column: 0,
        field: Some("target.sim".to_owned()),
    }
}

impl ResolvedConfig {
    fn check(&self, problems: &mut Vec<String>) {
        if self.model.trim().is_empty() {
            problems.push("model must not be empty".to_owned());
        }
        if self.max_model_len == 0 {
            problems.push("max_model_len must be at least 1".to_owned());
        }
        if self.default_max_tokens == 0 {
            problems.push("default_max_tokens must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&self.eos_probability) {
            problems.push(format!(
                "eos_probability must be within 0..1, not {}",
                self.eos_probability
            ));
        }
        if self.shutdown_grace > Duration::from_secs(3600) {
            problems.push("shutdown_grace is over the 1h limit".to_owned());
        }
        if self.timer_spin > Duration::from_millis(5) {
            problems.push(format!(
                "timer_spin {} is over the 5ms limit (it burns CPU for that long before each token)",
                DisplayDuration(self.timer_spin)
            ));
        }
        match &self.timing {
            Timing::Deterministic { ttft, itl } => {
                if itl.is_zero() {
                    problems.push("itl must be above 0".to_owned());
                }
                for (name, d) in [("ttft", ttft), ("itl", itl)] {
                    if *d > Duration::from_secs(3600) {
                        problems.push(format!(
                            "{name} {} is over the 1h limit",
                            DisplayDuration(*d)
                        ));
                    }
                }
            }
            Timing::Engine(e) => e.check(problems),
        }
        let g = &self.gpu;
        if g.count == 0 {
            problems.push("gpu.count must be at least 1".to_owned());
        }
        if g.used_mib > g.memory_mib {
            problems.push(format!(
                "gpu.used_mib {} exceeds gpu.memory_mib {}",
                g.used_mib, g.memory_mib
            ));
        }
        if !(g.power_idle_w >= 0.0 && g.power_max_w >= g.power_idle_w) {
            problems.push("gpu power needs 0 <= power_idle_w <= power_max_w".to_owned());
        }
        for (i, f) in self.faults.iter().enumerate() {
            if let Err(e) = f.validate() {
                problems.push(format!("faults[{i}] ({}): {e}", f.kind.name()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_deterministic_preset() {
        let r = SimConfig::default().resolve().expect("default resolves");
        assert_eq!(r.model, DEFAULT_MODEL);
        assert_eq!(r.max_model_len, 131_072);
        assert_eq!(
            r.timing,
            Timing::Deterministic {
                ttft: Duration::from_millis(50),
                itl: Duration::from_millis(10)
            }
        );
    }

    #[test]
    fn toml_overrides_an_engine_preset() {
        let text = r#"
            preset = "llama-3.1-8b-h100"
            model = "m"
            [engine]
            max_num_seqs = 8
            step_base = "5ms"
            [gpu]
            count = 2
            [[faults]]
            kind = "http_429"
            rate = 0.1
            retry_after = "2s"
        "#;
        let r = SimConfig::from_toml_str(text, "t.toml")
            .and_then(|c| c.resolve())
            .expect("valid");
        let Timing::Engine(e) = r.timing else {
            panic!("engine preset")
        };
        assert_eq!(e.max_num_seqs, 8);
        assert_eq!(e.step_base, Duration::from_millis(5));
        assert_eq!(r.gpu.count, 2);
        assert_eq!(r.faults.len(), 1);
    }

    #[test]
    fn a_config_survives_a_toml_round_trip() {
        let cfg = SimConfig {
            preset: "llama-3.1-8b-h100".into(),
            model: Some("m".into()),
            engine: EngineOverrides {
                max_num_seqs: Some(8),
                step_base: Some(Duration::from_micros(7500)),
                ..Default::default()
            },
            faults: vec![
                "outage:at=30s,duration=10s".parse().expect("valid"),
                "http_429:rate=0.5,retry_after=2s".parse().expect("valid"),
            ],
            pacer: PacerMode::Inline,
            ..SimConfig::default()
        };
        let text = toml::to_string(&cfg).expect("serializes");
        let back = SimConfig::from_toml_str(&text, "round-trip").expect("parses");
        assert_eq!(back, cfg, "{text}");
        let text = toml::to_string(&SimConfig::default()).expect("serializes");
        assert_eq!(
            SimConfig::from_toml_str(&text, "default").expect("parses"),
            SimConfig::default()
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = SimConfig::from_toml_str("presett = \"x\"", "t.toml").unwrap_err();
        assert!(err.to_string().contains("presett"), "{err}");
        let err = SimConfig::from_toml_str("[engine]\nmax_seqs = 1", "t.toml").unwrap_err();
        assert!(err.to_string().contains("max_seqs"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let cfg = SimConfig {
            itl: Duration::ZERO,
            eos_probability: 2.0,
            default_max_tokens: 0,
            engine: EngineOverrides {
                max_num_seqs: Some(1),
                ..Default::default()
            },
            ..SimConfig::default()
        };
        let ConfigError::Invalid { problems } = cfg.resolve().unwrap_err() else {
            panic!("invalid expected")
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        let err = SimConfig {
            preset: "nope".into(),
            ..SimConfig::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("deterministic"), "{err}");
    }

    #[test]
    fn a_plans_table_reads_the_plan_duration_grammar() {
        let plan = "name = \"p\"\n[target.sim]\nttft = \"1m30s\"\nitl = \"1.5ms\"\n[[target.sim.faults]]\nkind = \"outage\"\nat = \"1m30s\"\nduration = \"10s\"\n[[stage]]\nname = \"s\"\nqps = 1\nduration = \"2m\"\n";
        let c = SimConfig::from_plan_str(plan, "plan.toml").expect("valid");
        assert_eq!(c.ttft, Duration::from_secs(90));
        assert_eq!(c.itl, Duration::from_micros(1500));
        assert_eq!(c.faults[0].at, Some(Duration::from_secs(90)));
        let none =
            SimConfig::from_plan_str("name = \"p\"\n[target]\napi = \"chat\"\n", "plan.toml");
        assert_eq!(none.expect("valid"), SimConfig::default());
    }

    #[test]
    fn a_plans_table_errors_name_the_plan_line_and_field() {
        let plan = "name = \"p\"\n[target.sim]\npreset = \"deterministic\"\nttft = \"5 parsecs\"\n";
        let err = SimConfig::from_plan_str(plan, "plan.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("plan.toml:4:8: target.sim.ttft: "), "{err}");
        assert!(err.contains("duration such as"), "{err}");
        let plan = "name = \"p\"\n[target.sim]\nitl = \"0s\"\neos_probability = 2.0\n";
        let err = SimConfig::from_plan_str(plan, "plan.toml")
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("plan.toml:2:1: target.sim: ")),
            "{err}"
        );
        let plan = "[target.sim]\nttfts = \"1s\"\n";
        let err = SimConfig::from_plan_str(plan, "plan.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("plan.toml:2:1: target.sim.ttfts: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn every_example_plans_table_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("examples/") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                SimConfig::load_plan(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 10);
    }
}
