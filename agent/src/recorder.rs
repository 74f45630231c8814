//! The recorder: the one owner of a share's histograms and counters.
//!
//! Workers hand it finished [`RequestTimeline`]s through a bounded channel; once per interval
//! (aligned to the share's start) it encodes the interval's histograms and counters, resets them
//! (reports carry deltas), and sends the report with any request records to the controller's
//! stream. When every worker is done, it flushes the last partial interval and a summary.
//!
//! A slow controller never slows the sending: the recorder never waits on the stream while the
//! share runs. When the stream's buffer is full at an interval's end, the interval is folded into
//! the next one (counts and histograms lose nothing, only time resolution) and the report says
//! how many were folded; request records wait in a bounded backlog, and those beyond it are
//! dropped and counted. Only the last report and the summary wait for room.
//!
//! The step's window ends at its planned end or at the stop that cuts it short. There the
//! recorder cuts the interval it is filling, so no report straddles the window's end, and
//! marks every later report `drain`: requests sent in the window that finish after it are kept
//! apart, never counted into the window's rates (DESIGN.md, throughput).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stampede_common::error_sample::redact_message;
use stampede_common::metrics::HistogramBundle;
use stampede_common::proto::{
    ClassReport, Counts, IntervalReport, RecordBatch, RequestRecord, ResourceSample, RunEvent,
    ShareSummary, run_event,
};
use stampede_common::proto::{count_outcome, note_error};
use stampede_common::timeline::RequestTimeline;
use stampede_common::units::micros;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Counters the scheduler and workers update without waiting on the recorder.
#[derive(Debug, Default)]
pub struct ShareCounters {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub in_flight: AtomicU64,
    /// Finished requests the recorder's queue could not take.
    pub overflow: AtomicU64,
    /// Each request class of a workload of several: reported apart as well as in the total.
    pub classes: Vec<ClassCounters>,
}

/// Requests of one class sent and dropped since the last report.
#[derive(Debug, Default)]
pub struct ClassCounters {
    pub name: String,
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
}

