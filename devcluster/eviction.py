"""Local-storage eviction, as the kubelet's eviction manager does it for ``emptyDir.sizeLimit``.

The kubelet evicts a pod whose ``emptyDir`` holds more than its ``sizeLimit``, or whose
container's writable layer and logs hold more than its ``limits.ephemeral-storage``:
the pod ends ``Failed`` with reason ``Evicted``, a Warning event ``Evicted`` carries the
message, and its containers are killed at once (upstream: kubernetes/kubernetes
``pkg/kubelet/eviction/eviction_manager.go``, ``emptyDirLimitEviction``,
``containerEphemeralStorageLimitEviction`` and ``evictPod``; the messages are
``emptyDirMessageFmt`` and ``containerEphemeralStorageMessageFmt`` of
``pkg/kubelet/eviction/helpers.go``). The process node checks every running pod that
has such a limit once per :data:`CHECK_SECONDS`, so a pod may overshoot by what it
writes in one interval; the kubelet's own check runs every 10 s.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubelab.devcluster.podenv import parse_quantity

#: How often a pod's usage is measured (the kubelet's housekeeping interval is 10 s).
CHECK_SECONDS = 1.0
#: The pod status reason of an evicted pod (``Reason`` in helpers.go).
REASON = "Evicted"


@dataclasses.dataclass(frozen=True)
class StorageLimits:
    """The local-storage limits of one pod on the process node.

    Attributes:
        empty_dirs: ``emptyDir`` volume name → (limit in bytes, the limit as written).
        container: The running container's name.
        container_limit: Its ``limits.ephemeral-storage`` as (bytes, as written), or None.
    """

    empty_dirs: Mapping[str, tuple[int, str]]
    container: str
    container_limit: tuple[int, str] | None = None

    def __bool__(self) -> bool:
        return bool(self.empty_dirs) or self.container_limit is not None


def _bytes(quantity: Any) -> int:
    return int(parse_quantity(quantity))


def storage_limits(pod: Mapping[str, Any]) -> StorageLimits:
    """The limits the process node enforces for ``pod`` (its first container is the one that runs)."""
    spec = pod.get("spec") or {}
    empty_dirs = {}
    for volume in spec.get("volumes") or []:
        size = (volume.get("emptyDir") or {}).get("sizeLimit")
        # Like the kubelet: only a positive limit counts (size.Sign() == 1).
        if size is not None and _bytes(size) > 0:
            empty_dirs[volume["name"]] = (_bytes(size), str(size))
    container = (spec.get("containers") or [{}])[0]
    limit = ((container.get("resources") or {}).get("limits") or {}).get("ephemeral-storage")
    return StorageLimits(empty_dirs, container.get("name", ""),
                         (_bytes(limit), str(limit)) if limit is not None else None)


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (``du``'s count: blocks, not lengths; symlinks not followed)."""
    total = 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(current)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                except FileNotFoundError:
                    continue  # removed while we looked
    return total


def eviction_message(limits: StorageLimits, usage: Mapping[str, int], container_usage: int) -> str | None:
    """The kubelet's eviction message when a limit is exceeded, else None.

    Args:
        limits: The pod's limits.
        usage: ``emptyDir`` name → bytes used.
        container_usage: Bytes in the container's writable layer, its ``/tmp`` and its logs.
    """
    for name, (limit, written) in limits.empty_dirs.items():
        if usage.get(name, 0) > limit:
            return f'Usage of EmptyDir volume "{name}" exceeds the limit "{written}". '
    if limits.container_limit is not None and container_usage > limits.container_limit[0]:
        return f'Container {limits.container} exceeded its local ephemeral storage limit "{limits.container_limit[1]}". '
    return None


def measure(limits: StorageLimits, pod_dir: Path) -> str | None:
    """Measure the pod's folders on the node and return the eviction message, if any.

    Args:
        limits: The pod's limits.
        pod_dir: The pod's folder (``volumes/<name>``, ``rootfs/upper``, ``tmp``, ``logs/<container>``).
    """
    usage = {name: disk_usage(pod_dir / "volumes" / name) for name in limits.empty_dirs}
    container_usage = 0
    if limits.container_limit is not None:
        container_usage = sum(disk_usage(pod_dir / sub) for sub in
                              ("rootfs/upper", "rootfs/layers", "tmp", f"logs/{limits.container}"))
    return eviction_message(limits, usage, container_usage)
