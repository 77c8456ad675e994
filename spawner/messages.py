"""Plain-language messages for spawn progress and failures (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubelab.core.availability import ClassAvailability

from .options import SpawnChoice

_INSUFFICIENT = re.compile(r"Insufficient ([\w-]+(?:[./][\w-]+)*)")
_QUOTA = re.compile(r"exceeded quota: ([\w.-]+), requested: ([^,]+), used: ([^,]+), limited: ([^\"]+)")


def unschedulable_message(scheduler_message: str, selection: SpawnChoice, availability: ClassAvailability | None) -> str:
    """Why the scheduler cannot place the server, in words naming the GPU class.

    Args:
        scheduler_message: The ``PodScheduled`` condition's message, e.g.
            ``0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match node selector.``
        selection: What was asked for.
        availability: The GPU class's availability now (None for CPU profiles).
    """
    missing = set(_INSUFFICIENT.findall(scheduler_message))
    cls = selection.gpu_class
    if cls is not None and cls.resource in missing:
        now = f" ({availability.summary()} right now)" if availability else ""
        return (
            f"Not enough free {cls.display_name} GPUs: you asked for {selection.gpus}{now}. "
            f"Pick fewer GPUs or try again later."
        )
    if missing & {"cpu", "memory"}:
        what = " and ".join(sorted(missing & {"cpu", "memory"})).replace("cpu", "CPU")
        where = f" on {cls.display_name} nodes" if cls else ""
        return f"Not enough free {what}{where} for profile {selection.name!r}. Try a smaller profile or later."
    if "node selector" in scheduler_message or "affinity" in scheduler_message:
        what = cls.display_name if cls else f"profile {selection.name!r}"
        return f"No node offers {what} right now ({scheduler_message})"
    return f"Kubernetes cannot place this server: {scheduler_message}"


def quota_refusal_message(api_message: str, selection: SpawnChoice) -> str:
    """Words for a pod refused at creation (HTTP 403) by a namespace ResourceQuota."""
    m = _QUOTA.search(api_message)
    what = f"{selection.gpus} × {selection.gpu_class.display_name}" if selection.gpu_class else selection.name
    if m:
        name, requested, used, limited = m.groups()
        return (
            f"The cluster's resource quota {name!r} refuses {what}: requested {requested}, "
            f"already used {used}, limit {limited}."
        )
    return f"Kubernetes refused to create the server for {what}: {api_message}"


def event_message(event: Mapping[str, Any]) -> str | None:
    """One Kubernetes pod event in plain words, or None for events not worth showing."""
    reason = event.get("reason") or ""
    msg = event.get("message") or ""
    if reason == "Scheduled":
        node = msg.rsplit(" to ", 1)[-1] if " to " in msg else ""
        return f"Placed on node {node}" if node else "Placed on a node"
    if reason == "FailedScheduling":
        return f"Waiting for room on the cluster: {msg}"
    if reason == "Pulling":
        return "Downloading the image (the first start on a node takes longer)"
    if reason == "Pulled":
        return "Image ready"
    if reason in ("Created", "Started"):
        return "Starting the notebook server"
    if reason in ("Killing",):
        return None
    if event.get("type") == "Warning":
        return f"Warning: {msg}"
    return None


# "bound to non-existent pv(s)": the scheduler's volume binding saw the claim bound before its
# PersistentVolume reached the scheduler's cache (volumebinding, ErrReasonPVNotExist); seen for a
# just-provisioned home in a whole-suite run.
_TRANSIENT = ("unbound immediate PersistentVolumeClaims", "PersistentVolumeClaim", "volume node affinity", "not ready",
              "bound to non-existent pv")


def is_hopeless(scheduler_message: str) -> bool:
    """Whether an Unschedulable message will not resolve by itself in the next seconds.

    "Insufficient <resource>" (the cluster is full) and node-selector mismatches (no such node)
    are hopeless; a just-created PVC that is not bound yet, or a node that is not ready, are not.
    """
    if "Insufficient " in scheduler_message:
        return True
    if any(marker in scheduler_message for marker in _TRANSIENT):
        return False
    return "didn't match" in scheduler_message or "affinity" in scheduler_message