impl ShareCounters {
    /// Counters for a workload of `classes` (none kept apart when there is one class).
    pub fn with_classes(classes: &[String]) -> Self {
        ShareCounters {
            classes: if classes.len() > 1 {
                classes
                    .iter()
                    .map(|name| ClassCounters {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .collect()
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    /// Counts a request of `class` sent.
    pub fn count_sent(&self, class: u32) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.classes.get(class as usize) {
            c.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request of `class` dropped.
    pub fn count_dropped(&self, class: u32) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.classes.get(class as usize) {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Per-request limits for goodput.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoodputLimits {
    pub ttft: Option<Duration>,
    pub tpot: Option<Duration>,
    pub e2e: Option<Duration>,
}

impl GoodputLimits {
    /// True when a successful request met every limit.
    pub fn met_by(&self, t: &RequestTimeline) -> bool {
        let within = |limit: Option<Duration>, value: Option<Duration>| match (limit, value) {
            (None, _) => true,
            (Some(l), Some(v)) => v <= l,
            (Some(_), None) => false,
        };
        t.succeeded()
            && within(self.ttft, t.ttft())
            && within(self.e2e, t.e2e())
            && (self.tpot.is_none() || t.tpot().is_none() || within(self.tpot, t.tpot()))
    }
}

/// Where the recorder's events go: the gRPC response stream.
pub type EventSender = mpsc::Sender<Result<RunEvent, Status>>;

/// Most records in one batch message.
const RECORD_BATCH: usize = 512;

/// Most request records waiting for room in the stream; beyond it they are dropped and counted
/// (about 150 bytes each: a few MiB at most).
const RECORD_BACKLOG: usize = 32_768;

/// What a backed-up stream cost, since the last report and over the share.
#[derive(Debug, Default)]
struct Backlog {
    /// Interval ends passed without a report since the last one sent.
    coalesced: u32,
    coalesced_total: u32,
    records_dropped: u64,
    records_dropped_total: u64,
}

/// A recorder for one share.
pub struct Recorder {
    pub rx: mpsc::Receiver<RequestTimeline>,
    pub out: EventSender,
    pub counters: Arc<ShareCounters>,
    pub start: Instant,
    pub interval: Duration,
    pub goodput: GoodputLimits,
    /// Keep one record in every N requests (0: none).
    pub record_every: u32,
    /// Resource samples from the share's monitor thread, drained into each report.
    pub samples: Option<mpsc::Receiver<ResourceSample>>,
    /// Where the step's window ends (None: never, as for a monitor-only share).
    pub window: Option<WindowEnd>,
}

/// The end of a step's window: its planned end, or the stop that comes first.
#[derive(Debug, Clone)]
pub struct WindowEnd {
    pub at: Instant,
    pub stop: CancellationToken,
}

impl WindowEnd {
    /// Waits for the window's end and returns its instant: the planned end, or when the stop
    /// came (never after the planned end).
    async fn reached(window: Option<&WindowEnd>) -> Instant {
        let Some(w) = window else {
            return std::future::pending().await;
        };
        tokio::select! {
            () = sleep_until(w.at) => w.at,
            () = w.stop.cancelled() => Instant::now().min(w.at),
        }
    }
}

/// Where the next report begins, and whether it is in the drain.
struct Cursor {
    /// The report's number: one per interval end, folded or not, and one at the window's cut.
    index: u32,
    /// The start of the interval being filled (a folded interval keeps its first start).
    from: Instant,
    drain: bool,
}

/// The interval being filled.
struct Interval {
    bundle: HistogramBundle,
    counts: Counts,
    records: Vec<RequestRecord>,
    /// Where the monitor thread's samples wait for the next report.
    samples: Option<mpsc::Receiver<ResourceSample>>,
    /// Each class's part, when the workload has several.
    classes: Vec<(HistogramBundle, Counts)>,
}

impl Recorder {
    /// Runs until every worker has dropped its sender, then sends the summary.
    /// Returns early (quietly) when the controller is gone.
    pub async fn run(mut self) {
        let mut current = Interval {
            bundle: HistogramBundle::new(),
            counts: Counts::default(),
            records: Vec::new(),
            samples: self.samples.take(),
            classes: self
                .counters
                .classes
                .iter()
                .map(|_| (HistogramBundle::new(), Counts::default()))
                .collect(),
        };
        let mut total = Counts::default();
        let mut skipped = 0u64;
        let mut backlog = Backlog::default();
        let mut at = Cursor {
            index: 0,
            from: self.start,
            drain: false,
        };
        let mut next_tick = self.start + self.interval;
        let window = self.window.clone();
        loop {
            tokio::select! {
                biased;
                msg = self.rx.recv() => match msg {
                    Some(t) => self.take(&mut current, &t, &mut skipped, &mut backlog),
                    None => break,
                },
                end = WindowEnd::reached(window.as_ref()), if !at.drain => {
                    // The window's last interval always goes (never folded into the drain).
                    if end > at.from {
                        if self.flush(&mut current, &mut total, &mut at, end, &mut backlog, true).await.is_err() {
                            return;
                        }
                        at.index += 1;
                    }
                    at.drain = true;
                    while next_tick <= end {
                        next_tick += self.interval;
                    }
                }
                () = sleep_until(next_tick) => {
                    if self.flush(&mut current, &mut total, &mut at, next_tick, &mut backlog, false).await.is_err() {
                        return;
                    }
                    // A folded interval keeps its number too: agents' reports stay aligned.
                    at.index += 1;
                    next_tick += self.interval;
                }
            }
        }
        let now = Instant::now();
        if self
            .flush(&mut current, &mut total, &mut at, now, &mut backlog, true)
            .await
            .is_err()
        {
            return;
        }
        let done = ShareSummary {
            counts: Some(total),
            intervals: at.index + 1,
            records_skipped: skipped,
            records_dropped: backlog.records_dropped_total,
            coalesced_intervals: backlog.coalesced_total,
        };
        let _ = self.out.send(Ok(event(run_event::Event::Done(done)))).await;
    }

    fn take(
        &self,
        cur: &mut Interval,
        t: &RequestTimeline,
        skipped: &mut u64,
        backlog: &mut Backlog,
    ) {
        cur.bundle.record(t);
        let good = self.goodput.met_by(t);
        count_outcome(&mut cur.counts, t, good);
        if t.error.is_some() {
            let sent_us = micros(t.sent.saturating_duration_since(self.start));
            note_error(&mut cur.counts, t, sent_us);
        }
        if let Some((bundle, counts)) = cur.classes.get_mut(t.class as usize) {
            bundle.record(t);
            count_outcome(counts, t, good);
        }
        if self.record_every > 0 && t.id.is_multiple_of(u64::from(self.record_every)) {
            if cur.records.len() < RECORD_BACKLOG {
                cur.records.push(self.record(t));
            } else {
                backlog.records_dropped += 1;
            }
        } else {
            *skipped += 1;
        }
    }

    fn record(&self, t: &RequestTimeline) -> RequestRecord {
        let offset = |i: Instant| micros(i.saturating_duration_since(self.start));
        RequestRecord {
            id: t.id,
            intended_offset_us: offset(t.intended),
            sent_offset_us: offset(t.sent),
            ttft_us: t.ttft().map_or(0, micros),
            e2e_us: t.e2e().map_or(0, micros),
            input_tokens: t.input_tokens,
            server_input_tokens: t.server_input_tokens.unwrap_or(0),
            output_tokens: t.output_tokens(),
            content_chunks: t.content_chunks(),
            error_class: t.error.map(|e| e.as_str().to_string()).unwrap_or_default(),
            http_status: t.http_status.map_or(0, u32::from),
            // A server may echo the key it refused: requests.csv gets what the tables get.
            error_detail: t
                .error_detail
                .as_deref()
                .map(redact_message)
                .unwrap_or_default(),
            finish_reason: t.finish_reason.clone().unwrap_or_default(),
        }
    }

    /// Sends the interval from `at` to `end` and resets it, moving `at` on; with the stream
    /// full (and `last` false), folds it into the next one instead. Err when the controller is
    /// gone.
    async fn flush(
        &self,
        cur: &mut Interval,
        total: &mut Counts,
        at: &mut Cursor,
        end: Instant,
        backlog: &mut Backlog,
        last: bool,
    ) -> Result<(), ()> {
        use mpsc::error::TrySendError;
        let permit = if last {
            self.out.reserve().await.map_err(|_| ())?
        } else {
            match self.out.try_reserve() {
                Ok(p) => p,
                Err(TrySendError::Full(())) => {
                    backlog.coalesced += 1;
                    backlog.coalesced_total += 1;
                    return Ok(());
                }
                Err(TrySendError::Closed(())) => return Err(()),
            }
        };
        cur.counts.sent = self.counters.sent.swap(0, Ordering::Relaxed);
        cur.counts.dropped = self.counters.dropped.swap(0, Ordering::Relaxed);
        *total += &cur.counts;
        let histograms = match cur.bundle.encode() {
            Ok(h) => h,
            Err(e) => {
                permit.send(Err(Status::internal(e.to_string())));
                return Err(());
            }
        };
        let mut samples = Vec::new();
        if let Some(rx) = &mut cur.samples {
            while let Ok(sample) = rx.try_recv() {
                samples.push(sample);
            }
        }
        let mut classes = Vec::with_capacity(cur.classes.len());
        for (i, ((bundle, counts), c)) in cur
            .classes
            .iter_mut()
            .zip(&self.counters.classes)
            .enumerate()
        {
            counts.sent = c.sent.swap(0, Ordering::Relaxed);
            counts.dropped = c.dropped.swap(0, Ordering::Relaxed);
            let histograms = match bundle.encode() {
                Ok(h) => h,
                Err(e) => {
                    permit.send(Err(Status::internal(e.to_string())));
                    return Err(());
                }
            };
            bundle.reset();
            classes.push(ClassReport {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                name: c.name.clone(),
                counts: Some(std::mem::take(counts)),
                histograms: Some(histograms),
            });
        }
        let report = IntervalReport {
            index: at.index,
            start_offset_us: micros(at.from.saturating_duration_since(self.start)),
            end_offset_us: micros(end.saturating_duration_since(self.start)),
            drain: at.drain,
            counts: Some(std::mem::take(&mut cur.counts)),
            histograms: Some(histograms),
            in_flight: u32::try_from(self.counters.in_flight.load(Ordering::Relaxed))
                .unwrap_or(u32::MAX),
            recorder_overflow: self.counters.overflow.swap(0, Ordering::Relaxed),
            samples,
            classes,
            coalesced_intervals: std::mem::take(&mut backlog.coalesced),
            records_dropped: std::mem::take(&mut backlog.records_dropped),
        };
        backlog.records_dropped_total += report.records_dropped;
        at.from = end;
        cur.bundle.reset();
        permit.send(Ok(event(run_event::Event::Interval(report))));
        // Records go while there is room; the rest wait in the backlog for the next interval
        // (all of them at the last one).
        while !cur.records.is_empty() {
            let permit = if last {
                self.out.reserve().await.map_err(|_| ())?
            } else {
                match self.out.try_reserve() {
                    Ok(p) => p,
                    Err(TrySendError::Full(())) => break,
                    Err(TrySendError::Closed(())) => return Err(()),
                }
            };
            let n = cur.records.len().min(RECORD_BATCH);
            let batch = RecordBatch {
                records: cur.records.drain(..n).collect(),
            };
            permit.send(Ok(event(run_event::Event::Records(batch))));
        }
        Ok(())
    }
}

fn event(e: run_event::Event) -> RunEvent {
    RunEvent { event: Some(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller that stops reading for a while: the recorder keeps taking requests, folds
    /// intervals instead of waiting, and in the end every request is in the counts exactly once.
    #[tokio::test]
    async fn a_stalled_stream_folds_intervals_and_loses_no_count() {
        let (req_tx, req_rx) = mpsc::channel(4096);
        let (out, mut events) = mpsc::channel(2);
        let counters = Arc::new(ShareCounters::default());
        let start = Instant::now();
        let recorder = Recorder {
            rx: req_rx,
            out,
            counters: Arc::clone(&counters),
            start,
            interval: Duration::from_millis(10),
            goodput: GoodputLimits::default(),
            record_every: 1,
            samples: None,
            window: None,
        };
        let running = tokio::spawn(recorder.run());
        // 300 requests over about 150 ms while nobody reads the stream.
        for id in 0..300u64 {
            let now = Instant::now();
            let mut t = RequestTimeline::new(id, now, now, 10);
            t.chunks
                .push(stampede_common::timeline::ChunkArrival { at: now, tokens: 1 });
            t.finished = Some(now);
            counters.count_sent(0);
            req_tx.send(t).await.unwrap();
            if id % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        drop(req_tx);
        let (mut completed, mut sent, mut coalesced, mut records, mut dropped) = (0, 0, 0, 0, 0);
        let mut done = None;
        while let Some(ev) = events.recv().await {
            match ev.unwrap().event.unwrap() {
                run_event::Event::Interval(r) => {
                    let c = r.counts.unwrap();
                    completed += c.completed;
                    sent += c.sent;
                    coalesced += r.coalesced_intervals;
                    dropped += r.records_dropped;
                }
                run_event::Event::Records(b) => records += b.records.len() as u64,
                run_event::Event::Done(d) => done = Some(d),
            }
        }
        running.await.unwrap();
        let done = done.expect("a summary at the end");
        assert_eq!((completed, sent), (300, 300));
        assert_eq!(done.counts.unwrap().completed, 300);
        assert!(coalesced > 0, "the stalled stream folded no interval");
        assert_eq!(coalesced, done.coalesced_intervals);
        // Within the backlog, no record is lost: each is sent or counted as dropped.
        assert_eq!(records + dropped, 300);
        assert_eq!(dropped, done.records_dropped);
    }

    /// Closed-loop users on an exact schedule: each sends at once, is answered `service` later,
    /// and sends again while the window is open.
    async fn closed_users(
        tx: mpsc::Sender<RequestTimeline>,
        counters: Arc<ShareCounters>,
        users: u64,
        service: Duration,
        stop_at: Instant,
        stop: CancellationToken,
    ) {
        let mut tasks = Vec::new();
        for u in 0..users {
            let (tx, counters, stop) = (tx.clone(), Arc::clone(&counters), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                loop {
                    let sent = Instant::now();
                    if sent >= stop_at || stop.is_cancelled() {
                        break;
                    }
                    counters.count_sent(0);
                    tokio::time::sleep(service).await;
                    let done = Instant::now();
                    let mut t = RequestTimeline::new(u * 1000 + n, sent, sent, 10);
                    t.chunks.push(stampede_common::timeline::ChunkArrival {
                        at: done,
                        tokens: 1,
                    });
                    t.finished = Some(done);
                    tx.send(t).await.unwrap();
                    n += 1;
                }
            }));
        }
        drop(tx);
        for t in tasks {
            t.await.unwrap();
        }
    }

    /// Runs 200 closed-loop users answered in 1.04 s through a recorder whose window ends at
    /// 20 s, or at `stop_after` when given; returns its interval reports.
    async fn closed_loop_reports(stop_after: Option<Duration>) -> Vec<IntervalReport> {
        let (req_tx, req_rx) = mpsc::channel(65_536);
        let (out, mut events) = mpsc::channel(1024);
        let counters = Arc::new(ShareCounters::default());
        let start = Instant::now();
        let stop = CancellationToken::new();
        let stop_at = start + Duration::from_secs(20);
        let recorder = Recorder {
            rx: req_rx,
            out,
            counters: Arc::clone(&counters),
            start,
            interval: Duration::from_secs(1),
            goodput: GoodputLimits::default(),
            record_every: 0,
            samples: None,
            window: Some(WindowEnd {
                at: stop_at,
                stop: stop.clone(),
            }),
        };
        let running = tokio::spawn(recorder.run());
        if let Some(after) = stop_after {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                stop.cancel();
            });
        }
        let users = Duration::from_millis(1040);
        closed_users(req_tx, counters, 200, users, stop_at, stop).await;
        let mut reports = Vec::new();
        while let Some(ev) = events.recv().await {
            if let run_event::Event::Interval(r) = ev.unwrap().event.unwrap() {
                reports.push(r);
            }
        }
        running.await.unwrap();
        reports
    }

    fn completed(reports: &[IntervalReport], drain: bool) -> u64 {
        reports
            .iter()
            .filter(|r| r.drain == drain)
            .map(|r| r.counts.as_ref().unwrap().completed)
            .sum()
    }

    /// The window's reports end at its end and the drain's begin there, so no completion after
    /// the window is counted in it: 200 users x 19 answers in the window, 200 in the drain.
    #[tokio::test(start_paused = true)]
    async fn the_window_is_cut_at_its_end_and_later_reports_are_the_drain() {
        let reports = closed_loop_reports(None).await;
        let window_end = reports
            .iter()
            .filter(|r| !r.drain)
            .map(|r| r.end_offset_us)
            .max();
        assert_eq!(window_end, Some(20_000_000));
        for r in &reports {
            if r.drain {
                assert!(r.start_offset_us >= 20_000_000, "{r:?}");
            }
        }
        assert_eq!(
            (completed(&reports, false), completed(&reports, true)),
            (3800, 200)
        );
        // Numbers stay in step with the interval grid: 20 in the window, then the drain's.
        let indices: Vec<u32> = reports.iter().map(|r| r.index).collect();
        assert_eq!(indices, (0..indices.len() as u32).collect::<Vec<_>>());
        assert_eq!(reports.iter().filter(|r| !r.drain).count(), 20);
    }

    /// A stop 10.3 s in cuts the window there: the window's last report is 0.3 s long.
    #[tokio::test(start_paused = true)]
    async fn a_stop_cuts_the_window_where_it_came() {
        let reports = closed_loop_reports(Some(Duration::from_millis(10_300))).await;
        let last = reports.iter().rfind(|r| !r.drain).unwrap();
        assert_eq!(
            (last.start_offset_us, last.end_offset_us),
            (10_000_000, 10_300_000)
        );
        // Users answered at 1.04 s steps: 9 answers each by 10.3 s, the 10th in the drain.
        assert_eq!(
            (completed(&reports, false), completed(&reports, true)),
            (1800, 200)
        );
        assert!(
            reports
                .iter()
                .filter(|r| r.drain)
                .all(|r| r.start_offset_us >= 10_300_000)
        );
    }
}
