//! The server's resources in words: the KV cache and the GPU.

use stampede_results::facts::{GpuIdle, KvCachePressure};

use super::Words;
use crate::i18n::{Lang, num, tr};

pub fn kv_cache_pressure(f: &KvCachePressure, lang: Lang) -> Words {
    let usage = f.kv_cache_peak_pct.map_or_else(|| "-".into(), num);
    let when = f.step.clone().unwrap_or_else(|| "-".into());
    let preempted = num(f.preemptions);
    // Only what happened is said: no peak, or no preemption, is left out.
    let what = match (f.kv_cache_peak_pct, f.preemptions >= 1.0) {
        (Some(_), true) => tr!(
            lang,
            "the KV cache reached {usage}% (during {when}) and {preempted} requests were preempted",
            "KV 缓存使用率达到 {usage}%（{when} 阶段），{preempted} 个请求被抢占"
        ),
        (Some(_), false) => tr!(
            lang,
            "the KV cache reached {usage}% (during {when})",
            "KV 缓存使用率达到 {usage}%（{when} 阶段）"
        ),
        (None, _) => tr!(
            lang,
            "{preempted} requests were preempted",
            "{preempted} 个请求被抢占"
        ),
    };
    Words::new(
        tr!(
            lang,
            "{what}: the batch is limited by KV-cache memory",
            "{what}：批次规模受 KV 缓存显存限制"
        ),
        tr!(
            lang,
            "give the cache more memory (--gpu-memory-utilization), or need less of it: lower max_num_seqs or max_model_len, shorten max_tokens, enable prefix caching when prompts share a prefix, use an FP8 KV cache (--kv-cache-dtype fp8); or add replicas / tensor parallelism",
            "为 KV 缓存分配更多显存（--gpu-memory-utilization），或减少其占用：调小 max_num_seqs 或 max_model_len，减小 max_tokens，提示词有公共前缀时开启 prefix caching，使用 FP8 KV 缓存（--kv-cache-dtype fp8）；或增加副本/张量并行"
        ),
    )
}

pub fn gpu_idle(f: &GpuIdle, lang: Lang) -> Words {
    let Some(s) = f.steps.first() else {
        return Words {
            message: String::new(),
            suggestion: None,
        };
    };
    let (name, u, ttft) = (&s.step, num(s.gpu_util_mean_pct), num(s.ttft_p99_ms));
    let cpu = s.cpu_mean_pct.map_or_else(|| "-".into(), num);
    let lag = num(s.schedule_lag_p99_ms);
    Words::new(
        tr!(
            lang,
            "{name}: the GPU was busy only {u}% of the time while TTFT p99 was {ttft} ms: the bottleneck is before the GPU (CPU {cpu}%)",
            "{name}：TTFT p99 高达 {ttft} 毫秒时 GPU 利用率仅 {u}%：瓶颈在 GPU 之前（CPU {cpu}%）"
        ),
        tr!(
            lang,
            "look at the server's CPU side: tokenisation and detokenisation in the API process (vLLM --api-server-count, SGLang --tokenizer-worker-num), request parsing, the network to the server; and at the client (schedule lag p99 {lag} ms; add agents if it is high)",
            "请检查服务端 CPU 侧：API 进程中的分词与反分词（vLLM 的 --api-server-count、SGLang 的 --tokenizer-worker-num）、请求解析、到服务端的网络；以及压测端（调度延迟 p99 为 {lag} 毫秒，偏高时增加压测代理）"
        ),
    )
}
