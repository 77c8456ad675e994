"""The rendered NetworkPolicies isolate user code as DESIGN.md's security model requires.

The devcluster enforces no network policy, so these tests evaluate the rendered rules with
``netpol_eval`` over a model of a lab namespace: the hub and proxy (labelled as z2jh labels
them), two users' notebooks, two ranks of alice's job, a rank of bob's job, cluster DNS,
the API server (private and public endpoints) and an internet address.
"""

from __future__ import annotations

import pytest
from kubelab_chart import FULL_VALUES, Manifest, load_values, render
from netpol_eval import Endpoint, allowed, selector_matches

NS = "jhub"
NS_LABELS = {"kubernetes.io/metadata.name": NS}
KUBE_SYSTEM = {"kubernetes.io/metadata.name": "kube-system"}


def pod(name: str, ip: str, labels: dict[str, str], namespace: str = NS) -> Endpoint:
    ns_labels = {"kubernetes.io/metadata.name": namespace}
    return Endpoint(name=name, ip=ip, namespace=namespace, labels=labels, namespace_labels=ns_labels)


NOTEBOOK = {"component": "singleuser-server", "app": "jupyterhub", "hub.jupyter.org/network-access-hub": "true",
            "app.kubernetes.io/managed-by": "kubelab"}
ENDPOINTS = {
    "hub": pod("hub", "10.1.0.2", {"component": "hub", "app": "jupyterhub",
                                   "hub.jupyter.org/network-access-singleuser": "true",
                                   "hub.jupyter.org/network-access-proxy-api": "true"}),
    "proxy": pod("proxy", "10.1.0.3", {"component": "proxy", "app": "jupyterhub",
                                       "hub.jupyter.org/network-access-singleuser": "true",
                                       "hub.jupyter.org/network-access-hub": "true"}),
    "alice-nb": pod("alice-nb", "10.1.0.10", {**NOTEBOOK, "kubelab.io/user": "alice"}),
    "bob-nb": pod("bob-nb", "10.1.0.11", {**NOTEBOOK, "kubelab.io/user": "bob"}),
    "alice-job-0": pod("alice-job-0", "10.1.0.20", {"kubelab.io/job": "ddp", "kubelab.io/user": "alice",
                                                    "app.kubernetes.io/managed-by": "kubelab"}),
    "alice-job-1": pod("alice-job-1", "10.1.0.21", {"kubelab.io/job": "ddp", "kubelab.io/user": "alice",
                                                    "app.kubernetes.io/managed-by": "kubelab"}),
    "bob-job-0": pod("bob-job-0", "10.1.0.30", {"kubelab.io/job": "tf", "kubelab.io/user": "bob",
                                                "app.kubernetes.io/managed-by": "kubelab"}),
    "dns": pod("dns", "10.1.0.53", {"k8s-app": "kube-dns"}, namespace="kube-system"),
    "other-ns-pod": pod("other-ns-pod", "10.1.5.5", {"app": "db"}, namespace="lab-db"),
    "api-private": Endpoint(name="api-private", ip="10.0.0.1"),          # ClusterIP / private endpoint
    "api-node": Endpoint(name="api-node", ip="192.168.10.4"),           # control-plane node address
    "api-public": Endpoint(name="api-public", ip="203.0.113.10"),       # managed, public endpoint
    "metadata": Endpoint(name="metadata", ip="169.254.169.254"),        # cloud metadata server
    "internet": Endpoint(name="internet", ip="151.101.0.223"),          # e.g. PyPI
}

