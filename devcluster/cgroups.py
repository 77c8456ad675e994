"""Memory limits on the process node: one memory cgroup per container, as a kubelet's runtime makes.

A kubelet's container runtime puts each container in its own cgroup and writes the container's
``resources.limits.memory`` there; when the kernel's OOM killer kills a process of that cgroup,
the container ends with reason ``OOMKilled`` (kubernetes v1.20
``pkg/kubelet/dockershim/docker_container.go``, ``ContainerStatus``: ``OOMKilled`` wins over
``Completed``/``Error`` whatever the exit code, since an application may survive an OOM kill of
one of its children). The process node does the same with the host's memory controller:

* **Where.** cgroup v1 (``memory`` mounted on its own, e.g. ``/sys/fs/cgroup/memory``): a folder
  named like the instance's bridge (``kubelab0``) *below the agent's own memory cgroup*, so the
  pods stay inside whatever limits the agent runs under. cgroup v2 (``/sys/fs/cgroup/unified`` or
  ``/sys/fs/cgroup``, with ``memory`` among its controllers): the same folder *beside* the agent's
  cgroup (v2 lets no cgroup with processes hand controllers to children), with ``+memory`` in that
  folder's own ``cgroup.subtree_control``. In it, one cgroup ``<pod uid>_<container>`` per
  container start, removed when the container ends.
* **Limits.** v1: ``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` (no swap beyond
  the limit, as the kubelet's default); v2: ``memory.max``, ``memory.swap.max`` 0 and
  ``memory.oom.group`` 1 (the whole container is killed, as the kubelet sets it on v2).
* **Joining.** The agent opens the cgroup's ``cgroup.procs`` and hands the descriptor to
  :mod:`kubelab.devcluster.podinit`, which writes its own pid there before anything else, so the
  container's command and all it forks run inside (``ip netns exec`` replaces ``/sys``, so the
  path would not do).
* **OOM.** The ``oom_kill`` counter of ``memory.oom_control`` (v1) or ``memory.events`` (v2).
* **Nothing else is touched.** Only folders this module created are written or removed: each
  container cgroup is recorded in its pod's folder (``cgroup``) until it is gone, so ``down``
  after a killed agent removes exactly those.

When no memory controller is mounted, or the folder cannot be created, the node runs without
enforcement and says so in its log and on its Nodes (:data:`MEMORY_ANNOTATION`).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import time
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

#: Node annotation: how this process node enforces ``limits.memory`` ("cgroup v1 <folder>"), or
#: why it does not ("not enforced: <reason>"), for ``kubectl describe node`` and the tests.
MEMORY_ANNOTATION = "kubelab.io/memory-limits"
#: The pod folder's record of its container's cgroup (its path), while the cgroup exists.
RECORD = "cgroup"
#: How long :meth:`ContainerCgroup.remove` waits for the processes it killed to leave.
REMOVE_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """A mounted cgroup hierarchy that has the memory controller.

    Attributes:
        version: 1 or 2.
        mount: Where it is mounted.
        root: The cgroup path the mount shows at its top (``/`` unless bind-mounted from below).
    """

    version: int
    mount: Path
    root: str = "/"


def memory_hierarchies(mountinfo: str) -> list[Hierarchy]:
    """The cgroup mounts of ``/proc/self/mountinfo`` that may carry memory: v1 ones first.

    A v1 mount counts when ``memory`` is among its super options; every v2 mount is returned
    (whether it has the controller is read from its ``cgroup.controllers``).
    """
    v1: list[Hierarchy] = []
    v2: list[Hierarchy] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3:
            continue
        fstype, options = after[0], after[2].split(",")
        root, point = fields[3], Path(fields[4])
        if fstype == "cgroup" and "memory" in options:
            v1.append(Hierarchy(1, point, root))
        elif fstype == "cgroup2":
            v2.append(Hierarchy(2, point, root))
    return v1 + v2


def own_cgroup(proc_cgroup: str, version: int) -> str | None:
    """This process's cgroup path in the v1 memory hierarchy or the v2 one (``/proc/self/cgroup``)."""
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if version == 2 and hid == "0" and controllers == "":
            return path
        if version == 1 and "memory" in controllers.split(","):
            return path
    return None


