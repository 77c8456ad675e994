"""Builders of Node and Pod JSON as the API server returns them (for feeding the real cache offline)."""

from __future__ import annotations

from typing import Any

from kubelab.core.naming import (
    ANNOTATION_GROUPS,
    ANNOTATION_SERVER_NAME,
    LABEL_JOB,
    LABEL_SERVER,
    LABEL_USER,
    MANAGED_BY,
    MANAGED_BY_VALUE,
)

A100 = "NVIDIA-A100-SXM4-80GB"


def node(name: str, *, gpus: int = 0, product: str = "", ready: bool = True, cordoned: bool = False) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if product:
        labels["nvidia.com/gpu.product"] = product
    alloc = {"cpu": "8", "memory": "32Gi", "pods": "110"}
    if gpus:
        alloc["nvidia.com/gpu"] = str(gpus)
    return {
        "metadata": {"name": name, "labels": labels, "resourceVersion": "1"},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def pod(
    name: str,
    *,
    ns: str = "hub",
    user: str | None = None,
    gpus: int = 0,
    node_name: str = "",
    phase: str = "Running",
    server: str | None = None,
    job: str | None = None,
    groups: tuple[str, ...] = (),
    deleting: bool = False,
    unschedulable: str | None = None,
    claims: tuple[str, ...] = (),
    init_gpus: int = 0,
) -> dict[str, Any]:
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    if user:
        labels[LABEL_USER] = user
        labels[MANAGED_BY] = MANAGED_BY_VALUE
    if server is not None:
        labels[LABEL_SERVER] = server or "default"
        annotations[ANNOTATION_SERVER_NAME] = server
    if job:
        labels[LABEL_JOB] = job
    if groups:
        annotations[ANNOTATION_GROUPS] = ",".join(groups)
    res = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    spec: dict[str, Any] = {
        "containers": [{"name": "notebook", "resources": res}],
        "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims],
    }
    if init_gpus:
        spec["initContainers"] = [{"name": "init", "resources": {"requests": {"nvidia.com/gpu": str(init_gpus)}}}]
    if node_name:
        spec["nodeName"] = node_name
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels, "annotations": annotations, "resourceVersion": "1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase}
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}]
    return {"metadata": meta, "spec": spec, "status": status}
