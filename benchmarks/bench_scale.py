"""Scale: kubelab's hub beside stock KubeSpawner's, with 2,000 running servers, in one run.

Usage::

    .venv/bin/python benchmarks/bench_scale.py                      # 2,000 servers, 200 spawns
    .venv/bin/python benchmarks/bench_scale.py --servers 200 --spawns 20 --renders 50   # a quick look

On the devcluster, in one namespace labelled ``kubelab.io/simulate=true`` (so the process node
marks every pod Running without starting a process, whoever created it):

1. **The fill.** 2,000 server pods are created directly through the API (not spawned by a hub:
   that would take an hour on two cores), each labelled and annotated both as KubeSpawner labels
   its servers (``component=singleuser-server``, ``hub.jupyter.org/username``...) and as kubelab
   does (``kubelab.io/user``, ``kubelab.io/server``...), with the env, resources and volumes of a
   real server pod, so that each hub's watch cache holds the same 2,000 pods. They are not in
   either hub's database; what the hub keeps per pod is what is measured.
2. **Each hub in turn**: stock KubeSpawner 7.1 (``kubespawner.KubeSpawner`` with a profile_list
   equivalent to the catalogue below: same profiles, images, GPU counts, resources, home PVC),
   then kubelab as deployed (``configure_platform``: LabSpawner, the platform's cluster cache and
   the jobs service, its default namespace being the servers'). Each is a real ``jupyterhub``
   process (``tests/harness.py``) talking to the API server through a recording proxy
   (``recording_proxy.py``), which counts its requests. After a warm-up spawn (so every watch
   runs), the benchmark measures the hub's resident memory, then fires 200 spawn requests at once
   (REST, straight to the hub) and times them until their pods are Running (seen by a watch of
   this process, not through the proxy), with the hub's CPU seconds and API requests in that
   window; then it renders the picker (``GET /hub/spawn``, logged in) 200 times in a row.
   The pods are simulated, so no server ever answers: the hubs keep waiting for them
   (``http_timeout``), which both do alike; the window closes when the pods are Running.
   Between the hubs the spawned pods, claims and the namespace's events are removed.

Figures are printed beside the issue's goals as ratios; nothing is asserted. Both hubs run one
after the other on the same machine, so the ratios are what to read; the absolute figures
depend on the machine (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import requests
import yaml
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity
from procstats import cpu_seconds, profiled, rss_mib, wait_idle
from recording_proxy import RecordingProxy, is_cache_feed, normalise

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubelab.core.naming import user_label  # noqa: E402
from kubelab.devcluster import ensure_cluster  # noqa: E402
from kubelab.devcluster.testing import simulated_namespace  # noqa: E402
from tests.harness import HubProcess  # noqa: E402

FILLER_LABEL = "bench.kubelab.io/filler"
#: Both spawners annotate their pods with the JupyterHub user name.
USER_ANNOTATION = "hub.jupyter.org/username"
GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
IMAGES = {"scipy": ("SciPy", "quay.io/jupyter/scipy-notebook:2025-10-20"),
          "torch-gpu": ("PyTorch (CUDA)", "ghcr.io/kubelab/notebook-gpu:0.1.0")}
GPU_COUNTS = [1, 2, 4, 8]
#: The profile every benchmark spawn asks for; its small guarantees let 200 fit one process node.
SPAWN_PROFILE = "cpu-small"

CATALOGUE: dict[str, Any] = {
    "platform": {"name": "kubelab-bench"},
    "gpuClasses": {"a100": {"displayName": "NVIDIA A100 80GB", "nodeSelector": {"nvidia.com/gpu.product": GPU_PRODUCT},
                            "tolerations": [GPU_TOLERATION]}},
    "images": {key: {"displayName": name, "image": image, **({"variant": "gpu"} if "gpu" in key else {})}
               for key, (name, image) in IMAGES.items()},
    "profiles": [
        {"slug": "cpu-small", "name": "Small CPU", "description": "For notebooks.",
         "cpu": {"guarantee": 0.01, "limit": 1}, "memory": {"guarantee": "32Mi", "limit": "2Gi"},
         "images": ["scipy"], "default": True},
        {"slug": "a100", "name": "A100 GPU", "description": "One or more A100s.",
         "cpu": {"guarantee": 0.01, "limit": 2}, "memory": {"guarantee": "32Mi", "limit": "8Gi"},
         "gpu": {"class": "a100", "counts": GPU_COUNTS}, "images": ["torch-gpu", "scipy"]},
    ],
    "storage": {"home": {"size": "1Gi", "accessMode": "ReadWriteOnce", "mountPath": "/home/jovyan"}},
    "quotas": {"perUser": {"maxGpus": 2}},
    "jobs": {"engine": "plain", "kueue": {"enabled": False}},
}

#: The same two profiles as KubeSpawner's profile_list (JupyterHub's "M"/"G" are MiB/GiB).
PROFILE_LIST: list[dict[str, Any]] = [
    {"display_name": "Small CPU", "slug": "cpu-small", "description": "For notebooks.", "default": True,
     "kubespawner_override": {"image": IMAGES["scipy"][1], "cpu_guarantee": 0.01, "cpu_limit": 1.0,
                              "mem_guarantee": "32M", "mem_limit": "2G"}},
    {"display_name": "A100 GPU", "slug": "a100", "description": "One or more A100s.",
     "kubespawner_override": {"cpu_guarantee": 0.01, "cpu_limit": 2.0, "mem_guarantee": "32M", "mem_limit": "8G",
                              "node_selector": {"nvidia.com/gpu.product": GPU_PRODUCT},
                              "tolerations": [GPU_TOLERATION]},
     "profile_options": {
         "image": {"display_name": "Image", "choices": {
             key: {"display_name": name, "default": key == "torch-gpu", "kubespawner_override": {"image": image}}
             for key, (name, image) in IMAGES.items()}},
         "gpus": {"display_name": "GPUs", "choices": {
             str(n): {"display_name": f"{n} x NVIDIA A100 80GB", "default": n == 1, "kubespawner_override": {
                 "extra_resource_guarantees": {"nvidia.com/gpu": str(n)},
                 "extra_resource_limits": {"nvidia.com/gpu": str(n)}}}
             for n in GPU_COUNTS}}}},
]

COMMON_CONFIG = """
c.JupyterHub.log_level = "INFO"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "pw"
c.Authenticator.allow_all = True
# 200 spawns at once: no hub-side cap, and no cleanup on exit (the benchmark removes the pods)
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.cleanup_servers = False
c.KubeSpawner.namespace = {ns!r}
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.start_timeout = 600
c.KubeSpawner.http_timeout = 600
c.KubeSpawner.delete_grace_period = 1
"""

STOCK_CONFIG = """
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.profile_list = {profile_list!r}
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
c.KubeSpawner.pvc_name_template = "home-{{username}}"
c.KubeSpawner.volumes = [{{"name": "home", "persistentVolumeClaim": {{"claimName": "{{pvc_name}}"}}}}]
c.KubeSpawner.volume_mounts = [{{"name": "home", "mountPath": "/home/jovyan"}}]
"""

KUBELAB_CONFIG = """
from kubelab.hub_config.wiring import configure_platform, load_catalogue_or_exit
configure_platform(c, load_catalogue_or_exit({catalogue!r}))
"""


# -- the fill --------------------------------------------------------------------------------------


def filler_pod(index: int) -> dict[str, Any]:
    """A running server's pod as both spawners would label it (user ``fill-<index>``)."""
    user = f"fill-{index:04d}"
    env = {"JUPYTERHUB_API_TOKEN": secrets.token_hex(16), "JPY_API_TOKEN": secrets.token_hex(16),
           "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}", "JUPYTERHUB_HOST": "",
           "JUPYTERHUB_OAUTH_CALLBACK_URL": f"/user/{user}/oauth_callback",
           "JUPYTERHUB_OAUTH_SCOPES": f'["access:servers!server={user}/", "access:servers!user={user}"]',
           "JUPYTERHUB_USER": user, "JUPYTERHUB_SERVER_NAME": "", "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
           "JUPYTERHUB_ACTIVITY_URL": f"http://hub:8081/hub/api/users/{user}/activity",
           "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_SERVICE_PREFIX": f"/user/{user}/",
           "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888/user/{user}/", "JUPYTER_IMAGE": IMAGES["scipy"][1],
           "MEM_GUARANTEE": "33554432", "MEM_LIMIT": "2147483648", "CPU_GUARANTEE": "0.01", "CPU_LIMIT": "1.0",
           "KUBELAB_PROFILE": "cpu-small", "HOME": "/home/jovyan"}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"jupyter-{user}",
            "labels": {FILLER_LABEL: "true", "app": "jupyterhub", "component": "singleuser-server",
                       "heritage": "jupyterhub", "hub.jupyter.org/network-access-hub": "true",
                       "hub.jupyter.org/servername": "", "hub.jupyter.org/username": user,
                       "app.kubernetes.io/component": "singleuser-server", "app.kubernetes.io/managed-by": "kubespawner",
                       "kubelab.io/user": user_label(user), "kubelab.io/server": "default",
                       "kubelab.io/profile": "cpu-small", "app.kubernetes.io/part-of": "kubelab"},
            "annotations": {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": "",
                            "kubelab.io/username": user, "kubelab.io/servername": ""},
        },
        "spec": {
            "automountServiceAccountToken": False, "enableServiceLinks": False, "restartPolicy": "OnFailure",
            "securityContext": {"fsGroup": 100}, "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "notebook", "image": IMAGES["scipy"][1], "imagePullPolicy": "IfNotPresent",
                "args": ["jupyterhub-singleuser"], "workingDir": "/home/jovyan",
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "ports": [{"name": "notebook-port", "containerPort": 8888}],
                # tiny requests so 2,000 fit one process node; the limits are the profile's
                "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "runAsUser": 1000},
                "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
                "lifecycle": {},
            }],
            "volumes": [{"name": "home", "emptyDir": {}}],
        },
    }


