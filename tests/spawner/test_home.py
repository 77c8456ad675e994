"""Which pods hold a user's ReadWriteOnce home (pure part of the Multi-Attach avoidance)."""

from __future__ import annotations

import pytest
from kube_objects import pod

from kubelab.core.records import pod_info
from kubelab.spawner.spawner import home_blockers

CASES = [
    ("none", [], ([], [])),
    ("live-holder", [pod("a", claims=("home-alice",), node_name="n1")], ([], ["a"])),
    ("terminating-holder", [pod("a", claims=("home-alice",), deleting=True)], (["a"], [])),
    ("finished-holder-ignored", [pod("a", claims=("home-alice",), phase="Succeeded")], ([], [])),
    ("other-claim-ignored", [pod("a", claims=("home-bob",))], ([], [])),
    ("other-namespace-ignored", [pod("a", ns="elsewhere", claims=("home-alice",))], ([], [])),
    ("mixed", [pod("a", claims=("home-alice",), deleting=True), pod("b", claims=("home-alice", "lab-shared"))], (["a"], ["b"])),
]


@pytest.mark.parametrize(("pods", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_home_blockers(pods, expected):
    terminating, live = home_blockers([pod_info(p) for p in pods], "home-alice", "hub")
    assert ([p.name for p in terminating], [p.name for p in live]) == expected
