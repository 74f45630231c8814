//! The workload as agents receive it ([`WorkloadSpec`]): content, not paths, sent as JSON with a
//! version that the agent checks.

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schema::{DEFAULT_TOKENIZER, Fit};

/// A length distribution, resolved: what the agents sample from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthDist {
    Fixed(u32),
    Uniform {
        min: u32,
        max: u32,
    },
    /// Rounded and clamped into `min..=max`.
    Normal {
        mean: f64,
        stddev: f64,
        min: u32,
        max: u32,
    },
    /// One of the values, equally likely (a list, or an empirical distribution).
    Choices(Vec<u32>),
}

impl LengthDist {
    /// One length.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { min, max } => rng.random_range(*min..=*max),
            LengthDist::Normal {
                mean,
                stddev,
                min,
                max,
            } => {
                let x = Normal::new(*mean, *stddev).map_or(*mean, |n| n.sample(rng));
                // Clamped in f64 first, so the cast cannot overflow.
                (x.round().clamp(f64::from(*min), f64::from(*max))) as u32
            }
            LengthDist::Choices(v) if v.is_empty() => 1,
            LengthDist::Choices(v) => v[rng.random_range(0..v.len())],
        }
    }

    /// The shortest length it can give.
    pub fn min(&self) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { min, .. } | LengthDist::Normal { min, .. } => *min,
            LengthDist::Choices(v) => v.iter().copied().min().unwrap_or(1),
        }
    }

    /// The longest length it can give.
    pub fn max(&self) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { max, .. } | LengthDist::Normal { max, .. } => *max,
            LengthDist::Choices(v) => v.iter().copied().max().unwrap_or(1),
        }
    }

    /// The mean length (before clamping, for the normal distribution).
    pub fn mean(&self) -> f64 {
        match self {
            LengthDist::Fixed(n) => f64::from(*n),
            LengthDist::Uniform { min, max } => (f64::from(*min) + f64::from(*max)) / 2.0,
            LengthDist::Normal { mean, .. } => *mean,
            LengthDist::Choices(v) => {
                v.iter().map(|n| f64::from(*n)).sum::<f64>() / v.len().max(1) as f64
            }
        }
    }
}

/// The workload as agents receive it: content, not paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// The tokenizer's name as summary.json reports it: a built-in encoding, or the
    /// tokenizer.json's path as the plan wrote it.
    pub tokenizer: String,
    /// The tokenizer.json's content, for a Hugging Face tokenizer.
    #[serde(default)]
    pub tokenizer_json: Option<String>,
    pub classes: Vec<ClassSpec>,
}

/// One request class, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSpec {
    pub name: String,
    /// Share of the requests, 0..=1; the classes' weights add up to 1.
    pub weight: f64,
    pub input_tokens: LengthDist,
    pub output_tokens: LengthDist,
    pub source: SourceSpec,
    pub unique: bool,
    pub shared_prefix: Option<PrefixSpec>,
    pub multi_turn: Option<MultiTurnSpec>,
    pub ignore_eos: bool,
    pub send_ignore_eos: bool,
    pub send_min_tokens: bool,
    /// Sent with every request, beside the fields Stampede sets.
    pub extra_body: Map<String, Value>,
}

/// Where a class's prompts come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceSpec {
    /// Words that are one token each, drawn from a seeded generator.
    Synthetic,
    Template {
        /// The template's file as the plan named it, or `template_text`.
        name: String,
        text: String,
        /// `vars` from the plan.
        vars: Map<String, Value>,
        /// Rows from `vars_file`: request i takes row i mod n.
        rows: Vec<VarRow>,
        /// The file the rows came from, for errors.
        rows_file: Option<String>,
    },
    Dataset {
        /// The file as the plan named it.
        name: String,
        rows: Vec<DatasetRow>,
        fit: Fit,
    },
}

/// One row of template variables and the line it was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarRow {
    pub line: u32,
    pub values: Map<String, Value>,
}

/// One prompt of a dataset: its messages (a plain prompt is one user message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    /// 1-based line of the file (JSONL, text) or position in the array (ShareGPT JSON).
    pub line: u32,
    pub messages: Vec<ChatMessage>,
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Shared system prompts, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrefixSpec {
    pub count: u32,
    pub tokens: u32,
    pub fraction: f64,
}

/// Multi-turn sessions, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MultiTurnSpec {
    pub turns: u32,
    pub think_time_us: u64,
}

impl WorkloadSpec {
    /// A single synthetic class of fixed lengths: what a share without a spec asks for.
    pub fn fixed(input_tokens: u32, output_tokens: u32, ignore_eos: bool) -> WorkloadSpec {
        WorkloadSpec {
            tokenizer: DEFAULT_TOKENIZER.into(),
            tokenizer_json: None,
            classes: vec![ClassSpec {
                name: "default".into(),
                weight: 1.0,
                input_tokens: LengthDist::Fixed(input_tokens.max(1)),
                output_tokens: LengthDist::Fixed(output_tokens.max(1)),
                source: SourceSpec::Synthetic,
                unique: true,
                shared_prefix: None,
                multi_turn: None,
                ignore_eos,
                send_ignore_eos: ignore_eos,
                send_min_tokens: ignore_eos,
                extra_body: Map::new(),
            }],
        }
    }

    /// A stable identifier of the content: FNV-1a 64 of its JSON, in hex.
    pub fn id_of(json: &[u8]) -> String {
        let h = json.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{h:016x}")
    }

    /// The class names, in order.
    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }
}
