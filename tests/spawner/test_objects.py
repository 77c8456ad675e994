"""Spawn settings are computed on a clean base: nothing leaks from one spawn into the next."""

from __future__ import annotations

import pytest

from kubelab.spawner.objects import MANAGED_TRAITS, quantity_bytes, spawn_settings
from kubelab.spawner.options import validate_user_options

BASE = {name: None for name in MANAGED_TRAITS} | {
    "extra_resource_guarantees": {},
    "extra_resource_limits": {},
    "node_selector": {"pool": "users"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "jupyter", "effect": "NoSchedule"}],
    "extra_labels": {"team": "lab"},
    "extra_annotations": {},
    "environment": {"TZ": "UTC"},
    "volumes": [],
    "volume_mounts": [],
    "storage_access_modes": ["ReadWriteOnce"],
}


def settings(catalogue, options, *, user="alice", server="", groups=("gpu-users",)):
    sel = validate_user_options(options, catalogue, groups)
    return spawn_settings(sel, catalogue, username=user, server_name=server, groups=groups, base=BASE)


def test_gpu_settings(catalogue):
    s = settings(catalogue, {"profile": "a100", "gpus": 2}, server="big")
    assert s["extra_resource_guarantees"] == {"nvidia.com/gpu": "2"}
    assert s["extra_resource_limits"] == {"nvidia.com/gpu": "2"}
    assert s["node_selector"] == {"pool": "users", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert s["tolerations"] == [
        BASE["tolerations"][0],
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    assert s["extra_labels"] == {
        "team": "lab",
        "kubelab.io/user": "alice",
        "kubelab.io/profile": "a100",
        "kubelab.io/server": "big",
        "app.kubernetes.io/managed-by": "kubelab",
    }
    assert s["environment"] == {
        "TZ": "UTC", "KUBELAB_PROFILE": "a100", "KUBELAB_IMAGE": "torch-gpu", "HOME": "/home/jovyan",
        "KUBELAB_GPU_CLASS": "a100", "KUBELAB_GPUS": "2",
    }
    assert s["image"] == "ghcr.io/kubelab/notebook-gpu:0.1.0"
    assert (s["cpu_guarantee"], s["cpu_limit"]) == (1, 8)
    assert (s["mem_guarantee"], s["mem_limit"]) == (4 * 2**30, 64 * 2**30)
    assert s["extra_annotations"]["kubelab.io/groups"] == "gpu-users"
    assert s["extra_annotations"]["kubelab.io/servername"] == "big"


def test_home_and_shared_volumes(catalogue):
    s = settings(catalogue, {})
    assert s["pvc_name"] == "home-alice"
    assert s["volumes"] == [
        {"name": "home", "persistentVolumeClaim": {"claimName": "home-alice"}},
        {"name": "shared", "persistentVolumeClaim": {"claimName": "lab-shared"}},
    ]
    assert s["volume_mounts"] == [{"name": "home", "mountPath": "/home/jovyan"}, {"name": "shared", "mountPath": "/shared"}]
    assert s["working_dir"] == "/home/jovyan"
    assert (s["storage_capacity"], s["storage_access_modes"]) == ("5Gi", ["ReadWriteOnce"])


def test_cpu_after_gpu_has_no_gpu(catalogue):
    gpu = settings(catalogue, {"profile": "a100", "gpus": 4})
    cpu = settings(catalogue, {"profile": "cpu-small"})
    assert gpu["extra_resource_limits"] and not cpu["extra_resource_limits"]
    assert cpu["extra_resource_guarantees"] == {}
    assert cpu["node_selector"] == {"pool": "users"}
    assert cpu["tolerations"] == BASE["tolerations"]
    assert "KUBELAB_GPU_CLASS" not in cpu["environment"]
    # the base itself was never mutated
    assert BASE["node_selector"] == {"pool": "users"} and len(BASE["tolerations"]) == 1
    assert BASE["extra_resource_limits"] == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [("a{b}", "a{{b}}"), ("{username}", "{{username}}")],
    ids=["braces", "template-lookalike"],
)
def test_server_names_escaped_for_kubespawner_templates(catalogue, name, value):
    s = settings(catalogue, {}, server=name)
    assert s["extra_annotations"]["kubelab.io/servername"] == value
    assert "{" not in s["extra_labels"]["kubelab.io/server"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2Gi", 2 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("1.5Gi", int(1.5 * 2**30)), ("1000", 1000), (None, None)],
    ids=["Gi", "Mi", "G", "fraction", "plain", "none"],
)
def test_quantity_bytes(text, expected):
    assert quantity_bytes(text) == expected
