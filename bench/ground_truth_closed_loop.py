#!/usr/bin/env python3
"""Closed-loop throughput against a ground-truth server that shares no code with sim/.

    cargo build --release && python3 bench/ground_truth_closed_loop.py [CONTROLLER] [--users N]

The server (Python's standard library only) answers every chat completion, unstreamed, a fixed
1.04 s after it arrives and logs when each request arrived and was answered. Stampede runs one
closed-loop step (200 users, 20 s) against it; the script prints Stampede's throughput_rps and
drain beside the server's own count of answers inside the step's window, which is what a
step's throughput must equal (README, "throughput"). Not run by `cargo test`.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE_S = 1.04
LOG = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"object": "list", "data": [{"id": "gt", "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        arrived = time.monotonic()
        time.sleep(SERVICE_S)
        with LOCK:
            LOG.append((arrived, time.monotonic()))
        self.reply({"id": "x", "object": "chat.completion", "model": "gt",
                    "choices": [{"index": 0, "finish_reason": "length",
                                 "message": {"role": "assistant", "content": "ok " * 16}}],
                    "usage": {"prompt_tokens": 16, "completion_tokens": 16, "total_tokens": 32}})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("controller", nargs="?", default=str(ROOT / "target/release/controller"))
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--duration", type=int, default=20)
    args = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "plan.toml"
        plan.write_text("\n".join([
            'name = "ground-truth"', "seed = 1", "[target]",
            f'base_url = "http://127.0.0.1:{port}/v1"', 'model = "gt"', "stream = false",
            "[workload]", "input_tokens = 16", "output_tokens = 16", "[[stage]]", 'name = "c"',
            f"concurrency = {args.users}", f'duration = "{args.duration}s"', ""]))
        out = Path(tmp) / "out"
        run = subprocess.run([args.controller, "run", str(plan), "--plain", "--out", str(out)],
                             capture_output=True, text=True)
        if run.returncode not in (0, 2):
            sys.exit(f"controller exited {run.returncode}:\n{run.stdout}\n{run.stderr}")
        summary = next(out.rglob("summary.json"))
        st = json.loads(summary.read_text())["stages"][0]
    first = min(a for a, _ in LOG)
    window = st["duration_s"]
    inside = sum(1 for _, d in LOG if d <= first + window)
    print(f"users {args.users}, service {SERVICE_S} s, window {window:.1f} s")
    print(f"  server: {len(LOG)} answered, {inside} inside the window ({inside / window:.1f}/s)")
    print(f"  stampede: throughput_rps {st['throughput_rps']:.1f}, completed "
          f"{st['requests']['completed']}, drain {st.get('drain', {}).get('completed', '-')}")


if __name__ == "__main__":
    main()
