"""Pid files that name exactly one process: the pid plus its kernel start time.

A bare pid can be reused by an unrelated process after ours exits; recording the
start time from ``/proc/<pid>/stat`` lets ``down`` stop only what it started.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def process_start_time(pid: int) -> int | None:
    """Return the start time (clock ticks since boot) of ``pid``, or None if it is gone.

    Zombies count as gone: they are dead and only wait to be reaped.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after the last ')' are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def write(path: Path, pid: int) -> None:
    """Record ``pid`` and its start time in ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    start = process_start_time(pid)
    path.write_text(f"{pid} {start if start is not None else 0}\n")


def read(path: Path) -> tuple[int, int] | None:
    """Return ``(pid, start_time)`` from ``path``, or None when missing or unreadable."""
    try:
        pid, start = path.read_text().split()
        return int(pid), int(start)
    except (FileNotFoundError, ValueError):
        return None


def alive(path: Path) -> int | None:
    """Return the pid recorded in ``path`` if that very process still runs, else None."""
    entry = read(path)
    if entry is None:
        return None
    pid, start = entry
    return pid if process_start_time(pid) == start else None


def wait_gone(pid: int, start: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process ``(pid, start)`` to exit.

    Returns:
        True if it is gone.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_start_time(pid) != start:
            return True
        time.sleep(0.05)
    return process_start_time(pid) != start


def stop(path: Path, timeout: float = 10.0, group: bool = True) -> bool:
    """Stop the process recorded in ``path``: SIGTERM, then SIGKILL after ``timeout`` seconds.

    Args:
        path: The pid file; removed afterwards.
        timeout: Seconds between SIGTERM and SIGKILL.
        group: Signal the whole process group (our daemons and pods lead their own groups).

    Returns:
        True if a live process was stopped, False if nothing was running.
    """
    entry = read(path)
    stopped = False
    if entry is not None and process_start_time(entry[0]) == entry[1]:
        pid, start = entry
        stopped = True
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                if group:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            except ProcessLookupError:
                break
            if wait_gone(pid, start, wait):
                break
    path.unlink(missing_ok=True)
    return stopped
