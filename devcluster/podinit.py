"""Launcher that turns a process into a pod's container: ``python -m kubelab.devcluster.podinit SPEC``.

The agent runs it through ``ip netns exec <pod netns>``, so it already sits in the
pod's network namespace with the pod's ``/etc/hosts``. It then builds the pod's
own view of the filesystem in a private mount namespace and ``execvpe``s the
container's command, so the pod process keeps this pid (the one in the agent's
pid file).

The view, like a container's writable layer, never changes the host:

* **Root.** An overlay whose lower layer is the host's ``/`` and whose upper layer
  is ``<pod>/rootfs/upper``; the host's other mounts (``/proc``, ``/dev``, ``/sys``,
  the ``/etc/hosts`` that ``ip netns exec`` binds...) are bound back in, and the
  process ``chroot``s into it. Whatever the pod writes outside its volumes (``~``
  when ``HOME`` is no volume, a missing ``workingDir``, mount points) lands in the
  upper layer, inside the devcluster's state.
* **/tmp** is ``<pod>/tmp`` and **/dev/shm** a fresh tmpfs: private to the pod.
* **Mount points.** A ``mountPath`` that does not exist is created in the pod's
  view. When its nearest existing ancestor lies on a mount that is not the pod's
  own (a host tmpfs such as ``/run``, or a read-only volume), an overlay over that
  ancestor (upper layer under ``<pod>/rootfs/layers/``) takes the new entry.

SPEC is a JSON file: ``{"argv": [...], "env": {...}, "cwd": str|null, "hostname": str,
"rootfs": str, "tmp": str, "mounts": [{"source", "target", "read_only"}]}``.

``--cgroup-procs-fd=N`` (after SPEC) names an inherited write descriptor of the container's memory
cgroup's ``cgroup.procs`` (:mod:`kubelab.devcluster.cgroups`): the launcher joins that cgroup
before anything else, so the command and everything it forks run under the container's memory
limit. A launcher that cannot join exits 128, as a runtime that cannot start a container.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
#: Characters that overlayfs reads as separators in its ``lowerdir=``/``upperdir=`` options.
OVERLAY_UNSAFE = re.compile(r"[,:\\]")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, flags: int, fstype: str | None = None, data: str | None = None) -> None:
    """Call mount(2)."""
    _check(
        _libc.mount(
            source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
            ctypes.c_ulong(flags), data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points() -> list[str]:
    """Mount points of this mount namespace as seen from this process's root, in mount order."""
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f]


def is_under(path: str, parent: str) -> bool:
    """Whether ``path`` is strictly below ``parent`` (both absolute and normalised)."""
    return path != parent and (parent == "/" or path.startswith(parent.rstrip("/") + "/"))


def topmost(paths: Iterable[str]) -> list[str]:
    """Those of ``paths`` that are not below another of them (a recursive bind of each covers the rest)."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(is_under(p, q) for q in unique)]


def containing_mount(path: str, points: list[str]) -> str:
    """The mount point that ``path`` (absolute, symlink-free) lies on: the longest one above or at it."""
    return max((p for p in points if p == path or is_under(path, p)), key=len)


def overlay_options(lower: str, upper: str, work: str) -> str:
    """overlayfs mount data for one lower layer.

    Raises:
        ValueError: A path holds a character overlayfs would read as a separator.
    """
    for path in (lower, upper, work):
        if OVERLAY_UNSAFE.search(path):
            raise ValueError(f"cannot build the pod's filesystem: path {path!r} contains ',', ':' or '\\'")
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


def build_root(rootfs: Path) -> str:
    """Mount the overlay root at ``rootfs/root`` with the host's other mounts bound back in.

    Returns:
        The new root's path (on the host).
    """
    root = rootfs / "root"
    for sub in ("upper", "work", "root", "layers"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    host_points = [p for p in mount_points() if p != "/" and not (p == str(rootfs) or is_under(p, str(rootfs)))]
    mount("overlay", str(root), 0, "overlay", overlay_options("/", str(rootfs / "upper"), str(rootfs / "work")))
    for point in topmost(host_points):
        target = str(root) + point
        if os.path.lexists(target):
            mount(point, target, MS_BIND | MS_REC)
    return str(root)


#: The host folders a pod's process needs from the node: its Python environment and the
#: repository that kubelab is installed from (resolved here, before any chroot).
NODE_SOFTWARE: tuple[str, ...] = tuple(dict.fromkeys(
    os.path.realpath(p) for p in (sys.prefix, str(Path(__file__).resolve().parents[1]))))


class PodView:
    """The pod's filesystem after ``chroot``: which mounts are the pod's own, and how to add entries.

    Args:
        host_fd: An ``O_PATH`` descriptor of the host's root, opened before ``chroot``; host
            paths stay reachable as ``/proc/self/fd/<fd>/<path>``.
        layers: Host folder for the upper layers of extra overlays.
    """

    def __init__(self, host_fd: int, layers: Path) -> None:
        self.host_fd = host_fd
        self.layers = layers
        self.own_writable: set[str] = {"/"}
        self.count = 0

    def host(self, path: str | Path) -> str:
        """``path`` on the host, as a path usable inside the pod's root."""
        return f"/proc/self/fd/{self.host_fd}{path}"

    def bind(self, source: str | Path, target: str, read_only: bool, *, recursive: bool = True) -> None:
        """Bind the host's ``source`` at ``target`` (which must exist) in the pod's view."""
        flags = MS_BIND | (MS_REC if recursive else 0)
        mount(self.host(source), target, flags)
        if read_only:
            mount(None, target, flags | MS_REMOUNT | MS_RDONLY)
        else:
            self.own_writable.add(os.path.realpath(target))

    def tmpfs(self, target: str, options: str) -> None:
        """A fresh tmpfs at ``target``, the pod's own."""
        mount("tmpfs", target, 0, "tmpfs", options)
        self.own_writable.add(os.path.realpath(target))

    def overlay(self, directory: str) -> None:
        """Make ``directory`` writable in the pod's view only: an overlay on it, mounts below it kept."""
        below = [p for p in mount_points() if is_under(p, directory)]
        kept = {p: os.open(p, os.O_PATH) for p in topmost(below)}
        self.count += 1
        layer = self.layers / str(self.count)
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        mount("overlay", directory, 0, "overlay",
              overlay_options(directory, self.host(layer / "upper"), self.host(layer / "work")))
        for point, fd in kept.items():
            mount(f"/proc/self/fd/{fd}", point, MS_BIND | MS_REC)
            os.close(fd)
        self.own_writable.add(directory)

    def ensure(self, path: str, directory: bool) -> None:
        """Create ``path`` (a folder, or an empty file) in the pod's view, never on the host."""
        target = Path(path)
        if target.exists():
            return
        ancestor = target.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        real = os.path.realpath(ancestor)
        if containing_mount(real, mount_points()) not in self.own_writable:
            self.overlay(real)
        if directory:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()


