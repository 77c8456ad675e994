"""Checks that run before ``up`` touches anything; each returns one line naming what is missing.

They take their inputs as arguments so tests can reason about them, but ``up``'s
real checks are also exercised for real in the integration tests (as uid 65534,
without apt-get on PATH, on a tiny tmpfs).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

GIB = 1024**3
MIB = 1024**2
#: Source tree, Go build cache and binaries take about 2.6 GB; leave headroom.
BUILD_DISK_BYTES = 4 * GIB
#: etcd data, logs and PKI of a running devcluster.
STATE_DISK_BYTES = 256 * MIB


def check_root(euid: int) -> str | None:
    """Network namespaces, veths and bind mounts need root."""
    if euid != 0:
        return (
            f"up needs root (network namespaces, veths and bind mounts), "
            f"but runs as uid {euid}; run it as root or with sudo"
        )
    return None


def check_apt(apt_get: str | None, need: str) -> str | None:
    """Building or installing needs apt-get on PATH; ``need`` says what for."""
    if apt_get is None:
        return f"apt-get is not on PATH, but it is needed to {need} (a Debian or Ubuntu machine is required)"
    return None


def existing_parent(path: Path) -> Path:
    """The nearest existing folder at or above ``path`` (where a new folder would take its space)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds (or would hold) ``path``."""
    return shutil.disk_usage(existing_parent(path)).free


def check_disk(path: Path, free: int, need: int, purpose: str) -> str | None:
    """Fail when ``free`` bytes at ``path`` are fewer than ``need`` for ``purpose``."""
    if free < need:
        return (
            f"not enough disk space: {purpose} needs {need / GIB:.2f} GiB free under {path}, "
            f"but only {free / MIB:.1f} MiB are free"
        )
    return None


def check_tool(name: str, package: str) -> str | None:
    """A command the devcluster runs (``ip``) must exist."""
    if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists():
        return f"the '{name}' command is missing; install the Debian package {package}"
    return None


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
