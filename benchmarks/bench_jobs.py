"""Jobs service benchmark: submit latency, and listing/status cost for 500 jobs from the cache.

Usage::

    .venv/bin/python benchmarks/bench_jobs.py              # 500 jobs on the devcluster
    .venv/bin/python benchmarks/bench_jobs.py --jobs 100   # fewer

It starts a real JupyterHub running the jobs service (``configure_hub(..., simulate=True)``) in a
fresh namespace of the devcluster and submits N one-worker jobs through the REST API with a user's
token, 8 at a time. Their pods carry ``kubelab.io/simulate: "true"``, so the process node marks
them Running without starting a process: the cluster holds N real Jobs, Services, ConfigMaps and
Running pods. Then it times, through the REST API, ``GET jobs`` (list of all N) and
``GET jobs/{name}`` (one status), and, in this process, the same reads on a second
:class:`~kubelab.jobs.service.JobsService` whose watch-backed cache holds the N jobs, checking
that they made no request to the API server. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubelab.core.catalogue import parse_catalogue  # noqa: E402
from tests.harness import HubProcess  # noqa: E402
from tests.jobs.helpers import BASE  # noqa: E402


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, n={len(values)}"


def timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


async def in_process(raw: dict[str, Any], namespace: str, names: list[str], repeat: int) -> None:
    """Time list/status on a JobsService of this process once its cache holds the jobs."""
    from kubelab.jobs.service import JobsService

    service = JobsService(parse_catalogue(raw, "bench"), namespace)
    t0 = time.perf_counter()
    await service.start()
    assert service.cache is not None and service.api is not None
    print(f"  cache filled (1 LIST + 1 WATCH per kind) in {time.perf_counter() - t0:.2f} s: "
          f"{len(service.cache.parents)} parents, {len(service.cache.pods)} pods")
    stats_before = dict(service.cache.stats)
    requests_before = service.api.requests
    lst = timed(lambda: service.list("alice"), repeat)
    sample = names[:100]
    one = timed(lambda: [service.get("alice", n) for n in sample], max(1, repeat // 10))
    print(f"  service.list(alice) over {len(names)} jobs: {ms(lst)}")
    print(f"  service.get() x{len(sample)}: {ms(one)} per batch "
          f"(≈ {statistics.median(one) * 1000 / len(sample):.3f} ms each)")
    new_lists = {k: v - stats_before[k] for k, v in service.cache.stats.items() if k.startswith("list")}
    print(f"  API requests during those reads: LISTs {sum(new_lists.values())}, "
          f"other calls {service.api.requests - requests_before}")
    await service.cache.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs to submit (default 500)")
    parser.add_argument("--repeat", type=int, default=50, help="repetitions of each read (default 50)")
    args = parser.parse_args()

    import kubernetes

    from kubelab.devcluster import ensure_cluster

    info = ensure_cluster(say=lambda line: print(f"[devcluster] {line}"))
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    kubernetes.config.load_kube_config(config_file=str(info.kubeconfig))
    core = kubernetes.client.CoreV1Api()
    namespace = f"kl-bench-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubelab.io/test": "true"}}})
    # Job pods mount alice's (RWX) home claim, as a notebook server of hers would have created it.
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "home-alice"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    raw = json.loads(json.dumps(BASE))
    raw["jobs"].update({"namespace": namespace, "kueue": {"enabled": False}, "maxWorkers": 4})
    raw["quotas"] = {"perUser": {"maxGpus": 2}}
    workdir = Path(tempfile.mkdtemp(prefix="kubelab-bench-jobs-"))
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(raw))
    config = f"""
c.JupyterHub.authenticator_class = "dummy"
from kubelab.core.catalogue import load_catalogue
from kubelab.jobs.service import configure_hub
configure_hub(c, load_catalogue({str(workdir / 'catalogue.yaml')!r}), simulate=True)
"""
    hub = HubProcess(config=config, connect_ip=info.host_ip, workdir=workdir / "hub",
                     env={"KUBECONFIG": str(info.kubeconfig)})
    hub.start()
    try:
        hub.ensure_user("alice", ["gpu-users"])
        token = hub.user_token("alice")
        api = lambda method, path, **kw: hub.api(method, f"/kubelab/{path}", token=token, **kw)  # noqa: E731
        assert api("GET", "options").status_code == 200  # starts the service's caches
        names = [f"bench-{i:04d}" for i in range(args.jobs)]

        def submit(name: str) -> float:
            t0 = time.perf_counter()
            r = api("POST", "jobs", json={"name": name, "framework": "replicas", "script": "noop.py",
                                          "workers": 1})
            elapsed = time.perf_counter() - t0
            assert r.status_code == 201, r.text
            return elapsed

        print(f"jobs service benchmark: {args.jobs} one-worker jobs (simulated pods) in {namespace}")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(submit, names))
        total = time.perf_counter() - t0
        print(f"  submit latency (REST, 8 concurrent clients): {ms(latencies)}; "
              f"{args.jobs / total:.1f} submits/s")

        # Wait for the pods, but not forever: the node's pod capacity is shared with other users of
        # the devcluster, so stop when the count has not moved for 30 s.
        last, last_change = -1, time.monotonic()
        while True:
            jobs = api("GET", "jobs").json()["jobs"]
            running = sum(j["phase"] == "Running" for j in jobs)
            if running != last:
                last, last_change = running, time.monotonic()
            if running == args.jobs or time.monotonic() - last_change > 30:
                break
            time.sleep(2)
        print(f"  {running} of {args.jobs} jobs Running after {time.perf_counter() - t0:.1f} s "
              f"(the others Pending: the status of every job is still served from the cache)")
        lst = timed(lambda: api("GET", "jobs"), args.repeat)
        one = timed(lambda: api("GET", f"jobs/{names[len(names) // 2]}"), args.repeat)
        print(f"  GET jobs (all {args.jobs}, from the cache): {ms(lst)}")
        print(f"  GET jobs/<name> (one status, from the cache): {ms(one)}")
        asyncio.run(in_process(raw, namespace, names, args.repeat))
    finally:
        hub.stop()
        core.delete_namespace(namespace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
