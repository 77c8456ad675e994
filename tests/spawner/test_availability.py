"""GPU availability per class from cached nodes and pods."""

from __future__ import annotations

import pytest
from kube_objects import A100, node, pod

from kubelab.core.availability import gpu_availability, unfit_reason
from kubelab.core.records import node_info, pod_info

NODES = [node("cpu-1"), node("a-1", gpus=4, product=A100), node("a-2", gpus=4, product=A100), node("v-1", gpus=2, product="Tesla-V100")]

CASES = [
    ("empty", [], {"a100": (8, 0, 8, 4), "v100": (2, 0, 2, 2)}),
    ("running-counts", [pod("p1", gpus=1, node_name="a-1"), pod("p2", gpus=2, node_name="a-2")], {"a100": (8, 3, 5, 3)}),
    ("pending-unbound-ignored", [pod("p1", gpus=4, phase="Pending")], {"a100": (8, 0, 8, 4)}),
    ("finished-ignored", [pod("p1", gpus=4, node_name="a-1", phase="Succeeded"), pod("p2", gpus=4, node_name="a-2", phase="Failed")], {"a100": (8, 0, 8, 4)}),
    ("terminating-still-holds", [pod("p1", gpus=4, node_name="a-1", deleting=True)], {"a100": (8, 4, 4, 4)}),
    ("bound-pending-holds", [pod("p1", gpus=2, node_name="a-1", phase="Pending")], {"a100": (8, 2, 6, 4)}),
    ("init-container-max", [pod("p1", gpus=1, init_gpus=3, node_name="a-1")], {"a100": (8, 3, 5, 4)}),
    ("other-class-separate", [pod("p1", gpus=2, node_name="v-1")], {"a100": (8, 0, 8, 4), "v100": (2, 2, 0, 0)}),
    ("cpu-pods-ignored", [pod("p1", node_name="cpu-1"), pod("p2", node_name="a-1")], {"a100": (8, 0, 8, 4)}),
    ("fragmented", [pod("p1", gpus=3, node_name="a-1"), pod("p2", gpus=3, node_name="a-2")], {"a100": (8, 6, 2, 1)}),
]


@pytest.mark.parametrize(("pods", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gpu_availability(catalogue, pods, expected):
    out = gpu_availability([node_info(n) for n in NODES], [pod_info(p) for p in pods], catalogue.gpu_classes)
    for key, (alloc, req, free, best) in expected.items():
        a = out[key]
        assert (a.allocatable, a.requested, a.free, a.max_free_on_node) == (alloc, req, free, best), key


@pytest.mark.parametrize(
    ("nodes", "expected_alloc"),
    [
        ([node("a-1", gpus=4, product=A100, ready=False)], 0),
        ([node("a-1", gpus=4, product=A100, cordoned=True)], 0),
        ([node("a-1", gpus=4, product=A100), node("a-2", gpus=4, product=A100, cordoned=True)], 4),
    ],
    ids=["not-ready", "cordoned", "one-of-two-cordoned"],
)
def test_unschedulable_nodes_excluded(catalogue, nodes, expected_alloc):
    out = gpu_availability([node_info(n) for n in nodes], [], catalogue.gpu_classes)
    assert out["a100"].allocatable == expected_alloc


def test_summary_words(catalogue):
    out = gpu_availability([node_info(NODES[1])], [pod_info(pod("p", gpus=1, node_name="a-1"))], catalogue.gpu_classes)
    assert out["a100"].summary() == "3 of 4 NVIDIA A100 80GB free"


@pytest.mark.parametrize(
    ("count", "pods", "reason"),
    [
        (1, [], None),
        (4, [], None),
        (4, [pod("p", gpus=1, node_name="a-1")], r"^only 3 of 4 NVIDIA A100 80GB free$"),
        (2, [pod("p", gpus=3, node_name="a-1"), pod("q", gpus=3, node_name="a-2")], r"2 NVIDIA A100 80GB free in all, but at most 1 on one node"),
        (8, [], r"^the cluster has 4 NVIDIA A100 80GB in all$"),
    ],
    ids=["fits", "fits-whole-node", "too-many", "fragmented", "more-than-exist"],
)
def test_unfit_reason(catalogue, count, pods, reason):
    nodes = [NODES[1]] if len(pods) < 2 else NODES[1:3]
    av = gpu_availability([node_info(n) for n in nodes], [pod_info(p) for p in pods], catalogue.gpu_classes)["a100"]
    got = unfit_reason(count, av)
    if reason is None:
        assert got is None
    else:
        assert got is not None
        import re

        assert re.search(reason, got), got


def test_no_node_of_class(catalogue):
    av = gpu_availability([node_info(NODES[0])], [], catalogue.gpu_classes)["v100"]
    assert unfit_reason(1, av) == "no schedulable NVIDIA V100 node in the cluster"