def pod_capacity(core: kubernetes.client.CoreV1Api) -> int:
    """Pods the untainted nodes hold, less those already placed there."""
    nodes = [n for n in core.list_node().items if not n.spec.taints]
    names = {n.metadata.name for n in nodes}
    placed = sum(1 for p in core.list_pod_for_all_namespaces().items
                 if p.spec.node_name in names and p.status.phase not in ("Succeeded", "Failed"))
    return sum(int(parse_quantity(n.status.allocatable.get("pods", "0"))) for n in nodes) - placed


def count_running(core: kubernetes.client.CoreV1Api, ns: str, selector: str) -> int:
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    return sum(p.status.phase == "Running" for p in pods)


def fill(core: kubernetes.client.CoreV1Api, ns: str, n: int) -> float:
    """Create ``n`` server pods (8 at a time) and wait until all are Running; returns seconds."""
    t0 = time.monotonic()

    def create(i: int) -> None:
        core.create_namespaced_pod(ns, filler_pod(i), _preload_content=False)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n)))
    while count_running(core, ns, FILLER_LABEL) < n:
        if time.monotonic() - t0 > 900:
            raise TimeoutError(f"only {count_running(core, ns, FILLER_LABEL)} of {n} filler pods Running after 900 s")
        time.sleep(2)
    return time.monotonic() - t0


