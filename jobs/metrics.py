"""``kubelab.jobs.metrics.log(step, **scalars)``: training curves from any rank, at no cost to training.

Standard library only, so it works in every trainer image and on the local backend::

    from kubelab.jobs import metrics

    for step in range(steps):
        loss = train_step()
        metrics.log(step, loss=loss.item(), lr=scheduler.get_last_lr()[0])

What a call does: it checks the names (``[A-Za-z_][A-Za-z0-9_./-]{0,63}``, at most
:data:`MAX_SCALARS` per call) and the values (finite ``int``/``float``, or anything with a
``float()`` such as a 0-d tensor or a NumPy scalar), appends one point per scalar to a bounded
in-memory buffer under a lock and returns. It never blocks on the network and never raises into
training: a bad name or value is counted and reported once on stderr, and the call returns False.

A daemon thread sends the buffer about once a second (:data:`FLUSH_SECONDS`) to where the job's
environment says (``jobs/CONTRACT.md``):

- ``KUBELAB_METRICS_URL`` + ``KUBELAB_METRICS_TOKEN`` (pods on the cluster): one JSON POST per
  batch to the jobs service in the hub, ``Authorization: Bearer <per-job ingest token>``, a short
  timeout, up to :data:`SEND_ATTEMPTS` attempts with backoff; a batch still not accepted is dropped
  and counted (the next batch says how many points were lost), and while the hub is unreachable
  the buffer drops its oldest points (counted too), so memory stays bounded.
- ``KUBELAB_METRICS_FILE`` (the local-process backend): each batch is one JSON line appended to
  that file with a single ``write`` (lines of several processes never interleave).
- neither (a script run by hand): points are validated and discarded.

At interpreter exit the last points are sent within :data:`EXIT_FLUSH_SECONDS`.

The series key is (rank, name): the rank is torchrun's global ``RANK`` when set, else
``KUBELAB_RANK`` (+ ``KUBELAB_RANK_OFFSET``), else 0. A forked child (a DataLoader worker)
gets its own buffer and thread.
"""

from __future__ import annotations

import atexit
import json
import math
import operator
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any

#: Allowed scalar names: a letter or ``_`` first, then letters, digits, ``_ . / -``; 64 at most.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]{0,63}")
#: Scalars accepted in one call (more are refused, so that one call stays cheap).
MAX_SCALARS = 32
#: Points held in memory before the oldest are dropped (about 80 bytes each).
MAX_BUFFER = 20_000
#: Points sent in one batch (one POST or one line); the service bounds its body size to match.
MAX_BATCH = 2_000
#: Seconds between sends.
FLUSH_SECONDS = 1.0
#: Attempts to send one batch before it is dropped (and counted).
SEND_ATTEMPTS = 4
#: Seconds one request may take.
SEND_TIMEOUT = 3.0
#: Most seconds spent sending what is left when the interpreter exits.
EXIT_FLUSH_SECONDS = 5.0
#: Largest step accepted (steps are non-negative integers).
MAX_STEP = 2**53


def current_rank(environ: dict[str, str] | os._Environ[str] | None = None) -> int:
    """This process's rank: torchrun's ``RANK``, else ``KUBELAB_RANK`` + ``KUBELAB_RANK_OFFSET``, else 0."""
    env = os.environ if environ is None else environ
    raw = env.get("RANK", "")
    if raw.strip().isdigit():
        return int(raw)
    raw = env.get("KUBELAB_RANK", "")
    offset = env.get("KUBELAB_RANK_OFFSET", "0") or "0"
    if raw.strip().isdigit():
        return int(raw) + (int(offset) if offset.strip().isdigit() else 0)
    return 0


