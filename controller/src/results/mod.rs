//! The results folder, written as the run goes by a thread of its own, so the controller's
//! aggregation never waits on the disk. Rows are flushed as they come (a crash loses at most
//! the last interval), and summary.json is replaced atomically (written aside, then renamed).
//! A write that fails (a full disk, a folder gone) is never a silent gap: the writer prints the
//! error at once and cancels the token it was given, which stops the run; `finish` returns it.
//!
//! - [`rows`]: the rows of the CSV files.
//! - [`hlog`]: histograms/*.hlog, HdrHistogram interval logs.
//! - [`read`]: a results folder read back, for `controller report` and `controller compare`.
//! - [`table`]: a CSV of whatever numeric columns it has (resources.csv).

pub mod hlog;
pub mod read;
pub mod rows;
pub mod table;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use tokio_util::sync::CancellationToken;

use self::hlog::{HlogWriter, IntervalHistograms};
use self::rows::{RequestRow, StageRow, TimeseriesRow};
use crate::summary::RunSummary;

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
    /// (crate::monitor::MonitorRun::header).
    Resources(Vec<Vec<String>>),
    /// An alert raised or resolved while the run went: a line of alerts.jsonl.
    Alert(Box<crate::live::alerts::Alert>),
}

/// A handle to the results writer thread.
#[derive(Debug)]
pub struct ResultsWriter {
    pub dir: PathBuf,
    tx: Option<mpsc::Sender<WriterMsg>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ResultsWriter {
    /// Creates the folder, writes plan.toml, opens the CSV files and starts the thread, which
    /// cancels `on_failure` when a write fails.
    ///
    /// # Errors
    /// When the folder or a file cannot be created.
    pub fn create(
        dir: PathBuf,
        plan_toml: &str,
        on_failure: CancellationToken,
    ) -> anyhow::Result<Self> {
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the results folder {}", dir.display()))?;
        write_atomic(&dir.join("plan.toml"), plan_toml.as_bytes())?;
        let files = Files {
            timeseries: csv_file(&dir, "timeseries.csv")?,
            requests: csv_file(&dir, "requests.csv")?,
            stages: csv_file(&dir, "stages.csv")?,
            resources: csv_file(&dir, "resources.csv")?,
            hlogs: HlogWriter::create(&dir)?,
            alerts: BufWriter::new(File::create(dir.join("alerts.jsonl")).with_context(|| {
                format!("cannot create {}", dir.join("alerts.jsonl").display())
            })?),
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
                    on_failure.cancel();
                }
                result
            })
            .context("cannot start the results writer thread")?;
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
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.tx.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow!("the results writer thread panicked")),
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
    fn run(mut self, rx: mpsc::Receiver<WriterMsg>) -> anyhow::Result<()> {
        for msg in rx {
            self.write(msg)?;
        }
        for w in [
            &mut self.timeseries,
            &mut self.requests,
            &mut self.stages,
            &mut self.resources,
        ] {
            w.flush().context("cannot flush a results file")?;
        }
        self.alerts.flush().context("cannot write alerts.jsonl")?;
        Ok(())
    }

    fn write(&mut self, msg: WriterMsg) -> anyhow::Result<()> {
        match msg {
            WriterMsg::Interval(row) => {
                self.timeseries
                    .serialize(row)
                    .context("cannot write timeseries.csv")?;
                self.timeseries
                    .flush()
                    .context("cannot write timeseries.csv")?;
            }
            WriterMsg::Requests(rows) => {
                for row in rows {
                    self.requests
                        .serialize(row)
                        .context("cannot write requests.csv")?;
                }
                self.requests.flush().context("cannot write requests.csv")?;
            }
            WriterMsg::Stage(row) => {
                self.stages
                    .serialize(row)
                    .context("cannot write stages.csv")?;
                self.stages.flush().context("cannot write stages.csv")?;
            }
            WriterMsg::Summary(summary) => {
                let json =
                    serde_json::to_vec_pretty(&summary).context("cannot encode summary.json")?;
                write_atomic(&self.dir.join("summary.json"), &json)?;
            }
            WriterMsg::Histograms(iv) => self.hlogs.write(&iv)?,
            WriterMsg::Resources(rows) => {
                for row in rows {
                    self.resources
                        .write_record(&row)
                        .context("cannot write resources.csv")?;
                }
                self.resources
                    .flush()
                    .context("cannot write resources.csv")?;
            }
            WriterMsg::Alert(alert) => {
                serde_json::to_writer(&mut self.alerts, &alert)
                    .context("cannot write alerts.jsonl")?;
                self.alerts
                    .write_all(b"\n")
                    .and_then(|()| self.alerts.flush())
                    .context("cannot write alerts.jsonl")?;
            }
        }
        Ok(())
    }
}

fn csv_file(dir: &Path, name: &str) -> anyhow::Result<csv::Writer<BufWriter<File>>> {
    let path = dir.join(name);
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(csv::Writer::from_writer(BufWriter::new(file)))
}

/// Writes `bytes` beside `path`, syncs, and renames over it: readers see the old or the new
/// file, never half of one.
///
/// # Errors
/// When writing or renaming fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
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
    result.with_context(|| format!("cannot write {}", path.display()))
}
