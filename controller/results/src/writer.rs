//! The results folder, written as the run goes by a thread of its own, so the controller's
//! aggregation never waits on the disk. Rows are flushed as they come (a crash loses at most
//! the last interval), and summary.json is replaced atomically (written aside, then renamed).
//! A write that fails (a full disk, a folder gone) is never a silent gap: the writer prints the
//! error at once and calls the `on_failure` it was given, which stops the run; `finish` returns
//! it.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::alert::Alert;
use crate::hlog::{HlogError, HlogWriter, IntervalHistograms};
use crate::rows::{RequestRow, StageRow, TimeseriesRow};
use crate::summary::RunSummary;

/// A results file that could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {file}")]
    Csv {
        file: &'static str,
        #[source]
        source: csv::Error,
    },
    #[error("cannot encode {file}")]
    Json {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Hlog(#[from] HlogError),
    #[error("cannot start the results writer thread")]
    Thread(#[source] std::io::Error),
    #[error("the results writer thread panicked")]
    Panicked,
}

/// What the writer thread is asked to write.
// One message per interval: moving a row of a few hundred bytes is cheaper than boxing it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum WriterMsg {
    Interval(TimeseriesRow),
    Requests(Vec<RequestRow>),
    Stage(Box<StageRow>),
    Summary(Box<RunSummary>),
    /// A merged interval's histograms, for histograms/*.hlog.
    Histograms(Box<IntervalHistograms>),
    /// Rows of resources.csv, one per sample per agent; the first row sent is the header
    /// (the controller's monitor writes it).
    Resources(Vec<Vec<String>>),
    /// An alert raised or resolved while the run went: a line of alerts.jsonl.
    Alert(Box<Alert>),
}

/// A handle to the results writer thread.
#[derive(Debug)]
pub struct ResultsWriter {
    pub dir: PathBuf,
    tx: Option<mpsc::Sender<WriterMsg>>,
    thread: Option<JoinHandle<Result<(), WriteError>>>,
}

impl ResultsWriter {
    /// Creates the folder, writes plan.toml, opens the CSV files and starts the thread, which
    /// calls `on_failure` when a write fails.
    ///
    /// # Errors
    /// When the folder or a file cannot be created.
    pub fn create(
        dir: PathBuf,
        plan_toml: &str,
        on_failure: impl FnOnce() + Send + 'static,
    ) -> Result<Self, WriteError> {
        fs::create_dir_all(&dir).map_err(io("create the results folder", &dir))?;
        write_atomic(&dir.join("plan.toml"), plan_toml.as_bytes())?;
        let files = Files {
            timeseries: csv_file(&dir, "timeseries.csv")?,
            requests: csv_file(&dir, "requests.csv")?,
            stages: csv_file(&dir, "stages.csv")?,
            resources: csv_file(&dir, "resources.csv")?,
            hlogs: HlogWriter::create(&dir)?,
            alerts: BufWriter::new(
                File::create(dir.join("alerts.jsonl"))
                    .map_err(io("create", &dir.join("alerts.jsonl")))?,
            ),
            dir: dir.clone(),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("results-writer".into())
            .spawn(move || {
                let result = files.run(rx);
                if let Err(e) = &result {
                    // Printed now, not at the end of a long run: the run stops on this token.
                    eprintln!("error: {e:#}: the results cannot be written, stopping the run");
                    on_failure();
                }
                result
            })
            .map_err(WriteError::Thread)?;
        Ok(ResultsWriter {
            dir,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a write; never blocks.
    pub fn send(&self, msg: WriterMsg) {
        if let Some(tx) = &self.tx {
            // A closed channel means the thread stopped on an error, which `finish` reports.
            let _ = tx.send(msg);
        }
    }

    /// Writes what is queued, closes the files, and reports the first write error.
    ///
    /// # Errors
    /// The first error the writer met.
    pub fn finish(mut self) -> Result<(), WriteError> {
        self.tx.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(WriteError::Panicked),
            None => Ok(()),
        }
    }
}

impl Drop for ResultsWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Files {
    dir: PathBuf,
    timeseries: csv::Writer<BufWriter<File>>,
    requests: csv::Writer<BufWriter<File>>,
    stages: csv::Writer<BufWriter<File>>,
    resources: csv::Writer<BufWriter<File>>,
    hlogs: HlogWriter,
    alerts: BufWriter<File>,
}

impl Files {
    fn run(mut self, rx: mpsc::Receiver<WriterMsg>) -> Result<(), WriteError> {
        for msg in rx {
            self.write(msg)?;
        }
        for (file, w) in [
            ("timeseries.csv", &mut self.timeseries),
            ("requests.csv", &mut self.requests),
            ("stages.csv", &mut self.stages),
            ("resources.csv", &mut self.resources),
        ] {
            w.flush().map_err(io("flush", &self.dir.join(file)))?;
        }
        let alerts = self.dir.join("alerts.jsonl");
        self.alerts.flush().map_err(io("write", &alerts))?;
        Ok(())
    }

    fn write(&mut self, msg: WriterMsg) -> Result<(), WriteError> {
        match msg {
            WriterMsg::Interval(row) => row_to(&mut self.timeseries, "timeseries.csv", [row])?,
            WriterMsg::Requests(rows) => row_to(&mut self.requests, "requests.csv", rows)?,
            WriterMsg::Stage(row) => row_to(&mut self.stages, "stages.csv", [row])?,
            WriterMsg::Summary(summary) => {
                let json =
                    serde_json::to_vec_pretty(&summary).map_err(|source| WriteError::Json {
                        file: "summary.json",
                        source,
                    })?;
                write_atomic(&self.dir.join("summary.json"), &json)?;
            }
            WriterMsg::Histograms(iv) => self.hlogs.write(&iv)?,
            WriterMsg::Resources(rows) => {
                let csv = |source| WriteError::Csv {
                    file: "resources.csv",
                    source,
                };
                for row in rows {
                    self.resources.write_record(&row).map_err(csv)?;
                }
                self.resources
                    .flush()
                    .map_err(io("write", &self.dir.join("resources.csv")))?;
            }
            WriterMsg::Alert(alert) => {
                let path = self.dir.join("alerts.jsonl");
                serde_json::to_writer(&mut self.alerts, &alert).map_err(|source| {
                    WriteError::Json {
                        file: "alerts.jsonl",
                        source,
                    }
                })?;
                self.alerts
                    .write_all(b"\n")
                    .and_then(|()| self.alerts.flush())
                    .map_err(io("write", &path))?;
            }
        }
        Ok(())
    }
}

/// Serializes rows into one CSV file and flushes it, so a crash loses at most this message.
fn row_to<R: serde::Serialize>(
    w: &mut csv::Writer<BufWriter<File>>,
    file: &'static str,
    rows: impl IntoIterator<Item = R>,
) -> Result<(), WriteError> {
    let csv = |source| WriteError::Csv { file, source };
    for row in rows {
        w.serialize(row).map_err(csv)?;
    }
    w.flush().map_err(|e| csv(e.into()))
}

/// Maps an I/O error to a [`WriteError`] naming what was being done to which file.
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io {
        action,
        path,
        source,
    }
}

fn csv_file(dir: &Path, name: &str) -> Result<csv::Writer<BufWriter<File>>, WriteError> {
    let path = dir.join(name);
    let file = File::create(&path).map_err(io("create", &path))?;
    Ok(csv::Writer::from_writer(BufWriter::new(file)))
}

/// Writes `bytes` beside `path`, syncs, and renames over it: readers see the old or the new
/// file, never half of one.
///
/// # Errors
/// When writing or renaming fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    // The whole name plus .tmp, so report.html and report.md never share a temporary file.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(io("write", path))
}
