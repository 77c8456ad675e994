"""Measured GPU-idle fraction and waiting time: one seeded trace, kubelab's policies against plain z2jh's.

Usage::

    .venv/bin/python benchmarks/bench_idle.py [--seed 7] [--users 14] [--hours 10] [--tick 0.2]

A seeded random trace of a lab's day: users arrive, spawn a GPU server of the class they prefer,
work, go idle (some leave it running when they go), submit training jobs, and leave. The same
trace is run twice against the devcluster's *simulated* pods (the process node marks them Running
without running anything; the namespace carries ``kubelab.io/simulate=true`` and every pod the
``kubelab.io/simulate`` annotation, whichever switch the process node reads), on a devcluster
instance of its own (``KUBELAB_BENCH_INSTANCE``, default 7) with one A100 node and one V100 node of
4 GPUs each, so the real scheduler places every pod and no test's GPUs are taken:

* **kubelab**: per-profile idle culling (GPU profiles 30 min, :func:`kubelab.hub_config.culling.timeout_for_server`),
  the GPU quota (2 per user, :class:`kubelab.core.quota.QuotaLedger` over the real cluster cache),
  availability (a user whose class is full picks the other class with a free GPU,
  :func:`kubelab.core.availability.gpu_availability`) and fail-fast (a spawn that cannot be
  scheduled ends at once, :func:`kubelab.spawner.messages.is_hopeless`, and the user retries later);
* **static** (plain z2jh): one global culling timeout (z2jh's ``cull.timeout`` default, 60 min),
  no GPU quota, the preferred class always, and a spawn that cannot be scheduled waits for the
  start timeout (z2jh's 300 s, here 5 minutes of the trace) before it fails.

Time is compressed: one minute of the trace is ``--tick`` real seconds. Each minute the cluster
cache is read and the GPU-idle minutes counted: GPUs held by idle servers, plus free GPUs of a
class while work for that class waits. Waiting time runs from a request (spawn or job) to its pod
Running, retries included. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GPU_CLASSES = {"a100": "NVIDIA-A100-SXM4-80GB", "v100": "Tesla-V100"}
GPUS_PER_NODE = 4
CATALOGUE = {
    "gpuClasses": {k: {"displayName": k.upper(), "nodeSelector": {"nvidia.com/gpu.product": v},
                       "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
                   for k, v in GPU_CLASSES.items()},
    "images": {"img": {"displayName": "img", "image": "img:1"}},
    "profiles": [{"slug": "cpu", "name": "CPU", "images": ["img"], "default": True}]
    + [{"slug": k, "name": k, "images": ["img"], "gpu": {"class": k, "counts": [1, 2]}, "idleTimeout": 1800}
       for k in GPU_CLASSES],
    "quotas": {"perUser": {"maxGpus": 2, "maxServers": 3}},
    "defaults": {"idleTimeout": 3600},
}
STATIC_CULL_MINUTES = 60
STATIC_START_TIMEOUT = 5
RETRY_MINUTES = 10


# -- the trace (pure, seeded) ------------------------------------------------------------------------


@dataclass
class Job:
    submit: int
    minutes: int
    gpus: int


@dataclass
class Visit:
    """One user's day: arrive, spawn, work, maybe jobs, go idle, leave (stopping the server or not)."""

    user: str
    arrive: int
    prefers: str
    gpus: int
    active_until: int
    leave: int
    stops_on_leave: bool
    jobs: list[Job] = field(default_factory=list)


def make_trace(seed: int, users: int, minutes: int) -> list[Visit]:
    """A seeded day of ``users`` visits over ``minutes`` minutes."""
    rng = random.Random(seed)
    out = []
    for i in range(users):
        arrive = rng.randrange(0, int(minutes * 0.6))
        work = rng.randrange(30, 180)
        idle = rng.randrange(20, 150)
        leave = min(minutes - 1, arrive + work + idle)
        jobs = [Job(arrive + rng.randrange(10, max(11, work)), rng.randrange(20, 120), rng.choice((1, 1, 2)))
                for _ in range(rng.choice((0, 1, 1, 2)))]
        out.append(Visit(f"u{i:02d}", arrive, "a100" if rng.random() < 0.7 else "v100", 1,
                         min(leave, arrive + work), leave, rng.random() < 0.4, sorted(jobs, key=lambda j: j.submit)))
    return out


