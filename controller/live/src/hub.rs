//! The hub the runner publishes live events to, and every reader's way in.
//!
//! Publishing never waits on a reader: the current [`LiveState`] goes out on a `watch` channel
//! (the dashboard and the Prometheus exporter read it at their own pace), and each event on a
//! bounded `broadcast` channel (remote watchers, who must see every interval in order). A
//! watcher that falls behind by more than the buffer loses the oldest events and is told how
//! many; the run never slows for it.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use crate::command::ControlRequest;
use crate::state::{LiveEvent, LiveState};

/// Events a watcher may fall behind by before it loses some.
pub const BUFFER: usize = 1024;
/// Events kept for watchers who attach later (besides the run's description), at most: enough
/// for the charts' span at 100 ms intervals.
const MAX_BACKLOG: usize = 2000;

/// Events kept for late watchers at `interval_s`: the charts' span of intervals, plus room for
/// the steps, alerts and notes between them.
fn backlog_cap(interval_s: f64) -> usize {
    let span = (crate::state::HISTORY_SPAN_S / interval_s.max(0.1)).ceil() as usize;
    (span + 50).min(MAX_BACKLOG)
}

/// A cloneable handle to the live view of one run.
#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

struct Inner {
    /// The state and the backlog change together, so a watcher attaching gets a backlog and a
    /// subscription with no event missing or repeated between them.
    shared: Mutex<Shared>,
    events: broadcast::Sender<Arc<LiveEvent>>,
    state: watch::Sender<Arc<LiveState>>,
    /// The runner's control channel, for the dashboard's keys; set once the runner has one.
    control: OnceLock<mpsc::Sender<ControlRequest>>,
    /// The dashboard owns the terminal: standard input is not read for commands.
    interactive: bool,
    watchers: AtomicUsize,
    missed: AtomicU64,
}

struct Shared {
    state: LiveState,
    backlog: VecDeque<Arc<LiveEvent>>,
    /// Set from the run's interval when the run is described.
    cap: usize,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub")
            .field("interactive", &self.inner.interactive)
            .field("watchers", &self.watchers())
            .finish_non_exhaustive()
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        LiveHub::new(false)
    }
}

impl LiveHub {
    /// A hub; `interactive` when the dashboard owns the terminal.
    pub fn new(interactive: bool) -> Self {
        let (events, _) = broadcast::channel(BUFFER);
        let (state, _) = watch::channel(Arc::new(LiveState::new()));
        LiveHub {
            inner: Arc::new(Inner {
                shared: Mutex::new(Shared {
                    state: LiveState::new(),
                    backlog: VecDeque::new(),
                    cap: backlog_cap(1.0),
                }),
                events,
                state,
                control: OnceLock::new(),
                interactive,
                watchers: AtomicUsize::new(0),
                missed: AtomicU64::new(0),
            }),
        }
    }

    /// True when the dashboard owns the terminal.
    pub fn interactive(&self) -> bool {
        self.inner.interactive
    }

    /// Publishes one event to every reader; never waits for one.
    pub fn publish(&self, ev: LiveEvent) {
        let ev = Arc::new(ev);
        // A poisoned lock means a reader panicked while cloning; the data is still whole.
        let mut shared = self
            .inner
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.state.apply(&ev);
        if let LiveEvent::Run(info) = &*ev {
            shared.cap = backlog_cap(info.interval_s);
        } else {
            while shared.backlog.len() >= shared.cap {
                shared.backlog.pop_front();
            }
            shared.backlog.push_back(Arc::clone(&ev));
        }
        self.inner
            .state
            .send_replace(Arc::new(shared.state.clone()));
        // No receiver is not an error: nobody watches.
        let _ = self.inner.events.send(ev);
    }

    /// What happened so far (the run first, then the backlog), and the events from now on.
    pub fn subscribe(&self) -> (Vec<Arc<LiveEvent>>, broadcast::Receiver<Arc<LiveEvent>>) {
        let shared = self
            .inner
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rx = self.inner.events.subscribe();
        let mut past: Vec<Arc<LiveEvent>> = Vec::with_capacity(shared.backlog.len() + 1);
        if let Some(run) = &shared.state.run {
            past.push(Arc::new(LiveEvent::Run(run.clone())));
        }
        past.extend(shared.backlog.iter().cloned());
        (past, rx)
    }

