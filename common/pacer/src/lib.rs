//! The pacer: sub-millisecond deadlines, for the simulator's tokens and the agent's arrivals.
//!
//! Tokio's timer wheel has a 1 ms resolution, so a token due at 10.2 ms would leave at 11 ms or
//! later (and the client under test would be blamed for the simulator's lateness), and an
//! arrival due at 10.2 ms would carry up to a millisecond of schedule lag. The pacer is
//! one OS thread that keeps a heap of deadlines and their wakers. The OS wakes a sleeping thread
//! late (50 us of timer slack plus scheduling, 60-300 us in all), so the pacer sleeps until a
//! margin before the earliest deadline, then spins to it and wakes the task. The margin is
//! learnt: it tracks a high quantile of the wake-up lateness the OS has shown, capped by the
//! configured `spin`, so the spin costs only as much CPU as this machine's timer needs.
//! Futures created by [`Pacer::sleep_until`] register themselves on first poll.
//!
//! The thread parks when the heap is empty, and exits when the last [`Pacer`] clone is dropped.
//!
//! The inline mode ([`Pacer::start_inline`]) keeps no thread: a task on the serving runtime
//! sleeps on tokio's timer until 2 ms before the earliest deadline, then busy-polls (yielding to
//! the runtime's other tasks and I/O between polls) and wakes each task at its deadline. Tokens
//! then leave from the thread that spun for them, with no cross-thread wake-up, which is the
//! most precise on machines whose idle cores are slow to wake (virtual machines); the price is
//! that thread's whole core whenever a token is due within 2 ms.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use tokio::time::Instant;

/// Handle to a pacer; cheap to clone.
#[derive(Clone, Debug)]
pub struct Pacer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    driver: Driver,
    spin: Duration,
}

/// Who releases the deadlines.
#[derive(Debug)]
enum Driver {
    /// A dedicated OS thread.
    Thread(Thread),
    /// A task on the runtime; its waker is in [`State::inline_waker`].
    Inline,
}

#[derive(Debug, Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// The deadline the thread is sleeping towards; an earlier registration must wake it.
    sleeping_until: Option<Instant>,
    /// True while the thread is parked with nothing to wait for.
    idle: bool,
    /// Inline mode: the driver task's waker.
    inline_waker: Option<Waker>,
}

#[derive(Debug)]
struct Entry {
    due: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The driver holds only a Weak; wake it so it notices and exits.
        match &self.driver {
            Driver::Thread(t) => t.unpark(),
            Driver::Inline => {
                let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
                if let Some(w) = state.inline_waker.take() {
                    w.wake();
                }
            }
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state stays consistent across a panic (each push or pop is whole), so a poisoned
    // lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pacer {
    /// Starts a pacer thread that spins for `spin` before each deadline.
    ///
    /// # Errors
    /// When the OS refuses a new thread.
    pub fn start(spin: Duration) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Weak<Shared>>(1);
        let handle = thread::Builder::new()
            .name("stampede-pacer".to_owned())
            .spawn(move || {
                if let Ok(weak) = rx.recv() {
                    run(&weak);
                }
            })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            driver: Driver::Thread(handle.thread().clone()),
            spin,
        });
        // The receiver waits for exactly this message, so the send cannot fail while it lives.
        let _ = tx.send(Arc::downgrade(&shared));
        Ok(Self { shared })
    }

    /// Starts an inline pacer: a task on the current tokio runtime (see the module docs).
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn start_inline() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            driver: Driver::Inline,
            spin: INLINE_SPIN,
        });
        tokio::spawn(InlineDriver {
            weak: Arc::downgrade(&shared),
            coarse: Box::pin(tokio::time::sleep_until(Instant::now())),
            ready: Vec::with_capacity(64),
        });
        Self { shared }
    }

    /// A future that completes at `due`, within microseconds.
    pub fn sleep_until(&self, due: Instant) -> PacedSleep {
        PacedSleep {
            pacer: self.clone(),
            due,
            registered: None,
        }
    }

    fn register(&self, due: Instant, waker: Waker) {
        let mut st = lock(&self.shared.state);
        st.seq += 1;
        let seq = st.seq;
        st.heap.push(Reverse(Entry { due, seq, waker }));
        let wake = st.idle || st.sleeping_until.is_some_and(|t| due < t);
        if !wake {
            return;
        }
        match &self.shared.driver {
            Driver::Thread(t) => {
                drop(st);
                t.unpark();
            }
            Driver::Inline => {
                let w = st.inline_waker.clone();
                drop(st);
                if let Some(w) = w {
                    w.wake();
                }
            }
        }
    }
}

