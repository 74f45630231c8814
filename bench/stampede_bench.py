#!/usr/bin/env python3
"""Benchmark of the instrument itself: client cost, capacity, timing accuracy, memory, scaling.

    cargo build --release --bins && python3 bench/stampede_bench.py            # everything
    python3 bench/stampede_bench.py --only cost,accuracy --repeats 3             # a subset
    STAMPEDE_PACER=tokio python3 bench/stampede_bench.py --only accuracy         # old timer

It runs the real release binaries: `target/release/controller run PLAN --agents N`, which starts
the agents and the simulator (deterministic preset: TTFT exactly `ttft` after the request is
received, then one token every `itl`), so the simulator's true TTFT and ITL are known. While a
run goes, it samples /proc of every descendant of the controller (CPU time and resident memory,
grouped by process name: controller, agent, sim); after it, it reads summary.json. CPU figures
are taken over the steady middle of each run (from 25% to 90% of the planned duration), divided
by the throughput summary.json reports (tokens/s, requests/s).

Sections (--only):
  cost      (a) client CPU (controller + agents) per streamed token and per request,
                500 QPS, 64-token streams, 10 ms between tokens; and the schedule lag there
                (the accuracy section's inline simulator spins a core the agent then lacks)
  capacity  (b) highest rate one agent holds (achieved within 1% of offered, lag p99 <= 0.2 ms
                and <= 1 ms) for 16-, 32-, 64- and 1024-token streams, ITL 1 ms; when the sim
                saturates the machine first, also the agent's capacity derived from its CPU per
                request (1 core / CPU per request)
  accuracy  (c) reported TTFT and ITL minus the simulator's true values at 10, 100, 500, 1000 QPS;
                the simulator is started by the benchmark (its precise `inline` pacer, or
                `--sim-pacer controller`) so that its own /metrics can be read afterwards: its
                TTFT from receipt to the first token's write, and how late its tokens left, so
                that the client's own error is told from the simulator's
  memory    (d) agent and controller RSS at 500 QPS for --memory-duration (default 2 min, not the
                issue's 10 min: say so when quoting), and its slope over the second half
  scaling   (e) highest rate with 1, 2, 4 local agents (16-token streams); (f) the controller's
                CPU per agent-interval merged (1 s intervals)
  prompts   (g) client cost and achieved rate with 32k- and 128k-token prompts

Every figure is the median of --repeats runs. Nothing here runs under `cargo test`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def plan_toml(name, qps, duration, out_tokens, in_tokens=16, ttft="50ms", itl="10ms",
              arrival="constant", max_model_len=None, warmup=3, base_url=None):
    """A one-stage plan against the simulator the controller starts, or against `base_url`."""
    if base_url:
        target = [f'base_url = "{base_url}"']
    else:
        target = ["[target.sim]", 'preset = "deterministic"', f'ttft = "{ttft}"',
                  f'itl = "{itl}"']
        if max_model_len:
            target.append(f"max_model_len = {max_model_len}")
    return "\n".join([
        f'name = "{name}"',
        "seed = 1",
        'interval = "1s"',
        "[target]",
        'api = "chat"',
        *target,
        "[workload]",
        f"input_tokens = {in_tokens}",
        f"output_tokens = {out_tokens}",
        "[[stage]]",
        'name = "s"',
        f"qps = {qps}",
        f'duration = "{duration}s"',
        f'arrival = "{arrival}"',
        f'warmup = "{warmup}s"',
        "",
    ])


def descendants(pid):
    """Pids of every descendant of `pid` (by /proc/*/stat's ppid)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def proc_sample(pid):
    """(comm, cpu seconds, rss bytes) of one process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    fields = s[s.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    return comm, cpu, rss


class Sampler(threading.Thread):
    """Samples CPU and RSS of the controller's process tree every `period` seconds."""

    def __init__(self, root_pid, period=0.5):
        super().__init__(daemon=True)
        self.root, self.period, self.samples, self.stop = root_pid, period, [], False

    def run(self):
        # Walking /proc costs CPU that the measured processes would miss on a small machine:
        # the tree is walked again only every 4th sample (the processes start once).
        t0, pids, n = time.monotonic(), [], 0
        while not self.stop:
            if n % 4 == 0:
                pids = descendants(self.root)
            n += 1
            snap = {}
            for p in pids:
                s = proc_sample(p)
                if s:
                    snap[p] = s
            self.samples.append((time.monotonic() - t0, snap))
            time.sleep(self.period)

    def group_totals(self, snap):
        cpu, rss = {}, {}
        for comm, c, r in snap.values():
            cpu[comm] = cpu.get(comm, 0.0) + c
            rss[comm] = rss.get(comm, 0) + r
        return cpu, rss


def run_plan(toml, agents=1, duration=None):
    """Runs one plan; returns (summary, sampler, start of load in sampler time)."""
    with tempfile.TemporaryDirectory(prefix="stampede-bench-") as tmp:
        plan = Path(tmp) / "plan.toml"
        plan.write_text(toml)
        out = Path(tmp) / "results"
        cmd = [str(BIN / "controller"), "run", str(plan), "--agents", str(agents), "--plain",
               "--out", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=os.environ.copy())
        sampler = Sampler(proc.pid)
        sampler.start()
        _, err = proc.communicate()
        sampler.stop = True
        sampler.join()
        runs = list(out.glob("*/summary.json"))
        if not runs:
            sys.stderr.write(err.decode(errors="replace")[-3000:])
            raise RuntimeError(f"no summary.json (exit {proc.returncode})")
        summary = json.loads(runs[0].read_text())
    # The load starts when the agents exist and the simulator answers: take the first sample
    # in which an agent is seen, plus a second of handshake.
    start = next((t for t, snap in sampler.samples
                  if any(c == "agent" for c, _, _ in snap.values())), 0.0) + 1.0
    return summary, sampler, start


class OwnSim:
    """A simulator started here rather than by the controller, so that its /metrics can be read
    after the run: its own TTFT and token lateness, to tell the simulator's error from the
    client's. `pacer` "inline" is its most precise mode (its serving thread busy-polls before
    each due time, a core while tokens are due); "controller" starts it as the controller does
    (the thread pacer, `--timer-spin 0s` on fewer than 4 cores: tokens about 0.2 ms late)."""

    def __init__(self, ttft, itl, pacer="inline"):
        cmd = [str(BIN / "sim"), "--listen", "127.0.0.1:0", "--ttft", ttft, "--itl", itl,
               "--stop-on-stdin-eof"]
        if pacer == "inline":
            cmd += ["--pacer", "inline"]
        elif len(os.sched_getaffinity(0)) < 4:  # the cores the controller would see
            cmd += ["--timer-spin", "0s"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.addr = line.rsplit(" ", 1)[1]
        self.base_url = f"http://{self.addr}/v1"

    def metrics(self):
        """{metric name: {labels other than `le`: value, or [(le, value)] for buckets}}."""
        with urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, value = line.rsplit(" ", 1)
            name, _, labels = name_labels.partition("{")
            pairs = [p for p in labels.rstrip("}").split(",") if p]
            le = next((p[4:-1] for p in pairs if p.startswith('le="')), None)
            key = ",".join(p for p in pairs if not p.startswith('le="'))
            series = out.setdefault(name, {})
            if le is None:
                series[key] = float(value)
            else:
                series.setdefault(key, []).append((float(le), float(value)))
        return out

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def one_series(metrics, name):
    """The value (or buckets) of `name`, which must have exactly one series."""
    series = metrics.get(name, {})
    if len(series) != 1:
        raise RuntimeError(f"expected one series of {name} in the simulator's /metrics, "
                           f"found {len(series)}")
    return next(iter(series.values()))


def histogram_mean(metrics, name):
    """The mean of a Prometheus histogram: its `_sum` over its `_count`."""
    return one_series(metrics, name + "_sum") / max(one_series(metrics, name + "_count"), 1)


def bucket_quantile(buckets, q):
    """The upper bound of the Prometheus bucket holding quantile `q` (cumulative buckets)."""
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")


def window_cpu(sampler, start, duration, lo=0.25, hi=0.9):
    """CPU seconds per second of each process group over [lo, hi] of the run."""
    a, b = start + lo * duration, start + hi * duration
    sa = min(sampler.samples, key=lambda s: abs(s[0] - a))
    sb = min(sampler.samples, key=lambda s: abs(s[0] - b))
    dt = sb[0] - sa[0]
    out = {}
    for pid, (comm, cpu_b, _) in sb[1].items():
        cpu_a = sa[1].get(pid, (comm, cpu_b, 0))[1]
        out[comm] = out.get(comm, 0.0) + (cpu_b - cpu_a) / dt
    return out


def stage(summary):
    """The measured step (the warm-up step before it is left out)."""
    return summary["stages"][-1]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def section_cost(args):
    rows = []
    for _ in range(args.repeats):
        d = args.duration
        summary, sampler, start = run_plan(plan_toml("cost", 500, d, 64), 1)
        st = stage(summary)
        cpu = window_cpu(sampler, start, d)
        client = cpu.get("controller", 0) + cpu.get("agent", 0)
        rows.append(dict(
            tok_us=client / st["tokens"]["output_per_s"] * 1e6,
            req_us=client / st["throughput_rps"] * 1e6,
            agent_pct=cpu.get("agent", 0) * 100,
            ctl_pct=cpu.get("controller", 0) * 100,
            sim_pct=cpu.get("sim", 0) * 100,
            achieved=st["achieved_qps"],
            lag_p50=st["schedule_lag_ms"]["p50"] * 1000,
            lag_p99=st["schedule_lag_ms"]["p99"] * 1000,
        ))
    # The schedule lag target is judged here: the simulator runs as the controller starts it,
    # not spinning a core as in the accuracy section, so the agent has the machine it would
    # have in a real run.
    print_table("(a) client cost at 500 QPS, 64-token streams, ITL 10 ms (median of "
                f"{args.repeats})", [
                    ("client CPU per streamed token (us)", med(r["tok_us"] for r in rows), "<= 5"),
                    ("client CPU per request (us)", med(r["req_us"] for r in rows), ""),
                    ("agent CPU (% of a core)", med(r["agent_pct"] for r in rows), ""),
                    ("controller CPU (% of a core)", med(r["ctl_pct"] for r in rows), ""),
                    ("sim CPU (% of a core)", med(r["sim_pct"] for r in rows), ""),
                    ("achieved QPS", med(r["achieved"] for r in rows), "500"),
                    ("schedule lag p50 / p99 (us)",
                     "{:.0f} / {:.0f}".format(med(r["lag_p50"] for r in rows),
                                              med(r["lag_p99"] for r in rows)), "p99 <= 200"),
                ])


def probe(qps, out_tokens, agents, duration, in_tokens=16, itl="1ms", ttft="1ms",
          max_model_len=None):
    summary, sampler, start = run_plan(
        plan_toml("cap", qps, duration, out_tokens, in_tokens=in_tokens, ttft=ttft, itl=itl,
                  max_model_len=max_model_len), agents)
    st = stage(summary)
    cpu = window_cpu(sampler, start, duration)
    rps = max(st["throughput_rps"], 1e-9)
    return dict(
        qps=qps,
        achieved=st["achieved_qps"],
        completed_rps=st["throughput_rps"],
        lag_p99=st["schedule_lag_ms"]["p99"],
        failed=st["requests"]["failed"],
        agent_cpu=cpu.get("agent", 0),
        ctl_cpu=cpu.get("controller", 0),
        sim_cpu=cpu.get("sim", 0),
        agent_us_per_req=cpu.get("agent", 0) / rps * 1e6,
        client_us_per_req=(cpu.get("agent", 0) + cpu.get("controller", 0)) / rps * 1e6,
        tok_per_s=st["tokens"]["output_per_s"],
    )


def holds(p, lag_ms):
    return (p["achieved"] >= 0.99 * p["qps"] and p["completed_rps"] >= 0.99 * p["qps"]
            and p["failed"] == 0 and p["lag_p99"] <= lag_ms)


def section_capacity(args):
    ladders = {16: [500, 1000, 2000, 3000, 4000], 32: [500, 1000, 1500, 2000, 3000],
               64: [250, 500, 1000, 1500, 2000], 1024: [25, 50, 100, 150]}
    lines = []
    for tokens, rates in ladders.items():
        best_tight = best_loose = 0
        last = None
        for q in rates:
            p = probe(q, tokens, 1, args.probe_duration)
            last = p
            print(f"  capacity {tokens} tok @ {q}: achieved {p['achieved']:.1f} completed "
                  f"{p['completed_rps']:.1f} lag p99 {p['lag_p99']:.3f} ms, agent "
                  f"{p['agent_cpu']*100:.0f}% sim {p['sim_cpu']*100:.0f}%", file=sys.stderr)
            if holds(p, 0.2):
                best_tight = q
            if holds(p, 1.0):
                best_loose = q
            if not holds(p, 1.0):
                break
        sim_bound = last["sim_cpu"] > 0.8 or last["sim_cpu"] + last["agent_cpu"] + last[
            "ctl_cpu"] > 1.7
        derived = 1e6 / last["agent_us_per_req"] if last["agent_us_per_req"] > 0 else 0
        lines.append((f"{tokens}-token streams: max QPS (lag p99<=0.2ms / <=1ms)",
                      f"{best_tight} / {best_loose}",
                      "1000 for 32 tok" if tokens == 32 else ""))
        lines.append((f"{tokens}-token streams: agent-derived capacity (1 core / agent CPU "
                      f"per req{', sim-bound' if sim_bound else ''})", derived, ""))
    print_table("(b) capacity of one agent, deterministic sim, TTFT 1 ms, ITL 1 ms "
                f"({args.probe_duration} s per probe)", lines)


def section_accuracy(args):
    lines = []
    for q in [10, 100, 500, 1000]:
        rows = []
        for _ in range(args.repeats):
            d = max(args.duration, 30) if q < 100 else args.duration
            sim = OwnSim("50ms", "10ms", args.sim_pacer)
            try:
                summary, _, _ = run_plan(plan_toml("acc", q, d, 16, base_url=sim.base_url), 1)
                m = sim.metrics()
            finally:
                sim.close()
            st = stage(summary)
            # The simulator's own view, over the warm-up and the measured step: how long after
            # receiving a request its first token went out, and how late its tokens left.
            sim_ttft = histogram_mean(m, "vllm:time_to_first_token_seconds")
            sim_itl = histogram_mean(m, "vllm:inter_token_latency_seconds")
            late_mean = histogram_mean(m, "stampede_sim_token_lateness_seconds")
            rows.append(dict(
                ttft_mean=(st["ttft_ms"]["mean"] - 50) * 1000,
                ttft_p99=(st["ttft_ms"]["p99"] - 50) * 1000,
                ttftc_mean=(st["ttft_corrected_ms"]["mean"] - 50) * 1000,
                ttftc_p99=(st["ttft_corrected_ms"]["p99"] - 50) * 1000,
                sim_ttft_mean=(sim_ttft - 0.050) * 1e6,
                late_mean=late_mean * 1e6,
                late_p99=bucket_quantile(
                    one_series(m, "stampede_sim_token_lateness_seconds_bucket"), 0.99) * 1e6,
                client_ttft_mean=(st["ttft_ms"]["mean"] / 1000 - sim_ttft) * 1e6,
                itl_mean=(st["itl_ms"]["mean"] - 10) * 1000,
                itl_p99=(st["itl_ms"]["p99"] - 10) * 1000,
                client_itl_mean=(st["itl_ms"]["mean"] / 1000 - sim_itl) * 1e6,
                lag_p50=st["schedule_lag_ms"]["p50"] * 1000,
                lag_p99=st["schedule_lag_ms"]["p99"] * 1000,
                achieved=st["achieved_qps"],
            ))
        fmt = "{:+.0f} / {:+.0f}"
        lines.append((f"{q} QPS: TTFT err mean/p99 (us)",
                      fmt.format(med(r["ttft_mean"] for r in rows), med(r["ttft_p99"] for r in rows)),
                      "<=200 / <=1000 @500"))
        lines.append((f"{q} QPS:   of which the sim's first token late, mean (us)",
                      "{:+.0f}".format(med(r["sim_ttft_mean"] for r in rows)), ""))
        lines.append((f"{q} QPS:   the client's own TTFT err, mean (us)",
                      "{:+.0f}".format(med(r["client_ttft_mean"] for r in rows)),
                      "<=200 @500"))
        lines.append((f"{q} QPS: sim token lateness mean / p99 bucket (us)",
                      "{:.0f} / <={:.0f}".format(med(r["late_mean"] for r in rows),
                                                 med(r["late_p99"] for r in rows)), ""))
        lines.append((f"{q} QPS: corrected TTFT err mean/p99 (us)",
                      fmt.format(med(r["ttftc_mean"] for r in rows),
                                 med(r["ttftc_p99"] for r in rows)), ""))
        lines.append((f"{q} QPS: ITL err mean/p99 (us); client's own mean",
                      fmt.format(med(r["itl_mean"] for r in rows), med(r["itl_p99"] for r in rows))
                      + " ; {:+.0f}".format(med(r["client_itl_mean"] for r in rows)), ""))
        lines.append((f"{q} QPS: schedule lag p50/p99 (us)",
                      "{:.0f} / {:.0f}".format(med(r["lag_p50"] for r in rows),
                                               med(r["lag_p99"] for r in rows)),
                      "see (a)" if args.sim_pacer == "inline" else "p99 <= 200 @500"))
        lines.append((f"{q} QPS: achieved", med(r["achieved"] for r in rows), ""))
    print_table("(c) accuracy: reported minus true (deterministic sim, TTFT 50 ms, ITL 10 ms, "
                f"16-token streams, median of {args.repeats}, sim pacer {args.sim_pacer}); the "
                "sim's own figures, from its /metrics, cover the warm-up step too; each figure "
                "is its own median, so they need not add up", lines)


def slope(points):
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    num = sum((x - mx) * (y - my) for x, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return num / den if den else float("nan")


def section_memory(args):
    d = args.memory_duration
    summary, sampler, start = run_plan(plan_toml("mem", 500, d, 64), 1)
    series = {"agent": [], "controller": []}
    for t, snap in sampler.samples:
        if t < start:
            continue
        _, rss = sampler.group_totals(snap)
        for k in series:
            if k in rss:
                series[k].append((t - start, rss[k] / 2**20))
    lines = []
    for k, pts in series.items():
        pts = [p for p in pts if p[0] <= d]
        second_half = [p for p in pts if p[0] >= d / 2]
        lines.append((f"{k} RSS max (MiB)", max(p[1] for p in pts), "<= 64" if k == "agent" else ""))
        lines.append((f"{k} RSS slope over 2nd half (MiB/min)", slope(second_half) * 60, "~0"))
    lines.append(("achieved QPS", stage(summary)["achieved_qps"], "500"))
    print_table(f"(d) memory at 500 QPS, 64-token streams, {d} s", lines)


def section_scaling(args):
    lines = []
    for agents in [1, 2, 4]:
        best = 0
        ctl = []
        for q in [1000, 2000, 3000, 4000, 6000]:
            p = probe(q, 16, agents, args.probe_duration)
            ctl.append(p["ctl_cpu"])
            print(f"  scaling {agents} agents @ {q}: achieved {p['achieved']:.1f} lag p99 "
                  f"{p['lag_p99']:.3f} ms agents {p['agent_cpu']*100:.0f}% controller "
                  f"{p['ctl_cpu']*100:.1f}% sim {p['sim_cpu']*100:.0f}%", file=sys.stderr)
            if holds(p, 1.0):
                best = q
            else:
                break
        lines.append((f"{agents} agent(s): max QPS, 16-token streams (lag p99 <= 1 ms)", best, ""))
        # One interval report per agent per second.
        lines.append((f"{agents} agent(s): controller CPU per agent-interval (% of a core)",
                      med(ctl) * 100 / agents, "<= 2"))
    print_table(f"(e, f) scaling over local agents ({args.probe_duration} s per probe; all on "
                "this machine, so agents share its cores with the simulator)", lines)


def section_prompts(args):
    lines = []
    for prompt in [32768, 131072]:
        for q in [5, 20]:
            p = probe(q, 16, 1, args.probe_duration, in_tokens=prompt, ttft="50ms", itl="10ms",
                      max_model_len=prompt + 1024)
            lines.append((f"{prompt // 1024}k prompt @ {q} QPS: achieved QPS", p["achieved"],
                          f"{q}"))
            lines.append((f"{prompt // 1024}k prompt @ {q} QPS: client CPU per request (us)",
                          p["client_us_per_req"], ""))
            lines.append((f"{prompt // 1024}k prompt @ {q} QPS: schedule lag p99 (ms)",
                          p["lag_p99"], ""))
    print_table(f"(g) long prompts, 16-token answers ({args.probe_duration} s per probe)", lines)


def print_table(title, lines):
    print(f"\n{title}")
    w = max(len(name) for name, _, _ in lines)
    print(f"  {'measure'.ljust(w)}  {'value':>16}  target")
    for name, value, target in lines:
        v = f"{value:16.2f}" if isinstance(value, float) else f"{value!s:>16}"
        print(f"  {name.ljust(w)}  {v}  {target}")
    sys.stdout.flush()


SECTIONS = {
    "cost": section_cost,
    "accuracy": section_accuracy,
    "capacity": section_capacity,
    "memory": section_memory,
    "scaling": section_scaling,
    "prompts": section_prompts,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=20, help="seconds per cost/accuracy run")
    ap.add_argument("--probe-duration", type=int, default=10, help="seconds per capacity probe")
    ap.add_argument("--memory-duration", type=int, default=120)
    ap.add_argument("--sim-pacer", choices=["inline", "controller"], default="inline",
                    help="accuracy: the simulator's most precise pacer, or as the controller "
                         "starts it")
    args = ap.parse_args()
    if not (BIN / "controller").exists():
        sys.exit("build first: cargo build --release --bins")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"stampede bench: commit {commit}{' (dirty tree)' if dirty else ''}, {os.cpu_count()} "
          f"cores, {cpu}, pacer {os.environ.get('STAMPEDE_PACER', 'thread')}")
    print(f"command: {' '.join(sys.argv)}")
    for name in args.only.split(","):
        SECTIONS[name.strip()](args)


if __name__ == "__main__":
    main()
