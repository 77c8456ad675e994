"""LabSpawner benchmark: availability cost, and API requests per spawn vs stock KubeSpawner.

Usage::

    .venv/bin/python benchmarks/bench_spawner.py            # both parts (needs the devcluster for part 2)
    .venv/bin/python benchmarks/bench_spawner.py --offline  # part 1 only

Part 1 fills the real :class:`~kubelab.core.cluster.ClusterCache` with 200 nodes and 5,000 pods
(the JSON the API server would send) and times what the form does per page view: availability per
GPU class, then the profile views and the HTML. Target: availability under 5 ms.

Part 2 runs two real hubs on the devcluster, one with LabSpawner and one with stock KubeSpawner
configured for the same 1-GPU server, each talking to the API server through a recording proxy on
loopback (plain HTTP in, mTLS to the API server out). After a warm-up spawn (so watches are
running), it counts the requests one spawn makes. Target: LabSpawner makes at most one more.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from recording_proxy import RecordingProxy, is_cache_feed, normalise

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "spawner"))

GPU_PRODUCTS = {"a100": "NVIDIA-A100-SXM4-80GB", "v100": "Tesla-V100"}


# -- part 1: availability from a 5,000-pod / 200-node cache ----------------------------------------------


def synthetic_cluster(n_nodes: int = 200, n_pods: int = 5000) -> tuple[list[dict], list[dict]]:
    """200 nodes (1/4 GPU nodes with 8 GPUs, A100 and V100) and 5,000 pods, ~300 of them on GPU nodes."""
    nodes, gpu_nodes = [], []
    for i in range(n_nodes):
        labels = {"kubernetes.io/hostname": f"n{i}"}
        alloc = {"cpu": "64", "memory": "512Gi", "pods": "110"}
        if i % 4 == 0:
            product = GPU_PRODUCTS["a100" if i % 8 == 0 else "v100"]
            labels["nvidia.com/gpu.product"] = product
            alloc["nvidia.com/gpu"] = "8"
            gpu_nodes.append(f"n{i}")
        nodes.append({"metadata": {"name": f"n{i}", "labels": labels},
                      "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True"}]}})
    pods = []
    for j in range(n_pods):
        gpu = j % 17 == 0  # ~300 GPU pods, ~200 GPUs requested of 400
        node = gpu_nodes[j % len(gpu_nodes)] if gpu else f"n{j % n_nodes}"
        res = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2"}}
        if gpu:
            res["limits"]["nvidia.com/gpu"] = "1" if j % 3 else "0"
        labels = {"app": "x"}
        if j % 7 == 0:
            labels.update({"kubelab.io/user": f"u{j % 300}", "kubelab.io/server": "default",
                           "app.kubernetes.io/managed-by": "kubelab"})
        pods.append({
            "metadata": {"name": f"p{j}", "namespace": f"ns{j % 40}", "labels": labels, "annotations": {}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": res}]},
            "status": {"phase": "Succeeded" if j % 50 == 0 else "Running"},
        })
    return nodes, pods


def bench_availability() -> None:
    from kubelab.core.availability import gpu_availability
    from kubelab.core.catalogue import parse_catalogue
    from kubelab.core.cluster import ClusterCache
    from kubelab.core.quota import QuotaLedger
    from kubelab.spawner.form import profile_views, render_form

    catalogue = parse_catalogue({
        "gpuClasses": {k: {"displayName": k.upper(), "nodeSelector": {"nvidia.com/gpu.product": v}} for k, v in GPU_PRODUCTS.items()},
        "images": {"img": {"displayName": "img", "image": "img:1"}},
        "profiles": [{"slug": "cpu", "name": "CPU", "images": ["img"], "default": True}]
        + [{"slug": k, "name": k, "images": ["img"], "gpu": {"class": k, "counts": [1, 2, 4, 8]}} for k in GPU_PRODUCTS],
        "quotas": {"perUser": {"maxGpus": 4}},
    }, "bench")
    nodes, pods = synthetic_cluster()
    cache = ClusterCache(api=None)  # type: ignore[arg-type]  # filled offline, as the watch would
    t = time.perf_counter()
    for n in nodes:
        cache.apply("nodes", "ADDED", n)
    for p in pods:
        cache.apply("pods", "ADDED", p)
    fill = time.perf_counter() - t
    ledger = QuotaLedger(cache, catalogue)

    def timed(fn: Any, runs: int = 200) -> tuple[float, float]:
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1000)
        samples.sort()
        return statistics.median(samples), samples[int(len(samples) * 0.95)]

    av = gpu_availability(cache.nodes.values(), cache.pods.values(), catalogue.gpu_classes)
    a_med, a_p95 = timed(lambda: gpu_availability(cache.nodes.values(), cache.pods.values(), catalogue.gpu_classes))
    q_med, q_p95 = timed(lambda: ledger.snapshot("u7", ["g"]))

    def page() -> None:
        a = gpu_availability(cache.nodes.values(), cache.pods.values(), catalogue.gpu_classes)
        render_form(profile_views(catalogue.profiles, catalogue, a, 4), {}, "/x")

    f_med, f_p95 = timed(page, 100)
    print("== availability from the watch cache: 200 nodes, 5,000 pods ==")
    print(f"cache fill from 5,200 watch events: {fill * 1000:.0f} ms (once, at start-up)")
    for a in av.values():
        print(f"  {a.summary()} (requested {a.requested}, largest fit {a.max_free_on_node})")
    print(f"{'availability (all classes)':34s} median {a_med:6.2f} ms   p95 {a_p95:6.2f} ms   target < 5 ms: {'met' if a_med < 5 else 'MISSED'}")
    print(f"{'quota snapshot (one user)':34s} median {q_med:6.2f} ms   p95 {q_p95:6.2f} ms")
    print(f"{'whole picker (availability+HTML)':34s} median {f_med:6.2f} ms   p95 {f_p95:6.2f} ms")


# -- part 2: API requests per spawn, through a recording proxy ------------------------------------------


STOCK_CONFIG = """
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.KubeSpawner.namespace = {ns!r}
c.KubeSpawner.image = "ghcr.io/kubelab/notebook-gpu:0.1.0"
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.args = ["--allow-root"]
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.pvc_name_template = "home-{{user_server}}"
c.KubeSpawner.volumes = [{{"name": "home", "persistentVolumeClaim": {{"claimName": "{{pvc_name}}"}}}}]
c.KubeSpawner.volume_mounts = [{{"name": "home", "mountPath": "/home/jovyan"}}]
c.KubeSpawner.working_dir = "/home/jovyan"
c.KubeSpawner.environment = {{"HOME": "/home/jovyan"}}
c.KubeSpawner.node_selector = {{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}}
c.KubeSpawner.tolerations = [{{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}}]
c.KubeSpawner.extra_resource_guarantees = {{"nvidia.com/gpu": "1"}}
c.KubeSpawner.extra_resource_limits = {{"nvidia.com/gpu": "1"}}
c.KubeSpawner.cpu_guarantee = 0.1
c.KubeSpawner.mem_guarantee = "256M"
c.KubeSpawner.automount_service_account_token = False
c.KubeSpawner.delete_grace_period = 1
c.KubeSpawner.start_timeout = 120
c.KubeSpawner.http_timeout = 90
"""


def count_spawns(kind: str, cluster: Any, core: Any, proxy: RecordingProxy) -> dict[str, Any]:
    from harness import HubProcess
    from labhub import CATALOGUE, hub_config, make_namespace

    ns = make_namespace(core, f"kl-bench-{kind}")
    work = Path(tempfile.mkdtemp(prefix=f"kl-bench-{kind}-"))
    if kind == "labspawner":
        cat = {k: v for k, v in CATALOGUE.items() if k != "storage"} | {"storage": {"home": {"size": "1Gi"}}}
        (work / "catalogue.yaml").write_text(yaml.safe_dump(cat))
        config, options = hub_config(work / "catalogue.yaml", ns), {"profile": "a100", "gpus": 1}
    else:
        config, options = STOCK_CONFIG.format(ns=ns), None
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=work, env={"KUBECONFIG": str(proxy.kubeconfig())})
    out: dict[str, Any] = {}
    try:
        hub.start(timeout=90)
        hub.ensure_user("bench", ["gpu-users"])
        for phase in ("first spawn", "second spawn"):
            t0 = time.monotonic()
            r = hub.api("POST", "/users/bench/server", json=options or {}, timeout=120)
            assert r.status_code in (201, 202), r.text
            hub.wait_server("bench", timeout=120)
            ready = time.monotonic() - t0
            reqs = proxy.between(t0)
            hub.stop_server("bench")
            out[phase] = (ready, reqs)
    finally:
        hub.stop()
        core.delete_namespace(ns)
    return out


def bench_requests() -> None:
    import kubernetes

    from kubelab.devcluster import ensure_cluster

    cluster = ensure_cluster(say=lambda line: None)
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    results = {}
    for kind in ("kubespawner", "labspawner"):
        proxy = RecordingProxy(cluster.kubeconfig)
        results[kind] = count_spawns(kind, cluster, core, proxy)
    print("\n== Kubernetes API requests made by one spawn (1 x A100 server with a home PVC), counted by a proxy ==")
    for phase in ("first spawn", "second spawn"):
        print(f"-- {phase} (POST to ready) --")
        rows = collections.OrderedDict()
        totals = {}
        for kind in ("kubespawner", "labspawner"):
            ready, reqs = results[kind][phase]
            counter = collections.Counter(normalise(*r) for r in reqs)
            for key, n in counter.items():
                rows.setdefault(key, {})[kind] = n
            # LIST and WATCH of collections feed the caches (amortised over all spawns); the rest is the spawn's own
            spawn_reqs = sum(n for k, n in counter.items() if not is_cache_feed(k))
            totals[kind] = (ready, sum(counter.values()), spawn_reqs)
        print(f"{'request':64s} {'stock':>6s} {'kubelab':>8s}")
        for key, by in sorted(rows.items()):
            print(f"{key:64s} {by.get('kubespawner', 0):6d} {by.get('labspawner', 0):8d}")
        (rs, ts, ss), (rl, tl, sl) = totals["kubespawner"], totals["labspawner"]
        print(f"{'all requests in the window':64s} {ts:6d} {tl:8d}")
        print(f"{'spawn requests (create/read/delete; not cache LIST/WATCH)':64s} {ss:6d} {sl:8d}   "
              f"target: at most one more: {'met' if sl <= ss + 1 else 'MISSED'}")
        print(f"{'seconds from POST to ready':64s} {rs:6.1f} {rl:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="only the availability part (no cluster)")
    args = parser.parse_args()
    bench_availability()
    if not args.offline:
        bench_requests()


if __name__ == "__main__":
    main()
