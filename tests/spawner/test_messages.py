"""Plain-language spawn messages."""

from __future__ import annotations

import pytest

from kubelab.core.availability import ClassAvailability
from kubelab.spawner.messages import event_message, is_hopeless, quota_refusal_message, unschedulable_message
from kubelab.spawner.options import validate_user_options

AV = ClassAvailability("a100", "NVIDIA A100 80GB", allocatable=4, requested=3, free=1, max_free_on_node=1, nodes=1)


@pytest.mark.parametrize(
    ("message", "hopeless"),
    [
        ("0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match node selector.", True),
        ("0/2 nodes are available: 2 Insufficient cpu.", True),
        ("0/2 nodes are available: 2 node(s) didn't match node selector.", True),
        ("0/2 nodes are available: 2 pod has unbound immediate PersistentVolumeClaims.", False),
        ("0/1 nodes are available: 1 node(s) had volume node affinity conflict.", False),
        ("0/2 nodes are available: 2 node(s) were not ready.", False),
        ("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity, 1 pvc(s) bound to non-existent pv(s).",
         False),
    ],
    ids=["gpu-full", "cpu-full", "no-such-node", "pvc-unbound", "volume-affinity", "nodes-not-ready", "pv-not-cached"],
)
def test_is_hopeless(message, hopeless):
    assert is_hopeless(message) is hopeless


@pytest.mark.parametrize(
    ("options", "scheduler", "expected"),
    [
        ({"profile": "a100", "gpus": 2}, "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match node selector.",
         r"^Not enough free NVIDIA A100 80GB GPUs: you asked for 2 \(1 of 4 NVIDIA A100 80GB free right now\)\. Pick fewer GPUs or try again later\.$"),
        ({"profile": "cpu-large"}, "0/2 nodes are available: 2 Insufficient memory.", r"^Not enough free memory for profile 'Large CPU'"),
        ({"profile": "a100"}, "0/2 nodes are available: 2 node(s) didn't match node selector.", r"^No node offers NVIDIA A100 80GB right now"),
    ],
    ids=["gpu", "memory", "no-node"],
)
def test_unschedulable_message(catalogue, options, scheduler, expected):
    sel = validate_user_options(options, catalogue, ["gpu-users"])
    import re

    assert re.search(expected, unschedulable_message(scheduler, sel, AV if sel.gpu_class else None))


def test_quota_refusal_message(catalogue):
    sel = validate_user_options({"profile": "a100"}, catalogue, ["gpu-users"])
    api = ('pods "jupyter-alice" is forbidden: exceeded quota: gpu-quota, requested: requests.nvidia.com/gpu=1, '
           'used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=0')
    assert quota_refusal_message(api, sel) == (
        "The cluster's resource quota 'gpu-quota' refuses 1 × NVIDIA A100 80GB: requested requests.nvidia.com/gpu=1, "
        "already used requests.nvidia.com/gpu=0, limit requests.nvidia.com/gpu=0."
    )


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"reason": "Scheduled", "message": "Successfully assigned ns/p to kubelab-gpu-a100"}, "Placed on node kubelab-gpu-a100"),
        ({"reason": "Pulling", "message": "x"}, "Downloading the image (the first start on a node takes longer)"),
        ({"reason": "Killing", "message": "x"}, None),
        ({"reason": "BackOff", "type": "Warning", "message": "Back-off restarting"}, "Warning: Back-off restarting"),
    ],
    ids=["scheduled", "pulling", "killing-hidden", "warning"],
)
def test_event_message(event, expected):
    assert event_message(event) == expected
