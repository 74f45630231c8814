//! Named presets: the deterministic one, and engine models named for a model and its GPUs.
//!
//! Each engine preset's figures are derived from public numbers, written beside them:
//!
//! - NVIDIA H100 SXM5 80GB (HBM3): 3.35 TB/s memory bandwidth, 989 TFLOP/s dense BF16,
//!   700 W board power; `nvidia-smi` shows 81,559 MiB of framebuffer.
//! - Llama 3.1 8B: 8.03 B parameters (16.1 GB in BF16), 32 layers, 8 KV heads of 128
//!   dimensions, so one token's KV cache is 32 x 8 x 128 x 2 (K, V) x 2 bytes = 128 KiB.
//! - Llama 3.1 70B: 70.6 B parameters (141 GB in BF16), 80 layers, 8 KV heads of 128
//!   dimensions: 320 KiB of KV per token, 40 KiB on each of 8 tensor-parallel GPUs.
//! - vLLM V1 defaults for `vllm serve` on GPUs with at least 70 GiB: `max_num_seqs` 1024,
//!   `max_num_batched_tokens` 8192, `block_size` 16, `gpu_memory_utilization` 0.9; chunked
//!   prefill on.
//!
//! The derivations:
//!
//! - KV-cache capacity = (0.9 x framebuffer - weights per GPU - about 4 GiB of activations and
//!   CUDA graphs) / KV bytes per token per GPU. For the 8B model on one H100: (73.4 - 15.0 - 4)
//!   GiB / 128 KiB ~ 430,000 tokens (vLLM logs about 540,000 on the 94 GB H100 NVL).
//! - Step base (one decode step of a tiny batch) = weights read once per step at full
//!   bandwidth, plus launch and sampling overhead: 16.1 GB / 3.35 TB/s = 4.8 ms, so 6 ms for
//!   8B; 17.6 GB / 3.35 TB/s = 5.3 ms plus about 2 ms of tensor-parallel all-reduces, so 8 ms
//!   for 70B on eight.
//! - Prefill rate = GPUs x 989 TFLOP/s x utilisation / (2 x parameters) FLOP per token: 50 %
//!   for one GPU gives 30,000 tokens/s for 8B; 40 % across eight (communication) gives 22,000
//!   tokens/s for 70B. Decode tokens cost the same compute, so a big batch slows each step.
//! - Context cost = KV bytes per token per GPU / bandwidth: 128 KiB / 3.35 TB/s = 39 ns (8B),
//!   40 KiB / 3.35 TB/s = 12 ns (70B), per token of context held by the batch, per step.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::engine::EngineConfig;

/// Default served model id when neither the config nor the preset names one.
pub const DEFAULT_MODEL: &str = "sim-llama-3.1-8b";

/// The simulated GPUs behind the model, for the DCGM-named series of `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuConfig {
    /// Marketing name, as DCGM's `modelName` label shows it.
    pub name: String,
    /// Number of GPUs (tensor parallel size); each reports the same series.
    pub count: u32,
    /// Framebuffer size per GPU in MiB.
    pub memory_mib: u64,
    /// Framebuffer in use per GPU in MiB: vLLM reserves weights, activations and the KV-cache
    /// pool at start-up, so this stays constant while serving.
    pub used_mib: u64,
    /// Board power when idle, in watts.
    pub power_idle_w: f64,
    /// Board power when every step runs back to back with a full batch, in watts.
    pub power_max_w: f64,
}

/// Name of the deterministic preset.
pub const DETERMINISTIC: &str = "deterministic";

/// A named starting point for [`crate::SimConfig`].
#[derive(Debug, Clone)]
pub struct Preset {
    /// The name `--preset` takes.
    pub name: &'static str,
    /// One line for `--list-presets`.
    pub summary: &'static str,
    /// Served model id.
    pub model: &'static str,
    /// Context length in tokens.
    pub max_model_len: u32,
    /// The engine model; `None` for the deterministic preset.
    pub engine: Option<EngineConfig>,
    gpu_name: &'static str,
    gpu_count: u32,
    gpu_memory_mib: u64,
    gpu_used_mib: u64,
    power_idle_w: f64,
    power_max_w: f64,
}