# (source, destination, port, protocol, allowed with the full example's values)
CASES = [
    # Notebooks reach neither the Kubernetes API nor other users' pods.
    ("alice-nb", "api-private", 443, "TCP", False),
    ("alice-nb", "api-node", 6443, "TCP", False),
    ("alice-nb", "api-public", 443, "TCP", False),
    ("alice-nb", "metadata", 80, "TCP", False),
    ("alice-nb", "bob-nb", 8888, "TCP", False),
    ("bob-nb", "alice-nb", 8888, "TCP", False),
    ("alice-nb", "alice-job-0", 29500, "TCP", False),
    ("alice-nb", "bob-job-0", 2222, "TCP", False),
    ("alice-nb", "other-ns-pod", 5432, "TCP", False),
    ("alice-nb", "proxy", 8001, "TCP", False),
    ("alice-nb", "dns", 8080, "TCP", False),
    # ... but they reach the hub API (JupyterHub and the jobs service), DNS and the internet.
    ("alice-nb", "hub", 8081, "TCP", True),
    ("alice-nb", "dns", 53, "UDP", True),
    ("alice-nb", "dns", 53, "TCP", True),
    ("alice-nb", "internet", 443, "TCP", True),
    # The hub and the proxy reach notebooks on the server port only.
    ("hub", "alice-nb", 8888, "TCP", True),
    ("proxy", "bob-nb", 8888, "TCP", True),
    ("hub", "alice-nb", 22, "TCP", False),
    # A job's ranks reach each other (rendezvous, NCCL, TF gRPC, MPI ssh).
    ("alice-job-0", "alice-job-1", 29500, "TCP", True),
    ("alice-job-1", "alice-job-0", 2222, "TCP", True),
    ("alice-job-1", "alice-job-0", 22, "TCP", True),
    # Job pods reach neither the API nor notebooks; other pods cannot get into jobs.
    ("alice-job-0", "api-private", 443, "TCP", False),
    ("alice-job-0", "api-public", 443, "TCP", False),
    ("alice-job-0", "alice-nb", 8888, "TCP", False),
    ("alice-job-0", "dns", 53, "UDP", True),
    ("alice-job-0", "internet", 443, "TCP", True),
    ("other-ns-pod", "alice-job-0", 29500, "TCP", False),
    ("hub", "alice-job-0", 29500, "TCP", False),
]


@pytest.fixture(scope="module")
def policies() -> list[Manifest]:
    return [o for o in render(load_values(FULL_VALUES)) if o["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize(
    ("source", "destination", "port", "protocol", "expected"),
    CASES,
    ids=[f"{s}->{d}:{p}/{proto}" for s, d, p, proto, _ in CASES],
)
def test_policy_semantics(policies: list[Manifest], source: str, destination: str, port: int, protocol: str,
                          expected: bool) -> None:
    assert allowed(policies, ENDPOINTS[source], ENDPOINTS[destination], port, protocol) is expected


def test_without_policies_everything_is_open() -> None:
    """The model itself allows the forbidden flows when no policy exists, so the cases above test the chart."""
    forbidden = [c for c in CASES if not c[4]]
    assert all(allowed([], ENDPOINTS[s], ENDPOINTS[d], p, proto) for s, d, p, proto, _ in forbidden)


def test_public_api_server_needs_listing() -> None:
    """With apiServerCIDRs empty a public API endpoint counts as internet: the doc says to list it."""
    values = load_values(FULL_VALUES)
    values["networkPolicy"]["apiServerCIDRs"] = []
    policies = [o for o in render(values) if o["kind"] == "NetworkPolicy"]
    assert allowed(policies, ENDPOINTS["alice-nb"], ENDPOINTS["api-public"], 443)
    assert not allowed(policies, ENDPOINTS["alice-nb"], ENDPOINTS["api-private"], 443)


def test_internet_can_be_switched_off() -> None:
    values = load_values(FULL_VALUES)
    values["networkPolicy"]["notebooks"] = {"internet": False}
    policies = [o for o in render(values) if o["kind"] == "NetworkPolicy"]
    assert not allowed(policies, ENDPOINTS["alice-nb"], ENDPOINTS["internet"], 443)
    assert allowed(policies, ENDPOINTS["alice-job-0"], ENDPOINTS["internet"], 443)


def test_jobs_namespace_notebooks_accept_only_the_release_namespace_hub() -> None:
    """In the separate jobs namespace, the hub selector is pinned to the hub's namespace."""
    policies = [o for o in render(load_values(FULL_VALUES)) if o["kind"] == "NetworkPolicy"]
    hub_elsewhere = pod("fake-hub", "10.1.9.2", dict(ENDPOINTS["hub"].labels or {}), namespace="kubelab-jobs")
    notebook_in_jobs_ns = pod("nb", "10.1.9.10", dict(NOTEBOOK), namespace="kubelab-jobs")
    assert allowed(policies, ENDPOINTS["hub"], notebook_in_jobs_ns, 8888)
    assert not allowed(policies, hub_elsewhere, ENDPOINTS["alice-nb"], 8888)


def test_disabled_renders_no_policy() -> None:
    assert not [o for o in render({"networkPolicy": {"enabled": False}}) if o["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ],
    ids=["empty", "match-labels", "match-labels-miss", "exists-miss", "does-not-exist", "in", "not-in"],
)
def test_selector_matching(selector: dict, labels: dict, expected: bool) -> None:
    assert selector_matches(selector, labels) is expected
