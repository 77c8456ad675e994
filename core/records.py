"""Compact, immutable views of Nodes and Pods, built from the API's JSON dicts.

The cluster cache keeps one of these per object instead of the whole JSON, so that
computing availability or quota over thousands of pods touches a few fields only,
and memory stays small on big clusters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubelab.core.naming import (
    ANNOTATION_GROUPS,
    ANNOTATION_SERVER_NAME,
    LABEL_JOB,
    LABEL_SERVER,
    LABEL_USER,
    is_kubelab_object,
)
from kubelab.core.quantity import QuantityError, bytes_of, millicores

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def parse_count(value: Any) -> int:
    """Parse an integer extended-resource quantity (``"2"``, ``2``, ``"2k"`` is not used for GPUs)."""
    try:
        return int(str(value))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What availability needs to know about a Node.

    Attributes:
        name: Node name.
        labels: Node labels.
        allocatable: Extended resources (names containing ``/``) → allocatable count.
        schedulable: Ready and not cordoned.
    """

    name: str
    labels: Mapping[str, str]
    allocatable: Mapping[str, int]
    schedulable: bool = True


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What availability, quota and fail-fast need to know about a Pod.

    Attributes:
        namespace: Pod namespace.
        name: Pod name.
        node: ``spec.nodeName`` or ``""`` while unscheduled.
        phase: ``status.phase``.
        requests: Extended resource → effective request (max of the containers' sum and any init container).
        labels: Pod labels.
        groups: Groups from :data:`ANNOTATION_GROUPS`.
        server_name: JupyterHub server name from :data:`ANNOTATION_SERVER_NAME` (``""``: default server).
        deleting: ``metadata.deletionTimestamp`` is set.
        unschedulable: The scheduler's message when ``PodScheduled`` is False with reason Unschedulable.
        claims: Names of the PVCs the pod mounts.
        cpu_millis: Effective CPU request in millicores (job limits per user count it).
        memory_bytes: Effective memory request in bytes.
        raw: The full JSON, kept only for pods kubelab manages (the spawner needs status and spec).
    """

    namespace: str
    name: str
    node: str = ""
    phase: str = "Pending"
    requests: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    server_name: str = ""
    deleting: bool = False
    unschedulable: str = ""
    claims: tuple[str, ...] = ()
    cpu_millis: int = 0
    memory_bytes: int = 0
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def active(self) -> bool:
        """Holds resources: not Succeeded/Failed (a terminating pod still holds its GPUs)."""
        return self.phase not in TERMINAL_PHASES

    @property
    def user(self) -> str | None:
        """The ``kubelab.io/user`` label, if any."""
        return self.labels.get(LABEL_USER)

    def describe(self) -> str:
        """Words for messages: ``server 'big'``, ``default server``, ``job 'ddp'`` or ``pod ns/name``."""
        if LABEL_JOB in self.labels:
            return f"job '{self.labels[LABEL_JOB]}'"
        if LABEL_SERVER in self.labels:
            return f"server '{self.server_name}'" if self.server_name else "default server"
        return f"pod {self.key}"


def _extended(resources: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: parse_count(v) for k, v in (resources or {}).items() if "/" in k}


def node_info(raw: Mapping[str, Any]) -> NodeInfo:
    """Build a :class:`NodeInfo` from a Node's JSON."""
    meta = raw.get("metadata") or {}
    status = raw.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    cordoned = bool((raw.get("spec") or {}).get("unschedulable"))
    return NodeInfo(
        name=meta.get("name", ""),
        labels=dict(meta.get("labels") or {}),
        allocatable=_extended(status.get("allocatable")),
        schedulable=ready and not cordoned,
    )


def _core(resources: Mapping[str, Any] | None) -> dict[str, int]:
    out = {}
    for key, parse in (("cpu", millicores), ("memory", bytes_of)):
        if key in (resources or {}):
            try:
                out[key] = parse(str(resources[key]))  # type: ignore[index]
            except QuantityError:
                continue  # the API server stores only valid quantities; nothing to count
    return out


def effective_requests(spec: Mapping[str, Any], pick: Any = _extended) -> dict[str, int]:
    """Extended-resource requests of a pod spec, computed the way the scheduler does.

    The sum over containers, raised to any single init container's request. Limits stand in
    for missing requests, because Kubernetes defaults requests to their limits.

    Args:
        pick: Which resources, as a function of a ``resources.requests``/``limits`` mapping
            (default: the extended ones; ``_core``: cpu millicores and memory bytes).
    """
    def one(container: Mapping[str, Any]) -> dict[str, int]:
        res = container.get("resources") or {}
        return {**pick(res.get("limits")), **pick(res.get("requests"))}

    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        for k, v in one(c).items():
            total[k] = total.get(k, 0) + v
    for c in spec.get("initContainers") or []:
        for k, v in one(c).items():
            total[k] = max(total.get(k, 0), v)
    return {k: v for k, v in total.items() if v}


def pod_info(raw: Mapping[str, Any], *, keep_raw: bool | None = None) -> PodInfo:
    """Build a :class:`PodInfo` from a Pod's JSON.

    Args:
        raw: The pod.
        keep_raw: Keep the JSON on the record; default: only for kubelab's own pods
            (:func:`~kubelab.core.naming.is_kubelab_object`), whatever ``common_labels`` set.
    """
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    labels = dict(meta.get("labels") or {})
    annotations = meta.get("annotations") or {}
    unschedulable = ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            unschedulable = cond.get("message") or "Unschedulable"
    groups = tuple(g for g in (annotations.get(ANNOTATION_GROUPS) or "").split(",") if g)
    claims = tuple(
        v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or [] if v.get("persistentVolumeClaim")
    )
    core = effective_requests(spec, _core)
    if keep_raw is None:
        # not managed-by: KubeSpawner's common_labels override it (z2jh sets it to "kubespawner")
        keep_raw = is_kubelab_object(labels)
    return PodInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        node=spec.get("nodeName") or "",
        phase=status.get("phase") or "Pending",
        requests=effective_requests(spec),
        labels=labels,
        groups=groups,
        server_name=annotations.get(ANNOTATION_SERVER_NAME, ""),
        deleting=bool(meta.get("deletionTimestamp")),
        unschedulable=unschedulable,
        claims=claims,
        cpu_millis=core.get("cpu", 0),
        memory_bytes=core.get("memory", 0),
        raw=raw if keep_raw else None,
    )
