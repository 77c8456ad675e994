"""A LabSpawner hub on the devcluster for the spawner's integration and browser tests."""

from __future__ import annotations

import secrets
import textwrap
import time
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from harness import HubProcess
from kubernetes.client.rest import ApiException

GPU_CLASS = "NVIDIA A100 80GB"

#: Suffix of every test user name in this process: quota is counted per user across the whole
#: cluster, so two runs of the suite on one devcluster must not share user names.
RUN_ID = secrets.token_hex(2)


def uname(base: str) -> str:
    """This run's name for test user ``base`` (``alice`` → ``alice-3f2a``)."""
    return f"{base}-{RUN_ID}"


CATALOGUE: dict[str, Any] = {
    "platform": {"name": "kubelab-test"},
    "gpuClasses": {
        "a100": {
            "displayName": GPU_CLASS,
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    },
    "images": {
        "scipy": {"displayName": "SciPy", "image": "quay.io/jupyter/scipy-notebook:2025-10-20"},
        "torch-gpu": {"displayName": "PyTorch (CUDA)", "image": "ghcr.io/kubelab/notebook-gpu:0.1.0", "variant": "gpu"},
    },
    "profiles": [
        {"slug": "cpu-small", "name": "Small CPU", "description": "For notebooks.",
         "cpu": {"guarantee": 0.1, "limit": 1}, "memory": {"guarantee": "256Mi", "limit": "2Gi"},
         "images": ["scipy"], "default": True},
        {"slug": "a100", "name": "A100 GPU", "description": "One or more A100s.",
         "cpu": {"guarantee": 0.1, "limit": 2}, "memory": {"guarantee": "256Mi", "limit": "8Gi"},
         "gpu": {"class": "a100", "counts": [1, 2, 4, 8]}, "images": ["torch-gpu", "scipy"], "groups": ["gpu-users"]},
    ],
    "storage": {"home": {"size": "1Gi", "accessMode": "ReadWriteOnce", "mountPath": "/home/jovyan"},
                "shared": {"claimName": "lab-shared", "mountPath": "/shared"}},
    "quotas": {"perUser": {"maxGpus": 2, "maxServers": 20},
               "users": {uname("qa"): {"maxGpus": 1, "maxServers": 20}, uname("boss"): {"maxGpus": 8, "maxServers": 20}},
               "groups": {"students": {"maxGpus": 0}}},
}


def hub_config(catalogue_path: Path, namespace: str, extra: str = "", before: str = "") -> str:
    """jupyterhub_config.py text for a LabSpawner hub in ``namespace``.

    ``before`` runs before kubelab's wiring (as z2jh's own config runs before kubelab's
    ``extraConfig``), ``extra`` after it.
    """
    return before + textwrap.dedent(
        f"""
        from kubelab.hub_config.wiring import configure_platform, load_catalogue_or_exit
        configure_platform(c, load_catalogue_or_exit({str(catalogue_path)!r}), jobs=False)
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = "pw"
        c.Authenticator.allow_all = True
        c.JupyterHub.named_server_limit_per_user = 20
        c.KubeSpawner.namespace = {namespace!r}
        c.LabSpawner.start_timeout = 120
        c.LabSpawner.http_timeout = 90
        c.LabSpawner.delete_grace_period = 1
        """
    ) + extra


def make_namespace(core: kubernetes.client.CoreV1Api, prefix: str = "kl-spawner") -> str:
    """Create a namespace with the shared RWX claim the catalogue mounts."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"kubelab.io/test": "true"}}})
    core.create_namespaced_persistent_volume_claim(name, {
        "metadata": {"name": "lab-shared"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    })
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as e:
            if e.status != 404:
                raise
            time.sleep(0.2)
    return name


def start_hub(
    cluster: Any, namespace: str, workdir: Path, catalogue: dict[str, Any] | None = None, extra: str = "", before: str = "",
) -> HubProcess:
    """Write the catalogue and start a LabSpawner hub reachable from pods."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "catalogue.yaml"
    path.write_text(yaml.safe_dump(catalogue or CATALOGUE))
    hub = HubProcess(
        hub_config(path, namespace, extra, before),
        connect_ip=cluster.host_ip,
        workdir=workdir,
        env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    return hub.start(timeout=90)


def gpu_free_from_api(core: kubernetes.client.CoreV1Api) -> tuple[int, int]:
    """(free, total) A100 GPUs computed independently from a LIST of nodes and pods."""
    nodes = [n for n in core.list_node().items if (n.metadata.labels or {}).get("nvidia.com/gpu.product") == "NVIDIA-A100-SXM4-80GB"]
    total = sum(int(n.status.allocatable.get("nvidia.com/gpu", "0")) for n in nodes)
    names = {n.metadata.name for n in nodes}
    used = 0
    for p in core.list_pod_for_all_namespaces().items:
        if p.spec.node_name in names and p.status.phase not in ("Succeeded", "Failed"):
            for c in p.spec.containers:
                req = (c.resources.requests or {}) if c.resources else {}
                lim = (c.resources.limits or {}) if c.resources else {}
                used += int(req.get("nvidia.com/gpu", lim.get("nvidia.com/gpu", 0)))
    return total - used, total
