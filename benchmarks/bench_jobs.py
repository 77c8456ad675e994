"""Jobs service benchmark: submit latency against the floor, then listing/status cost for 500 jobs.

Usage::

    .venv/bin/python benchmarks/bench_jobs.py                            # 500 jobs, 50 timed submits
    .venv/bin/python benchmarks/bench_jobs.py --jobs 100 --latency 20    # fewer

It starts a real JupyterHub running kubelab's platform and jobs service
(``configure_platform``) on the devcluster, with the jobs in a fresh namespace labelled
``kubelab.io/simulate=true``: the process node marks the job pods Running without starting a
process, so the cluster holds real Jobs, Services, ConfigMaps, Secrets and Running pods.

1. **Submit against the floor.** ``--latency`` one-worker jobs are submitted one at a time through
   the REST API (straight to the hub, not through the proxy, with a user's token). After each, the
   objects the service created for it are read back, and the same objects are created again, one
   at a time with the (synchronous) Kubernetes client, in a second simulated namespace: that is
   the floor, what creating the job costs with nothing in between. Printed: both medians and their
   ratio (goal under 1.5x), timed alternately so both see the same cluster.
2. **Throughput and reads.** ``--jobs`` more jobs, 8 clients at a time; then ``GET jobs`` (all N)
   and ``GET jobs/{name}`` through the REST API, and the same reads in this process on a second
   :class:`~kubelab.jobs.kube.JobCache` that talks to the API server through a recording proxy,
   which shows that the reads make no request.
3. **Submit against the floor again**, now that the user has ``--jobs`` live jobs: the quota check
   of a submit looks at every live job (docs/performance.md says why that grows).

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import requests
import yaml
from procstats import profiled
from recording_proxy import RecordingProxy, normalise

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubelab.core.catalogue import parse_catalogue  # noqa: E402
from kubelab.core.naming import LABEL_JOB  # noqa: E402
from kubelab.devcluster.testing import simulated_namespace  # noqa: E402
from kubelab.jobs.builders.common import job_id  # noqa: E402
from tests.harness import HubProcess  # noqa: E402
from tests.jobs.helpers import BASE  # noqa: E402

#: Kinds a plain-engine submit creates, and their API paths (for the floor).
KIND_PATHS = {"ConfigMap": "/api/v1/namespaces/{ns}/configmaps", "Secret": "/api/v1/namespaces/{ns}/secrets",
              "Service": "/api/v1/namespaces/{ns}/services", "Job": "/apis/batch/v1/namespaces/{ns}/jobs"}
#: Fields the API server writes; a copy for the floor leaves them out, as a freshly built object does.
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "selfLink", "generation")


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


# -- the floor: the same objects, created directly ------------------------------------------------------


def created_objects(api: kubernetes.client.ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    """What the service created for job ``name`` (parent first), as plain JSON."""
    out = []
    for kind, path in KIND_PATHS.items():
        resp = api.call_api(path.format(ns=namespace), "GET", query_params=[("labelSelector", f"{LABEL_JOB}={name}")],
                            auth_settings=["BearerToken"], _preload_content=False)
        for item in json.loads(resp[0].data)["items"]:
            item["kind"] = kind
            out.append(item)
    jid = job_id("alice", name)
    out.sort(key=lambda o: (o["kind"] != "ConfigMap" or o["metadata"]["name"] != jid, o["kind"]))
    return out


def as_new(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as it was POSTed: without what the API server and the controllers added."""
    obj = json.loads(json.dumps(obj))
    obj.pop("status", None)
    meta = obj["metadata"]
    for key in (*SERVER_FIELDS, "namespace"):
        meta.pop(key, None)
    if obj["kind"] == "Job":
        # defaulted by the API server (batch/v1): the selector and the template's controller labels
        obj["spec"].pop("selector", None)
        labels = obj["spec"]["template"]["metadata"].get("labels") or {}
        for key in ("controller-uid", "job-name"):
            labels.pop(key, None)
    if obj["kind"] == "Service":
        obj["spec"].pop("clusterIPs", None)
    return obj


