//! How the agent's drivers wait for a due arrival: the shared pacer
//! ([`stampede_pacer`]), started once per process, or tokio's timer for comparison.
//!
//! Tokio's timer wheel ticks in whole milliseconds, so an arrival due at 10.2 ms would leave at
//! 11 ms or later, and every request would carry up to a millisecond of schedule lag that the
//! corrected TTFT then charges to the server; the pacer releases it within tens of microseconds.

use std::time::Duration;

pub use stampede_pacer::{PacedSleep, Pacer};
use tokio::time::Instant;

/// The most the process-wide pacer spins before a deadline, unless
/// `STAMPEDE_PACER_SPIN_US` says otherwise.
const DEFAULT_SPIN: Duration = Duration::from_micros(200);

/// How the agent's drivers wait for a due arrival.
#[derive(Debug, Clone)]
pub enum ArrivalClock {
    /// The pacer thread: within tens of microseconds.
    Precise(Pacer),
    /// Tokio's timer (up to about 1 ms late); kept for comparison in the benchmark
    /// (`STAMPEDE_PACER=tokio`) and as the fallback when no thread can be started.
    Tokio,
}

impl ArrivalClock {
    /// The process-wide clock, started on first use. `STAMPEDE_PACER=tokio` selects tokio's
    /// timer; `STAMPEDE_PACER_SPIN_US` caps the spin (default 200 us).
    pub fn global() -> &'static ArrivalClock {
        static CLOCK: std::sync::OnceLock<ArrivalClock> = std::sync::OnceLock::new();
        CLOCK.get_or_init(|| {
            if std::env::var("STAMPEDE_PACER").is_ok_and(|v| v == "tokio") {
                return ArrivalClock::Tokio;
            }
            let spin = std::env::var("STAMPEDE_PACER_SPIN_US")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(DEFAULT_SPIN, Duration::from_micros);
            match Pacer::start(spin) {
                Ok(p) => ArrivalClock::Precise(p),
                Err(e) => {
                    tracing::warn!("no pacer thread ({e}); arrivals use tokio's timer");
                    ArrivalClock::Tokio
                }
            }
        })
    }

    /// Completes at `due`.
    pub async fn sleep_until(&self, due: Instant) {
        match self {
            ArrivalClock::Precise(p) => p.sleep_until(due).await,
            ArrivalClock::Tokio => tokio::time::sleep_until(due).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_global_clock_waits_until_the_deadline() {
        let due = Instant::now() + Duration::from_millis(3);
        ArrivalClock::global().sleep_until(due).await;
        assert!(Instant::now() >= due);
    }
}