def check_name(name: Any) -> str | None:
    """Why ``name`` is not an allowed scalar name, or None when it is."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        return (f"metric name {name!r} is not allowed: use letters, digits, '_', '.', '/' or '-', "
                "starting with a letter or '_', at most 64 characters")
    return None


def as_value(value: Any) -> float | None:
    """``value`` as a finite float, or None (bools, strings, NaN and infinities are refused)."""
    if isinstance(value, bool) or isinstance(value, str | bytes):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        # RuntimeError: a tensor with more than one element refuses float().
        return None
    return number if math.isfinite(number) else None


def as_step(step: Any) -> int | None:
    """``step`` as an int in ``0..MAX_STEP`` (ints, NumPy/torch integers), or None."""
    if isinstance(step, bool):
        return None
    try:
        number = operator.index(step)
    except TypeError:
        return None
    return number if 0 <= number <= MAX_STEP else None


class Sink:
    """Where batches go. ``send`` returns True when the batch was taken, False to retry it,
    and raises ``ValueError`` for a batch that will never be taken (dropped at once)."""

    def send(self, batch: dict[str, Any], timeout: float) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class HttpSink(Sink):
    """POST each batch as JSON to the job's ingest URL with its per-job token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self._token = token  # never printed

    def send(self, batch: dict[str, Any], timeout: float) -> bool:
        body = json.dumps(batch, separators=(",", ":")).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is the job's own, set by the builder
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return 200 <= response.status < 300
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500 and e.code not in (408, 429):
                raise ValueError(f"the jobs service refused the metrics: {e.code} {e.reason}") from e
            return False
        except (urllib.error.URLError, OSError, TimeoutError):
            return False


class FileSink(Sink):
    """Append each batch as one JSON line (one ``write`` on an O_APPEND file: no interleaving)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def send(self, batch: dict[str, Any], timeout: float) -> bool:
        line = (json.dumps(batch, separators=(",", ":")) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            os.write(fd, line)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True


def sink_from_env(environ: dict[str, str] | os._Environ[str] | None = None) -> Sink | None:
    """The sink the job's environment names, or None (points are then discarded)."""
    env = os.environ if environ is None else environ
    url, token = env.get("KUBELAB_METRICS_URL"), env.get("KUBELAB_METRICS_TOKEN")
    if url and token:
        return HttpSink(url, token)
    path = env.get("KUBELAB_METRICS_FILE")
    if path:
        return FileSink(path)
    return None


