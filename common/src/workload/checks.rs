//! The checks of `[workload]` that need no file's content: conflicting fields, bad weights,
//! files that are not there. Each class is checked with the workload's defaults filled in.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use super::schema::{
    BUILTIN_TOKENIZERS, LengthPlan, MAX_TOKENS, RESERVED_BODY_FIELDS, WorkloadPlan,
};

/// One problem of `[workload]`: the field, where it is written (when known), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadProblem {
    pub field: String,
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl WorkloadPlan {
    /// Every problem of `[workload]` that can be seen without reading its files' content:
    /// conflicting fields, bad weights, files that are not there. `dir` is the plan's folder.
    pub fn problems(&self, dir: &Path) -> Vec<WorkloadProblem> {
        let mut out = Vec::new();
        let mut bad = |field: String, span: Option<Range<usize>>, message: String| {
            out.push(WorkloadProblem {
                field,
                span,
                message,
            });
        };
        if !self.builtin_tokenizer() {
            let path = dir.join(&self.tokenizer);
            if !path.is_file() {
                bad(
                    "workload.tokenizer".into(),
                    None,
                    format!(
                        "{:?} is neither a built-in encoding ({}) nor a tokenizer.json file: {} is not there",
                        self.tokenizer,
                        BUILTIN_TOKENIZERS.join(", "),
                        path.display()
                    ),
                );
            }
        }
        let mut names = BTreeSet::new();
        for m in self.merged() {
            let f = |name: &str| format!("{}.{name}", m.field);
            let span = m.span.clone();
            if !self.classes.is_empty() {
                if m.name.trim().is_empty() {
                    bad(f("name"), span.clone(), "must not be empty".into());
                } else if !names.insert(m.name.to_string()) {
                    bad(
                        f("name"),
                        span.clone(),
                        format!("{:?} is already the name of another class", m.name),
                    );
                }
                if !(m.weight.is_finite() && m.weight > 0.0) {
                    bad(
                        f("weight"),
                        span.clone(),
                        format!("must be above 0, got {}", m.weight),
                    );
                }
            }
            let sources = [
                m.template.is_some(),
                m.template_text.is_some(),
                m.dataset.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() > 1 {
                bad(
                    f("template"),
                    span.clone(),
                    "give one prompt source: template, template_text or dataset".into(),
                );
            }
            let templated = m.template.is_some() || m.template_text.is_some();
            if (m.vars_file.is_some() || m.vars.is_some()) && !templated {
                bad(
                    f("vars"),
                    span.clone(),
                    "vars and vars_file are for templates: add template or template_text".into(),
                );
            }
            let mut file = |field: &str, p: &Path| {
                let path = dir.join(p);
                if !path.is_file() {
                    bad(
                        f(field),
                        span.clone(),
                        format!("{} is not there", path.display()),
                    );
                }
            };
            if let Some(t) = m.template {
                file("template", t);
            }
            if let Some(v) = m.vars_file {
                file("vars_file", v);
            }
            if let Some(d) = m.dataset {
                file("dataset.file", &d.file);
                if d.limit == Some(0) {
                    bad(
                        f("dataset.limit"),
                        span.clone(),
                        "must be at least 1".into(),
                    );
                }
            }
            for (field, len) in [
                ("input_tokens", m.input_tokens),
                ("output_tokens", m.output_tokens),
            ] {
                if let LengthPlan::File { file: p, .. } = len {
                    let path = dir.join(p);
                    if !path.is_file() {
                        bad(
                            f(field),
                            span.clone(),
                            format!("{} is not there", path.display()),
                        );
                    }
                }
            }
            if let Some(p) = m.shared_prefix {
                if p.count == 0 {
                    bad(
                        f("shared_prefix.count"),
                        span.clone(),
                        "must be at least 1".into(),
                    );
                }
                if p.tokens == 0 || p.tokens > MAX_TOKENS {
                    bad(
                        f("shared_prefix.tokens"),
                        span.clone(),
                        format!("expected 1 to {MAX_TOKENS} tokens, got {}", p.tokens),
                    );
                }
                let shortest = min_of(m.input_tokens);
                if m.dataset.is_none()
                    && p.fraction.0 > 0.0
                    && shortest.is_some_and(|s| s <= p.tokens)
                {
                    bad(
                        f("shared_prefix.tokens"),
                        span.clone(),
                        format!(
                            "input_tokens counts the shared prefix, so it must be longer than the prefix: the shortest input is {} tokens, the prefix {}",
                            shortest.unwrap_or(0),
                            p.tokens
                        ),
                    );
                }
            }
            if let Some(t) = m.multi_turn
                && t.turns == 0
            {
                bad(
                    f("multi_turn.turns"),
                    span.clone(),
                    "must be at least 1".into(),
                );
            }
            if let Some(extra) = m.extra_body {
                for k in extra.keys() {
                    if RESERVED_BODY_FIELDS.contains(&k.as_str()) || k == "ignore_eos" {
                        bad(
                            f("extra_body"),
                            span.clone(),
                            format!(
                                "{k:?} is set by Stampede: use input_tokens, output_tokens, ignore_eos and exact_output_fields instead"
                            ),
                        );
                    }
                }
            }
        }
        out
    }
}

fn min_of(l: &LengthPlan) -> Option<u32> {
    match l {
        LengthPlan::Fixed(n) => Some(*n),
        LengthPlan::Uniform(lo, _) => Some(*lo),
        LengthPlan::Normal { min, .. } => Some(min.unwrap_or(1)),
        LengthPlan::List(v) => v.iter().copied().min(),
        LengthPlan::File { .. } => None,
    }
}
