//! The agent's samplers over gRPC against the real simulator on loopback: server metrics
//! scraped over HTTP, stored in the interval reports and turned into rates; monitor-only shares;
//! an unreachable metrics endpoint said once while the load goes on.

use std::time::Duration;

use stampede_agent::samplers::MonitorEnv;
use stampede_agent::service::{AgentIdentity, AgentService};
use stampede_common::proto::agent_client::AgentClient;
use stampede_common::proto::{
    Api, Arrival, IntervalReport, MonitorConfig, OpenLoop, ResourceSample, ShareSummary,
    StageShare, Target, Workload, run_event, stage_share,
};
use stampede_common::units::wall_clock_us;
use stampede_sim::{Sim, SimConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Servers {
    sim_base: String,
    agent: AgentClient<tonic::transport::Channel>,
    _stop: Vec<oneshot::Sender<()>>,
}

async fn start() -> Servers {
    let sim_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_addr = sim_listener.local_addr().unwrap();
    let config = SimConfig {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(5),
        ..SimConfig::default()
    };
    let sim = Sim::try_new(&config).unwrap();
    let (sim_stop, sim_stopped) = oneshot::channel::<()>();
    tokio::spawn(sim.serve(sim_listener, async {
        let _ = sim_stopped.await;
    }));

    let agent_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_addr = agent_listener.local_addr().unwrap();
    // No GPU is looked for: the test runs the same on hosts with and without one.
    let service = AgentService::with_monitor(
        AgentIdentity::detect(Some("test-agent".into())),
        MonitorEnv::default(),
    );
    let (agent_stop, agent_stopped) = oneshot::channel::<()>();
    tokio::spawn(stampede_agent::serve(
        agent_listener,
        service,
        Default::default(),
        async {
            let _ = agent_stopped.await;
        },
    ));
    let agent = AgentClient::connect(format!("http://{agent_addr}"))
        .await
        .unwrap();
    Servers {
        sim_base: format!("http://{sim_addr}"),
        agent,
        _stop: vec![sim_stop, agent_stop],
    }
}

fn share(sim_base: &str, monitor: MonitorConfig, duration: Duration) -> StageShare {
    StageShare {
        run_id: "monitor-test".into(),
        stage_name: "steady".into(),
        target: Some(Target {
            base_url: format!("{sim_base}/v1"),
            api: Api::Chat as i32,
            model: "sim-llama-3.1-8b".into(),
            stream: true,
            ..Default::default()
        }),
        workload: Some(Workload {
            input_tokens: 16,
            output_tokens: 8,
            ignore_eos: true,
            ..Default::default()
        }),
        load: Some(stage_share::Load::OpenLoop(OpenLoop {
            qps: 40.0,
            arrival: Arrival::Constant as i32,
            ..Default::default()
        })),
        start_at_unix_us: wall_clock_us() + 400_000,
        duration_us: duration.as_micros() as u64,
        grace_us: 2_000_000,
        agent_count: 1,
        interval_us: 500_000,
        record_every: 0,
        monitor: Some(monitor),
        ..Default::default()
    }
}

/// Runs a share to its end: its interval reports and its summary.
async fn run(
    client: &mut AgentClient<tonic::transport::Channel>,
    share: StageShare,
) -> (Vec<IntervalReport>, ShareSummary) {
    let mut stream = client
        .run(share)
        .await
        .expect("share accepted")
        .into_inner();
    let mut reports = Vec::new();
    let mut done = None;
    while let Some(ev) = stream.message().await.expect("stream") {
        match ev.event {
            Some(run_event::Event::Interval(r)) => reports.push(r),
            Some(run_event::Event::Done(d)) => done = Some(d),
            _ => {}
        }
    }
    (reports, done.expect("a summary"))
}

fn samples(reports: &[IntervalReport]) -> Vec<&ResourceSample> {
    reports.iter().flat_map(|r| r.samples.iter()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_metrics_are_scraped_stored_and_turned_into_rates() {
    let mut s = start().await;
    let monitor = MonitorConfig {
        server_metrics_urls: vec![format!("{}/metrics", s.sim_base)],
        series: vec![
            "stampede_sim_requests_total".into(),
            "vllm:e2e_request_latency_seconds_count".into(),
        ],
        target_pid: std::process::id(),
        ..Default::default()
    };
    let (reports, done) = run(
        &mut s.agent,
        share(&s.sim_base, monitor, Duration::from_secs(3)),
    )
    .await;
    let counts = done.counts.unwrap();
    assert_eq!(counts.sent, 120, "{counts:?}");
    assert_eq!(counts.completed, 120, "{counts:?}");

    let all = samples(&reports);
    // Samples fall mid-interval: at 0.25, 0.75, ... 2.75 s of a 3 s step.
    assert!((5..=6).contains(&all.len()), "{} samples", all.len());
    // Each interval report of the step carries the sample taken inside it.
    for r in reports.iter().filter(|r| r.end_offset_us <= 3_000_000) {
        for smp in &r.samples {
            assert!(
                (r.start_offset_us..r.end_offset_us).contains(&smp.offset_us),
                "sample at {} in interval {}..{}",
                smp.offset_us,
                r.start_offset_us,
                r.end_offset_us
            );
        }
    }
    for smp in &all {
        let host = smp.host.as_ref().expect("host");
        assert!((0.0..=100.0).contains(&host.cpu_pct));
        assert!(host.mem_used_bytes > 0 && host.mem_used_bytes <= host.mem_total_bytes);
        let agent = smp.agent.as_ref().expect("agent");
        assert!(agent.running && agent.rss_bytes > 1 << 20, "{agent:?}");
        // The target here is this very process (agent and sim run in it).
        assert_eq!(smp.target.as_ref().expect("target").pid, std::process::id());
        assert_eq!((smp.scrape_failures, smp.malformed_lines), (0, 0));
        assert!(smp.notes.is_empty(), "{:?}", smp.notes);
        let names: Vec<&str> = smp.server.iter().map(|x| x.name.as_str()).collect();
        for n in [
            "requests_running",
            "requests_waiting",
            "kv_cache_usage_pct",
            "prompt_tokens",
            "generation_tokens",
            "requests_finished",
            "gpu_util_pct",
            "gpu_mem_used_bytes",
            "gpu_power_w",
            "stampede_sim_requests_total",
            "vllm:e2e_request_latency_seconds_count",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
    }
    let series = |smp: &ResourceSample, n: &str| {
        smp.server
            .iter()
            .find(|x| x.name == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n}"))
    };
    // Counters: no rate on the first scrape, then the increase per second.
    assert_eq!(series(all[0], "generation_tokens").rate_per_s, None);
    let mid = all[all.len() / 2];
    // 40 requests/s of 8 tokens: about 320 generated tokens/s once the step is under way.
    let gen_rate = series(mid, "generation_tokens").rate_per_s.expect("a rate");
    assert!(
        (200.0..450.0).contains(&gen_rate),
        "generation tokens/s {gen_rate}"
    );
    let req_rate = series(mid, "stampede_sim_requests_total")
        .rate_per_s
        .expect("a rate");
    assert!((25.0..55.0).contains(&req_rate), "requests/s {req_rate}");
    assert!(series(mid, "stampede_sim_requests_total").counter);
    // At 40/s with 20 ms + 7 * 5 ms per request, about two run at once.
    let running: f64 = all
        .iter()
        .map(|x| series(x, "requests_running").value)
        .sum::<f64>()
        / all.len() as f64;
    assert!((0.5..6.0).contains(&running), "mean running {running}");
    let last = all.last().unwrap();
    assert!(series(last, "generation_tokens").value >= 8.0 * 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_only_share_samples_and_sends_nothing() {
    let mut s = start().await;
    let monitor_only = StageShare {
        run_id: "monitor-only".into(),
        stage_name: "watch".into(),
        start_at_unix_us: wall_clock_us() + 300_000,
        duration_us: 1_500_000,
        interval_us: 500_000,
        monitor_only: true,
        monitor: Some(MonitorConfig {
            gpu: true,
            target_process_name: "no-such-server-process".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let before = s.sim_base.clone();
    let (reports, done) = run(&mut s.agent, monitor_only).await;
    assert_eq!(done.counts.unwrap_or_default().sent, 0);
    assert!(
        reports
            .iter()
            .all(|r| r.counts.as_ref().is_none_or(|c| c.sent == 0))
    );
    let all = samples(&reports);
    assert_eq!(all.len(), 3, "one sample per interval: {reports:?}");
    assert!(all.iter().all(|x| x.host.is_some() && x.gpus.is_empty()));
    // The missing target process is said once.
    let notes: Vec<&String> = all.iter().flat_map(|x| x.notes.iter()).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("not running on this host"), "{notes:?}");
    assert_eq!(before, s.sim_base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_metrics_endpoint_is_said_once_and_the_load_goes_on() {
    let mut s = start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", closed.local_addr().unwrap());
    drop(closed);
    let monitor = MonitorConfig {
        server_metrics_urls: vec![url.clone()],
        ..Default::default()
    };
    let (reports, done) = run(
        &mut s.agent,
        share(&s.sim_base, monitor, Duration::from_secs(2)),
    )
    .await;
    assert_eq!(done.counts.unwrap().completed, 80);
    let all = samples(&reports);
    let notes: Vec<&String> = all.iter().flat_map(|x| x.notes.iter()).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(&url) && notes[0].contains("unreachable"));
    // Tried at 0.25 s, then after 0.5 s, then 1 s: fewer tries than samples.
    let failures: u32 = all.iter().map(|x| x.scrape_failures).sum();
    assert!(
        (1..all.len() as u32).contains(&failures),
        "{failures} failures"
    );
    assert!(all.iter().all(|x| x.server.is_empty()));

    // The next step of the same run fails the same way and says nothing more.
    let monitor = MonitorConfig {
        server_metrics_urls: vec![url.clone()],
        ..Default::default()
    };
    let (reports, _) = run(
        &mut s.agent,
        share(&s.sim_base, monitor, Duration::from_secs(1)),
    )
    .await;
    let next = samples(&reports);
    assert!(next.iter().map(|x| x.scrape_failures).sum::<u32>() >= 1);
    assert!(next.iter().all(|x| x.notes.is_empty()), "{next:?}");
}
