"""Load test of ``moodsong serve``: N concurrent clients compose on loopback.

Starts the real server (``moodsong serve``: uvicorn + worker processes) on a
free port, lets N client threads each POST /api/compose and poll until their
piece is done, and reports throughput, latency percentiles (request -> piece
ready), errors, how long the server took to answer a status request while
busy, and peak memory (server + workers, resident). The peer is the same
requests composed one after another by the library in this process
(``moodsong.pipeline.compose``), so the ratio shows what the web layer costs or
gains.

Usage:
    python bench/web_load.py                       # 16 clients, 1 request each, 1 worker
    python bench/web_load.py --clients 16 --workers 2 --bars 8 --candidates 4
    python bench/web_load.py --peer-requests 0     # skip the in-process peer
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

PROMPTS = [
    "a song of hope and wonder", "sad and slow, like rain on a window", "angry and tense", "calm and peaceful",
    "joyful dance", "lonely night", "excited and triumphant", "dreamy and serene",
]


def rss_tree_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def one_request(base: str, body: dict, timeout_s: float) -> tuple[float, str]:
    """POST, poll until done; returns (seconds, "ok" or an error description)."""
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, timeout=30) as c:
        try:
            r = c.post("/api/compose", json=body)
            if r.status_code != 202:
                return time.perf_counter() - t0, f"POST {r.status_code}: {r.text[:100]}"
            url = r.json()["status_url"]
            while time.perf_counter() - t0 < timeout_s:
                s = c.get(url)
                if s.status_code != 200:
                    return time.perf_counter() - t0, f"GET {s.status_code}"
                job = s.json()
                if job["status"] == "done":
                    for f in job["result"]["files"].values():
                        if c.get(f).status_code != 200:
                            return time.perf_counter() - t0, f"file {f}"
                    return time.perf_counter() - t0, "ok"
                if job["status"] == "failed":
                    return time.perf_counter() - t0, f"failed: {job['error']}"
                time.sleep(0.25)
            return time.perf_counter() - t0, "client timeout"
        except httpx.HTTPError as exc:
            return time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    ap.add_argument("--requests", type=int, default=1, help="requests per client")
    ap.add_argument("--workers", type=int, default=1, help="server composer processes")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--model", default=None, help="conditional RBM path without suffix (default: shipped)")
    ap.add_argument("--peer-requests", type=int, default=4, help="requests composed in-process for the ratio (0: skip)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds a client waits for its piece")
    args = ap.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="moodsong-webload-"))
    cmd = [sys.executable, "-c", "from moodsong.cli import main; main()", "serve", "--port", str(port),
           "--workers", str(args.workers), "--rate-limit", "0", "--api-rate-limit", "0",
           # every client is 127.0.0.1 here: no per-client pending limit, a queue for all of them
           "--max-queue", str(max(64, args.clients * args.requests)), "--max-pending", "0",
           "--results", str(tmp / "results"), "--log-level", "warning"]
    if args.model:
        cmd += ["--model", args.model]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "wb"))
    peak = [0]
    stop = threading.Event()

    def watch_memory():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_tree_kib(server.pid))
            time.sleep(0.2)

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("server did not start:\n" + (tmp / "server.log").read_text(errors="replace"))
            time.sleep(0.3)
        threading.Thread(target=watch_memory, daemon=True).start()
        body = {"bars": args.bars, "candidates": args.candidates}
        # Warm-up: wait until every worker has loaded its models (not timed).
        with ThreadPoolExecutor(args.workers) as ex:
            list(ex.map(lambda i: one_request(base, {"quadrant": 1, **body}, args.timeout), range(args.workers)))

        n = args.clients * args.requests
        health_ms: list[float] = []

        def watch_health():
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    httpx.get(base + "/api/health", timeout=30)
                    health_ms.append((time.perf_counter() - t) * 1000)
                except httpx.HTTPError:
                    health_ms.append(float("inf"))
                time.sleep(0.5)

        threading.Thread(target=watch_health, daemon=True).start()

        def client(i: int) -> list[tuple[float, str]]:
            return [one_request(base, {"prompt": PROMPTS[(i + k) % len(PROMPTS)], "seed": i * 100 + k, **body}, args.timeout)
                    for k in range(args.requests)]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as ex:
            results = [r for rs in ex.map(client, range(args.clients)) for r in rs]
        wall = time.perf_counter() - t0
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    lat = [t for t, status in results if status == "ok"]
    errors = [status for _, status in results if status != "ok"]
    web_rate = len(lat) / wall
    print(f"web: {args.clients} clients x {args.requests} request(s), {args.workers} worker(s), "
          f"{args.bars} bars x {args.candidates} candidates, {os.cpu_count()} CPUs")
    print(f"  completed {len(lat)}/{n}, errors {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    print(f"  wall {wall:.1f} s, throughput {web_rate * 60:.1f} pieces/min")
    if lat:
        print(f"  latency s: p50 {percentile(lat, 0.5):.1f}, p90 {percentile(lat, 0.9):.1f}, "
              f"p99 {percentile(lat, 0.99):.1f}, max {max(lat):.1f}, mean {statistics.mean(lat):.1f}")
    if health_ms:
        print(f"  status request while busy: median {statistics.median(health_ms):.0f} ms, max {max(health_ms):.0f} ms")
    print(f"  peak memory (server + workers, resident): {peak[0] / 1024:.0f} MiB")

    if args.peer_requests > 0:
        from moodsong.pipeline import ComposeRequest, compose

        # Warm-up like a server worker's (models, text model, SoundFont, plotting), not timed.
        compose(ComposeRequest(prompt="a calm and happy song", bars=1, candidates=1, seed=0, out_dir=tmp / "peer",
                               model=args.model))
        t0 = time.perf_counter()
        for k in range(args.peer_requests):
            compose(ComposeRequest(prompt=PROMPTS[k % len(PROMPTS)], seed=k, bars=args.bars, candidates=args.candidates,
                                   out_dir=tmp / "peer", stem=f"p{k}", model=args.model))
        peer = time.perf_counter() - t0
        peer_rate = args.peer_requests / peer
        print(f"peer (library, in-process, sequential): {args.peer_requests} pieces in {peer:.1f} s, "
              f"{peer_rate * 60:.1f} pieces/min")
        print(f"ratio web/peer throughput: {web_rate / peer_rate:.2f}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