# -- one run against the cluster ---------------------------------------------------------------------


@dataclass
class Request:
    """A spawn or a job waiting for its pod to run."""

    kind: str
    user: str
    gpus: int
    since: int
    gpu_class: str
    pod: str | None = None
    created_at: int = 0
    retry_at: int = 0
    job: Job | None = None
    visit: Visit | None = None


class Run:
    def __init__(self, policy: str, trace: list[Visit], namespace: str, api: Any, cache: Any, catalogue: Any) -> None:
        from kubernetes_asyncio.client import CoreV1Api

        from kubelab.core.quota import QuotaLedger

        self.policy, self.trace, self.ns = policy, trace, namespace
        self.core, self.cache, self.catalogue = CoreV1Api(api), cache, catalogue
        self.ledger = QuotaLedger(cache, catalogue)
        self.waiting: list[Request] = []
        self.servers: dict[str, dict[str, Any]] = {}  # user -> {pod, class, gpus, idle_since, profile}
        self.jobs_running: dict[str, int] = {}  # pod -> end minute
        self.waits: list[int] = []
        self.unmet = 0
        self.idle_gpu_minutes = 0.0
        self.capacity_minutes = 0.0
        self.fail_fast = self.culled = self.refused = 0
        self.seq = 0

    def pod_body(self, name: str, user: str, cls: str, gpus: int, *, server: bool) -> dict[str, Any]:
        from kubelab.core.naming import ANNOTATION_GROUPS, LABEL_JOB, LABEL_SERVER, LABEL_USER

        labels = {LABEL_USER: user, **({LABEL_SERVER: "default"} if server else {LABEL_JOB: name})}
        klass = self.catalogue.gpu_classes[cls]
        return {
            "metadata": {"name": name, "labels": labels,
                         "annotations": {"kubelab.io/simulate": "true", ANNOTATION_GROUPS: "lab"}},
            "spec": {"nodeSelector": dict(klass.node_selector), "tolerations": [dict(t) for t in klass.tolerations],
                     "automountServiceAccountToken": False, "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "sim", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
        }

    async def create(self, req: Request, now: int) -> None:
        self.seq += 1
        req.pod = f"{req.kind}-{req.user}-{self.seq}"
        req.created_at = now
        body = self.pod_body(req.pod, req.user, req.gpu_class, req.gpus, server=req.kind == "server")
        resp = await self.core.create_namespaced_pod(self.ns, body, _preload_content=False)
        resp.release()

    async def delete(self, pod: str) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            await self.core.delete_namespaced_pod(pod, self.ns, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise

    def pod(self, name: str | None) -> Any:
        return self.cache.pods.get(f"{self.ns}/{name}") if name else None

    def choose_class(self, visit: Visit) -> str | None:
        """kubelab: the preferred class if it has room, else another with room, else None (fail fast)."""
        from kubelab.core.availability import gpu_availability

        av = gpu_availability(self.cache.nodes.values(), self.cache.pods.values(), self.catalogue.gpu_classes)
        for cls in [visit.prefers, *(k for k in GPU_CLASSES if k != visit.prefers)]:
            if av[cls].max_free_on_node >= visit.gpus:
                return cls
        return None

    def quota_ok(self, user: str, gpus: int) -> bool:
        from kubelab.core.quota import QuotaExceeded

        if self.policy != "kubelab":
            return True
        try:
            self.ledger.check(user, ["lab"], gpus=gpus, servers=0, what="start")
        except QuotaExceeded:
            self.refused += 1
            return False
        return True

    async def step(self, now: int) -> None:
        """One minute of the trace: new requests, starts, ends, culls; then count idle GPUs."""
        from kubelab.hub_config.culling import timeout_for_server
        from kubelab.spawner.messages import is_hopeless

        for v in self.trace:
            if v.arrive == now:
                self.waiting.append(Request("server", v.user, v.gpus, now, v.prefers, visit=v))
            for j in v.jobs:
                if j.submit == now and v.leave > now:
                    self.waiting.append(Request("job", v.user, j.gpus, now, v.prefers, job=j, visit=v))
            if v.leave == now:
                self.waiting = [r for r in self.waiting if not (r.kind == "server" and r.user == v.user and self._drop(r))]
                srv = self.servers.get(v.user)
                if srv and v.stops_on_leave:
                    await self.delete(srv["pod"])
                    del self.servers[v.user]
        for req in list(self.waiting):
            pod = self.pod(req.pod)
            if pod is not None and pod.phase == "Running":
                self.waiting.remove(req)
                self.waits.append(now - req.since)
                if req.kind == "server":
                    self.servers[req.user] = {"pod": req.pod, "class": req.gpu_class, "gpus": req.gpus,
                                              "visit": req.visit, "profile": req.gpu_class}
                else:
                    self.jobs_running[req.pod] = now + req.job.minutes  # type: ignore[union-attr]
                continue
            if req.pod is None:
                if now < req.retry_at:
                    continue
                if req.kind == "server" and self.policy == "kubelab":
                    cls = self.choose_class(req.visit)  # type: ignore[arg-type]
                    if cls is None:
                        self.fail_fast += 1
                        req.retry_at = now + RETRY_MINUTES
                        continue
                    req.gpu_class = cls
                if not self.quota_ok(req.user, req.gpus):
                    req.retry_at = now + RETRY_MINUTES
                    continue
                await self.create(req, now)
            elif req.kind == "server":
                hopeless = pod is not None and pod.unschedulable and is_hopeless(pod.unschedulable)
                gave_up = (self.policy == "kubelab" and hopeless) or (
                    self.policy == "static" and now - req.created_at >= STATIC_START_TIMEOUT)
                if gave_up:
                    self.fail_fast += self.policy == "kubelab"
                    await self.delete(req.pod)
                    req.pod, req.retry_at = None, now + RETRY_MINUTES
        for pod, end in list(self.jobs_running.items()):
            if end <= now:
                await self.delete(pod)
                del self.jobs_running[pod]
        for user, srv in list(self.servers.items()):
            visit: Visit = srv["visit"]
            idle_since = visit.active_until
            if now < idle_since:
                continue
            limit = (timeout_for_server(self.catalogue, {"user_options": {"profile": srv["profile"]}}) / 60
                     if self.policy == "kubelab" else STATIC_CULL_MINUTES)
            if now - idle_since >= limit:
                self.culled += 1
                await self.delete(srv["pod"])
                del self.servers[user]
        self.count(now)

    def _drop(self, req: Request) -> bool:
        self.unmet += 1
        return True

    def count(self, now: int) -> None:
        from kubelab.core.availability import gpu_availability

        av = gpu_availability(self.cache.nodes.values(), self.cache.pods.values(), self.catalogue.gpu_classes)
        self.capacity_minutes += sum(a.allocatable for a in av.values())
        idle_held = sum(s["gpus"] for s in self.servers.values() if now >= s["visit"].active_until)
        waiting_classes = {r.gpu_class for r in self.waiting}
        free_while_waiting = sum(a.free for k, a in av.items() if k in waiting_classes)
        self.idle_gpu_minutes += idle_held + free_while_waiting

    async def finish(self) -> None:
        for srv in self.servers.values():
            await self.delete(srv["pod"])
        for pod in self.jobs_running:
            await self.delete(pod)
        for req in self.waiting:
            self.unmet += 1
            if req.pod:
                await self.delete(req.pod)


async def run_policy(policy: str, trace: list[Visit], minutes: int, tick: float, kubeconfig: Path) -> dict[str, Any]:
    from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
    from kubernetes_asyncio.config import load_kube_config

    from kubelab.core.catalogue import parse_catalogue
    from kubelab.core.cluster import ClusterCache

    conf = Configuration()
    await load_kube_config(config_file=str(kubeconfig), client_configuration=conf)
    api = ApiClient(conf)
    core = CoreV1Api(api)
    ns = f"kl-bench-idle-{policy}-{os.getpid()}"
    await core.create_namespace({"metadata": {"name": ns, "labels": {"kubelab.io/simulate": "true"}}})
    for _ in range(150):  # v1.20 admits pods only once the default ServiceAccount has its token
        if await _sa_ready(core, ns):
            break
        await asyncio.sleep(0.2)
    cache = ClusterCache(core)
    await cache.start(30)
    catalogue = parse_catalogue(CATALOGUE, "bench-idle")
    run = Run(policy, trace, ns, api, cache, catalogue)
    t0 = time.perf_counter()
    try:
        for minute in range(minutes):
            await run.step(minute)
            await asyncio.sleep(max(0.0, t0 + (minute + 1) * tick - time.perf_counter()))
        await run.finish()
    finally:
        await cache.stop()
        await core.delete_namespace(ns)
        await api.close()
    waits = run.waits or [0]
    return {
        "policy": policy, "idle_fraction": run.idle_gpu_minutes / max(1.0, run.capacity_minutes),
        "wait_mean": statistics.mean(waits), "wait_p90": sorted(waits)[int(0.9 * (len(waits) - 1))],
        "started": len(run.waits), "unmet": run.unmet, "culled": run.culled, "fail_fast": run.fail_fast,
        "refused": run.refused, "seconds": time.perf_counter() - t0,
    }


async def _sa_ready(core: Any, ns: str) -> bool:
    """Whether the namespace's default ServiceAccount exists with its token secret."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        return bool((await core.read_namespaced_service_account("default", ns)).secrets)
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def bench_cluster(say: Any) -> tuple[Any, Path, bool]:
    """Bring up (or find) the benchmark's own devcluster instance with two 4-GPU nodes."""
    os.environ.setdefault("KUBELAB_DEVCLUSTER_INSTANCE", os.environ.get("KUBELAB_BENCH_INSTANCE", "7"))
    from kubelab.devcluster import up

    state = Path(os.environ.get("KUBELAB_BENCH_STATE") or f"/tmp/kl-state-{os.environ['KUBELAB_DEVCLUSTER_INSTANCE']}")
    layout = Path(tempfile.mkdtemp(prefix="kl-bench-idle-")) / "nodes.yaml"
    layout.write_text(yaml.safe_dump({"nodes": [{"name": "bench-cpu", "pods": 500}] + [
        {"name": f"bench-gpu-{k}", "gpus": GPUS_PER_NODE, "gpu_product": v} for k, v in GPU_CLASSES.items()]}))
    info = up(state=state, nodes=layout, say=say)
    return info, state, info.started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=14)
    parser.add_argument("--hours", type=float, default=10)
    parser.add_argument("--tick", type=float, default=0.2, help="real seconds per minute of the trace")
    args = parser.parse_args()
    minutes = int(args.hours * 60)
    trace = make_trace(args.seed, args.users, minutes)
    info, state, started = bench_cluster(lambda line: print(f"[devcluster] {line}", flush=True))
    from kubelab.devcluster import down

    try:
        if os.environ.get("KUBECONFIG") and info.external:
            print("note: KUBECONFIG names another cluster; its GPU nodes are used as they are")
        results = [asyncio.run(run_policy(p, trace, minutes, args.tick, info.kubeconfig)) for p in ("kubelab", "static")]
    finally:
        if started:
            down(state)
    jobs = sum(len(v.jobs) for v in trace)
    print(f"trace: seed {args.seed}, {len(trace)} users, {jobs} jobs, {args.hours:g} h in {minutes * args.tick:.0f} s "
          f"per policy; 2 x {GPUS_PER_NODE} GPUs (A100, V100)")
    print(f"{'policy':<9} {'GPU-idle':>9} {'wait mean':>10} {'wait p90':>9} {'started':>8} {'unmet':>6} "
          f"{'culled':>7} {'fail-fast':>10} {'quota':>6} {'wall':>6}")
    for r in results:
        print(f"{r['policy']:<9} {r['idle_fraction']:>8.1%} {r['wait_mean']:>7.1f} min {r['wait_p90']:>5d} min "
              f"{r['started']:>8d} {r['unmet']:>6d} {r['culled']:>7d} {r['fail_fast']:>10d} {r['refused']:>6d} "
              f"{r['seconds']:>5.0f}s")
    k, s = results
    print(f"kubelab / static: GPU-idle fraction x{k['idle_fraction'] / max(1e-9, s['idle_fraction']):.2f}, "
          f"mean wait x{k['wait_mean'] / max(1e-9, s['wait_mean']):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
