"""A throw-away PostgreSQL cluster from Debian's ``postgresql`` package, for the accounting tests.

Started with ``initdb``/``pg_ctl`` in a folder of the test's own (never the system service), on a
free loopback port, with a Unix socket in that folder too, and removed afterwards. PostgreSQL
refuses to run as root, so as root (CI) the server runs as the package's ``postgres`` user, in a
folder made for it under the temporary directory (pytest's own is private to root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.harness import free_port


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL server program (``initdb``, ``pg_ctl``), newest version first."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]), reverse=True)
    if found:
        return found[0]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise FileNotFoundError(f"{name} not found: install Debian's postgresql package (make system does)")


class TempPostgres:
    """One PostgreSQL server in its own folder; :attr:`url` is a SQLAlchemy URL for its database."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kubelab-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.url = f"postgresql://kubelab@127.0.0.1:{self.port}/kubelab"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if self.as_root else list(argv)
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> TempPostgres:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(pg_bin("initdb"), "-D", str(self.data), "-U", "kubelab", "--auth=trust", "--no-sync", "-E", "UTF8")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")
        deadline = time.monotonic() + 30
        while True:
            done = subprocess.run(["runuser", "-u", "postgres", "--"] * self.as_root + [
                pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "kubelab", "kubelab"],
                capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {done.stderr}")
            time.sleep(0.3)

    def stop(self) -> None:
        try:
            self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # never started, or already gone
        shutil.rmtree(self.root, ignore_errors=True)