def node_folder(hierarchy: Hierarchy, own: str, name: str) -> Path:
    """Where the node's container cgroups go: below the agent's cgroup (v1), beside it (v2).

    Args:
        hierarchy: The memory hierarchy.
        own: The agent's cgroup path in it.
        name: The folder's name (the instance's bridge, ``kubelab0``).
    """
    path = PurePosixPath(own)
    if hierarchy.root != "/" and path.is_relative_to(hierarchy.root):
        path = PurePosixPath("/") / path.relative_to(hierarchy.root)
    if hierarchy.version == 2 and str(path) != "/":
        path = path.parent
    return hierarchy.mount / str(path).lstrip("/") / name


def oom_kills(text: str) -> int:
    """The ``oom_kill`` count of ``memory.oom_control`` (v1) or ``memory.events`` (v2); 0 if absent."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def limit_writes(version: int, limit: int | None) -> list[tuple[str, str, bool]]:
    """The files to write for a container's memory limit: ``(file, value, required)``.

    Args:
        version: 1 or 2.
        limit: ``limits.memory`` in bytes, or None for no limit.
    """
    if version == 1:
        if limit is None:
            return []
        # memsw is memory + swap and must not be below the memory limit, so it goes second.
        return [("memory.limit_in_bytes", str(limit), True), ("memory.memsw.limit_in_bytes", str(limit), False)]
    out = [("memory.oom.group", "1", False)]
    if limit is not None:
        out += [("memory.max", str(limit), True), ("memory.swap.max", "0", False)]
    return out


def _write(path: Path, value: str) -> None:
    # cgroup files want one write(2) of the whole value; a buffered text write may split it.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


class ContainerCgroup:
    """One container's memory cgroup (created by :meth:`MemoryCgroups.create`).

    Args:
        path: Its folder.
        version: 1 or 2.
        record: The pod folder's record of it, removed with it.
    """

    def __init__(self, path: Path, version: int, record: Path | None = None) -> None:
        self.path = path
        self.version = version
        self.record = record

    def open_procs(self) -> int:
        """A write descriptor of its ``cgroup.procs``, for the container's launcher to join with."""
        return os.open(self.path / "cgroup.procs", os.O_WRONLY)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer killed in it."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            return oom_kills((self.path / name).read_text())
        except OSError:
            return 0

    def pids(self) -> list[int]:
        """The processes in it."""
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def remove(self) -> bool:
        """SIGKILL whatever still runs in it (a process that left the pod's process group), then remove it.

        Returns:
            True when it is gone.
        """
        deadline = time.monotonic() + REMOVE_SECONDS
        while True:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                # EBUSY while killed processes are still leaving.
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("memory cgroup %s not removed: %s", self.path, e)
                    return False
                time.sleep(0.05)
        if self.record is not None:
            self.record.unlink(missing_ok=True)
        return True


