"""Free GPUs per GPU class, computed from cached nodes and pods (pure, no I/O).

A node belongs to a GPU class when its labels contain all of the class's ``nodeSelector``.
Pods count against a node once bound to it (``spec.nodeName``) and until they reach
Succeeded/Failed; a terminating pod still holds its GPUs, exactly as the scheduler sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubelab.core.catalogue import GpuClass

from .records import NodeInfo, PodInfo


@dataclass(frozen=True)
class ClassAvailability:
    """Availability of one GPU class.

    Attributes:
        key: GPU class key (``a100``).
        display_name: Its display name.
        allocatable: GPUs on schedulable nodes of the class.
        requested: GPUs requested by pods bound to those nodes.
        free: ``allocatable - requested`` (never negative).
        max_free_on_node: The most GPUs free on any single node: the largest request that fits.
        nodes: Number of schedulable nodes of the class.
    """

    key: str
    display_name: str
    allocatable: int
    requested: int
    free: int
    max_free_on_node: int
    nodes: int

    def summary(self) -> str:
        """``"3 of 4 NVIDIA A100 80GB free"``."""
        return f"{self.free} of {self.allocatable} {self.display_name} free"

    def as_dict(self) -> dict[str, int | str]:
        """JSON-ready form."""
        return {
            "class": self.key,
            "display_name": self.display_name,
            "allocatable": self.allocatable,
            "requested": self.requested,
            "free": self.free,
            "max_free_on_node": self.max_free_on_node,
            "nodes": self.nodes,
        }


def node_matches(node: NodeInfo, gpu_class: GpuClass) -> bool:
    """Whether ``node`` carries every label of the class's node selector."""
    labels = node.labels
    return all(labels.get(k) == v for k, v in gpu_class.node_selector.items())


def gpu_availability(
    nodes: Iterable[NodeInfo],
    pods: Iterable[PodInfo],
    gpu_classes: Mapping[str, GpuClass],
) -> dict[str, ClassAvailability]:
    """Compute allocatable, requested and free GPUs for every class.

    Args:
        nodes: Cached nodes.
        pods: Cached pods (all namespaces).
        gpu_classes: The catalogue's GPU classes.

    Returns:
        Class key → :class:`ClassAvailability`, for every class (zeros when no node matches).
    """
    # node name -> (class key, resource) ; a node may match several classes, count it in each
    node_classes: dict[str, list[tuple[str, str]]] = {}
    alloc: dict[tuple[str, str], int] = {}
    for node in nodes:
        if not node.schedulable:
            continue
        for key, cls in gpu_classes.items():
            if node_matches(node, cls):
                node_classes.setdefault(node.name, []).append((key, cls.resource))
                alloc[(key, node.name)] = node.allocatable.get(cls.resource, 0)
    used: dict[tuple[str, str], int] = {}
    for pod in pods:
        # only bound, resource-holding pods that ask for something extended are relevant
        if not pod.node or not pod.requests or pod.phase in ("Succeeded", "Failed"):
            continue
        for key, resource in node_classes.get(pod.node, ()):
            n = pod.requests.get(resource)
            if n:
                used[(key, pod.node)] = used.get((key, pod.node), 0) + n
    out: dict[str, ClassAvailability] = {}
    for key, cls in gpu_classes.items():
        total = requested = best = count = 0
        for (k, node_name), a in alloc.items():
            if k != key:
                continue
            u = used.get((k, node_name), 0)
            total += a
            requested += u
            best = max(best, a - u)
            count += 1
        out[key] = ClassAvailability(
            key=key,
            display_name=cls.display_name,
            allocatable=total,
            requested=requested,
            free=max(0, total - requested),
            max_free_on_node=max(0, best),
            nodes=count,
        )
    return out


def unfit_reason(count: int, availability: ClassAvailability | None) -> str | None:
    """Why ``count`` GPUs of a class cannot start now, or None when they fit on some node.

    Args:
        count: GPUs asked for.
        availability: The class's availability (None: the class is unknown to the cache).
    """
    if availability is None or availability.nodes == 0:
        name = availability.display_name if availability else "this GPU class"
        return f"no schedulable {name} node in the cluster"
    if count > availability.max_free_on_node:
        if count > availability.allocatable:
            return f"the cluster has {availability.allocatable} {availability.display_name} in all"
        if availability.free >= count:
            return (
                f"{availability.free} {availability.display_name} free in all, "
                f"but at most {availability.max_free_on_node} on one node"
            )
        return f"only {availability.summary()}"
    return None
