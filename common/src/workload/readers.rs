//! The readers of a workload's files: length distributions, template variable rows and
//! datasets (text, JSONL, ShareGPT), each error with its file, line or row and field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::schema::{DatasetFormat, DatasetPlan, MAX_TOKENS};
use super::spec::{ChatMessage, DatasetRow, VarRow};

/// A workload file that cannot be used: the file, the line or row, the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkloadError {
    pub file: PathBuf,
    /// 1-based line (or row of a JSON array); none when the whole file is concerned.
    pub line: Option<usize>,
    /// The plan field that named the file, such as `workload.class[1].dataset`, or the column.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Builds the errors of one file named by one plan field.
struct FileErrors<'a> {
    path: &'a Path,
    field: &'a str,
}

impl FileErrors<'_> {
    fn at(&self, line: Option<usize>, message: String) -> WorkloadError {
        WorkloadError {
            file: self.path.to_path_buf(),
            line,
            field: Some(self.field.to_string()),
            message,
        }
    }
}

/// Reads an empirical length distribution: one number per line (blank lines and `#` comments
/// skipped), or a column of a CSV (with a header) or JSONL file.
///
/// # Errors
/// When the file cannot be read, the column is missing, or a value is not a token count.
pub fn read_lengths(
    path: &Path,
    column: Option<&str>,
    field: &str,
) -> Result<Vec<u32>, WorkloadError> {
    let err = FileErrors { path, field };
    let text = std::fs::read_to_string(path)
        .map_err(|e| err.at(None, format!("cannot read the lengths: {e}")))?;
    let mut out = Vec::new();
    let mut push = |line: usize, s: &str| -> Result<(), WorkloadError> {
        let s = s.trim();
        let n = (s.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 1.0 && *v <= f64::from(MAX_TOKENS))
            .ok_or_else(|| {
                let message =
                    format!("expected a token count between 1 and {MAX_TOKENS}, got {s:?}");
                err.at(Some(line), message)
            })?;
        // In range 1..=MAX_TOKENS just above, so the rounded value fits a u32.
        out.push(n.round() as u32);
        Ok(())
    };
    match (column, is_jsonl(path)) {
        (Some(col), true) => jsonl_column(&text, col, &err, &mut push)?,
        (Some(col), false) => csv_column(&text, col, &err, &mut push)?,
        (None, _) => {
            for (i, line) in text.lines().enumerate() {
                let t = line.trim();
                if !(t.is_empty() || t.starts_with('#')) {
                    push(i + 1, t)?;
                }
            }
        }
    }
    if out.is_empty() {
        return Err(err.at(None, "the file holds no length".into()));
    }
    Ok(out)
}

/// Hands each JSONL line's `col` field to `push`, with its line.
fn jsonl_column(
    text: &str,
    col: &str,
    err: &FileErrors<'_>,
    push: &mut dyn FnMut(usize, &str) -> Result<(), WorkloadError>,
) -> Result<(), WorkloadError> {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| err.at(Some(i + 1), format!("not JSON: {e}")))?;
        let cell = (v.get(col)).ok_or_else(|| err.at(Some(i + 1), format!("no field {col:?}")))?;
        push(i + 1, &cell.to_string().replace('"', ""))?;
    }
    Ok(())
}

/// Hands each CSV row's `col` cell to `push`, with its line.
fn csv_column(
    text: &str,
    col: &str,
    err: &FileErrors<'_>,
    push: &mut dyn FnMut(usize, &str) -> Result<(), WorkloadError>,
) -> Result<(), WorkloadError> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = r
        .headers()
        .map_err(|e| err.at(Some(1), format!("cannot read the header: {e}")))?
        .clone();
    let idx = headers.iter().position(|h| h == col).ok_or_else(|| {
        let names = headers.iter().collect::<Vec<_>>().join(", ");
        err.at(
            Some(1),
            format!("no column {col:?}; the header has {names}"),
        )
    })?;
    for rec in r.records() {
        let rec =
            rec.map_err(|e| err.at(e.position().map(|p| p.line() as usize), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let cell = (rec.get(idx))
            .ok_or_else(|| err.at(Some(line), format!("the row has no {col:?} cell")))?;
        push(line, cell)?;
    }
    Ok(())
}

fn is_jsonl(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson")
    )
}