def create_floor(api: kubernetes.client.ApiClient, namespace: str, objects: list[dict[str, Any]]) -> float:
    """Create ``objects`` (parent first, the others owned by it) in ``namespace``; seconds taken."""
    bodies = [as_new(o) for o in objects]
    t0 = time.perf_counter()
    parent_uid = None
    for body in bodies:
        if parent_uid is not None:
            for ref in body["metadata"].get("ownerReferences") or []:
                ref["uid"] = parent_uid
        resp = api.call_api(KIND_PATHS[body["kind"]].format(ns=namespace), "POST", body=body,
                            auth_settings=["BearerToken"], _preload_content=False)
        if parent_uid is None:
            parent_uid = json.loads(resp[0].data)["metadata"]["uid"]
    return time.perf_counter() - t0


# -- reads in this process ------------------------------------------------------------------------------


async def in_process(raw: dict[str, Any], namespace: str, names: list[str], repeat: int, kubeconfig: Path) -> None:
    """Time list/status on a second jobs cache of this process, counting its API requests."""
    from kubernetes_asyncio.client import ApiClient, Configuration
    from kubernetes_asyncio.config import load_kube_config

    from kubelab.core.platform import Platform
    from kubelab.jobs.kube import JobCache
    from kubelab.jobs.service import JobsService

    proxy = RecordingProxy(kubeconfig)
    conf = Configuration()
    await load_kube_config(config_file=str(proxy.kubeconfig()), client_configuration=conf)
    api = ApiClient(conf)
    # Only the cache and the read path: this service is never started, so it reconciles nothing.
    service = JobsService(Platform(parse_catalogue(raw, "bench")), namespace)
    service.cache = JobCache(api, namespace)
    t0 = time.perf_counter()
    await service.cache.start()
    print(f"  a second jobs cache filled in {time.perf_counter() - t0:.2f} s: "
          f"{len(service.cache.parents)} parents, {len(service.cache.informers['pods'].store)} pods")
    mark = time.monotonic()
    lst = timed(lambda: service.list("alice"), repeat)
    sample = names[:100]
    one = timed(lambda: [service.get("alice", n) for n in sample], max(1, repeat // 10))
    print(f"  service.list(alice) over {len(names)} jobs: {ms(lst)}")
    print(f"  service.get() x{len(sample)}: {ms(one)} per batch "
          f"(≈ {statistics.median(one) * 1000 / len(sample):.3f} ms each)")
    during = collections.Counter(normalise(*r) for r in proxy.between(mark) if not r[2])
    print(f"  API requests during those reads (recording proxy): {sum(during.values())} {dict(during) or ''}")
    await service.cache.stop()
    await api.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs to submit for the reads (default 500)")
    parser.add_argument("--latency", type=int, default=50, help="jobs submitted one at a time, timed (default 50)")
    parser.add_argument("--repeat", type=int, default=50, help="repetitions of each read (default 50)")
    parser.add_argument("--profile", type=Path, help="folder for a py-spy sample of the hub during the timed submits")
    args = parser.parse_args()

    from kubelab.devcluster import ensure_cluster

    info = ensure_cluster(say=lambda line: print(f"[devcluster] {line}"))
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    kube = kubernetes.config.new_client_from_config(config_file=str(info.kubeconfig))
    core = kubernetes.client.CoreV1Api(kube)
    namespace, floor_ns = simulated_namespace(core, "kl-bench-jobs"), simulated_namespace(core, "kl-bench-floor")
    # Job pods mount alice's (RWX) home claim, as a notebook server of hers would have created it.
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "home-alice"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    raw = json.loads(json.dumps(BASE))
    # 550 one-worker jobs of one user at once: above the built-in per-user bound of running workers
    raw["jobs"].update({"namespace": namespace, "kueue": {"enabled": False}, "maxWorkers": 4,
                        "limits": {"workersPerUser": 100000}})
    raw["quotas"] = {"perUser": {"maxGpus": 2}}
    workdir = Path(tempfile.mkdtemp(prefix="kubelab-bench-jobs-"))
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(raw))
    config = f"""
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.log_level = "INFO"
from kubelab.core.catalogue import load_catalogue
from kubelab.hub_config.wiring import configure_platform
configure_platform(c, load_catalogue({str(workdir / 'catalogue.yaml')!r}))
"""
    hub = HubProcess(config=config, connect_ip=info.host_ip, workdir=workdir / "hub",
                     env={"KUBECONFIG": str(info.kubeconfig)})
    hub.start()
    try:
        hub.ensure_user("alice", ["gpu-users"])
        token = hub.user_token("alice")
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"

        def api(method: str, path: str, **kw: Any) -> requests.Response:
            return session.request(method, f"{hub.hub_api_url}/kubelab/{path}", timeout=60, **kw)

        assert api("GET", "options").status_code == 200

        def submit(name: str) -> float:
            t0 = time.perf_counter()
            r = api("POST", "jobs", json={"name": name, "framework": "replicas", "script": "noop.py", "workers": 1})
            elapsed = time.perf_counter() - t0
            assert r.status_code == 201, r.text
            return elapsed

        print(f"jobs service benchmark: one-worker jobs (simulated pods) in {namespace}")
        def against_floor(prefix: str, n: int, when: str) -> None:
            """``n`` submits, each followed by the floor for the same objects; print both and the ratio."""
            submits, floors, kinds = [], [], collections.Counter()
            with profiled(hub.proc.pid, args.profile, f"jobs-submit-{prefix}"):  # type: ignore[union-attr]
                for i in range(n):
                    name = f"{prefix}-{i:03d}"
                    submits.append(submit(name))
                    objects = created_objects(kube, namespace, name)
                    kinds = collections.Counter(o["kind"] for o in objects)
                    floors.append(create_floor(kube, floor_ns, objects))
            ratio = statistics.median(submits) / statistics.median(floors)
            # the hub's own time for each submit, from its access log (tornado's request time)
            handled = [float(t) / 1000 for t in re.findall(
                r"201 POST /hub/api/kubelab/jobs \(alice@[^)]*\) ([0-9.]+)ms", hub.log_text())][-n:]
            print(f"  -- submit against the floor, {when} --")
            print(f"  objects per job: {dict(kinds)}")
            print(f"  submit, REST to the hub, one at a time:             {ms(submits)}")
            if handled:
                print(f"    of which in the hub (its access log):           {ms(handled)}")
            print(f"  floor, the same objects with the Kubernetes client: {ms(floors)}")
            print(f"  submit / floor (medians): {ratio:.2f}x   goal < 1.5x: {'met' if ratio < 1.5 else 'MISSED'}")

        against_floor("lat", args.latency, "on an empty namespace")

        names = [f"bench-{i:04d}" for i in range(args.jobs)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(submit, names))
        total = time.perf_counter() - t0
        print(f"  submit latency (REST, 8 concurrent clients): {ms(latencies)}; {args.jobs / total:.1f} submits/s")

        # Wait for the pods, but not forever: the node's pod capacity is shared with other users of
        # the devcluster, so stop when the count has not moved for 30 s.
        last, last_change = -1, time.monotonic()
        while True:
            jobs = api("GET", "jobs").json()["jobs"]
            running = sum(j["phase"] == "Running" for j in jobs)
            if running != last:
                last, last_change = running, time.monotonic()
            if running == len(jobs) or time.monotonic() - last_change > 30:
                break
            time.sleep(2)
        print(f"  {running} of {len(jobs)} jobs Running after {time.perf_counter() - t0:.1f} s "
              f"(the others Pending: the status of every job is still served from the cache)")
        lst = timed(lambda: api("GET", "jobs"), args.repeat)
        one = timed(lambda: api("GET", f"jobs/{names[len(names) // 2]}"), args.repeat)
        print(f"  GET jobs (all {len(jobs)}, from the cache): {ms(lst)}")
        print(f"  GET jobs/<name> (one status, from the cache): {ms(one)}")
        asyncio.run(in_process(raw, namespace, [j["name"] for j in jobs], args.repeat, info.kubeconfig))
        against_floor("late", max(10, args.latency // 2), f"with {len(jobs)} live jobs of this user")
    finally:
        hub.stop()
        core.delete_namespace(namespace)
        core.delete_namespace(floor_ns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
