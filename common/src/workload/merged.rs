//! Each request class with the workload's defaults filled in: what both the checks and the
//! resolution read, so that inheritance is decided in one place.

use std::ops::Range;
use std::path::PathBuf;

use super::schema::{
    BUILTIN_TOKENIZERS, DatasetPlan, ExactField, LengthPlan, MultiTurnPlan, SharedPrefixPlan,
    WorkloadPlan,
};

/// A class with the workload's defaults filled in: every field as the plan wrote it.
pub(super) struct Merged<'a> {
    pub(super) name: &'a str,
    pub(super) field: String,
    pub(super) weight: f64,
    pub(super) input_tokens: &'a LengthPlan,
    pub(super) output_tokens: &'a LengthPlan,
    pub(super) ignore_eos: bool,
    pub(super) exact_output_fields: &'a [ExactField],
    pub(super) unique: bool,
    pub(super) template: Option<&'a PathBuf>,
    pub(super) template_text: Option<&'a String>,
    pub(super) vars: Option<&'a toml::Table>,
    pub(super) vars_file: Option<&'a PathBuf>,
    pub(super) dataset: Option<&'a DatasetPlan>,
    pub(super) shared_prefix: Option<&'a SharedPrefixPlan>,
    pub(super) multi_turn: Option<&'a MultiTurnPlan>,
    pub(super) extra_body: Option<&'a toml::Table>,
    pub(super) span: Option<Range<usize>>,
}

impl WorkloadPlan {
    /// The prompt length every request has, when there is one: one class of a fixed length.
    pub fn fixed_input_tokens(&self) -> Option<u32> {
        self.merged()
            .iter()
            .map(|c| c.input_tokens.fixed())
            .reduce(|a, b| if a == b { a } else { None })
            .flatten()
    }

    /// The output length every request asks for, when there is one.
    pub fn fixed_output_tokens(&self) -> Option<u32> {
        self.merged()
            .iter()
            .map(|c| c.output_tokens.fixed())
            .reduce(|a, b| if a == b { a } else { None })
            .flatten()
    }

    /// True when `tokenizer` names a built-in encoding rather than a file.
    pub fn builtin_tokenizer(&self) -> bool {
        BUILTIN_TOKENIZERS.contains(&self.tokenizer.as_str())
    }

    /// Each class with the workload's defaults filled in (one class, `default`, when none is
    /// written).
    pub(super) fn merged(&self) -> Vec<Merged<'_>> {
        let top = |field: String, span| Merged {
            name: "default",
            field,
            weight: 1.0,
            input_tokens: &self.input_tokens,
            output_tokens: &self.output_tokens,
            ignore_eos: self.ignore_eos,
            exact_output_fields: &self.exact_output_fields,
            unique: self.unique,
            template: self.template.as_ref(),
            template_text: self.template_text.as_ref(),
            vars: self.vars.as_ref(),
            vars_file: self.vars_file.as_ref(),
            dataset: self.dataset.as_ref(),
            shared_prefix: self.shared_prefix.as_ref(),
            multi_turn: self.multi_turn.as_ref(),
            extra_body: self.extra_body.as_ref(),
            span,
        };
        if self.classes.is_empty() {
            return vec![top("workload".into(), None)];
        }
        self.classes
            .iter()
            .enumerate()
            .map(|(i, spanned)| {
                let c = spanned.get_ref();
                let mut m = top(format!("workload.class[{i}]"), Some(spanned.span()));
                m.name = &c.name;
                m.weight = c.weight;
                if let Some(v) = &c.input_tokens {
                    m.input_tokens = v;
                }
                if let Some(v) = &c.output_tokens {
                    m.output_tokens = v;
                }
                m.ignore_eos = c.ignore_eos.unwrap_or(m.ignore_eos);
                if let Some(v) = &c.exact_output_fields {
                    m.exact_output_fields = v;
                }
                m.unique = c.unique.unwrap_or(m.unique);
                // A class that names a source of its own replaces the workload's.
                if c.template.is_some() || c.template_text.is_some() || c.dataset.is_some() {
                    m.template = c.template.as_ref();
                    m.template_text = c.template_text.as_ref();
                    m.dataset = c.dataset.as_ref();
                }
                if c.vars.is_some() {
                    m.vars = c.vars.as_ref();
                }
                if c.vars_file.is_some() {
                    m.vars_file = c.vars_file.as_ref();
                }
                if c.shared_prefix.is_some() {
                    m.shared_prefix = c.shared_prefix.as_ref();
                }
                if c.multi_turn.is_some() {
                    m.multi_turn = c.multi_turn.as_ref();
                }
                if c.extra_body.is_some() {
                    m.extra_body = c.extra_body.as_ref();
                }
                m
            })
            .collect()
    }
}
