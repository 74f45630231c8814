//! The checks of `[workload]` that need no file's content: conflicting fields, bad weights,
//! files that are not there. Each class is checked with the workload's defaults filled in.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use super::merged::Merged;
use super::schema::{
    BUILTIN_TOKENIZERS, LengthPlan, MAX_TOKENS, RESERVED_BODY_FIELDS, SharedPrefixPlan,
    WorkloadPlan,
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
        if !self.builtin_tokenizer() {
            let path = dir.join(&self.tokenizer);
            if !path.is_file() {
                out.push(WorkloadProblem {
                    field: "workload.tokenizer".into(),
                    span: None,
                    message: format!(
                        "{:?} is neither a built-in encoding ({}) nor a tokenizer.json file: {} is not there",
                        self.tokenizer,
                        BUILTIN_TOKENIZERS.join(", "),
                        path.display()
                    ),
                });
            }
        }
        let mut names = BTreeSet::new();
        for m in self.merged() {
            let mut class = ClassChecks {
                m: &m,
                out: &mut out,
            };
            if !self.classes.is_empty() {
                class.identity(&mut names);
            }
            class.source();
            class.files(dir);
            if let Some(p) = m.shared_prefix {
                class.shared_prefix(p);
            }
            class.sessions_and_body();
        }
        out
    }
}

/// The checks of one class, its problems pushed to `out` with the class's field and span.
struct ClassChecks<'a, 'm> {
    m: &'a Merged<'m>,
    out: &'a mut Vec<WorkloadProblem>,
}

impl ClassChecks<'_, '_> {
    fn bad(&mut self, name: &str, message: String) {
        self.out.push(WorkloadProblem {
            field: format!("{}.{name}", self.m.field),
            span: self.m.span.clone(),
            message,
        });
    }

    /// A name of its own and a weight above 0.
    fn identity(&mut self, names: &mut BTreeSet<String>) {
        let m = self.m;
        if m.name.trim().is_empty() {
            self.bad("name", "must not be empty".into());
        } else if !names.insert(m.name.to_string()) {
            let message = format!("{:?} is already the name of another class", m.name);
            self.bad("name", message);
        }
        if !(m.weight.is_finite() && m.weight > 0.0) {
            self.bad("weight", format!("must be above 0, got {}", m.weight));
        }
    }

    /// One prompt source, and variables only for a template.
    fn source(&mut self) {
        let m = self.m;
        let sources = [
            m.template.is_some(),
            m.template_text.is_some(),
            m.dataset.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            self.bad(
                "template",
                "give one prompt source: template, template_text or dataset".into(),
            );
        }
        let templated = m.template.is_some() || m.template_text.is_some();
        if (m.vars_file.is_some() || m.vars.is_some()) && !templated {
            self.bad(
                "vars",
                "vars and vars_file are for templates: add template or template_text".into(),
            );
        }
    }

    /// Every file the class names is there (its content is read by the resolution).
    fn files(&mut self, dir: &Path) {
        let m = self.m;
        let mut files: Vec<(&str, &Path)> = Vec::new();
        if let Some(t) = m.template {
            files.push(("template", t));
        }
        if let Some(v) = m.vars_file {
            files.push(("vars_file", v));
        }
        if let Some(d) = m.dataset {
            files.push(("dataset.file", &d.file));
        }
        for (field, len) in [
            ("input_tokens", m.input_tokens),
            ("output_tokens", m.output_tokens),
        ] {
            if let LengthPlan::File { file, .. } = len {
                files.push((field, file));
            }
        }
        for (field, file) in files {
            let path = dir.join(file);
            if !path.is_file() {
                self.bad(field, format!("{} is not there", path.display()));
            }
            if field == "dataset.file" && m.dataset.is_some_and(|d| d.limit == Some(0)) {
                self.bad("dataset.limit", "must be at least 1".into());
            }
        }
    }

    /// Shared prefixes that exist and fit inside the shortest input.
    fn shared_prefix(&mut self, p: &SharedPrefixPlan) {
        let m = self.m;
        if p.count == 0 {
            self.bad("shared_prefix.count", "must be at least 1".into());
        }
        if p.tokens == 0 || p.tokens > MAX_TOKENS {
            let message = format!("expected 1 to {MAX_TOKENS} tokens, got {}", p.tokens);
            self.bad("shared_prefix.tokens", message);
        }
        let shortest = min_of(m.input_tokens);
        if m.dataset.is_none() && p.fraction.0 > 0.0 && shortest.is_some_and(|s| s <= p.tokens) {
            self.bad(
                "shared_prefix.tokens",
                format!(
                    "input_tokens counts the shared prefix, so it must be longer than the prefix: the shortest input is {} tokens, the prefix {}",
                    shortest.unwrap_or(0),
                    p.tokens
                ),
            );
        }
    }

    /// Sessions of at least one turn, and no body field that Stampede sets itself.
    fn sessions_and_body(&mut self) {
        let m = self.m;
        if let Some(t) = m.multi_turn
            && t.turns == 0
        {
            self.bad("multi_turn.turns", "must be at least 1".into());
        }
        for k in m.extra_body.iter().flat_map(|extra| extra.keys()) {
            if RESERVED_BODY_FIELDS.contains(&k.as_str()) || k == "ignore_eos" {
                self.bad(
                    "extra_body",
                    format!(
                        "{k:?} is set by Stampede: use input_tokens, output_tokens, ignore_eos and exact_output_fields instead"
                    ),
                );
            }
        }
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
