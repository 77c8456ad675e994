"""Container log files: one record per line, ``<RFC3339Nano time> <stream> <F|P> <text>``.

This is the CRI log format the kubelet uses. ``F`` ends a line, ``P`` is a partial
line flushed before its newline arrived (a prompt, a progress bar), so a follower
sees output at once. Parsing and filtering are pure; the kubelet API streams them.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO


def rfc3339nano(ts: datetime.datetime) -> str:
    """Format an aware UTC time the way the kubelet does (nanosecond digits, ``Z``)."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_time(value: str) -> datetime.datetime:
    """Parse RFC 3339 with up to nanosecond fractions (Python keeps microseconds)."""
    value = value.strip().replace("Z", "+00:00")
    if "." in value:
        head, rest = value.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        value = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    ts = datetime.datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Record:
    """One record of a log file."""

    time: datetime.datetime
    stamp: str
    stream: str
    complete: bool
    text: bytes


def encode_records(data: bytes, stream: str, now: datetime.datetime) -> bytes:
    """Turn a chunk of process output into log records (complete lines ``F``, a trailing rest ``P``)."""
    stamp = rfc3339nano(now)
    parts = data.split(b"\n")
    out = [f"{stamp} {stream} F ".encode() + line + b"\n" for line in parts[:-1]]
    if parts[-1]:
        out.append(f"{stamp} {stream} P ".encode() + parts[-1] + b"\n")
    return b"".join(out)


def parse_record(line: bytes) -> Record | None:
    """Parse one record line (with or without its newline); None for a malformed one."""
    line = line.rstrip(b"\n")
    pieces = line.split(b" ", 3)
    if len(pieces) < 3 or pieces[2] not in (b"F", b"P"):
        return None
    stamp = pieces[0].decode()
    try:
        ts = parse_time(stamp)
    except ValueError:
        return None
    return Record(ts, stamp, pieces[1].decode(), pieces[2] == b"F", pieces[3] if len(pieces) > 3 else b"")


@dataclasses.dataclass(frozen=True)
class LogQuery:
    """The kubelet API's log options.

    Attributes:
        follow: Keep streaming until the container ends.
        tail_lines: Only the last N lines (None: all).
        timestamps: Prefix each line with its RFC 3339 time.
        since: Only lines at or after this time.
        limit_bytes: Stop after this many bytes.
        previous: The previous (terminated) instance of the container.
    """

    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since: datetime.datetime | None = None
    limit_bytes: int | None = None
    previous: bool = False


def select(records: list[Record], query: LogQuery) -> list[Record]:
    """Apply ``since`` and ``tailLines`` to the records already written."""
    if query.since is not None:
        records = [r for r in records if r.time >= query.since]
    if query.tail_lines is not None:
        if query.tail_lines <= 0:
            return []
        # Count logical lines from the end: a P record belongs to the line its next F ends.
        ends = [i for i, r in enumerate(records) if r.complete]
        if len(ends) > query.tail_lines:
            records = records[ends[-query.tail_lines - 1] + 1 :]
    return records


def render(records: Iterable[Record], timestamps: bool, at_line_start: bool = True) -> Iterator[bytes]:
    """Turn records back into the bytes the container wrote, optionally time-stamped per line."""
    for r in records:
        prefix = (r.stamp.encode() + b" ") if timestamps and at_line_start else b""
        yield prefix + r.text + (b"\n" if r.complete else b"")
        at_line_start = r.complete


class LogWriter:
    """Append-only writer of one container instance's log file (thread-safe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def write(self, stream: str, data: bytes) -> None:
        """Record ``data`` from ``stream`` (``stdout``/``stderr``) with the current time."""
        if not data:
            return
        chunk = encode_records(data, stream, datetime.datetime.now(datetime.UTC))
        with self._lock:
            self._file.write(chunk)
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()