class MemoryCgroups:
    """The node's folder of container memory cgroups.

    Args:
        folder: The node's folder (created by :meth:`open`).
        version: 1 or 2.
    """

    def __init__(self, folder: Path, version: int) -> None:
        self.folder = folder
        self.version = version

    @property
    def description(self) -> str:
        """For the log and :data:`MEMORY_ANNOTATION`: ``cgroup v1 /sys/fs/cgroup/memory/.../kubelab0``."""
        return f"cgroup v{self.version} {self.folder}"

    @classmethod
    def open(cls, name: str, proc: Path = Path("/proc/self")) -> tuple[MemoryCgroups | None, str]:
        """Find a writable memory controller and create the node's folder in it.

        Args:
            name: The folder's name (the instance's bridge).
            proc: This process's ``/proc`` entry.

        Returns:
            ``(cgroups, description)``, or ``(None, why not)`` when limits cannot be enforced.
        """
        try:
            hierarchies = memory_hierarchies((proc / "mountinfo").read_text())
            membership = (proc / "cgroup").read_text()
        except OSError as e:
            return None, f"not enforced: cannot read this process's cgroups ({e})"
        if not hierarchies:
            return None, "not enforced: no cgroup hierarchy is mounted"
        reasons = []
        for hierarchy in hierarchies:
            own = own_cgroup(membership, hierarchy.version)
            if own is None:
                reasons.append(f"{hierarchy.mount}: this process is in none of its cgroups")
                continue
            folder = node_folder(hierarchy, own, name)
            if hierarchy.version == 2:
                try:
                    controllers = (folder.parent / "cgroup.controllers").read_text().split()
                except OSError as e:
                    reasons.append(f"{hierarchy.mount}: {e}")
                    continue
                if "memory" not in controllers:
                    reasons.append(f"{hierarchy.mount}: no memory controller in {folder.parent}")
                    continue
            cgroups = cls(folder, hierarchy.version)
            try:
                cgroups.ensure_folder()
            except OSError as e:
                reasons.append(f"{folder}: {e.strerror or e}")
                continue
            return cgroups, cgroups.description
        return None, "not enforced: " + "; ".join(reasons)

    def ensure_folder(self) -> None:
        """Create the node's folder (again: another agent on the same bridge removes it when it stops
        while the folder is empty).

        Raises:
            OSError: It cannot be created, or (v2) given the memory controller for its children.
        """
        self.folder.mkdir(exist_ok=True)
        if self.version == 2:
            _write(self.folder / "cgroup.subtree_control", "+memory")

    def create(self, pod_uid: str, container: str, limit: int | None, record: Path) -> ContainerCgroup:
        """A fresh cgroup for one start of ``container`` with its memory limit.

        Args:
            pod_uid: The pod's uid.
            container: The container's name.
            limit: ``limits.memory`` in bytes, or None.
            record: The file in the pod's folder that records the cgroup while it exists.

        Raises:
            OSError: The cgroup could not be created or limited (it is removed again).
        """
        cgroup = ContainerCgroup(self.folder / f"{pod_uid}_{container}", self.version, record)
        if cgroup.path.exists():
            cgroup.remove()  # left by an instance that ended without cleaning up
        try:
            cgroup.path.mkdir()
        except FileNotFoundError:
            self.ensure_folder()  # an agent sharing the bridge removed the empty folder as it stopped
            cgroup.path.mkdir()
        record.write_text(f"{cgroup.path}\n")
        try:
            for file, value, required in limit_writes(self.version, limit):
                try:
                    _write(cgroup.path / file, value)
                except OSError:
                    if required:
                        raise
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    def close(self) -> None:
        """Remove the node's folder when no container cgroup is left in it (another agent may share it)."""
        remove_if_empty(self.folder)


def remove_if_empty(folder: Path) -> None:
    """``rmdir`` a cgroup folder; one that still has children or processes stays."""
    try:
        folder.rmdir()
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
            log.warning("memory cgroup folder %s not removed: %s", folder, e)


def remove_recorded(pod_dir: Path) -> bool:
    """Remove the container cgroup a pod folder records (a killed agent's leftover) and, when empty,
    the node folder above it. Only a path this module recorded is touched.

    Returns:
        True when there was one.
    """
    record = pod_dir / RECORD
    try:
        path = Path(record.read_text().strip())
    except FileNotFoundError:
        return False
    if not path.is_absolute() or not path.name.startswith(pod_uid_of(pod_dir) + "_"):
        record.unlink(missing_ok=True)  # not a record of ours: leave the path alone
        return False
    version = 2 if (path.parent / "cgroup.subtree_control").exists() else 1
    if ContainerCgroup(path, version, record).remove():
        remove_if_empty(path.parent)
    return True


def pod_uid_of(pod_dir: Path) -> str:
    """The uid in a pod folder's name (``<ns>_<pod>_<uid>``)."""
    return pod_dir.name.rsplit("_", 1)[-1]
