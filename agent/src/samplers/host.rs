//! The host: CPU (all cores and each core), memory, and network bytes, through sysinfo.

use std::time::Duration;

use stampede_common::proto::HostSample;
use sysinfo::{Networks, System};
use tokio::time::Instant;

/// Interfaces left out of the network figures: loopback traffic never leaves the host.
fn counted(interface: &str) -> bool {
    interface != "lo" && !interface.starts_with("lo:")
}

/// Reads the host between samples; its first reading sets the baseline CPU and network
/// counters, so create it at least 200 ms before the first sample that matters.
pub struct HostSampler {
    networks: Option<Networks>,
    /// Network totals and when they were read, for rates.
    last_net: Option<(u64, u64, Instant)>,
}

impl HostSampler {
    /// Takes the baseline readings on `sys`.
    pub fn new(sys: &mut System) -> Self {
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let networks = Networks::new_with_refreshed_list().ok();
        let last_net = networks.as_ref().map(|n| {
            let (rx, tx) = net_totals(n);
            (rx, tx, Instant::now())
        });
        HostSampler { networks, last_net }
    }

    /// One reading: CPU since the previous one, memory now, network bytes per second since the
    /// previous one.
    pub fn sample(&mut self, sys: &mut System) -> HostSample {
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let (mut rx_per_s, mut tx_per_s) = (0.0, 0.0);
        if let Some(nets) = &mut self.networks {
            nets.refresh(true);
            let (rx, tx) = net_totals(nets);
            let now = Instant::now();
            if let Some((rx0, tx0, at)) = self.last_net {
                let secs = now
                    .saturating_duration_since(at)
                    .max(Duration::from_millis(1))
                    .as_secs_f64();
                rx_per_s = rx.saturating_sub(rx0) as f64 / secs;
                tx_per_s = tx.saturating_sub(tx0) as f64 / secs;
            }
            self.last_net = Some((rx, tx, now));
        }
        let cpus = sys.cpus();
        HostSample {
            cpu_pct: finite(f64::from(sys.global_cpu_usage())),
            core_pct: cpus.iter().map(|c| finite(f64::from(c.usage()))).collect(),
            mem_used_bytes: sys.used_memory(),
            mem_total_bytes: sys.total_memory(),
            net_rx_bytes_per_s: rx_per_s,
            net_tx_bytes_per_s: tx_per_s,
            cores: u32::try_from(cpus.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Received and transmitted bytes since boot, over the counted interfaces.
fn net_totals(nets: &Networks) -> (u64, u64) {
    nets.iter()
        .filter(|(name, _)| counted(&name.to_string_lossy()))
        .fold((0, 0), |(rx, tx), (_, d)| {
            (rx + d.total_received(), tx + d.total_transmitted())
        })
}

/// A reading rounded to 0.1 and never NaN, so CSV and JSON stay plain.
pub(crate) fn finite(v: f64) -> f64 {
    if v.is_finite() {
        (v * 10.0).round() / 10.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_readings_are_within_their_ranges() {
        let mut sys = System::new().expect("sysinfo works on Linux");
        let mut host = HostSampler::new(&mut sys);
        std::thread::sleep(Duration::from_millis(250));
        let s = host.sample(&mut sys);
        assert!((0.0..=100.0).contains(&s.cpu_pct), "{s:?}");
        assert_eq!(s.core_pct.len(), s.cores as usize);
        assert!(s.cores >= 1);
        assert!(s.mem_total_bytes > 0 && s.mem_used_bytes <= s.mem_total_bytes);
        assert!(s.net_rx_bytes_per_s >= 0.0 && s.net_tx_bytes_per_s >= 0.0);
        assert!(!counted("lo") && counted("eth0"));
    }
}