impl Preset {
    /// The preset's simulated GPUs.
    pub fn gpu(&self) -> GpuConfig {
        GpuConfig {
            name: self.gpu_name.to_owned(),
            count: self.gpu_count,
            memory_mib: self.gpu_memory_mib,
            used_mib: self.gpu_used_mib,
            power_idle_w: self.power_idle_w,
            power_max_w: self.power_max_w,
        }
    }
}

const H100: &str = "NVIDIA H100 80GB HBM3";
const H100_MIB: u64 = 81_559;
// 0.9 of the framebuffer reserved by vLLM plus about 500 MiB of CUDA context outside it.
const H100_USED_MIB: u64 = 73_900;

/// Every preset, the deterministic one first.
pub fn all() -> Vec<Preset> {
    vec![
        Preset {
            name: DETERMINISTIC,
            summary: "fixed time to first token and gap (--ttft, --itl), no queueing",
            model: DEFAULT_MODEL,
            max_model_len: 131_072,
            engine: None,
            gpu_name: H100,
            gpu_count: 1,
            gpu_memory_mib: H100_MIB,
            gpu_used_mib: H100_USED_MIB,
            power_idle_w: 70.0,
            power_max_w: 700.0,
        },
        Preset {
            name: "llama-3.1-8b-h100",
            summary: "Llama 3.1 8B, BF16, vLLM on one H100 SXM 80GB",
            model: DEFAULT_MODEL,
            max_model_len: 131_072,
            engine: Some(EngineConfig {
                max_num_seqs: 1024,
                max_num_batched_tokens: 8192,
                kv_cache_tokens: 430_000,
                kv_block_tokens: 16,
                prefill_tokens_per_s: 30_000.0,
                step_base: Duration::from_millis(6),
                context_token_cost: Duration::from_nanos(39),
            }),
            gpu_name: H100,
            gpu_count: 1,
            gpu_memory_mib: H100_MIB,
            gpu_used_mib: H100_USED_MIB,
            power_idle_w: 70.0,
            power_max_w: 700.0,
        },
        Preset {
            name: "llama-3.1-70b-8xh100",
            summary: "Llama 3.1 70B, BF16, vLLM with tensor parallelism 8 on eight H100 SXM 80GB",
            model: "sim-llama-3.1-70b",
            max_model_len: 131_072,
            engine: Some(EngineConfig {
                max_num_seqs: 1024,
                max_num_batched_tokens: 8192,
                // (73.4 - 16.4 - 4) GiB x 8 GPUs / 320 KiB per token.
                kv_cache_tokens: 1_380_000,
                kv_block_tokens: 16,
                prefill_tokens_per_s: 22_000.0,
                step_base: Duration::from_millis(8),
                context_token_cost: Duration::from_nanos(12),
            }),
            gpu_name: H100,
            gpu_count: 8,
            gpu_memory_mib: H100_MIB,
            gpu_used_mib: H100_USED_MIB,
            power_idle_w: 70.0,
            power_max_w: 700.0,
        },
    ]
}

/// The preset with this name.
pub fn find(name: &str) -> Option<Preset> {
    all().into_iter().find(|p| p.name == name)
}

/// Every preset's name.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_preset_is_valid_and_names_are_unique() {
        let all = all();
        for p in &all {
            if let Some(e) = &p.engine {
                let mut problems = Vec::new();
                e.check(&mut problems);
                assert!(problems.is_empty(), "{}: {problems:?}", p.name);
            }
            assert_eq!(all.iter().filter(|q| q.name == p.name).count(), 1);
        }
    }

    #[test]
    fn the_8b_preset_has_the_capacity_its_docs_claim() {
        let p = find("llama-3.1-8b-h100").expect("preset");
        let e = p.engine.expect("engine");
        // A mid-size chat workload: 1000 tokens in, 256 out.
        let cap = e.saturation(1000, 256);
        // Published vLLM figures for this pair sit in the few-thousands of output tokens/s.
        assert!(
            (1_000.0..20_000.0).contains(&cap.output_tokens_per_s),
            "{cap:?}"
        );
    }
}
