//! A CSV read as whatever numeric columns it has: resources.csv's columns depend on the agents'
//! samplers (CPU, memory, each GPU, the server's Prometheus metrics), so the report charts and
//! analyses the columns it finds instead of expecting a fixed set.
//!
//! A row is a sample at a time (the first column named like `elapsed_s`, else the first numeric
//! column) from a source (the first text column named like `agent`, if any). Every other
//! column whose values are all numbers (or empty) is a metric.

use std::collections::BTreeSet;
use std::path::Path;

/// Names a time column may have, in order of preference.
const TIME_COLUMNS: [&str; 8] = [
    "elapsed_s",
    "offset_s",
    "time_s",
    "t_s",
    "elapsed",
    "time",
    "timestamp",
    "t",
];
/// Names a source column may have, in order of preference.
const SOURCE_COLUMNS: [&str; 4] = ["agent", "agent_id", "host", "source"];
/// Time values above this are Unix seconds, shown relative to the first sample.
const UNIX_SECONDS: f64 = 1e9;

/// One sample row.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the table's origin (the run's first step, when the file says so).
    pub t: f64,
    /// The agent (or host) that took the sample; empty when the file has no such column.
    pub source: String,
    /// One value per metric column; `None` where the cell was empty.
    pub values: Vec<Option<f64>>,
}

/// A numeric table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NumericTable {
    pub columns: Vec<String>,
    pub samples: Vec<Sample>,
}

/// A trimmed cell, empty where the row is short.
fn cell(row: &[String], c: usize) -> &str {
    row.get(c).map_or("", |s| s.trim())
}

/// A failure to read a table.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct TableError {
    pub path: String,
    pub detail: String,
}

impl NumericTable {
    /// Reads a CSV file.
    ///
    /// # Errors
    /// When the file cannot be read or is not CSV.
    pub fn read(path: &Path) -> Result<Self, TableError> {
        let err = |detail: String| TableError {
            path: path.display().to_string(),
            detail,
        };
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .map_err(|e| err(e.to_string()))?;
        let headers: Vec<String> = r
            .headers()
            .map_err(|e| err(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for rec in r.records() {
            let rec = rec.map_err(|e| err(e.to_string()))?;
            rows.push(rec.iter().map(str::to_string).collect::<Vec<_>>());
        }
        Ok(Self::from_rows(&headers, &rows))
    }

    /// Builds a table from text cells, classifying the columns.
    pub fn from_rows(headers: &[String], rows: &[Vec<String>]) -> Self {
        let numeric: Vec<bool> = (0..headers.len())
            .map(|c| {
                let mut any = false;
                for row in rows {
                    let v = cell(row, c);
                    if v.is_empty() {
                        continue;
                    }
                    if v.parse::<f64>().is_err() {
                        return false;
                    }
                    any = true;
                }
                any
            })
            .collect();
        let find = |names: &[&str], want_numeric: bool| {
            names.iter().find_map(|n| {
                headers
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(n))
                    .filter(|&c| numeric[c] == want_numeric)
            })
        };
        let time = find(&TIME_COLUMNS, true).or_else(|| numeric.iter().position(|n| *n));
        let source = find(&SOURCE_COLUMNS, false);
        let metrics: Vec<usize> = (0..headers.len())
            .filter(|&c| numeric[c] && Some(c) != time)
            .collect();
        let mut samples: Vec<Sample> = rows
            .iter()
            .filter_map(|row| {
                let t = time.map_or(Some(0.0), |c| cell(row, c).parse::<f64>().ok())?;
                Some(Sample {
                    t,
                    source: source.map_or_else(String::new, |c| cell(row, c).to_string()),
                    values: metrics
                        .iter()
                        .map(|&c| cell(row, c).parse::<f64>().ok().filter(|v| v.is_finite()))
                        .collect(),
                })
            })
            .collect();
        if let Some(t0) = samples
            .iter()
            .map(|s| s.t)
            .reduce(f64::min)
            .filter(|t| *t > UNIX_SECONDS)
        {
            // Unix times: shown from the first sample, the closest origin the file offers.
            for s in &mut samples {
                s.t -= t0;
            }
        }
        samples.sort_by(|a, b| a.t.total_cmp(&b.t));
        NumericTable {
            columns: metrics.iter().map(|&c| headers[c].clone()).collect(),
            samples,
        }
    }

    /// The index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The sources in the order they sort.
    pub fn sources(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.samples.iter().map(|s| s.source.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// One column's (time, value) points from one source.
    pub fn series(&self, column: usize, source: &str) -> Vec<(f64, f64)> {
        self.samples
            .iter()
            .filter(|s| s.source == source)
            .filter_map(|s| s.values.get(column).copied().flatten().map(|v| (s.t, v)))
            .collect()
    }

    /// One column's values from every source within `[from, to)` seconds.
    pub fn values_between(&self, column: usize, from: f64, to: f64) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.t >= from && s.t < to)
            .filter_map(|s| s.values.get(column).copied().flatten())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn numeric_columns_are_metrics_and_text_columns_are_not() {
        let headers = strings(&[
            "agent",
            "elapsed_s",
            "cpu_pct",
            "gpu0_name",
            "gpu0_util_pct",
        ]);
        let rows = vec![
            strings(&["a", "2", "50", "H100", "90"]),
            strings(&["a", "1", "40", "H100", ""]),
            strings(&["b", "1", "30", "H100", "80"]),
        ];
        let t = NumericTable::from_rows(&headers, &rows);
        assert_eq!(t.columns, strings(&["cpu_pct", "gpu0_util_pct"]));
        assert_eq!(t.sources(), strings(&["a", "b"]));
        assert_eq!(t.series(0, "a"), vec![(1.0, 40.0), (2.0, 50.0)]);
        assert_eq!(t.series(1, "a"), vec![(2.0, 90.0)]);
        assert_eq!(t.values_between(0, 0.0, 1.5), vec![40.0, 30.0]);
    }

    #[test]
    fn unix_times_start_at_the_first_sample_and_a_file_without_time_still_reads() {
        let t = NumericTable::from_rows(
            &strings(&["timestamp", "mem_pct"]),
            &[
                strings(&["1700000010.5", "3"]),
                strings(&["1700000009.5", "2"]),
            ],
        );
        assert_eq!(t.series(0, ""), vec![(0.0, 2.0), (1.0, 3.0)]);
        let bare = NumericTable::from_rows(&strings(&["x"]), &[]);
        assert!(bare.columns.is_empty() && bare.samples.is_empty());
    }

    #[test]
    fn a_file_is_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resources.csv");
        std::fs::write(
            &p,
            "elapsed_s,agent,vllm:num_requests_running\n0.5,local-0,3\n",
        )
        .unwrap();
        let t = NumericTable::read(&p).unwrap();
        assert_eq!(t.column("vllm:num_requests_running"), Some(0));
        assert!(
            NumericTable::read(&dir.path().join("none.csv"))
                .unwrap_err()
                .to_string()
                .contains("none.csv")
        );
    }
}