def prepare_source(source: Path) -> bool:
    """Create a missing volume folder or ``subPath`` (both in the devcluster's state); True for a folder."""
    if not source.exists():
        source.mkdir(parents=True, exist_ok=True)
    return source.is_dir()


CGROUP_FD_OPTION = "--cgroup-procs-fd="


def join_cgroup(argv: list[str]) -> None:
    """Write this process's pid to the cgroup descriptor named by ``--cgroup-procs-fd=N``, if any."""
    for arg in argv[2:]:
        if arg.startswith(CGROUP_FD_OPTION):
            fd = int(arg[len(CGROUP_FD_OPTION):])
            try:
                os.write(fd, str(os.getpid()).encode())
            except OSError as e:
                print(f"kubelab process node: cannot join the container's memory cgroup: {e}", file=sys.stderr)
                sys.exit(128)
            finally:
                os.close(fd)


def main(argv: list[str]) -> None:
    """Apply SPEC (argv[1]) and exec the container command; exit 127 if it cannot be found."""
    join_cgroup(argv)
    spec = json.loads(Path(argv[1]).read_text())
    # Our own mount namespace, slave to the host's, so no mount of ours ever shows on the host.
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    mount(None, "/", MS_REC | MS_SLAVE)
    socket.sethostname(spec["hostname"])
    # An agent started before private roots existed names neither folder: use the pod folder's.
    pod_dir = Path(argv[1]).resolve().parent
    rootfs = Path(spec.get("rootfs") or pod_dir / "rootfs")
    tmp = Path(spec.get("tmp") or pod_dir / "tmp")
    tmp.mkdir(mode=0o1777, exist_ok=True)
    mounts = [(os.path.realpath(m["source"]), m["target"], bool(m.get("read_only"))) for m in spec["mounts"]]
    kinds = [prepare_source(Path(source)) for source, _, _ in mounts]
    root = build_root(rootfs)
    view = PodView(os.open("/", os.O_PATH | os.O_DIRECTORY), rootfs / "layers")
    os.chroot(root)
    os.chdir("/")
    view.ensure("/tmp", directory=True)
    view.bind(tmp, "/tmp", read_only=False, recursive=False)
    if os.path.isdir("/dev/shm"):
        view.tmpfs("/dev/shm", "mode=1777")
    for (source, target, read_only), directory in zip(mounts, kinds, strict=True):
        view.ensure(target, directory)
        view.bind(source, target, read_only)
    # The node's own software (its Python environment, and kubelab's source for an editable
    # install) stays visible when it lives under the host's /tmp, as in a clone made with
    # `mktemp -d`: the pod's private /tmp (or an emptyDir mounted there, a job's scratch) would
    # hide it ("executable not found").
    for path in NODE_SOFTWARE:
        if path == "/tmp" or path.startswith("/tmp/"):
            view.ensure(path, directory=True)
            view.bind(path, path, read_only=True)
    # Like a container runtime: workingDir (created when missing), else the filesystem root.
    cwd = spec.get("cwd") or "/"
    view.ensure(cwd, directory=True)
    os.chdir(cwd)
    os.close(view.host_fd)
    try:
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except FileNotFoundError:
        print(f"kubelab process node: executable not found: {spec['argv'][0]!r}", file=sys.stderr)
        sys.exit(127)
    except PermissionError as e:
        print(f"kubelab process node: cannot run {spec['argv'][0]!r}: {e}", file=sys.stderr)
        sys.exit(126)


if __name__ == "__main__":
    main(sys.argv)
