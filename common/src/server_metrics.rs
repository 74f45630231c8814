//! Server metrics that Stampede knows by name: each server's Prometheus series (vLLM, SGLang,
//! TGI, Triton, a DCGM exporter) mapped to one common name and unit, so results read the same
//! whichever server ran. The agent's scraper picks them out; the controller names its columns
//! after them (`server_<name>`).

/// How a known quantity combines the label sets of its series (several GPUs, engines, models).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    Sum,
    Mean,
    Max,
}

/// A server's series mapped to a common name.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// The common name, used in results as `server_<name>`.
    pub name: &'static str,
    /// Which server exposes it.
    pub server: &'static str,
    /// The series as the server names it.
    pub source: &'static str,
    pub counter: bool,
    pub combine: Combine,
    /// Multiplies the server's value into the common name's unit.
    pub scale: f64,
}

/// Bytes in a mebibyte: DCGM reports framebuffer memory in MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

const fn gauge(name: &'static str, server: &'static str, source: &'static str) -> Known {
    Known {
        name,
        server,
        source,
        counter: false,
        combine: Combine::Sum,
        scale: 1.0,
    }
}

const fn counter(name: &'static str, server: &'static str, source: &'static str) -> Known {
    Known {
        counter: true,
        ..gauge(name, server, source)
    }
}

const fn scaled(k: Known, combine: Combine, scale: f64) -> Known {
    Known {
        combine,
        scale,
        ..k
    }
}

/// The known series, by common name; for each name the first series a scrape holds is used.
pub const KNOWN: &[Known] = &[
    gauge("requests_running", "vLLM", "vllm:num_requests_running"),
    gauge("requests_running", "SGLang", "sglang:num_running_reqs"),
    gauge("requests_running", "TGI", "tgi_batch_current_size"),
    gauge("requests_waiting", "vLLM", "vllm:num_requests_waiting"),
    gauge("requests_waiting", "SGLang", "sglang:num_queue_reqs"),
    gauge("requests_waiting", "TGI", "tgi_queue_size"),
    gauge(
        "requests_waiting",
        "Triton",
        "nv_inference_pending_request_count",
    ),
    scaled(
        gauge("kv_cache_usage_pct", "vLLM", "vllm:kv_cache_usage_perc"),
        Combine::Mean,
        100.0,
    ),
    scaled(
        gauge(
            "kv_cache_usage_pct",
            "vLLM < 0.10",
            "vllm:gpu_cache_usage_perc",
        ),
        Combine::Mean,
        100.0,
    ),
    scaled(
        gauge("kv_cache_usage_pct", "SGLang", "sglang:token_usage"),
        Combine::Mean,
        100.0,
    ),
    counter("preemptions", "vLLM", "vllm:num_preemptions_total"),
    counter("prompt_tokens", "vLLM", "vllm:prompt_tokens_total"),
    counter("prompt_tokens", "SGLang", "sglang:prompt_tokens_total"),
    counter("prompt_tokens", "TGI", "tgi_request_input_length_sum"),
    counter("generation_tokens", "vLLM", "vllm:generation_tokens_total"),
    counter(
        "generation_tokens",
        "SGLang",
        "sglang:generation_tokens_total",
    ),
    counter(
        "generation_tokens",
        "TGI",
        "tgi_request_generated_tokens_sum",
    ),
    counter("requests_finished", "vLLM", "vllm:request_success_total"),
    counter("requests_finished", "SGLang", "sglang:num_requests_total"),
    counter("requests_finished", "TGI", "tgi_request_success"),
    counter(
        "requests_finished",
        "Triton",
        "nv_inference_request_success",
    ),
    scaled(
        gauge("gpu_util_pct", "DCGM", "DCGM_FI_DEV_GPU_UTIL"),
        Combine::Mean,
        1.0,
    ),
    scaled(
        gauge("gpu_util_pct", "Triton", "nv_gpu_utilization"),
        Combine::Mean,
        100.0,
    ),
    scaled(
        gauge("gpu_mem_used_bytes", "DCGM", "DCGM_FI_DEV_FB_USED"),
        Combine::Sum,
        MIB,
    ),
    gauge("gpu_mem_used_bytes", "Triton", "nv_gpu_memory_used_bytes"),
    scaled(
        gauge("gpu_mem_free_bytes", "DCGM", "DCGM_FI_DEV_FB_FREE"),
        Combine::Sum,
        MIB,
    ),
    gauge("gpu_power_w", "DCGM", "DCGM_FI_DEV_POWER_USAGE"),
    gauge("gpu_power_w", "Triton", "nv_gpu_power_usage"),
    scaled(
        gauge("gpu_temperature_c", "DCGM", "DCGM_FI_DEV_GPU_TEMP"),
        Combine::Max,
        1.0,
    ),
    scaled(
        gauge("gpu_sm_clock_mhz", "DCGM", "DCGM_FI_DEV_SM_CLOCK"),
        Combine::Mean,
        1.0,
    ),
];

/// The common names with whether each is a counter, in the order results list them.
pub fn known_kinds() -> Vec<(&'static str, bool)> {
    known_names()
        .into_iter()
        .map(|n| (n, KNOWN.iter().any(|k| k.name == n && k.counter)))
        .collect()
}

/// The common names, in the order results list them.
pub fn known_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for k in KNOWN {
        if !names.contains(&k.name) {
            names.push(k.name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::monitor::is_series_name;

    #[test]
    fn the_table_names_each_series_once_per_name() {
        let names = known_names();
        assert_eq!(names[0], "requests_running");
        for k in KNOWN {
            assert!(is_series_name(k.source), "{}", k.source);
            let same = KNOWN
                .iter()
                .filter(|o| o.name == k.name && o.source == k.source)
                .count();
            assert_eq!(same, 1, "{} {}", k.name, k.source);
            // A name is a counter or a gauge, whichever server it comes from.
            assert!(
                KNOWN
                    .iter()
                    .filter(|o| o.name == k.name)
                    .all(|o| o.counter == k.counter)
            );
        }
    }
}
