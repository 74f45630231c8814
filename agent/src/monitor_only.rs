//! A monitor-only share: the agent samples its host (GPUs, CPU, memory, the target process,
//! server metrics) over the step's window and sends nothing to the target. It is how an agent on
//! the model server's host reports that server's NVML readings while the load comes from
//! elsewhere. Its interval reports carry samples and zero counts.

use std::sync::Arc;
use std::time::Duration;

use stampede_common::proto::StageShare;
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tonic::Status;

use crate::recorder::{EventSender, GoodputLimits, Recorder, ShareCounters};
use crate::samplers::{MonitorEnv, MonitorSettings, MonitorStart, Window};
use crate::share::{ShareStops, start_instant};

/// A monitor-only share, checked and ready to start.
pub struct MonitorOnlyShare {
    recorder: Recorder,
    /// Held until the window ends: the recorder finishes when it is dropped.
    rec_tx: mpsc::Sender<stampede_common::timeline::RequestTimeline>,
    monitor: MonitorStart,
    window: Window,
    stops: ShareStops,
}

fn invalid(field: &str, why: &str) -> Status {
    Status::invalid_argument(format!("stage share field {field}: {why}"))
}

/// Checks a monitor-only share. Target, workload and load are not needed and not looked at.
///
/// # Errors
/// `INVALID_ARGUMENT` naming the field that is missing or out of range.
pub fn prepare_monitor_only(
    share: &StageShare,
    out: EventSender,
    env: &MonitorEnv,
) -> Result<MonitorOnlyShare, Status> {
    if share.duration_us == 0 {
        return Err(invalid("duration_us", "must be above 0"));
    }
    if share.interval_us < 10_000 {
        return Err(invalid("interval_us", "must be at least 10000"));
    }
    let interval = Duration::from_micros(share.interval_us);
    let settings = MonitorSettings::from_proto(share.monitor.as_ref(), interval)
        .map_err(|(field, why)| invalid(field, &why))?;
    let (monitor, samples) = MonitorStart::new(settings, env.clone(), &share.run_id);
    let start = start_instant(share.start_at_unix_us);
    let stops = ShareStops::new(Duration::ZERO);
    let (rec_tx, rec_rx) = mpsc::channel(1);
    let recorder = Recorder {
        rx: rec_rx,
        out,
        counters: Arc::new(ShareCounters::default()),
        start,
        interval,
        goodput: GoodputLimits::default(),
        record_every: 0,
        samples: Some(samples),
        window: None,
    };
    let window = Window {
        start,
        stop_at: start + Duration::from_micros(share.duration_us),
        stop: stops.soft.clone(),
    };
    Ok(MonitorOnlyShare {
        recorder,
        rec_tx,
        monitor,
        window,
        stops,
    })
}

impl MonitorOnlyShare {
    /// The share's stop signals.
    pub fn stops(&self) -> ShareStops {
        self.stops.clone()
    }

    /// Samples until the window ends or the share is stopped, then sends the last report and
    /// the (empty) summary.
    pub async fn run(self) {
        let MonitorOnlyShare {
            recorder,
            rec_tx,
            monitor,
            window,
            stops,
        } = self;
        let out = recorder.out.clone();
        let recording = tokio::spawn(recorder.run());
        let stop_at = window.stop_at;
        monitor.start(window);
        tokio::select! {
            () = sleep_until(stop_at) => {}
            () = stops.soft.cancelled() => {}
            // The controller is gone: nothing more to sample for.
            () = out.closed() => stops.soft.cancel(),
        }
        drop(rec_tx);
        let _ = recording.await;
    }
}
