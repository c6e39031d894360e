"""Serving throughput: pairs/s and p50/p99 latency at concurrency 1, 4, 16, 32, cross-request batching on vs off.

Two ``rerank-plugins serve`` subprocesses on 127.0.0.1 over the same model, one with cross-request
batching and one scoring requests one at a time (``--no-batching``); the same clients drive both,
level by level, in one run. Each request is a query with ``--documents`` short passages (TEI
``/rerank``, raw scores). The target: at concurrency 16, batching gives >= 1.5x the pairs/s of
one-request-at-a-time.

Usage:
    python benchmarks/bench_serving.py --model ../shared/models/ms-marco-MiniLM-L-12-v2
    python benchmarks/bench_serving.py --model ./model --requests 64 --documents 10 --levels 1 4 16 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
WORDS = ("river city market history science music energy forest ocean language museum bridge "
         "harvest winter festival library engine garden island mountain").split()


def passages(n: int, words: int, seed: int) -> list[str]:
    return [" ".join(WORDS[(seed * 7 + i * 3 + k) % len(WORDS)] for k in range(words)) for i in range(n)]


def start_server(model: str, batching: bool, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "rerank_plugins.cli", "serve", "--model", model, "--port", str(port),
           "--max-wait-ms", str(max_wait_ms), "--max-queue", "1024"]
    if not batching:
        cmd.append("--no-batching")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become healthy within 300 s")


async def drive(url: str, concurrency: int, requests: int, documents: int, words: int) -> dict[str, float]:
    latencies: list[float] = []
    next_request = iter(range(requests))

    async def worker(http: httpx.AsyncClient) -> None:
        for i in next_request:
            body = {"query": f"question {i} about {WORDS[i % len(WORDS)]}",
                    "texts": passages(documents, words, i), "raw_scores": True}
            t0 = time.perf_counter()
            response = await http.post("/rerank", json=body)
            latencies.append(time.perf_counter() - t0)
            response.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=600,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "pairs_s": requests * documents / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO.parent / "shared" / "models" / "ms-marco-MiniLM-L-12-v2"))
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--requests", type=int, default=64, help="requests per level (default: %(default)s)")
    parser.add_argument("--documents", type=int, default=10, help="documents per request (default: %(default)s)")
    parser.add_argument("--words", type=int, default=12, help="words per document (default: %(default)s)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()

    results: dict[tuple[str, int], dict[str, float]] = {}
    for mode, batching in (("batching", True), ("one-at-a-time", False)):
        proc, url = start_server(args.model, batching, args.max_wait_ms)
        try:
            asyncio.run(drive(url, 1, 4, args.documents, args.words))  # warm-up
            for c in args.levels:
                results[(mode, c)] = r = asyncio.run(drive(url, c, args.requests, args.documents, args.words))
                print(f"{mode:>14}  c={c:<3} {r['pairs_s']:8.1f} pairs/s  p50 {r['p50_ms']:8.1f} ms  "
                      f"p99 {r['p99_ms']:8.1f} ms", flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)

    print(f"\nmodel {args.model}; {args.requests} requests x {args.documents} documents of {args.words} words "
          f"per level; max_wait_ms={args.max_wait_ms}; cpu_count={os.cpu_count()}")
    print(f"{'c':>4} {'batching pairs/s':>17} {'one-at-a-time':>14} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for c in args.levels:
        on, off = results[("batching", c)], results[("one-at-a-time", c)]
        print(f"{c:>4} {on['pairs_s']:>17.1f} {off['pairs_s']:>14.1f} {on['pairs_s'] / off['pairs_s']:>6.2f} "
              f"{on['p50_ms']:>8.1f} {on['p99_ms']:>8.1f}")
    if 16 in args.levels and 1 in args.levels:
        base = results[("one-at-a-time", 1)]["pairs_s"]
        on16 = results[("batching", 16)]["pairs_s"]
        print(f"\nc=16 batching vs one request at a time (c=1, no batching): {on16 / base:.2f}x (target >= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
