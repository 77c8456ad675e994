"""Fixtures for the spawner tests: a test catalogue (two GPU classes, groups, quotas)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubelab.core.catalogue import Catalogue, parse_catalogue

# tests/harness.py is shared by several test folders; make `import harness` work from here
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CATALOGUE = {
    "gpuClasses": {
        "a100": {
            "displayName": "NVIDIA A100 80GB",
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "v100": {"displayName": "NVIDIA V100", "nodeSelector": {"nvidia.com/gpu.product": "Tesla-V100"}},
    },
    "images": {
        "scipy": {"displayName": "SciPy", "image": "quay.io/jupyter/scipy-notebook:2025-10-20"},
        "torch-cpu": {"displayName": "PyTorch (CPU)", "image": "ghcr.io/kubelab/notebook-cpu:0.1.0"},
        "torch-gpu": {"displayName": "PyTorch (CUDA)", "image": "ghcr.io/kubelab/notebook-gpu:0.1.0", "variant": "gpu"},
        "secret-gpu": {"displayName": "Admin CUDA", "image": "ghcr.io/kubelab/admin:1", "variant": "gpu"},
    },
    "profiles": [
        {"slug": "cpu-small", "name": "Small CPU", "cpu": {"guarantee": 0.5, "limit": 1},
         "memory": {"guarantee": "1Gi", "limit": "2Gi"}, "images": ["scipy", "torch-cpu"], "default": True},
        {"slug": "cpu-large", "name": "Large CPU", "cpu": {"guarantee": 2, "limit": 4},
         "memory": {"guarantee": "8Gi", "limit": "16Gi"}, "images": ["scipy"], "groups": ["gpu-users"]},
        {"slug": "a100", "name": "A100 GPU", "cpu": {"guarantee": 1, "limit": 8},
         "memory": {"guarantee": "4Gi", "limit": "64Gi"}, "gpu": {"class": "a100", "counts": [1, 2, 4]},
         "images": ["torch-gpu", "torch-cpu"], "groups": ["gpu-users", "admins"]},
        {"slug": "v100", "name": "V100 GPU", "gpu": {"class": "v100", "counts": [1]},
         "images": ["torch-gpu"], "groups": ["gpu-users"]},
        {"slug": "admin-gpu", "name": "Admin GPU", "gpu": {"class": "a100", "counts": [8]},
         "images": ["secret-gpu"], "groups": ["admins"]},
    ],
    "storage": {"home": {"size": "5Gi", "accessMode": "ReadWriteOnce", "mountPath": "/home/jovyan"},
                "shared": {"claimName": "lab-shared", "mountPath": "/shared"}},
    "quotas": {"perUser": {"maxGpus": 2, "maxServers": 3}, "users": {"boss": {"maxGpus": 8}},
               "groups": {"students": {"maxGpus": 0}, "gpu-users": {"maxGpus": 6}}},
}


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    """The spawner tests' catalogue."""
    return parse_catalogue(CATALOGUE, "test-catalogue.yaml")
