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
    let at = stampede_text::locate(text, span.start);
    PlanIssue {
        line: at.line,
        column: at.column,
        field: at.field,
        message: message.to_string(),
    }
}
