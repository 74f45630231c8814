//! GPUs through NVML (`libnvidia-ml`, loaded at run time): the inventory Hello reports, and one
//! reading per device per sample. A host without the library or a GPU gets one clear reason and
//! no readings; nothing else changes.

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use stampede_common::proto::{GpuInfo, GpuProcessMemory, GpuSample};

/// This host's GPUs, with NVML loaded once for the agent's life.
pub struct Gpus {
    nvml: Nvml,
    inventory: Vec<GpuInfo>,
}

impl std::fmt::Debug for Gpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpus")
            .field("inventory", &self.inventory)
            .finish_non_exhaustive()
    }
}

/// Why an NVML call failed, in words a user can act on.
fn reason(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(le) => format!(
            "the NVML library (libnvidia-ml.so.1) could not be loaded: {le}; no NVIDIA driver on this host?"
        ),
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_string(),
        NvmlError::NoPermission => "no permission to query the GPUs through NVML".to_string(),
        other => format!("NVML failed: {other}"),
    }
}

impl Gpus {
    /// Loads NVML and lists the GPUs.
    ///
    /// # Errors
    /// The reason, in one line, when NVML cannot be loaded or finds no GPU.
    pub fn detect() -> Result<Gpus, String> {
        let nvml = Nvml::init().map_err(|e| reason(&e))?;
        let count = nvml.device_count().map_err(|e| reason(&e))?;
        if count == 0 {
            return Err("NVML found no GPU".to_string());
        }
        let mut inventory = Vec::with_capacity(count as usize);
        for index in 0..count {
            let device = nvml.device_by_index(index).map_err(|e| reason(&e))?;
            inventory.push(GpuInfo {
                index,
                name: device.name().unwrap_or_else(|_| "unknown GPU".to_string()),
                memory_total_bytes: device.memory_info().map_or(0, |m| m.total),
            });
        }
        Ok(Gpus { nvml, inventory })
    }

    /// The GPUs as Hello reports them.
    pub fn inventory(&self) -> &[GpuInfo] {
        &self.inventory
    }

    /// One reading of every GPU. Readings a device does not support are left out; a device
    /// that cannot be opened any more (fallen off the bus) is skipped.
    pub fn sample(&self) -> Vec<GpuSample> {
        let mut out = Vec::with_capacity(self.inventory.len());
        for info in &self.inventory {
            let Ok(device) = self.nvml.device_by_index(info.index) else {
                continue;
            };
            let memory = device.memory_info().ok();
            let mut processes: Vec<GpuProcessMemory> = Vec::new();
            for list in [
                device.running_compute_processes(),
                device.running_graphics_processes(),
            ]
            .into_iter()
            .flatten()
            {
                for p in list {
                    let used = match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => b,
                        UsedGpuMemory::Unavailable => 0,
                    };
                    match processes.iter_mut().find(|q| q.pid == p.pid) {
                        Some(q) => q.used_bytes = q.used_bytes.max(used),
                        None => processes.push(GpuProcessMemory {
                            pid: p.pid,
                            used_bytes: used,
                        }),
                    }
                }
            }
            out.push(GpuSample {
                index: info.index,
                name: info.name.clone(),
                util_pct: device.utilization_rates().ok().map(|u| f64::from(u.gpu)),
                mem_used_bytes: memory.as_ref().map_or(0, |m| m.used),
                mem_total_bytes: memory.as_ref().map_or(info.memory_total_bytes, |m| m.total),
                // NVML reports milliwatts.
                power_w: device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                temperature_c: device
                    .temperature(TemperatureSensor::Gpu)
                    .ok()
                    .map(f64::from),
                sm_clock_mhz: device.clock_info(Clock::SM).ok(),
                processes,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a host without NVIDIA's driver (CI), detection fails with one line that says why;
    /// on a host with GPUs, every GPU is listed and read.
    #[test]
    fn detection_gives_gpus_or_one_clear_reason() {
        match Gpus::detect() {
            Ok(gpus) => {
                assert!(!gpus.inventory().is_empty());
                let samples = gpus.sample();
                assert_eq!(samples.len(), gpus.inventory().len());
                for s in samples {
                    assert!(s.mem_total_bytes > 0, "{s:?}");
                    assert!(s.util_pct.is_none_or(|u| (0.0..=100.0).contains(&u)));
                }
            }
            Err(why) => {
                assert!(!why.is_empty());
                assert_eq!(why.lines().count(), 1, "{why}");
            }
        }
    }
}
