//! The workload: what each request asks for, as a plan writes it (`[workload]`) and as agents
//! receive it ([`WorkloadSpec`]).
//!
//! A workload is one or more request classes (`[[workload.class]]`, weighted), each with its
//! input and output length distributions ([`LengthPlan`]), its prompt source (synthetic text,
//! a minijinja template with variables, or a dataset), shared system prompts, multi-turn
//! sessions and output control. Fields set at the top of `[workload]` are inherited by every
//! class that does not set its own.
//!
//! Checking happens in three places, all before the run starts:
//! - [`WorkloadPlan::problems`]: what the plan says, field by field (part of `Plan::validate`);
//! - [`WorkloadPlan::resolve`]: every file the workload names is read (templates, variable rows,
//!   datasets, length files, a tokenizer.json), with errors naming the file, the line or row and
//!   the field. The result holds content, not paths, so remote agents need none of the
//!   controller's files;
//! - the agent's `WorkloadEngine`, which needs the tokenizer: undefined template variables,
//!   lengths a dataset cannot reach. The controller builds one too, before any agent starts.
//!
//! - `schema`: `[workload]` as written; `merged`: each class with the defaults filled in;
//! - `checks`: [`WorkloadPlan::problems`];
//! - `resolve`: [`WorkloadPlan::resolve`]; `readers`: the files' readers;
//! - `spec`: the [`WorkloadSpec`] agents receive; `wire`: its JSON, versioned, checked by agents.

mod checks;
mod merged;
mod readers;
mod resolve;
mod schema;
mod spec;
#[cfg(test)]
mod tests;
mod wire;

pub use checks::WorkloadProblem;
pub use readers::{
    PROMPT_FIELDS, WorkloadError, dataset_format, read_dataset, read_lengths, read_var_rows,
};
pub use resolve::toml_to_json;
pub use schema::{
    BUILTIN_TOKENIZERS, ClassPlan, DEFAULT_TOKENIZER, DatasetFormat, DatasetPlan, ExactField, Fit,
    LengthPlan, MAX_TOKENS, MultiTurnPlan, RESERVED_BODY_FIELDS, SharedPrefixPlan, WorkloadPlan,
};
pub use spec::{
    ChatMessage, ClassSpec, DatasetRow, LengthDist, MultiTurnSpec, PrefixSpec, SourceSpec, VarRow,
    WorkloadSpec,
};
pub use wire::{SpecWireError, WORKLOAD_SPEC_VERSION};
