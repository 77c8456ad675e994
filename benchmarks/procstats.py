"""What the benchmarks read about a hub process: its CPU time, its resident memory, its profile.

From ``/proc`` and py-spy, from outside the process: nothing in kubelab counts for a benchmark.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (not its children: the proxy is not the hub)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_idle(pid: int, quiet: float = 0.05, timeout: float = 90) -> None:
    """Wait until the process uses under ``quiet`` CPU seconds per second, twice in a row."""
    deadline, calm, last = time.monotonic() + timeout, 0, cpu_seconds(pid)
    while calm < 2 and time.monotonic() < deadline:
        time.sleep(1)
        now = cpu_seconds(pid)
        calm = calm + 1 if now - last < quiet else 0
        last = now


@contextlib.contextmanager
def profiled(pid: int, out: Path | None, name: str) -> Iterator[None]:
    """Sample ``pid`` with py-spy while the block runs, into ``out/<name>.txt`` (collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if out is None or not Path(spy).exists():
        if out is not None:
            print("  (no py-spy: `.venv/bin/pip install py-spy` to profile)")
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--nonblocking",
                             "--output", str(out / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
