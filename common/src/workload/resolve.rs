//! From `[workload]` to the [`WorkloadSpec`] agents receive: every file the workload names read
//! (templates, variable rows, datasets, length files, a tokenizer.json), so that remote agents
//! need none of the controller's files.

use std::path::Path;

use serde_json::{Map, Value};

use super::merged::Merged;
use super::readers::{WorkloadError, read_dataset, read_lengths, read_var_rows};
use super::schema::{ExactField, LengthPlan, MAX_TOKENS, WorkloadPlan};
use super::spec::{ClassSpec, LengthDist, MultiTurnSpec, PrefixSpec, SourceSpec, WorkloadSpec};

impl WorkloadPlan {
    /// Reads every file the workload names and returns what agents need. `dir` is the plan's
    /// folder; paths are relative to it.
    ///
    /// # Errors
    /// The first file that cannot be used, with its line or row and the field.
    pub fn resolve(&self, dir: &Path) -> Result<WorkloadSpec, WorkloadError> {
        let tokenizer_json = if self.builtin_tokenizer() {
            None
        } else {
            let path = dir.join(&self.tokenizer);
            Some(std::fs::read_to_string(&path).map_err(|e| WorkloadError {
                file: path.clone(),
                line: None,
                field: Some("workload.tokenizer".into()),
                message: format!("cannot read the tokenizer: {e}"),
            })?)
        };
        let merged = self.merged();
        let total: f64 = merged.iter().map(|m| m.weight).sum();
        let classes = (merged.iter())
            .map(|m| class_spec(dir, m, total))
            .collect::<Result<_, _>>()?;
        Ok(WorkloadSpec {
            tokenizer: self.tokenizer.clone(),
            tokenizer_json,
            classes,
        })
    }
}

/// One class, its files read; `total`: the sum of the classes' weights.
fn class_spec(dir: &Path, m: &Merged<'_>, total: f64) -> Result<ClassSpec, WorkloadError> {
    let f = |name: &str| format!("{}.{name}", m.field);
    // The source first: the first file that cannot be used is the one reported.
    let source = source_spec(dir, m)?;
    let fields = m.exact_output_fields;
    Ok(ClassSpec {
        name: m.name.to_string(),
        weight: if total > 0.0 { m.weight / total } else { 1.0 },
        input_tokens: resolve_length(dir, m.input_tokens, &f("input_tokens"))?,
        output_tokens: resolve_length(dir, m.output_tokens, &f("output_tokens"))?,
        source,
        unique: m.unique,
        shared_prefix: m.shared_prefix.map(|p| PrefixSpec {
            count: p.count,
            tokens: p.tokens,
            fraction: p.fraction.0,
        }),
        multi_turn: m.multi_turn.map(|t| MultiTurnSpec {
            turns: t.turns,
            think_time_us: crate::units::micros(t.think_time.0),
        }),
        ignore_eos: m.ignore_eos,
        send_ignore_eos: m.ignore_eos && fields.contains(&ExactField::IgnoreEos),
        send_min_tokens: m.ignore_eos && fields.contains(&ExactField::MinTokens),
        extra_body: m.extra_body.map(toml_to_json).unwrap_or_default(),
    })
}

/// Where a class's prompts come from: its dataset, its template (with variables), or
/// synthetic text.
fn source_spec(dir: &Path, m: &Merged<'_>) -> Result<SourceSpec, WorkloadError> {
    let f = |name: &str| format!("{}.{name}", m.field);
    if let Some(d) = m.dataset {
        return Ok(SourceSpec::Dataset {
            name: d.file.display().to_string(),
            rows: read_dataset(dir, d, &f("dataset"))?,
            fit: d.fit,
        });
    }
    let (name, text) = match (m.template, m.template_text) {
        (Some(p), _) => {
            let path = dir.join(p);
            let text = std::fs::read_to_string(&path).map_err(|e| WorkloadError {
                file: path.clone(),
                line: None,
                field: Some(f("template")),
                message: format!("cannot read the template: {e}"),
            })?;
            (p.display().to_string(), text)
        }
        (None, Some(t)) => (f("template_text"), t.clone()),
        (None, None) => return Ok(SourceSpec::Synthetic),
    };
    let (rows, rows_file) = match m.vars_file {
        Some(p) => (
            read_var_rows(&dir.join(p), &f("vars_file"))?,
            Some(p.display().to_string()),
        ),
        None => (Vec::new(), None),
    };
    Ok(SourceSpec::Template {
        name,
        text,
        vars: m.vars.map(toml_to_json).unwrap_or_default(),
        rows,
        rows_file,
    })
}

/// A TOML table as JSON (dates become strings).
pub fn toml_to_json(t: &toml::Table) -> Map<String, Value> {
    fn conv(v: &toml::Value) -> Value {
        match v {
            toml::Value::String(s) => Value::String(s.clone()),
            toml::Value::Integer(i) => Value::from(*i),
            toml::Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Datetime(d) => Value::String(d.to_string()),
            toml::Value::Array(a) => Value::Array(a.iter().map(conv).collect()),
            toml::Value::Table(t) => Value::Object(toml_to_json(t)),
        }
    }
    t.iter().map(|(k, v)| (k.clone(), conv(v))).collect()
}

fn resolve_length(dir: &Path, plan: &LengthPlan, field: &str) -> Result<LengthDist, WorkloadError> {
    Ok(match plan {
        LengthPlan::Fixed(n) => LengthDist::Fixed(*n),
        LengthPlan::Uniform(lo, hi) => LengthDist::Uniform { min: *lo, max: *hi },
        LengthPlan::Normal {
            mean,
            stddev,
            min,
            max,
        } => LengthDist::Normal {
            mean: *mean,
            stddev: *stddev,
            min: min.unwrap_or(1),
            max: max.unwrap_or(MAX_TOKENS),
        },
        LengthPlan::List(v) => LengthDist::Choices(v.clone()),
        LengthPlan::File { file, column } => {
            LengthDist::Choices(read_lengths(&dir.join(file), column.as_deref(), field)?)
        }
    })
}