/// A running estimate of a high quantile (about the 95th percentile) of how late the OS wakes
/// a timed sleep: it rises fast on a late wake-up and decays slowly.
#[derive(Debug)]
struct WakeMargin {
    estimate: Duration,
    cap: Duration,
}

impl WakeMargin {
    const FLOOR: Duration = Duration::from_micros(5);

    fn new(cap: Duration) -> Self {
        Self {
            estimate: Duration::from_micros(80).min(cap),
            cap,
        }
    }

    fn observe(&mut self, late: Duration) {
        let (est, late) = (self.estimate.as_secs_f64(), late.as_secs_f64());
        let next = if late > est {
            est + 0.1 * (late - est)
        } else {
            est - 0.005 * (est - late)
        };
        self.estimate = Duration::from_secs_f64(next).clamp(Self::FLOOR.min(self.cap), self.cap);
    }
}

fn run(weak: &Weak<Shared>) {
    let mut ready: Vec<Waker> = Vec::with_capacity(64);
    let mut margin: Option<WakeMargin> = None;
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let mut st = lock(&shared.state);
        let now = Instant::now();
        while st.heap.peek().is_some_and(|e| e.0.due <= now) {
            if let Some(Reverse(e)) = st.heap.pop() {
                ready.push(e.waker);
            }
        }
        let next = st.heap.peek().map(|e| e.0.due);
        let margin = margin.get_or_insert_with(|| WakeMargin::new(shared.spin));
        let spin = margin.estimate;
        match next {
            None => {
                st.idle = true;
                st.sleeping_until = None;
            }
            Some(due) if due.saturating_duration_since(now) > spin => {
                st.idle = false;
                st.sleeping_until = Some(due);
            }
            Some(_) => {
                st.idle = false;
                st.sleeping_until = None;
            }
        }
        drop(st);
        // Wake outside the lock: a woken task may register its next deadline at once.
        for w in ready.drain(..) {
            w.wake();
        }
        drop(shared);
        match next {
            None => thread::park(),
            Some(due) => {
                let now = Instant::now();
                let left = due.saturating_duration_since(now);
                if left > spin {
                    let wake_at = now + (left - spin);
                    thread::park_timeout(left - spin);
                    let woke = Instant::now();
                    // Woken early means a registration unparked us; only timeouts teach.
                    if woke >= wake_at {
                        margin.observe(woke - wake_at);
                    }
                } else {
                    // A pure spin: yielding would hand the core to a thread that may keep it
                    // past the deadline.
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }
}

/// How long before a deadline the inline driver stops trusting tokio's millisecond timer.
const INLINE_SPIN: Duration = Duration::from_millis(2);

/// The inline pacer's task.
struct InlineDriver {
    weak: Weak<Shared>,
    coarse: Pin<Box<tokio::time::Sleep>>,
    ready: Vec<Waker>,
}

impl Future for InlineDriver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let Some(shared) = this.weak.upgrade() else {
                return Poll::Ready(());
            };
            let mut st = lock(&shared.state);
            if !st
                .inline_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                st.inline_waker = Some(cx.waker().clone());
            }
            let now = Instant::now();
            while st.heap.peek().is_some_and(|e| e.0.due <= now) {
                if let Some(Reverse(e)) = st.heap.pop() {
                    this.ready.push(e.waker);
                }
            }
            let next = st.heap.peek().map(|e| e.0.due);
            let far = next.filter(|due| due.saturating_duration_since(now) > shared.spin);
            st.idle = next.is_none();
            st.sleeping_until = far;
            drop(st);
            for w in this.ready.drain(..) {
                w.wake();
            }
            match (next, far) {
                (None, _) => return Poll::Pending,
                (Some(_), None) => {
                    // Busy-poll: come back after the runtime's other ready tasks.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                (Some(_), Some(due)) => {
                    this.coarse.as_mut().reset(due - shared.spin);
                    if this.coarse.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

/// Completes at its deadline; see [`Pacer::sleep_until`].
#[derive(Debug)]
pub struct PacedSleep {
    pacer: Pacer,
    due: Instant,
    registered: Option<Waker>,
}

impl PacedSleep {
    /// The deadline.
    pub fn due(&self) -> Instant {
        self.due
    }
}

impl Future for PacedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.due {
            return Poll::Ready(());
        }
        // Register once per distinct waker; a spurious poll must not flood the heap.
        if !this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            this.pacer.register(this.due, cx.waker().clone());
            this.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_not_before() {
        let pacer = Pacer::start(Duration::from_micros(200)).expect("thread");
        for i in 0..50u64 {
            let due = Instant::now() + Duration::from_micros(300 + i * 37);
            pacer.sleep_until(due).await;
            assert!(Instant::now() >= due);
        }
        // How late is the benchmarks' business (sim_bench, bench/stampede_bench.py), not a test's.
    }

    #[tokio::test]
    async fn the_inline_pacer_wakes_at_the_deadline_not_before() {
        let pacer = Pacer::start_inline();
        for i in 0..50u64 {
            let due = Instant::now() + Duration::from_micros(300 + i * 97);
            pacer.sleep_until(due).await;
            assert!(Instant::now() >= due);
        }
        // A far deadline goes through tokio's timer first.
        let due = Instant::now() + Duration::from_millis(15);
        pacer.sleep_until(due).await;
        assert!(Instant::now() >= due);
    }

    #[tokio::test]
    async fn many_sleepers_in_any_order_all_wake() {
        let pacer = Pacer::start(Duration::from_micros(100)).expect("thread");
        let base = Instant::now();
        let mut tasks = Vec::new();
        for i in (0..200u64).rev() {
            let p = pacer.clone();
            tasks.push(tokio::spawn(async move {
                let due = base + Duration::from_micros(100 * (i % 37));
                p.sleep_until(due).await;
                Instant::now() >= due
            }));
        }
        for t in tasks {
            assert!(t.await.expect("joined"));
        }
    }

    #[test]
    fn the_margin_learns_a_high_quantile_within_its_cap() {
        let mut m = WakeMargin::new(Duration::from_micros(200));
        for i in 0..5000u64 {
            // 60 us usually, 150 us one time in 20.
            let late = if i % 20 == 0 { 150 } else { 60 };
            m.observe(Duration::from_micros(late));
        }
        let est = m.estimate.as_micros();
        assert!((60..=150).contains(&est), "{est}");
        m.observe(Duration::from_secs(1));
        assert_eq!(m.estimate, Duration::from_micros(200), "capped");
        let mut zero = WakeMargin::new(Duration::ZERO);
        zero.observe(Duration::from_micros(100));
        assert_eq!(zero.estimate, Duration::ZERO, "spin off");
    }

    #[test]
    fn the_thread_exits_when_the_last_handle_drops() {
        let pacer = Pacer::start(Duration::ZERO).expect("thread");
        let weak = Arc::downgrade(&pacer.shared);
        drop(pacer);
        assert!(weak.upgrade().is_none());
    }
}
