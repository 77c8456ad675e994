"""A small evaluator of Kubernetes NetworkPolicy semantics, for checking rendered policies.

The devcluster has no network plugin, so nothing enforces policies there; this evaluates the
rules the way the NetworkPolicy API defines them, to answer "may A open a connection to B on
port P?":

* a pod selected by any policy with an Ingress (Egress) policy type is isolated for ingress
  (egress); an isolated pod allows only what some selecting policy's rules allow;
* a connection needs both the source's egress and the destination's ingress to allow it;
* a peer is a podSelector (in the policy's namespace), a namespaceSelector (with an optional
  podSelector), or an ipBlock (cidr minus except). ipBlocks are matched against pod
  addresses too, as Calico and Cilium do, which is the stricter reading for "denied" checks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Policy = Mapping[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (with labels and a namespace) or an address outside the cluster (labels None)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: Mapping[str, str] | None = None
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_pod(self) -> bool:
        return self.labels is not None


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector matches ``labels`` (an empty selector matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in {"In", "NotIn", "Exists", "DoesNotExist"}:
            raise ValueError(f"unknown selector operator {operator!r}")
    return True


def _ip_in_block(ip: str, block: Mapping[str, Any]) -> bool:
    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except") or [])


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return _ip_in_block(other.ip, peer["ipBlock"])
    if not other.is_pod:
        return False  # pod and namespace selectors only ever match pods
    assert other.labels is not None
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selector_matches(peer["podSelector"], other.labels)


def _port_matches(ports: Iterable[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    ports = list(ports or [])
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        low = int(entry["port"])
        high = int(entry.get("endPort", low))
        if low <= port <= high:
            return True
    return False


def _selecting(policies: Iterable[Policy], pod: Endpoint, direction: str) -> list[Policy]:
    """Policies in the pod's namespace that select it for ``direction`` (Ingress or Egress)."""
    found = []
    for policy in policies:
        spec = policy["spec"]
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
        if (
            pod.is_pod
            and policy["metadata"].get("namespace") == pod.namespace
            and direction in types
            and selector_matches(spec.get("podSelector"), pod.labels or {})
        ):
            found.append(policy)
    return found


def _allowed_one_side(policies: list[Policy], pod: Endpoint, other: Endpoint, port: int, protocol: str,
                      direction: str) -> bool:
    selecting = _selecting(policies, pod, direction)
    if not selecting:
        return True  # not isolated in this direction
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(p, policy["metadata"]["namespace"], other) for p in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(policies: Iterable[Policy], source: Endpoint, destination: Endpoint, port: int,
            protocol: str = "TCP") -> bool:
    """Whether ``source`` may open a connection to ``destination:port`` under ``policies``."""
    policies = [p for p in policies if p["kind"] == "NetworkPolicy"]
    return _allowed_one_side(policies, source, destination, port, protocol, "Egress") and _allowed_one_side(
        policies, destination, source, port, protocol, "Ingress"
    )