def clear_spawned(core: kubernetes.client.CoreV1Api, ns: str) -> None:
    """Remove the spawned pods and claims and every event of ``ns``; keep the fill."""
    core.delete_collection_namespaced_pod(ns, label_selector=f"!{FILLER_LABEL}", grace_period_seconds=0)
    core.delete_collection_namespaced_persistent_volume_claim(ns)
    deadline = time.monotonic() + 300
    while core.list_namespaced_pod(ns, label_selector=f"!{FILLER_LABEL}").items or \
            core.list_namespaced_persistent_volume_claim(ns).items:
        if time.monotonic() > deadline:
            raise TimeoutError("spawned pods or claims not gone after 300 s")
        time.sleep(1)
    core.delete_collection_namespaced_event(ns)


# -- one hub -----------------------------------------------------------------------------------------


class RunningWatch:
    """When each user's (non-filler) pod in ``ns`` first reports Running, from a watch of this process.

    Pods are told apart by the user annotation both spawners write (their pod names differ).
    """

    def __init__(self, core: kubernetes.client.CoreV1Api, ns: str) -> None:
        self.core, self.ns = core, ns
        self.running: dict[str, float] = {}
        self.pod_names: dict[str, str] = {}
        self.stop = threading.Event()
        listed = core.list_namespaced_pod(ns, label_selector=f"!{FILLER_LABEL}")
        self.version = listed.metadata.resource_version
        threading.Thread(target=self._run, daemon=True, name="running-watch").start()

    def _run(self) -> None:
        while not self.stop.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(self.core.list_namespaced_pod, self.ns, label_selector=f"!{FILLER_LABEL}",
                                          resource_version=self.version, timeout_seconds=30):
                    pod = event["object"]
                    self.version = pod.metadata.resource_version
                    user = (pod.metadata.annotations or {}).get(USER_ANNOTATION)
                    if pod.status.phase == "Running" and user:
                        self.running.setdefault(user, time.monotonic())
                        self.pod_names[user] = pod.metadata.name
                    if self.stop.is_set():
                        break
            except ApiException as e:
                if e.status != 410:
                    raise
                self.version = self.core.list_namespaced_pod(self.ns, label_selector=f"!{FILLER_LABEL}") \
                    .metadata.resource_version

    def wait(self, names: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not names <= self.running.keys():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_hub(kind: str, cluster: Any, core: kubernetes.client.CoreV1Api, ns: str, spawns: int,
            renders: int, profile: Path | None = None) -> dict[str, Any]:
    """Start ``kind``'s hub, warm it up, then measure memory, 200 spawns and the picker."""
    work = Path(tempfile.mkdtemp(prefix=f"kl-scale-{kind}-"))
    config = COMMON_CONFIG.format(ns=ns)
    if kind == "kubelab":
        (work / "catalogue.yaml").write_text(yaml.safe_dump(CATALOGUE))
        config += KUBELAB_CONFIG.format(catalogue=str(work / "catalogue.yaml"))
    else:
        config += STOCK_CONFIG.format(profile_list=PROFILE_LIST)
    proxy = RecordingProxy(cluster.kubeconfig)
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=work, env={"KUBECONFIG": str(proxy.kubeconfig())})
    out: dict[str, Any] = {}
    t_start = time.monotonic()
    hub.start(timeout=180)
    pid = hub.proc.pid  # type: ignore[union-attr]
    base = hub.hub_api_url.removesuffix("/hub/api")
    admin = {"Authorization": f"token {hub.token}"}
    try:
        users = [f"bench-{i:03d}" for i in range(spawns)]
        r = requests.post(f"{hub.hub_api_url}/users", json={"usernames": [*users, "warmup", "picker"]},
                          headers=admin, timeout=60)
        r.raise_for_status()
        watch = RunningWatch(core, ns)
        # warm-up: one spawn, so that every watch (stock KubeSpawner starts its on the first spawn) runs
        requests.post(f"{hub.hub_api_url}/users/warmup/server", json={"profile": SPAWN_PROFILE}, headers=admin,
                      timeout=120).raise_for_status()
        if not watch.wait({"warmup"}, 300):
            raise TimeoutError(f"{kind}: the warm-up pod is not Running after 300 s")
        wait_idle(pid)
        out["start requests"] = collections.Counter(normalise(*r) for r in proxy.between(t_start))
        out["rss idle"] = rss_mib(pid)

        # 200 spawn requests at once
        cpu0, t0 = cpu_seconds(pid), time.monotonic()

        def spawn(user: str) -> int:
            return requests.post(f"{hub.hub_api_url}/users/{user}/server", json={"profile": SPAWN_PROFILE},
                                 headers=admin, timeout=300).status_code

        names = set(users)
        with profiled(pid, profile, f"{kind}-spawns"):
            with concurrent.futures.ThreadPoolExecutor(spawns) as pool:
                codes = collections.Counter(pool.map(spawn, users))
            done = watch.wait(names, 600)
        t1 = max((watch.running[n] for n in names if n in watch.running), default=time.monotonic())
        cpu1 = cpu_seconds(pid)
        watch.stop.set()
        out["codes"] = dict(codes)
        out["all running"] = done
        out["running"] = len(names & watch.running.keys())
        out["to running"] = sorted(watch.running[n] - t0 for n in names if n in watch.running)
        out["wall"] = t1 - t0
        out["cpu per spawn"] = (cpu1 - cpu0) / spawns
        out["spawn requests"] = collections.Counter(normalise(*r) for r in proxy.between(t0, t1))
        out["rss after spawns"] = rss_mib(pid)
        pod = core.read_namespaced_pod(watch.pod_names[users[0]], ns).spec.containers[0]
        out["pod"] = f"{pod.image}, requests {pod.resources.requests}, limits {pod.resources.limits}"

        # the picker, logged in as a user without a server
        session = requests.Session()
        session.get(f"{base}/hub/login", timeout=30)
        session.post(f"{base}/hub/login", data={"username": "picker", "password": "pw",
                                                "_xsrf": session.cookies.get("_xsrf")}, timeout=30).raise_for_status()
        samples = []
        with profiled(pid, profile, f"{kind}-picker"):
            for _ in range(renders):
                t = time.perf_counter()
                page = session.get(f"{base}/hub/spawn", timeout=30)
                samples.append(time.perf_counter() - t)
                if page.status_code != 200 or SPAWN_PROFILE not in page.text:
                    raise RuntimeError(f"{kind}: the picker did not render: {page.status_code} {page.text[-500:]}")
        out["picker"] = samples
        out["rss end"] = rss_mib(pid)
    finally:
        # SIGTERM first: the harness's stop() would try to stop 200 servers that never answer
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.send_signal(signal.SIGTERM)
            try:
                hub.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(hub.proc.pid, signal.SIGKILL)
        hub.stop()
    return out


