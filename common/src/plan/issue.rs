//! Where a plan's problems are: [`PlanIssue`] (line, column, field, message), [`PlanError`]
//! (every issue of one file), and the mapping from a byte span of the text to its line and the
//! dotted field written there.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem found in a plan, located in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanIssue {
    /// 1-based line and column; 0 when the problem concerns the whole file.
    pub line: usize,
    pub column: usize,
    /// The dotted path of the field, such as `stage[2].qps`, when known.
    pub field: Option<String>,
    pub message: String,
}

/// A plan that could not be read, parsed or validated: every problem found, with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    pub file: PathBuf,
    pub issues: Vec<PlanIssue>,
}

impl PlanIssue {
    /// The issue at byte `span` of the plan `text`: its line and column, and the field written
    /// there (such as `target.sim.ttft`).
    pub fn at(text: &str, span: &Range<usize>, message: &str) -> PlanIssue {
        issue_at(text, span, message)
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if issue.line > 0 {
                write!(f, ":{}:{}", issue.line, issue.column)?;
            }
            write!(f, ": ")?;
            if let Some(field) = &issue.field {
                write!(f, "{field}: ")?;
            }
            write!(f, "{}", issue.message)?;
        }
        Ok(())
    }
}

/// Locates a byte span of `text`: its line and column, and the field written there.
pub(crate) fn issue_at(text: &str, span: &Range<usize>, message: &str) -> PlanIssue {
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    PlanIssue {
        line,
        column,
        field: field_at(text, line_start, start),
        message: message.to_string(),
    }
}

/// The dotted field at a position: the key on its line (when the position is in the value or
/// the key), prefixed by the table header above it.
fn field_at(text: &str, line_start: usize, pos: usize) -> Option<String> {
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let key = line.split_once('=').and_then(|(k, _)| {
        let k = k.trim();
        (!k.is_empty() && !k.starts_with('[') && !k.starts_with('#')).then(|| k.to_string())
    });
    let mut table: Option<String> = None;
    let mut stage_count = 0usize;
    for l in text[..pos.min(line_end)].lines() {
        let t = l.trim();
        if t.starts_with("[[stage]]") {
            table = Some(format!("stage[{stage_count}]"));
            stage_count += 1;
        } else if let Some(h) = t.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            table = Some(h.trim().to_string());
        } else if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = Some(h.trim().to_string());
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}