    /// The current state, updated with each event.
    pub fn state(&self) -> watch::Receiver<Arc<LiveState>> {
        self.inner.state.subscribe()
    }

    /// Gives the dashboard the runner's control channel.
    pub fn set_control(&self, tx: mpsc::Sender<ControlRequest>) {
        let _ = self.inner.control.set(tx);
    }

    /// The runner's control channel, once it has one.
    pub fn control(&self) -> Option<&mpsc::Sender<ControlRequest>> {
        self.inner.control.get()
    }

    /// Counts a watcher for as long as the guard lives.
    pub fn watcher(&self) -> WatcherGuard {
        self.inner.watchers.fetch_add(1, Ordering::SeqCst);
        WatcherGuard(Arc::clone(&self.inner))
    }

    /// Watchers attached now.
    pub fn watchers(&self) -> usize {
        self.inner.watchers.load(Ordering::SeqCst)
    }

    /// Counts events a watcher lost by falling behind.
    pub fn add_missed(&self, n: u64) {
        self.inner.missed.fetch_add(n, Ordering::Relaxed);
    }

    /// Events lost by watchers that fell behind, over all of them.
    pub fn missed(&self) -> u64 {
        self.inner.missed.load(Ordering::Relaxed)
    }

    /// Waits until every watcher has been sent the run's end, at most `limit`.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.watchers() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Keeps a watcher counted; see [`LiveHub::watcher`].
pub struct WatcherGuard(Arc<Inner>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where the runner's printed lines go while the dashboard owns the terminal: each line is
/// published as a note (the dashboard's log pane) and kept, to be printed once the terminal is
/// given back.
pub struct NoteSink {
    hub: LiveHub,
    partial: Vec<u8>,
    text: Vec<u8>,
}

impl NoteSink {
    pub fn new(hub: LiveHub) -> Self {
        NoteSink {
            hub,
            partial: Vec::new(),
            text: Vec::new(),
        }
    }

    /// Everything written, in order.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }
}

impl Write for NoteSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).trim_end().to_string();
            if !line.is_empty() {
                self.hub.publish(LiveEvent::Note(line));
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_subscriber_gets_the_past_then_the_present() {
        let hub = LiveHub::new(false);
        hub.publish(LiveEvent::Note("one".into()));
        hub.publish(LiveEvent::Run(Default::default()));
        hub.publish(LiveEvent::Note("two".into()));
        let (past, mut rx) = hub.subscribe();
        assert!(matches!(*past[0], LiveEvent::Run(_)), "the run comes first");
        assert_eq!(past.len(), 3);
        hub.publish(LiveEvent::Note("three".into()));
        assert_eq!(*rx.recv().await.unwrap(), LiveEvent::Note("three".into()));
        assert_eq!(hub.state().borrow().notes.len(), 3);
    }

    #[tokio::test]
    async fn a_reader_that_never_reads_does_not_hold_the_publisher() {
        let hub = LiveHub::new(false);
        let (_past, mut rx) = hub.subscribe();
        for i in 0..(BUFFER as u64 + 10) {
            hub.publish(LiveEvent::Missed(i));
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
    }

    #[test]
    fn the_backlog_keeps_the_charts_span_of_the_runs_interval() {
        use crate::state::RunInfo;
        for (interval_s, kept) in [(1.0, 350), (0.1, 2000), (10.0, 80)] {
            let hub = LiveHub::new(false);
            hub.publish(LiveEvent::Run(RunInfo {
                interval_s,
                ..Default::default()
            }));
            for i in 0..5000 {
                hub.publish(LiveEvent::Missed(i));
            }
            let (past, _rx) = hub.subscribe();
            // The run's description, then the newest events.
            assert_eq!(past.len(), kept + 1, "interval {interval_s}");
            assert!(matches!(*past[0], LiveEvent::Run(_)));
            assert!(matches!(*past[kept], LiveEvent::Missed(4999)));
        }
    }

    #[test]
    fn the_sink_publishes_whole_lines() {
        let hub = LiveHub::new(true);
        let mut sink = NoteSink::new(hub.clone());
        write!(sink, "target x\nagent").unwrap();
        writeln!(sink, " a").unwrap();
        let notes: Vec<String> = hub.state().borrow().notes.iter().cloned().collect();
        assert_eq!(notes, ["target x", "agent a"]);
        assert_eq!(sink.text(), "target x\nagent a\n");
    }
}