/// Reads rows of template variables: CSV with a header row, or JSONL objects.
///
/// # Errors
/// When the file cannot be read or a row is malformed (with its line).
pub fn read_var_rows(path: &Path, field: &str) -> Result<Vec<VarRow>, WorkloadError> {
    let errors = FileErrors { path, field };
    let err = |line: Option<usize>, message: String| errors.at(line, message);
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(None, format!("cannot read the variables: {e}")))?;
    let mut rows = Vec::new();
    if is_jsonl(path) {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(values)) => rows.push(VarRow {
                    line: (i + 1) as u32,
                    values,
                }),
                Ok(other) => {
                    return Err(err(
                        Some(i + 1),
                        format!("expected a JSON object of variables, got {other}"),
                    ));
                }
                Err(e) => return Err(err(Some(i + 1), format!("not JSON: {e}"))),
            }
        }
    } else {
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let headers = r
            .headers()
            .map_err(|e| err(Some(1), format!("cannot read the header: {e}")))?
            .clone();
        for rec in r.records() {
            let rec = rec.map_err(|e| {
                err(
                    e.position().map(|p| p.line() as usize),
                    format!("malformed row: {e}"),
                )
            })?;
            let line = rec.position().map_or(0, |p| p.line() as u32);
            let values = headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                .collect();
            rows.push(VarRow { line, values });
        }
    }
    if rows.is_empty() {
        return Err(err(None, "the file holds no row".into()));
    }
    Ok(rows)
}

/// The dataset's format: as the plan says, else from the file's extension.
pub fn dataset_format(d: &DatasetPlan) -> DatasetFormat {
    d.format
        .unwrap_or_else(|| match d.file.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => DatasetFormat::Jsonl,
            Some("json") => DatasetFormat::Sharegpt,
            _ => DatasetFormat::Text,
        })
}

/// Fields tried, in order, for the prompt of a JSONL row.
pub const PROMPT_FIELDS: [&str; 4] = ["prompt", "text", "input", "question"];

/// Reads a dataset into rows of chat messages. `field` names the plan field, for errors.
///
/// # Errors
/// When the file cannot be read or a row is malformed: the line (or the row of a JSON array)
/// and the field that is missing or wrong.
pub fn read_dataset(
    dir: &Path,
    d: &DatasetPlan,
    field: &str,
) -> Result<Vec<DatasetRow>, WorkloadError> {
    let path = dir.join(&d.file);
    let err = DatasetErrors { path: &path, field };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| err.at(None, "", format!("cannot read the dataset: {e}")))?;
    let limit = d.limit.unwrap_or(usize::MAX);
    let rows = match dataset_format(d) {
        DatasetFormat::Text => text_rows(&text, limit),
        DatasetFormat::Jsonl => jsonl_rows(&text, d.field.as_deref(), limit, &err)?,
        DatasetFormat::Sharegpt => sharegpt_rows(&text, limit, &err)?,
    };
    if rows.is_empty() {
        return Err(err.at(None, "", "the dataset holds no prompt".into()));
    }
    Ok(rows)
}

/// Builds the errors of a dataset: its file, and the plan field with the row's own field.
struct DatasetErrors<'a> {
    path: &'a Path,
    field: &'a str,
}

impl DatasetErrors<'_> {
    fn at(&self, line: Option<usize>, f: &str, message: String) -> WorkloadError {
        WorkloadError {
            file: self.path.to_path_buf(),
            line,
            field: Some(if f.is_empty() {
                self.field.to_string()
            } else {
                format!("{}: {f}", self.field)
            }),
            message,
        }
    }
}

/// One prompt per non-empty line.
fn text_rows(text: &str, limit: usize) -> Vec<DatasetRow> {
    (text.lines().enumerate())
        .filter(|(_, line)| !line.trim().is_empty())
        .take(limit)
        .map(|(i, line)| DatasetRow {
            line: (i + 1) as u32,
            messages: vec![user(line)],
        })
        .collect()
}

/// One prompt per JSONL object: its `messages`, or its prompt field.
fn jsonl_rows(
    text: &str,
    field: Option<&str>,
    limit: usize,
    err: &DatasetErrors<'_>,
) -> Result<Vec<DatasetRow>, WorkloadError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if rows.len() >= limit {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| err.at(Some(i + 1), "", format!("not JSON: {e}")))?;
        let messages = jsonl_row(&v, field).map_err(|(f, m)| err.at(Some(i + 1), &f, m))?;
        rows.push(DatasetRow {
            line: (i + 1) as u32,
            messages,
        });
    }
    Ok(rows)
}

