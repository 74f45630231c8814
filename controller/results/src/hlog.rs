//! HdrHistogram interval logs: histograms/<metric>.hlog, one merged histogram per step interval,
//! tagged with the step's name, in the standard format (V2 + deflate, base64) that HdrHistogram's
//! own tools read. `controller report` reads them back to plot whole distributions.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use stampede_common::metrics::{
    HIGHEST_US, HistogramBundle, LOWEST_US, METRIC_NAMES, SIGNIFICANT_DIGITS, new_histogram,
};

/// The folder of the interval logs inside a results folder.
pub const DIR: &str = "histograms";

/// One merged interval of one step, as the writer thread receives it.
#[derive(Debug)]
pub struct IntervalHistograms {
    pub step: String,
    /// Start of the interval, seconds since the run's first step started.
    pub start_s: f64,
    pub length_s: f64,
    pub bundle: HistogramBundle,
}

/// A failure to write or read an interval log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HlogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot encode a histogram: {detail}")]
    Encode { path: PathBuf, detail: String },
    #[error("{path}: not an HdrHistogram interval log at byte {offset}")]
    Parse { path: PathBuf, offset: usize },
    #[error("{path}: interval at {start_s:.3}s: {detail}")]
    Decode {
        path: PathBuf,
        start_s: f64,
        detail: String,
    },
}

/// The path of a metric's log in a results folder.
pub fn path(results: &Path, metric: &str) -> PathBuf {
    results.join(DIR).join(format!("{metric}.hlog"))
}

/// A tag is the step's name with the characters the format forbids (`,`, space, line breaks)
/// replaced, since tags are how a reader finds a step's intervals.
pub fn tag_of(step: &str) -> String {
    step.chars()
        .map(|c| match c {
            ',' | ' ' | '\r' | '\n' => '_',
            c => c,
        })
        .collect()
}

/// One open log per metric.
pub struct HlogWriter {
    files: Vec<(PathBuf, BufWriter<File>)>,
    serializer: V2DeflateSerializer,
    headers_written: bool,
}

