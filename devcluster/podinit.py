"""Launcher that turns a process into a pod's container: ``python -m kubelab.devcluster.podinit SPEC``.

The agent runs it through ``ip netns exec <pod netns>``, so it already sits in the
pod's network namespace with the pod's ``/etc/hosts``. It then takes a private
mount and UTS namespace, bind-mounts the pod's volumes at their mount paths, sets
the hostname, changes to the working directory and ``execvpe``s the container's
command, so the pod process keeps this pid (the one in the agent's pid file).

SPEC is a JSON file: ``{"argv": [...], "env": {...}, "cwd": str|null,
"hostname": str, "mounts": [{"source", "target", "read_only"}]}``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import socket
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, flags: int) -> None:
    """Call mount(2) with no filesystem type or data (bind mounts and propagation changes)."""
    _check(
        _libc.mount(source.encode() if source else None, target.encode(), None, ctypes.c_ulong(flags), None),
        f"mount {source} on {target}",
    )


def prepare_target(source: Path, target: Path) -> None:
    """Create the mount point (a file for a file source, else a folder) and a missing subPath folder."""
    if not source.exists():
        source.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.touch()


def main(argv: list[str]) -> None:
    """Apply SPEC (argv[1]) and exec the container command; exit 127 if it cannot be found."""
    spec = json.loads(Path(argv[1]).read_text())
    # Our own mount namespace, slave to the host's, so no bind mount ever shows on the host.
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    mount(None, "/", MS_REC | MS_SLAVE)
    socket.sethostname(spec["hostname"])
    for m in spec["mounts"]:
        source, target = Path(m["source"]), Path(m["target"])
        prepare_target(source, target)
        mount(str(source), str(target), MS_BIND | MS_REC)
        if m.get("read_only"):
            mount(str(source), str(target), MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
    # Like a container runtime: workingDir (created when missing), else the filesystem root.
    cwd = spec.get("cwd") or "/"
    Path(cwd).mkdir(parents=True, exist_ok=True)
    os.chdir(cwd)
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