/// One prompt per ShareGPT conversation, from a JSON array or one conversation per line.
fn sharegpt_rows(
    text: &str,
    limit: usize,
    err: &DatasetErrors<'_>,
) -> Result<Vec<DatasetRow>, WorkloadError> {
    let items: Vec<(usize, Value)> = if text.trim_start().starts_with('[') {
        let all: Vec<Value> = serde_json::from_str(text).map_err(|e| {
            let message = format!("not a JSON array of conversations: {e}");
            err.at(Some(e.line()), "", message)
        })?;
        (all.into_iter().enumerate())
            .map(|(i, v)| (i + 1, v))
            .collect()
    } else {
        let mut v = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let item = serde_json::from_str(line)
                .map_err(|e| err.at(Some(i + 1), "", format!("not JSON: {e}")))?;
            v.push((i + 1, item));
        }
        v
    };
    let mut rows = Vec::new();
    for (row, v) in items.into_iter().take(limit) {
        let messages = sharegpt_row(&v).map_err(|(f, m)| err.at(Some(row), &f, m))?;
        rows.push(DatasetRow {
            line: row as u32,
            messages,
        });
    }
    Ok(rows)
}

pub(super) fn user(text: &str) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: text.to_string(),
    }
}

/// A JSONL row: `messages` (chat), or a prompt field.
fn jsonl_row(v: &Value, field: Option<&str>) -> Result<Vec<ChatMessage>, (String, String)> {
    let obj = v
        .as_object()
        .ok_or_else(|| (String::new(), format!("expected a JSON object, got {v}")))?;
    if field.is_none()
        && let Some(m) = obj.get("messages")
    {
        return chat_messages(m, "messages");
    }
    let names: Vec<&str> = match field {
        Some(f) => vec![f],
        None => PROMPT_FIELDS.to_vec(),
    };
    for name in &names {
        if let Some(p) = obj.get(*name) {
            return match p {
                Value::String(s) if !s.trim().is_empty() => Ok(vec![user(s)]),
                Value::String(_) => Err((name.to_string(), "the prompt is empty".into())),
                Value::Array(_) => chat_messages(p, name),
                other => Err((name.to_string(), format!("expected a string, got {other}"))),
            };
        }
    }
    Err((
        names.join(" or "),
        format!(
            "missing: the row has {}",
            obj.keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// An array of `{ "role", "content" }`, kept up to its last user message.
fn chat_messages(v: &Value, field: &str) -> Result<Vec<ChatMessage>, (String, String)> {
    let items = v.as_array().ok_or_else(|| {
        (
            field.to_string(),
            "expected an array of messages".to_string(),
        )
    })?;
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{f}.role"), "missing or not a string".to_string()))?;
        if !matches!(role, "system" | "user" | "assistant" | "developer") {
            return Err((
                format!("{f}.role"),
                format!("expected system, user or assistant, got {role:?}"),
            ));
        }
        let content = m.get("content").and_then(Value::as_str).ok_or_else(|| {
            (
                format!("{f}.content"),
                "missing or not a string".to_string(),
            )
        })?;
        out.push(ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        });
    }
    keep_to_last_user(out).ok_or_else(|| (field.to_string(), "no user message".to_string()))
}

fn keep_to_last_user(mut messages: Vec<ChatMessage>) -> Option<Vec<ChatMessage>> {
    let last = messages.iter().rposition(|m| m.role == "user")?;
    messages.truncate(last + 1);
    Some(messages)
}

/// A ShareGPT conversation: its system message, if any, and its first human turn.
fn sharegpt_row(v: &Value) -> Result<Vec<ChatMessage>, (String, String)> {
    let conv = v
        .get("conversations")
        .or_else(|| v.get("conversation"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            (
                "conversations".to_string(),
                "missing or not an array".to_string(),
            )
        })?;
    let mut out = Vec::new();
    for (i, turn) in conv.iter().enumerate() {
        let f = format!("conversations[{i}]");
        let from = turn
            .get("from")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{f}.from"), "missing or not a string".to_string()))?;
        let value = turn
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{f}.value"), "missing or not a string".to_string()))?;
        let role = match from {
            "human" | "user" => "user",
            "gpt" | "assistant" | "chatgpt" | "bard" | "bing" | "model" => "assistant",
            "system" => "system",
            other => {
                return Err((
                    format!("{f}.from"),
                    format!("expected human, gpt or system, got {other:?}"),
                ));
            }
        };
        out.push(ChatMessage {
            role: role.into(),
            content: value.to_string(),
        });
        if role == "user" {
            break;
        }
    }
    keep_to_last_user(out).ok_or_else(|| ("conversations".to_string(), "no human turn".to_string()))
}