# -- report --------------------------------------------------------------------------------------------


def report(results: dict[str, dict[str, Any]], servers: int, spawns: int, fill_s: float) -> None:
    stock, lab = results["kubespawner"], results["kubelab"]

    def row(what: str, s: float, k: float, unit: str, goal: str = "", fmt: str = ".1f") -> None:
        ratio = k / s if s else float("nan")
        print(f"{what:44s} {s:10{fmt}} {k:10{fmt}} {unit:6s} {ratio:6.2f}x  {goal}")

    print(f"\n== scale: {servers} running servers (simulated pods, filled in {fill_s:.0f} s), "
          f"{spawns} concurrent spawns ==")
    print(f"{'':44s} {'stock':>10s} {'kubelab':>10s} {'':6s} {'ratio':>7s}")
    row("hub resident memory, idle", stock["rss idle"], lab["rss idle"], "MiB",
        f"goal <= 1.10x: {'met' if lab['rss idle'] <= 1.1 * stock['rss idle'] else 'MISSED'}")
    row("hub resident memory, after the spawns", stock["rss after spawns"], lab["rss after spawns"], "MiB",
        f"goal <= 1.10x: {'met' if lab['rss after spawns'] <= 1.1 * stock['rss after spawns'] else 'MISSED'}")
    row("hub CPU seconds per spawn", stock["cpu per spawn"], lab["cpu per spawn"], "s",
        f"goal <= 1.10x: {'met' if lab['cpu per spawn'] <= 1.1 * stock['cpu per spawn'] else 'MISSED'}", ".3f")
    per = {k: sum(n for key, n in r["spawn requests"].items() if not is_cache_feed(key)) / spawns
           for k, r in results.items()}
    row("API requests per spawn (not LIST/WATCH)", per["kubespawner"], per["kubelab"], "")
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        row(f"picker render time {name}", percentile(stock["picker"], q) * 1000,
            percentile(lab["picker"], q) * 1000, "ms")
    row(f"time for {spawns} concurrent spawns to reach Running", stock["wall"], lab["wall"], "s")
    row("  of which one spawn's time to Running, p50", statistics.median(stock["to running"]),
        statistics.median(lab["to running"]), "s")
    for kind, r in results.items():
        if not r["all running"]:
            print(f"  {kind}: only {r['running']} of {spawns} pods Running in 600 s")
        print(f"  {kind}: POST answers {r['codes']}; resident memory after {len(r['picker'])} picker renders "
              f"{r['rss end']:.0f} MiB; a spawned pod: {r['pod']}")
    print(f"\n-- API requests during the {spawns} spawns (POST to the last pod Running), by kind --")
    keys = sorted(set(stock["spawn requests"]) | set(lab["spawn requests"]))
    print(f"{'request':64s} {'stock':>6s} {'kubelab':>8s}")
    for key in keys:
        print(f"{key:64s} {stock['spawn requests'].get(key, 0):6d} {lab['spawn requests'].get(key, 0):8d}")
    print("\n-- API requests from hub start to after the warm-up spawn (the caches' LISTs and WATCHes) --")
    keys = sorted(k for k in set(stock["start requests"]) | set(lab["start requests"]) if is_cache_feed(k))
    for key in keys:
        print(f"{key:64s} {stock['start requests'].get(key, 0):6d} {lab['start requests'].get(key, 0):8d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=2000, help="running servers to fill in (default 2000)")
    parser.add_argument("--spawns", type=int, default=200, help="concurrent spawn requests (default 200)")
    parser.add_argument("--renders", type=int, default=200, help="picker renders per hub (default 200)")
    parser.add_argument("--only", choices=("kubespawner", "kubelab"), help="run one hub only (profiling)")
    parser.add_argument("--profile", type=Path, help="folder for py-spy samples of the spawns and the picker")
    args = parser.parse_args()

    cluster = ensure_cluster(say=lambda line: print(f"[devcluster] {line}", flush=True))
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    room = pod_capacity(core) - args.spawns - 10
    servers = min(args.servers, room)
    if servers < args.servers:
        print(f"the devcluster's untainted nodes have room for {room + args.spawns + 10} more pods: filling "
              f"{servers}, not {args.servers} (the default layout holds 3,000 on kubelab-cpu; an older "
              "devcluster needs `kubelab-devcluster down && up` to take it)", flush=True)
    ns = simulated_namespace(core, "kl-scale")
    results: dict[str, dict[str, Any]] = {}
    try:
        fill_s = fill(core, ns, servers)
        print(f"filled {servers} running server pods in {fill_s:.0f} s", flush=True)
        for kind in ("kubespawner", "kubelab"):
            if args.only and kind != args.only:
                continue
            clear_spawned(core, ns)
            print(f"-- {kind}: starting the hub", flush=True)
            results[kind] = run_hub(kind, cluster, core, ns, args.spawns, args.renders, args.profile)
            print(f"-- {kind}: done ({results[kind]['wall']:.0f} s for the spawns)", flush=True)
        if len(results) == 2:
            report(results, servers, args.spawns, fill_s)
        else:
            for kind, r in results.items():
                print(kind, {k: v for k, v in r.items() if k not in ("picker", "to running")})
    finally:
        core.delete_namespace(ns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
