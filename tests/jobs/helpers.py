"""Catalogues and small helpers shared by the server-side jobs tests."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes

from kubelab.core.catalogue import Catalogue, parse_catalogue
from kubelab.devcluster.testing import wait_for
from tests.claims import exists, write_into_claim

SCRIPTS = Path(__file__).parent / "scripts"

BASE: dict[str, Any] = {
    "gpuClasses": {
        "a100": {
            "displayName": "NVIDIA A100",
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "v100": {"displayName": "NVIDIA V100", "nodeSelector": {"nvidia.com/gpu.product": "Tesla-V100"}},
    },
    "images": {
        "cpu": {"displayName": "CPU", "image": "ghcr.io/kubelab/notebook-cpu:0.1.0"},
        "gpu": {"displayName": "GPU", "image": "ghcr.io/kubelab/notebook-gpu:0.1.0", "variant": "gpu"},
        "secret": {"displayName": "Staff only", "image": "ghcr.io/kubelab/staff:1"},
    },
    "profiles": [
        {"slug": "cpu", "name": "CPU", "images": ["cpu"], "default": True},
        {"slug": "a100", "name": "A100", "images": ["gpu", "cpu"], "gpu": {"class": "a100", "counts": [1, 2]},
         "groups": ["gpu-users"]},
        {"slug": "v100", "name": "V100", "images": ["gpu"], "gpu": {"class": "v100", "counts": [1]},
         "groups": ["staff"]},
        {"slug": "staff", "name": "Staff", "images": ["secret"], "groups": ["staff"]},
    ],
    "storage": {"home": {"accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"}},
    "quotas": {"perUser": {"maxGpus": 2}},
    "jobs": {"engine": "plain", "maxWorkers": 4, "maxRuntimeSeconds": 3600,
             "kueue": {"enabled": "auto", "queues": ["team-a", "team-b"], "defaultQueue": "team-a"}},
}


def catalogue(**overrides: Any) -> Catalogue:
    """The test catalogue with top-level sections replaced by ``overrides``."""
    raw = copy.deepcopy(BASE)
    raw.update(copy.deepcopy(overrides))
    return parse_catalogue(raw, "test-catalogue.yaml")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, sleep: float = 0.5) -> Any:
    """:func:`kubelab.devcluster.testing.wait_for`, polling every ``sleep`` seconds."""
    return wait_for(predicate, timeout, what, interval=sleep)


def make_jobs_namespace(core: kubernetes.client.CoreV1Api, prefix: str = "kl-jobs") -> str:
    """A fresh test namespace whose default ServiceAccount has its token (v1.20 needs it for pods)."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"kubelab.io/test": "true"}}})
    wait_until(lambda: core.read_namespaced_service_account("default", name).secrets
               if exists(lambda: core.read_namespaced_service_account("default", name)) else False,
               30, "the default ServiceAccount")
    return name


def write_scripts_home(core: kubernetes.client.CoreV1Api, namespace: str, user: str = "alice") -> str:
    """Create ``user``'s RWX home claim holding tests/jobs/scripts, written by a pod as from a notebook."""
    claim = f"home-{user}"
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": claim, "labels": {"kubelab.io/user": user}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    })
    write_into_claim(core, namespace, claim, {p.name: p.read_text() for p in SCRIPTS.glob("*.py")},
                     pod=f"write-{claim}")
    return claim
