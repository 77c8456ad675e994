"""Remove the mount points that process nodes before the private root created on the host.

Earlier agents created each missing ``mountPath`` and ``workingDir`` on the host's
own filesystem before bind-mounting a volume there in the pod's namespace, so
``/var/run/secrets/kubernetes.io/serviceaccount``, ``/home/jovyan`` and ``/shared``
stayed behind as empty folders and made tools on the host believe they ran in a pod.
Pods now get a private root (:mod:`kubelab.devcluster.podinit`) and create nothing
on the host; this module removes what the old agents left, and only that.

A path is removed only when every marker says the devcluster made it:

* a pod folder of this state records it as a mount target or working directory in
  a ``launch.json`` written by an old agent (one without ``rootfs``), and the pod did not run
  in a private root (its folder has no ``rootfs/``);
* it was born (``statx`` birth time) after that pod folder, so it did not exist before the pod;
* it is an empty folder (or empty file, for a file mount), owned by root, not a mount point.

Its parents are removed under the same rules, up to the first that fails one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
STATX_BTIME = 0x800


class _Timestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("reserved", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    # struct statx of <linux/stat.h>: fixed layout, 256 bytes.
    _fields_ = [
        ("stx_mask", ctypes.c_uint32), ("stx_blksize", ctypes.c_uint32), ("stx_attributes", ctypes.c_uint64),
        ("stx_nlink", ctypes.c_uint32), ("stx_uid", ctypes.c_uint32), ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16), ("spare0", ctypes.c_uint16), ("stx_ino", ctypes.c_uint64),
        ("stx_size", ctypes.c_uint64), ("stx_blocks", ctypes.c_uint64), ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _Timestamp), ("stx_btime", _Timestamp), ("stx_ctime", _Timestamp),
        ("stx_mtime", _Timestamp), ("stx_rdev_major", ctypes.c_uint32), ("stx_rdev_minor", ctypes.c_uint32),
        ("stx_dev_major", ctypes.c_uint32), ("stx_dev_minor", ctypes.c_uint32), ("spare", ctypes.c_uint64 * 14),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def birth_time(path: Path) -> float | None:
    """When ``path`` was created (seconds since the epoch), or None where the filesystem does not say."""
    buf = _Statx()
    if _libc.statx(AT_FDCWD, os.fsencode(path), AT_SYMLINK_NOFOLLOW, STATX_BTIME, ctypes.byref(buf)) != 0:
        return None
    if not buf.stx_mask & STATX_BTIME:
        return None
    return buf.stx_btime.tv_sec + buf.stx_btime.tv_nsec / 1e9


def legacy_records(agent_state: Path) -> Iterator[tuple[Path, list[str]]]:
    """Each old agent's pod folder with the absolute paths its ``launch.json`` made on the host."""
    for spec_path in sorted((agent_state / "pods").glob("*/launch.json")):
        try:
            spec = json.loads(spec_path.read_text())
        except (OSError, ValueError):
            continue
        if "rootfs" in spec or (spec_path.parent / "rootfs").exists():
            continue  # run in a private root (by a new agent, or an old one with the new launcher)
        paths = [m["target"] for m in spec.get("mounts") or [] if m.get("target")]
        if spec.get("cwd"):
            paths.append(spec["cwd"])
        yield spec_path.parent, [p for p in paths if os.path.isabs(p)]


def made_by_pod(path: Path, since: float) -> bool:
    """Whether ``path`` is an empty, root-owned, unmounted entry born after ``since``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if info.st_uid != 0 or os.path.ismount(path):
        return False
    if stat.S_ISDIR(info.st_mode):
        if any(os.scandir(path)):
            return False
    elif not (stat.S_ISREG(info.st_mode) and info.st_size == 0):
        return False
    born = birth_time(path)
    return born is not None and born >= since


def remove_legacy_mount_points(agent_state: Path, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Remove the host entries that old agents created for pods of ``agent_state`` (see the module doc).

    Args:
        agent_state: The agent's folder (``<state>/agent``).
        keep: Folders never to remove nor enter (the devcluster's own state and cache).

    Returns:
        The paths removed, deepest first.
    """
    removed: list[Path] = []
    kept = [Path(os.path.realpath(k)) for k in keep]
    for pod_dir, paths in legacy_records(agent_state):
        since = birth_time(pod_dir)
        if since is None:
            continue
        for recorded in paths:
            # The old agent followed symlinks (/var/run -> /run) when it made the folders.
            path = Path(os.path.realpath(recorded))
            while path != path.parent and not any(path == k or k in path.parents or path in k.parents
                                                   for k in kept):
                if not made_by_pod(path, since):
                    break
                (path.rmdir if path.is_dir() else path.unlink)()
                removed.append(path)
                log.info("removed %s, left on the host by an earlier process node", path)
                path = path.parent
    return removed
