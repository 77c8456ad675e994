"""Catalogues and small helpers shared by the server-side jobs tests."""

from __future__ import annotations

import copy
from typing import Any

from kubelab.core.catalogue import Catalogue, parse_catalogue

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
