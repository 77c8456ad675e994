"""Metrics benchmark: the cost of ``kubelab.jobs.metrics.log`` per call, and the service's cost of
following 50 jobs' metrics at once.

Usage::

    .venv/bin/python benchmarks/bench_metrics.py [--calls 200000] [--jobs 50] [--seconds 10]

1. ``metrics.log(step, loss=...)`` on a recorder whose thread really sends (a file sink, as the
   local backend; the HTTP sink only changes what the thread does, not the call), timed per call,
   beside the issue's baseline "costs nothing measurable per call", taken as one step of the
   smallest DDP-free training loop there is (a forward/backward/step of ``Linear(8, 1)`` on 64
   rows with torch, when installed): the ratio says how much of a step the call adds.
2. The service side in this process: a real tornado server with the real
   :class:`~kubelab.jobs.metrics_service.IngestHandler`, N jobs of 2 ranks each POSTing one batch
   a second through the real :class:`~kubelab.jobs.metrics.HttpSink` (2N senders in threads), and
   one follower per job on :meth:`MetricsHub.follow`. Printed: the hub loop's CPU time per second
   of wall time, the ingest latency and the delay from a point's arrival to its follower.
   Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubelab.core.naming import ANNOTATION_METRICS_TOKEN_SHA, ANNOTATION_USER, LABEL_JOB  # noqa: E402
from kubelab.jobs.metrics import FileSink, HttpSink, Recorder  # noqa: E402
from kubelab.jobs.metrics_service import IngestHandler, MetricsHub, ingest_url, new_token  # noqa: E402


def bench_log(calls: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        rec = Recorder(FileSink(os.path.join(folder, "m.jsonl")), rank=0)
        t0 = time.perf_counter()
        for step in range(calls):
            rec.log(step, {"loss": 0.5})
        per_call = (time.perf_counter() - t0) / calls
        rec.close(10)
        kept = rec.sent
    print(f"metrics.log(step, loss=...): {per_call * 1e6:.2f} us per call over {calls} calls "
          f"({kept} points sent, {rec.dropped} dropped by the bounded buffer)")
    return per_call


def bench_step() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    for _ in range(50):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    t0 = time.perf_counter()
    n = 2000
    for _ in range(n):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / n


async def bench_follow(jobs: int, seconds: float) -> None:
    import tornado.httpserver
    import tornado.netutil
    import tornado.web

    tokens = {}
    parents = {}
    for i in range(jobs):
        token, sha = new_token()
        jid = f"job{i}-abc123"
        tokens[jid] = token
        parents[jid] = {"metadata": {"name": jid, "uid": f"u{i}", "labels": {LABEL_JOB: f"job{i}"},
                                     "annotations": {ANNOTATION_USER: f"user{i % 10}", ANNOTATION_METRICS_TOKEN_SHA: sha}}}
    hub = MetricsHub(parents, None, follow_interval=0.5)
    app = tornado.web.Application([(r"/hub/api/kubelab/jobs/([a-z0-9-]+)/metrics/ingest", IngestHandler,
                                    {"service": SimpleNamespace(metrics=hub)})])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    api = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hub/api"
    stop = threading.Event()
    sent_at: dict[tuple[str, int], float] = {}
    delays: list[float] = []
    latencies: list[float] = []

    def sender(jid: str, rank: int) -> None:
        sink = HttpSink(ingest_url(api, jid.split("-")[0]), tokens[jid])
        step = 0
        while not stop.is_set():
            points = [["loss", step + i, 1.0 / (step + i + 1)] for i in range(20)]  # 20 steps a second
            sent_at[(jid, step + 19)] = time.monotonic()
            t0 = time.monotonic()
            sink.send({"rank": rank, "points": points, "dropped": 0}, 5)
            latencies.append(time.monotonic() - t0)
            step += 20
            stop.wait(1.0)

    done = False

    async def follower(jid: str) -> None:
        async for item in hub.follow(jid, "u", 0, lambda: done, heartbeat=5):
            now = time.monotonic()
            for _rank, _name, step, _value in item.get("points", []):
                if (jid, step) in sent_at:
                    delays.append(now - sent_at[(jid, step)])

    followers = [asyncio.create_task(follower(jid)) for jid in parents]
    threads = [threading.Thread(target=sender, args=(jid, r), daemon=True) for jid in parents for r in (0, 1)]
    await asyncio.sleep(0.2)
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_THREAD).ru_utime, time.monotonic()
    for t in threads:
        t.start()
    await asyncio.sleep(seconds)
    cpu1, wall1 = resource.getrusage(resource.RUSAGE_THREAD).ru_utime, time.monotonic()
    stop.set()
    for t in threads:
        t.join(10)
    done = True
    for jid in parents:
        hub.wake(jid)
    await asyncio.wait_for(asyncio.gather(*followers), 10)
    server.stop()
    points = hub.stats["points"]
    print(f"following {jobs} jobs x 2 ranks (each rank POSTs 20 points a second), {jobs} followers, "
          f"{wall1 - wall0:.1f} s:")
    print(f"  hub event loop CPU: {(cpu1 - cpu0) / (wall1 - wall0) * 100:.1f}% of one core "
          f"({hub.stats['batches']} batches, {points} points stored)")
    if latencies:
        print(f"  ingest POST latency: median {statistics.median(latencies) * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms")
    if delays:
        ordered = sorted(delays)
        print(f"  arrival -> follower: median {statistics.median(ordered) * 1000:.0f} ms, "
              f"p95 {ordered[int(len(ordered) * 0.95)] * 1000:.0f} ms (followers coalesce to 0.5 s)")
    print(f"  memory held: {sum(j.points() for j in hub.store.jobs.values())} points in "
          f"{sum(len(j.series) for j in hub.store.jobs.values())} series")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    per_call = bench_log(args.calls)
    step = bench_step()
    if step is not None:
        print(f"baseline (issue 13: 'nothing measurable per call'): one training step of Linear(8, 1) on 64 rows "
              f"= {step * 1e6:.1f} us; metrics.log adds {per_call / step * 100:.2f}% of it (ratio {per_call / step:.4f})")
    asyncio.run(bench_follow(args.jobs, args.seconds))
    print(json.dumps({"log_us_per_call": round(per_call * 1e6, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
