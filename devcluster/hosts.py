"""The hosts file of each pod: itself, plus ``hostname.subdomain`` peers under headless Services (pure).

Cluster DNS would answer ``<hostname>.<subdomain>.<ns>.svc.cluster.local`` for a pod
that sets ``spec.hostname`` and ``spec.subdomain`` when a headless Service named
``subdomain`` in its namespace selects it. Without a DNS server, the process node
writes those names into each pod's ``/etc/hosts`` and keeps them current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

CLUSTER_DOMAIN = "cluster.local"
_TERMINAL = ("Succeeded", "Failed")


class Peer(NamedTuple):
    """A pod that has a ``hostname.subdomain`` name."""

    ip: str
    hostname: str
    subdomain: str


def _selects(service: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _headless(service: Mapping[str, Any]) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def named_peers(
    pods: Iterable[Mapping[str, Any]], services: Iterable[Mapping[str, Any]], namespace: str
) -> list[Peer]:
    """The pods of ``namespace`` that cluster DNS would name ``hostname.subdomain``.

    A pod qualifies when it has an address, sets hostname and subdomain, is neither
    finished nor being deleted, and a headless Service named like its subdomain selects it.

    Returns:
        The peers, sorted by name for stable file content.
    """
    headless = {
        s["metadata"]["name"]: s
        for s in services
        if s["metadata"].get("namespace") == namespace and _headless(s)
    }
    peers = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        hostname, subdomain, ip = spec.get("hostname"), spec.get("subdomain"), status.get("podIP")
        if meta.get("namespace") != namespace or not (hostname and subdomain and ip):
            continue
        if meta.get("deletionTimestamp") or status.get("phase") in _TERMINAL:
            continue
        service = headless.get(subdomain)
        if service is None or not _selects(service, meta.get("labels") or {}):
            continue
        peers.append(Peer(ip, hostname, subdomain))
    return sorted(peers, key=lambda p: (p.subdomain, p.hostname, p.ip))


def hosts_content(pod: Mapping[str, Any], ip: str, peers: Iterable[Peer]) -> str:
    """The ``/etc/hosts`` of ``pod`` at address ``ip``.

    Args:
        pod: The pod.
        ip: Its address.
        peers: From :func:`named_peers` for its namespace (may include the pod itself).
    """
    meta, spec = pod["metadata"], pod.get("spec") or {}
    ns = meta["namespace"]
    hostname = spec.get("hostname") or meta["name"]
    lines = [
        "# Kubernetes-managed hosts file (kubelab process node).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    if spec.get("subdomain"):
        sub = spec["subdomain"]
        lines.append(f"{ip}\t{hostname}.{sub}.{ns}.svc.{CLUSTER_DOMAIN}\t{hostname}.{sub}\t{hostname}")
    else:
        lines.append(f"{ip}\t{hostname}")
    for peer in peers:
        if peer.ip == ip:
            continue
        fqdn = f"{peer.hostname}.{peer.subdomain}.{ns}.svc.{CLUSTER_DOMAIN}"
        lines.append(f"{peer.ip}\t{fqdn}\t{peer.hostname}.{peer.subdomain}")
    return "\n".join(lines) + "\n"