impl HlogWriter {
    /// Creates histograms/ and an empty log per metric.
    ///
    /// # Errors
    /// When the folder or a file cannot be created.
    pub fn create(results: &Path) -> Result<Self, HlogError> {
        let dir = results.join(DIR);
        fs::create_dir_all(&dir).map_err(|source| HlogError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut files = Vec::with_capacity(METRIC_NAMES.len());
        for metric in METRIC_NAMES {
            let p = path(results, metric);
            let f = File::create(&p).map_err(|source| HlogError::Io {
                path: p.clone(),
                source,
            })?;
            files.push((p, BufWriter::new(f)));
        }
        Ok(HlogWriter {
            files,
            serializer: V2DeflateSerializer::new(),
            headers_written: false,
        })
    }

    /// Appends one interval to every metric's log and flushes, so a crash loses at most it.
    ///
    /// # Errors
    /// When writing fails.
    pub fn write(&mut self, iv: &IntervalHistograms) -> Result<(), HlogError> {
        if !self.headers_written {
            self.write_headers(iv)?;
        }
        let tag = tag_of(&iv.step);
        let start = Duration::from_secs_f64(iv.start_s.max(0.0));
        let length = Duration::from_secs_f64(iv.length_s.max(0.0));
        for ((path, file), (_, h)) in self.files.iter_mut().zip(iv.bundle.each()) {
            // Headers went out once, so each interval gets a bare writer over the same file.
            let mut w = IntervalLogWriterBuilder::new()
                .with_max_value_divisor(1000.0)
                .begin_log_with(file, &mut self.serializer)
                .map_err(|source| HlogError::Io {
                    path: path.clone(),
                    source,
                })?;
            w.write_histogram(h, start, length, Tag::new(&tag))
                .map_err(|e| HlogError::Encode {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            file.flush().map_err(|source| HlogError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Writes each log's header. BaseTime is the first step's start, which the runner knows
    /// only as the origin of `start_s`: it is recovered from the first interval, which arrives
    /// moments after it ends (to within the merge delay, which is fine for metadata).
    fn write_headers(&mut self, first: &IntervalHistograms) -> Result<(), HlogError> {
        let base = SystemTime::now()
            .checked_sub(Duration::from_secs_f64(
                (first.start_s + first.length_s).max(0.0),
            ))
            .unwrap_or_else(SystemTime::now);
        for ((path, file), metric) in self.files.iter_mut().zip(METRIC_NAMES) {
            IntervalLogWriterBuilder::new()
                .add_comment(&format!(
                    "Stampede {metric}: one histogram per step interval, tagged by step; values in microseconds, max column in milliseconds"
                ))
                .with_start_time(base)
                .with_base_time(base)
                .with_max_value_divisor(1000.0)
                .begin_log_with(file, &mut self.serializer)
                .map_err(|source| HlogError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        self.headers_written = true;
        Ok(())
    }
}

/// One interval read back from a log.
#[derive(Debug)]
pub struct LoggedInterval {
    pub tag: Option<String>,
    /// Start since the log's BaseTime (the first step's start), seconds.
    pub start_s: f64,
    pub length_s: f64,
    pub histogram: Histogram<u64>,
}

/// Calls `each` with every interval of a log in order. Intervals are handed over one at a time
/// so a day-long soak never holds more than one decoded histogram.
///
/// # Errors
/// When the file cannot be read, or an entry is not a valid interval histogram.
pub fn read(path: &Path, mut each: impl FnMut(LoggedInterval)) -> Result<(), HlogError> {
    let bytes = fs::read(path).map_err(|source| HlogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|e| match e {
            hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                HlogError::Parse {
                    path: path.to_path_buf(),
                    offset,
                }
            }
        })?;
        let LogEntry::Interval(iv) = entry else {
            continue;
        };
        let start_s = iv.start_timestamp().as_secs_f64();
        let decode_err = |detail: String| HlogError::Decode {
            path: path.to_path_buf(),
            start_s,
            detail,
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(iv.encoded_histogram())
            .map_err(|e| decode_err(e.to_string()))?;
        let h: Histogram<u64> = de
            .deserialize(&mut raw.as_slice())
            .map_err(|e| decode_err(format!("{e:?}")))?;
        // In the one layout, so merges with other intervals take the fast path; a log from
        // elsewhere is re-laid into it (Stampede's own logs already are).
        let histogram =
            if (h.low(), h.high(), h.sigfig()) == (LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS) {
                h
            } else {
                let mut relaid = new_histogram();
                relaid.add(&h).map_err(|e| decode_err(format!("{e:?}")))?;
                relaid
            };
        each(LoggedInterval {
            tag: iv.tag().map(|t| t.as_str().to_string()),
            start_s,
            length_s: iv.duration().as_secs_f64(),
            histogram,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(e2e_ms: &[u64]) -> HistogramBundle {
        let mut b = HistogramBundle::new();
        for v in e2e_ms {
            b.e2e.record(v * 1000).unwrap();
            b.ttft.record(v * 100).unwrap();
        }
        b
    }

    #[test]
    fn intervals_round_trip_with_their_tags_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HlogWriter::create(dir.path()).unwrap();
        for (i, step) in ["steps/qps=4", "steps/qps=8", "odd name, with spaces"]
            .iter()
            .enumerate()
        {
            w.write(&IntervalHistograms {
                step: step.to_string(),
                start_s: i as f64,
                length_s: 1.0,
                bundle: bundle(&[100 * (i as u64 + 1), 200]),
            })
            .unwrap();
        }
        drop(w);
        for m in METRIC_NAMES {
            assert!(path(dir.path(), m).exists(), "{m}");
        }
        let text = fs::read_to_string(path(dir.path(), "e2e")).unwrap();
        assert!(text.contains("#[BaseTime: "), "{text}");
        assert!(text.contains("Tag=steps/qps=8,"), "{text}");
        let mut seen = Vec::new();
        read(&path(dir.path(), "e2e"), |iv| {
            seen.push((
                iv.tag.unwrap(),
                iv.start_s,
                iv.histogram.len(),
                iv.histogram.max(),
            ))
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0, "steps/qps=4");
        assert_eq!(seen[2].0, tag_of("odd name, with spaces"));
        assert_eq!(seen[2].0, "odd_name__with_spaces");
        assert_eq!((seen[1].1, seen[1].2), (1.0, 2));
        assert!(seen[2].3 >= 299_000, "{:?}", seen[2]);
    }

    #[test]
    fn a_damaged_log_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e2e.hlog");
        fs::write(&p, "Tag=a,0.000,1.000,0.1,!!notbase64!!\n").unwrap();
        let err = read(&p, |_| {}).unwrap_err().to_string();
        assert!(err.contains("e2e.hlog"), "{err}");
    }
}
