"""Pod and node JSON as the API server sends them, for the admin tests that fill a cache offline."""

from __future__ import annotations

from typing import Any

from kubelab.core.catalogue import Catalogue, parse_catalogue

A100 = "NVIDIA-A100-SXM4-80GB"

CATALOGUE: dict[str, Any] = {
    "gpuClasses": {
        "a100": {"displayName": "NVIDIA A100", "nodeSelector": {"nvidia.com/gpu.product": A100}},
        "v100": {"displayName": "NVIDIA V100", "nodeSelector": {"nvidia.com/gpu.product": "Tesla-V100"}},
    },
    "images": {"gpu": {"displayName": "GPU", "image": "ghcr.io/kubelab/notebook-gpu:0.1.0"}},
    "profiles": [
        {"slug": "cpu", "name": "CPU", "images": ["gpu"], "default": True},
        {"slug": "a100", "name": "A100", "images": ["gpu"], "gpu": {"class": "a100", "counts": [1, 2]},
         "groups": ["gpu-users"], "idleTimeout": 1800},
    ],
    "quotas": {"perUser": {"maxGpus": 2}, "groups": {"lab-b": {"maxGpus": 4}}},
}


def catalogue() -> Catalogue:
    return parse_catalogue(CATALOGUE, "admin-test.yaml")


def node(name: str, product: str = A100, gpus: int = 4) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}, "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, *, user: str = "alice", uid: str | None = None, gpus: int = 1, node_name: str = "gpu-0",
        phase: str = "Running", job: str | None = None, server: str | None = "", groups: str = "gpu-users",
        scheduled: str = "2026-05-01T10:00:00Z", finished: str | None = None) -> dict[str, Any]:
    """A kubelab pod: a server (``server`` is its name) or a job's rank (``job``)."""
    labels = {"kubelab.io/user": user}
    annotations = {"kubelab.io/groups": groups, "kubelab.io/username": user}
    if job is not None:
        labels["kubelab.io/job"] = job
    else:
        labels["kubelab.io/server"] = server or "default"
        annotations["kubelab.io/servername"] = server or ""
    status: dict[str, Any] = {"phase": phase, "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled}]}
    if finished:
        status["containerStatuses"] = [{"name": "c", "state": {"terminated": {"exitCode": 0, "finishedAt": finished}}}]
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}", "labels": labels,
                     "annotations": annotations},
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": status,
    }