class Recorder:
    """The buffer and the thread that empties it, for one process.

    Args:
        sink: Where batches go; None validates and discards.
        rank: The rank written on every batch.
        max_buffer: Points kept while the sink is slow or unreachable (oldest dropped beyond).
        flush_seconds: Seconds between sends.
        start: Start the sending thread now (a benchmark measures ``log`` without it).
    """

    def __init__(self, sink: Sink | None, rank: int, *, max_buffer: int = MAX_BUFFER,
                 flush_seconds: float = FLUSH_SECONDS, start: bool = True) -> None:
        self.sink = sink
        self.rank = rank
        self.pid = os.getpid()
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._buffer: deque[list[Any]] = deque(maxlen=max_buffer)
        self._wake = threading.Event()
        self._stop = threading.Event()
        #: Points dropped: buffer full, batches the sink refused or never took.
        self.dropped = 0
        #: Points refused by validation.
        self.invalid = 0
        #: Points the sink took.
        self.sent = 0
        self._reported = 0  # dropped points already announced to the service
        self._warned: set[str] = set()
        self._thread: threading.Thread | None = None
        #: Also print ``name=value`` lines on stdout: a Katib trial's StdOut collector reads them
        #: (``KUBELAB_METRICS_STDOUT=1``, set only in a Katib Experiment's trial template).
        self.echo = os.environ.get("KUBELAB_METRICS_STDOUT") == "1"
        if start and sink is not None:
            self._thread = threading.Thread(target=self._run, name="kubelab-metrics", daemon=True)
            self._thread.start()

    def log(self, step: Any, scalars: dict[str, Any]) -> bool:
        """Validate and buffer; True when every scalar was kept. Never raises."""
        step = as_step(step)
        if step is None:
            self._refuse(len(scalars) or 1, "step", f"metrics.log: step must be an integer in 0..{MAX_STEP}")
            return False
        if len(scalars) > MAX_SCALARS:
            self._refuse(len(scalars), "too-many", f"metrics.log: at most {MAX_SCALARS} scalars per call")
            return False
        points = []
        ok = True
        for name, value in scalars.items():
            problem = check_name(name)
            number = as_value(value) if problem is None else None
            if problem is None and number is None:
                problem = f"metrics.log: {name}={value!r} is not a finite number"
            if problem is not None:
                self._refuse(1, f"{name}", problem)
                ok = False
                continue
            points.append([name, step, number])
        if self.echo and points:
            print(" ".join(f"{n}={v!r}" for n, _s, v in points), flush=True)
        if self.sink is None or not points:
            return ok
        with self._lock:
            room = self._buffer.maxlen - len(self._buffer)  # type: ignore[operator]
            if len(points) > room:
                self.dropped += len(points) - room  # deque(maxlen) drops the oldest for us
            self._buffer.extend(points)
        return ok

    def _refuse(self, count: int, key: str, message: str) -> None:
        self.invalid += count
        if key not in self._warned and len(self._warned) < 100:
            self._warned.add(key)
            print(f"kubelab: {message} (ignored; reported once)", file=sys.stderr, flush=True)

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def _take(self) -> list[list[Any]]:
        with self._lock:
            count = min(MAX_BATCH, len(self._buffer))
            return [self._buffer.popleft() for _ in range(count)]

    def _batch(self, points: list[list[Any]]) -> dict[str, Any]:
        return {"rank": self.rank, "points": points, "dropped": self.dropped}

    def flush_once(self, deadline: float | None = None) -> bool:
        """Send one batch, retrying with backoff; False when the sink never took it."""
        assert self.sink is not None
        points = self._take()
        if not points:
            return True
        delay = 0.25
        for attempt in range(SEND_ATTEMPTS):
            timeout = SEND_TIMEOUT if deadline is None else max(0.1, min(SEND_TIMEOUT, deadline - time.monotonic()))
            try:
                if self.sink.send(self._batch(points), timeout):
                    self.sent += len(points)
                    return True
            except ValueError as e:
                self._refuse(0, "refused", str(e))
                break
            last = attempt == SEND_ATTEMPTS - 1
            if last or self._stop.is_set() or (deadline is not None and time.monotonic() + delay > deadline):
                break
            self._stop.wait(delay)
            delay *= 2
        with self._lock:
            self.dropped += len(points)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            while not self._stop.is_set() and self.pending():
                self.flush_once()

    def close(self, timeout: float = EXIT_FLUSH_SECONDS) -> None:
        """Stop the thread and send what is left, spending at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self.sink is None:
            return
        while self.pending() and time.monotonic() < deadline:
            if not self.flush_once(deadline):
                break


_recorder: Recorder | None = None
_recorder_lock = threading.Lock()


def recorder() -> Recorder:
    """This process's recorder, made on first use (and again in a forked child)."""
    global _recorder
    current = _recorder
    if current is not None and current.pid == os.getpid():
        return current
    with _recorder_lock:
        if _recorder is None or _recorder.pid != os.getpid():
            _recorder = Recorder(sink_from_env(), current_rank())
        return _recorder


def log(step: int, **scalars: Any) -> bool:
    """Record ``scalars`` at ``step`` for this rank, e.g. ``log(10, loss=0.31, acc=0.9)``.

    Returns at once: points are buffered and sent by a background thread. Never raises.

    Returns:
        True when every scalar was kept; False when some were refused (a bad name, a value that
        is not a finite number, a negative step), which is also said once on stderr.
    """
    try:
        return recorder().log(step, scalars)
    except Exception as e:  # noqa: BLE001 - the one promise of this function: never raise into training
        print(f"kubelab: metrics.log failed: {e!r} (ignored)", file=sys.stderr)
        return False


def flush(timeout: float = EXIT_FLUSH_SECONDS) -> None:
    """Send every buffered point now (at most ``timeout`` seconds); the sending thread stops."""
    global _recorder
    current = _recorder
    if current is not None and current.pid == os.getpid():
        current.close(timeout)
        with _recorder_lock:
            if _recorder is current:
                _recorder = None


atexit.register(flush)
