"""Node layout of the process node: which Nodes exist and what they offer.

The layout is a YAML or JSON file (named by ``KUBELAB_DEVCLUSTER_NODES`` or
``--nodes``) holding a list under ``nodes:``; each entry may set ``name``,
``cpu``, ``memory``, ``pods``, ``gpus``, ``gpu_product``, ``labels``, ``taints``
and ``pod_cidr``. Missing fields take the defaults of :class:`NodeSpec`. A GPU
node gets the ``nvidia.com/gpu.product`` label and the usual
``nvidia.com/gpu=present:NoSchedule`` taint unless it lists its own taints.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import yaml

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
NODE_IP = "127.0.0.1"

DEFAULT_LAYOUT: dict[str, Any] = {
    "nodes": [
        # Room for the scale benchmark's 2,000 simulated servers plus its spawns (benchmarks/).
        {"name": "kubelab-cpu", "pods": 3000},
        {"name": "kubelab-gpu-a100", "gpus": 4, "gpu_product": "NVIDIA-A100-SXM4-80GB"},
    ]
}


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One Node the agent registers and serves.

    Attributes:
        name: Node name (also its ``kubernetes.io/hostname`` label).
        cpu: Allocatable CPUs.
        memory: Allocatable memory as a Kubernetes quantity.
        pods: Pod capacity (high, so simulated scale tests fit).
        gpus: ``nvidia.com/gpu`` count; 0 for a CPU node.
        gpu_product: Value of the ``nvidia.com/gpu.product`` label.
        labels: Extra labels.
        taints: Taints; None means "the GPU taint on GPU nodes, none otherwise".
        pod_cidr: Pod address range; None picks the node's slot of the bridge subnet.
        kubelet_port: Port of this node's kubelet API; 0 picks base port + index.
    """

    name: str
    cpu: str = "8"
    memory: str = "32Gi"
    pods: int = 500
    gpus: int = 0
    gpu_product: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    taints: list[dict[str, str]] | None = None
    pod_cidr: str | None = None
    kubelet_port: int = 0


def parse_layout(data: dict[str, Any], kubelet_base_port: int, pod_network: str) -> list[NodeSpec]:
    """Turn a layout document into node specs with ports and pod ranges filled in.

    Node ``i`` gets kubelet port ``kubelet_base_port + i`` and the ``(i+1)``-th /20
    of ``pod_network`` (the first /20 holds the bridge gateway), unless it sets its own.

    Args:
        data: The parsed layout (``{"nodes": [...]}``).
        kubelet_base_port: The first node's port.
        pod_network: The bridge subnet, e.g. ``10.244.0.0/16``.

    Returns:
        One :class:`NodeSpec` per entry.

    Raises:
        ValueError: On unknown fields, duplicate names or an empty list.
    """
    entries = data.get("nodes") if isinstance(data, dict) else None
    if not entries:
        raise ValueError("node layout needs a non-empty list under 'nodes'")
    known = {f.name for f in dataclasses.fields(NodeSpec)}
    slots = list(ipaddress.ip_network(pod_network).subnets(new_prefix=20))
    specs: list[NodeSpec] = []
    for index, entry in enumerate(entries):
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"nodes[{index}]: unknown field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        if "name" not in entry:
            raise ValueError(f"nodes[{index}]: 'name' is required")
        spec = NodeSpec(**entry)
        if spec.pod_cidr is None:
            if index + 1 >= len(slots):
                raise ValueError(f"nodes[{index}]: no free /20 left in {pod_network}; set pod_cidr")
            spec = dataclasses.replace(spec, pod_cidr=str(slots[index + 1]))
        if not spec.kubelet_port:
            spec = dataclasses.replace(spec, kubelet_port=kubelet_base_port + index)
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate node names in layout: {names}")
    return specs


def load_layout(path: Path | None, kubelet_base_port: int, pod_network: str) -> list[NodeSpec]:
    """Load the layout from ``path``, ``$KUBELAB_DEVCLUSTER_NODES`` or the built-in default.

    Raises:
        ValueError: If the file's content is not a valid layout.
    """
    if path is None and os.environ.get("KUBELAB_DEVCLUSTER_NODES"):
        path = Path(os.environ["KUBELAB_DEVCLUSTER_NODES"])
    data = DEFAULT_LAYOUT if path is None else yaml.safe_load(path.read_text())
    try:
        return parse_layout(data, kubelet_base_port, pod_network)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path or 'default layout'}: {e}") from e


def make_node(spec: NodeSpec, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the Node object (metadata and spec) for ``spec``.

    Args:
        spec: The node.
        annotations: What the agent reports about itself (how it enforces memory limits, which
            registries it cannot reach).
    """
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubelab.io/process-node": "true",
    }
    if spec.gpus:
        labels[GPU_PRODUCT_LABEL] = spec.gpu_product
        labels["nvidia.com/gpu.count"] = str(spec.gpus)
    labels.update(spec.labels)
    taints = spec.taints if spec.taints is not None else ([dict(GPU_TAINT)] if spec.gpus else [])
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels, **({"annotations": annotations} if annotations else {})},
        "spec": {"podCIDR": spec.pod_cidr, "podCIDRs": [spec.pod_cidr], "taints": taints},
    }


def node_resources(spec: NodeSpec) -> dict[str, str]:
    """Capacity (= allocatable) of ``spec``."""
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.pods), "ephemeral-storage": "100Gi"}
    if spec.gpus:
        resources[GPU_RESOURCE] = str(spec.gpus)
    return resources


def make_node_status(spec: NodeSpec, now: str, ready_since: str) -> dict[str, Any]:
    """Build the Node status: resources, addresses, kubelet port and a Ready heartbeat.

    Args:
        spec: The node.
        now: RFC 3339 time of this heartbeat.
        ready_since: RFC 3339 time the node became Ready (``lastTransitionTime``).
    """
    resources = node_resources(spec)

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": ready_since,
        }

    return {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": spec.name}],
        # Capital "Port": the API silently drops a lowercase key and the apiserver falls back to 10250.
        "daemonEndpoints": {"kubeletEndpoint": {"Port": spec.kubelet_port}},
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "process node"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "process node"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "process node"),
            condition("Ready", "True", "KubeletReady", "kubelab process node is posting ready status"),
        ],
        "nodeInfo": {
            "architecture": "amd64", "operatingSystem": "linux", "osImage": "kubelab process node",
            "kernelVersion": os.uname().release, "kubeletVersion": "v1.20.2-kubelab",
            "kubeProxyVersion": "v1.20.2-kubelab", "containerRuntimeVersion": "kubelab-process://0.1",
            "machineID": "", "systemUUID": "", "bootID": "",
        },
    }


def layout_json(specs: list[NodeSpec]) -> str:
    """Serialise resolved node specs (handed to the agent and recorded in the state)."""
    return json.dumps({"nodes": [dataclasses.asdict(s) for s in specs]}, indent=2)
