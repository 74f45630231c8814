//! Trace files for replay: when each request came and how long it was.
//!
//! CSV with a header row, or JSONL (one object per line, chosen by the `.jsonl` or `.json`
//! extension). Columns are found by name: the timestamp as `timestamp`, `TIMESTAMP`, `time` or
//! `ts` (seconds as a number, or a date-time such as `2023-11-16 18:15:46.6805900`); input
//! tokens as `input_tokens`, `ContextTokens`, `prompt_tokens` or `input_length`; output tokens as
//! `output_tokens`, `GeneratedTokens`, `completion_tokens` or `output_length`. The public Azure
//! LLM inference traces (`TIMESTAMP,ContextTokens,GeneratedTokens`) read as they are. Offsets are
//! taken from the first row.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One request of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEntry {
    pub offset: Duration,
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// A trace that cannot be used, with the file and the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TraceError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

const TIME: [&str; 4] = ["timestamp", "TIMESTAMP", "time", "ts"];
const INPUT: [&str; 4] = [
    "input_tokens",
    "ContextTokens",
    "prompt_tokens",
    "input_length",
];
const OUTPUT: [&str; 4] = [
    "output_tokens",
    "GeneratedTokens",
    "completion_tokens",
    "output_length",
];

/// Reads a trace, at most `limit` rows.
///
/// # Errors
/// When the file cannot be read, a column is missing, or a row is malformed (with its line).
pub fn read_trace(path: &Path, limit: Option<usize>) -> Result<Vec<TraceEntry>, TraceError> {
    let err = |line: Option<usize>, message: String| TraceError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(None, format!("cannot read the trace: {e}")))?;
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "json")
    );
    let rows = if jsonl {
        jsonl_rows(&text, limit)
    } else {
        csv_rows(&text, limit)
    }
    .map_err(|(l, m)| err(l, m))?;
    if rows.is_empty() {
        return Err(err(None, "the trace has no rows".into()));
    }
    let first = rows[0].1;
    let mut out = Vec::with_capacity(rows.len());
    let mut last = first;
    for (line, t, input, output) in rows {
        if t < last {
            return Err(err(
                Some(line),
                format!("timestamps must not go back in time ({t} after {last})"),
            ));
        }
        last = t;
        out.push(TraceEntry {
            offset: Duration::from_secs_f64(t - first),
            input_tokens: input,
            output_tokens: output,
        });
    }
    Ok(out)
}

type Row = (usize, f64, u32, u32);

fn csv_rows(text: &str, limit: Option<usize>) -> Result<Vec<Row>, (Option<usize>, String)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| (Some(1), format!("cannot read the header row: {e}")))?
        .clone();
    let find = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.contains(&h))
            .ok_or_else(|| {
                (
                    Some(1),
                    format!(
                        "no column named {} (columns: {})",
                        names.join(" or "),
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    };
    let (ti, ii, oi) = (find(&TIME)?, find(&INPUT)?, find(&OUTPUT)?);
    let mut rows = Vec::new();
    for record in reader.records() {
        if limit.is_some_and(|l| rows.len() >= l) {
            break;
        }
        let record =
            record.map_err(|e| (e.position().map(|p| p.line() as usize), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let field = |i: usize| record.get(i).unwrap_or("");
        let t = parse_time(field(ti)).ok_or_else(|| {
            (
                Some(line),
                format!(
                    "{:?} is not a timestamp (seconds, or YYYY-MM-DD HH:MM:SS[.fff])",
                    field(ti)
                ),
            )
        })?;
        rows.push((
            line,
            t,
            tokens(field(ii), "input", line)?,
            tokens(field(oi), "output", line)?,
        ));
    }
    Ok(rows)
}

fn jsonl_rows(text: &str, limit: Option<usize>) -> Result<Vec<Row>, (Option<usize>, String)> {
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if limit.is_some_and(|l| rows.len() >= l) {
            break;
        }
        let v: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| (Some(line), format!("not JSON: {e}")))?;
        let get = |names: &[&str]| names.iter().find_map(|n| v.get(*n));
        let t = match get(&TIME) {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => parse_time(s),
            _ => None,
        }
        .ok_or_else(|| (Some(line), format!("no timestamp ({})", TIME.join(", "))))?;
        let count = |names: &[&str], what: &str| {
            get(names)
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    (
                        Some(line),
                        format!("no positive {what} token count ({})", names.join(", ")),
                    )
                })
        };
        rows.push((line, t, count(&INPUT, "input")?, count(&OUTPUT, "output")?));
    }
    Ok(rows)
}

fn tokens(s: &str, what: &str, line: usize) -> Result<u32, (Option<usize>, String)> {
    s.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
        (
            Some(line),
            format!("{s:?} is not a positive {what} token count"),
        )
    })
}

/// Seconds from a number or a `YYYY-MM-DD[ T]HH:MM:SS[.frac][Z]` date-time (UTC).
fn parse_time(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || h > 23
        || min > 59
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    Some(days_from_civil(y, m, day) as f64 * 86_400.0 + (h * 3600 + min * 60) as f64 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn azure_format_reads_as_it_is() {
        let (_d, p) = write(
            "azure.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:16:01.0000000,879,45\n",
        );
        let t = read_trace(&p, None).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].offset, Duration::ZERO);
        assert!(
            (t[1].offset.as_secs_f64() - 4.314579).abs() < 1e-6,
            "{:?}",
            t[1].offset
        );
        assert_eq!((t[2].input_tokens, t[2].output_tokens), (879, 45));
    }

    #[test]
    fn jsonl_with_numeric_seconds_and_a_limit() {
        let (_d, p) = write(
            "t.jsonl",
            "{\"timestamp\": 10.0, \"input_tokens\": 5, \"output_tokens\": 7}\n\n{\"timestamp\": 10.5, \"input_tokens\": 6, \"output_tokens\": 8}\n{\"timestamp\": 11, \"input_tokens\": 1, \"output_tokens\": 1}\n",
        );
        let t = read_trace(&p, Some(2)).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].offset, Duration::from_millis(500));
    }

    #[test]
    fn a_bad_row_names_the_file_and_line() {
        let (_d, p) = write(
            "bad.csv",
            "timestamp,input_tokens,output_tokens\n0,10,10\n1,ten,10\n",
        );
        let e = read_trace(&p, None).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("bad.csv:3"), "{e}");
        assert!(e.to_string().contains("\"ten\""), "{e}");

        let (_d, p) = write(
            "back.jsonl",
            "{\"ts\": 5, \"input_tokens\": 1, \"output_tokens\": 1}\n{\"ts\": 4, \"input_tokens\": 1, \"output_tokens\": 1}\n",
        );
        assert_eq!(read_trace(&p, None).unwrap_err().line, Some(2));

        let (_d, p) = write("cols.csv", "when,input_tokens,output_tokens\n0,1,1\n");
        let e = read_trace(&p, None).unwrap_err();
        assert!(e.to_string().contains("no column named timestamp"), "{e}");
        assert!(read_trace(Path::new("/nonexistent/x.csv"), None).is_err());
    }
}
