"""Files between a ReadWriteOnce home and a job's ranks, over the pod network (standard library only).

Job pods never mount an RWO home (Multi-Attach, docs/jobs.md). A job that must bring outputs into
one, or read inputs from it, gets a **collector**: one pod on the node holding the home, with the
home mounted (:mod:`kubelab.jobs.builders.collector`), running ``python -m kubelab.jobs.transfer
collect``. The ranks' entrypoint talks to it:

* when a rank starts, :func:`fetch_inputs` copies the job's ``inputs`` from the home into the
  rank's scratch, at the same paths;
* when a rank's processes have ended (whatever their exit code, and on SIGTERM too, within the
  grace period), :func:`send_outputs` hands the rank's output folder to the collector, which
  writes it into the home at the same path.

Protocol: HTTP/1.1, every request but ``/healthz`` with ``Authorization: Bearer <token>`` (the
job's transfer token, from a Secret only the job's pods read)::

    GET  /healthz                       200 once serving
    GET  /inputs                        200 {"files": [{"path", "size", "mode"}], "bytes", "missing"} | 413
    GET  /inputs/file?path=<abs path>   200 the bytes | 403 | 404
    PUT  /outputs/<rank>/<rel path>     201 {"kept": true} | 200 {"kept": false, "why"} | 400 | 409 | 413 | 507
    POST /outputs/<rank>/done           200 {"state", ...}; body {"exit_code", "sent", "unsent"}

Rules the collector keeps, whatever a rank sends: paths stay inside the output folder (no
absolute paths, ``..``, empty parts, or a symlinked folder on the way); a file is written to a
temporary name and renamed, so the home never holds half a file; the job's budget
(``storage.transfer``: bytes and files) is never exceeded, and a file over it is refused as a
whole (413); where two ranks write the same path, the lower rank's file is kept (rank 0 is the
one that saves, by convention) and the other is reported. It ends by itself once every rank has
handed over its outputs after succeeding; otherwise the jobs reconciler closes it (SIGTERM) once
the job has ended and every rank pod has stopped. After every delivery and at the end it prints
one line ``kubelab-collector: {...}`` (:func:`Collector.summary`), which the reconciler records.
"""

from __future__ import annotations

import hmac
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote_to_bytes, urlsplit

PREFIX = "kubelab-collector"
CHUNK = 1024 * 1024
#: Longest relative path of one output file, in bytes.
MAX_PATH = 1024
#: Seconds one request may take (a large file at pod-network speed takes far less).
REQUEST_TIMEOUT = 600
#: Refused or skipped files named in the summary (the counts are always complete).
MAX_LISTED = 20


class TransferError(RuntimeError):
    """Moving files failed; the message says what and what to do."""


class Refused(Exception):
    """A request the collector refuses: an HTTP status, a message, and whether the request's body
    is still unread (the connection must then close: reading gigabytes for nothing helps no one)."""

    def __init__(self, status: int, message: str, *, unread: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.unread = unread


# -- paths -------------------------------------------------------------------------------------


def safe_relpath(raw: bytes) -> str:
    """A relative output path a rank sent, checked: no absolute path, ``..``, ``.``, empty part or NUL.

    Raises:
        Refused: 400, naming the path.
    """
    text = os.fsdecode(raw)
    parts = text.split("/")
    if (not text or len(raw) > MAX_PATH or "\x00" in text or text.startswith("/")
            or any(p in ("", ".", "..") for p in parts)):
        raise Refused(400, f"{text[:200]!r} is not a relative path inside the output folder")
    return text


def is_within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both absolute and normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def walk_files(folder: str) -> Iterator[tuple[str, int]]:
    """(path relative to ``folder``, size) of every regular file below it, sorted; symlinks are not followed."""
    for top, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            if os.path.isfile(path) and not os.path.islink(path):
                yield os.path.relpath(path, folder), st.st_size


def human(count: int) -> str:
    """``1.5 MB``-style byte counts for log lines."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


# -- the collector -------------------------------------------------------------------------------


@dataclass
class Settings:
    """The collector's settings, from its environment (jobs/CONTRACT.md, "The collector")."""

    token: str
    world_size: int
    home: str
    output_dir: str
    inputs: list[str]
    port: int
    max_output_bytes: int
    max_input_bytes: int
    max_files: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Raises: TransferError: A variable is missing or wrong."""
        try:
            inputs = json.loads(env.get("KUBELAB_INPUTS") or "[]")
            settings = cls(
                token=env["KUBELAB_TRANSFER_TOKEN"], world_size=int(env["KUBELAB_WORLD_SIZE"]),
                home=os.path.normpath(env["KUBELAB_HOME"]), output_dir=env.get("KUBELAB_OUTPUT_DIR", ""),
                inputs=[os.path.normpath(p) for p in inputs], port=int(env.get("KUBELAB_COLLECTOR_PORT", "8470")),
                max_output_bytes=int(env["KUBELAB_MAX_OUTPUT_BYTES"]), max_input_bytes=int(env["KUBELAB_MAX_INPUT_BYTES"]),
                max_files=int(env["KUBELAB_MAX_FILES"]),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise TransferError(f"the collector's environment is incomplete or wrong ({e!r}); see jobs/CONTRACT.md") from e
        for path in ([settings.output_dir] if settings.output_dir else []) + settings.inputs:
            if not os.path.isabs(path) or not is_within(os.path.normpath(path), settings.home):
                raise TransferError(f"{path} is not inside the home {settings.home}")
        if not settings.token or settings.world_size < 1:
            raise TransferError("KUBELAB_TRANSFER_TOKEN is empty or KUBELAB_WORLD_SIZE < 1")
        return settings


@dataclass
class _Owner:
    rank: int
    size: int


@dataclass
class Collector:
    """What the collector received, and the rules it keeps (thread-safe; one per job)."""

    settings: Settings
    owners: dict[str, _Owner] = field(default_factory=dict)
    reserved_bytes: int = 0
    reserved_files: int = 0
    done: dict[int, int] = field(default_factory=dict)
    received: dict[int, list[int]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    skipped_count: int = 0
    refused_count: int = 0
    finished: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.owners.values())

    # outputs

    def prepare(self) -> None:
        """Create the output folder now, so a home that cannot take it fails the collector at once."""
        if self.settings.output_dir:
            try:
                os.makedirs(self.settings.output_dir, exist_ok=True)
            except OSError as e:
                raise TransferError(f"cannot create {self.settings.output_dir} in the home: {e.strerror}") from e

    def receive(self, rank: int, rel: str, length: int, body: Any) -> dict[str, Any]:
        """Write one output file of ``rank`` from ``body`` (``length`` bytes) into the output folder.

        Raises:
            Refused: 409 (not a folder on the way, another rank's file stays), 413 (over the budget),
                507 (the home is full); the body was read unless the status is 413.
        """
        s = self.settings
        with self.lock:
            owner = self.owners.get(rel)
            refusal = None
            if owner is not None and owner.rank < rank:
                self._note_skip(f"rank {rank}: {rel} (rank {owner.rank} wrote it)")
                keep = False
            else:
                keep = True
                replaced = owner.size if owner is not None else 0
                files = len(self.owners) + self.reserved_files + (0 if owner is not None else 1)
                size = self.total_bytes - replaced + self.reserved_bytes + length
                refusal = (f"{rel}: the job's outputs would hold {human(size)} in {files} files; at most "
                           f"{human(s.max_output_bytes)} and {s.max_files} files (storage.transfer) come back"
                           if size > s.max_output_bytes or files > s.max_files else None)
                if refusal is not None:
                    self._note_refusal(f"rank {rank}: {rel} ({human(length)})")
                else:
                    self.reserved_bytes += length
                    self.reserved_files += 0 if owner is not None else 1
        if keep and refusal is not None:
            # A body no larger than a rank's whole output folder is read, so the rank sees the answer.
            if length <= s.max_output_bytes:
                _drain(body, length)
            raise Refused(413, refusal, unread=length > s.max_output_bytes)
        if not keep:
            _drain(body, length)
            return {"kept": False, "why": "a lower rank wrote the same path; its file is kept"}
        try:
            try:
                tmp, final = self._open_target(rank, rel)
            except Refused:
                _drain(body, length)  # reserved, so within the budget
                raise
            try:
                with open(tmp, "wb") as f:
                    _copy(body, f, length)
                with self.lock:
                    current = self.owners.get(rel)
                    if current is not None and current.rank < rank:  # a lower rank won meanwhile
                        os.unlink(tmp)
                        self._note_skip(f"rank {rank}: {rel} (rank {current.rank} wrote it)")
                        return {"kept": False, "why": "a lower rank wrote the same path; its file is kept"}
                    os.replace(tmp, final)
                    self.owners[rel] = _Owner(rank, length)
                    got = self.received.setdefault(rank, [0, 0])
                    got[0] += 1
                    got[1] += length
            except BaseException:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                raise
        except OSError as e:
            status = 507 if e.errno in (28, 122) else 409  # ENOSPC, EDQUOT: the home is full
            raise Refused(status, f"{rel}: cannot write it into the home: {e.strerror}") from e
        except Refused as e:
            e.unread = e.status == 400  # a short body: the stream is out of step
            raise
        finally:
            with self.lock:
                self.reserved_bytes -= length
                self.reserved_files -= 0 if owner is not None else 1
        return {"kept": True}

    def _open_target(self, rank: int, rel: str) -> tuple[str, str]:
        """(temporary name, final name) for ``rel``, its folders created, none of them a symlink.

        Raises:
            Refused: 409, something on the way is not a folder (or is a symlink).
        """
        folder = self.settings.output_dir
        parts = rel.split("/")
        for part in parts[:-1]:
            folder = os.path.join(folder, part)
            try:
                os.mkdir(folder, 0o755)
            except FileExistsError:
                pass
            if os.path.islink(folder) or not os.path.isdir(folder):
                raise Refused(409, f"{rel}: {part} is not a folder in the home")
        final = os.path.join(folder, parts[-1])
        if os.path.islink(final) or os.path.isdir(final):
            raise Refused(409, f"{rel}: the home has a folder or a symlink there")
        return os.path.join(folder, f".{parts[-1]}.kubelab-rank{rank}.part"), final

    def rank_done(self, rank: int, exit_code: int, unsent: list[str]) -> dict[str, Any]:
        """Record that ``rank`` handed over everything it will; finish once every rank succeeded."""
        with self.lock:
            self.done[rank] = exit_code
            for item in unsent:
                self._note_refusal(f"rank {rank}: {item}")
            if all(self.done.get(r) == 0 for r in range(self.settings.world_size)):
                self.finished.set()
        return self.summary()

    def _note_skip(self, what: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append(what)

    def _note_refusal(self, what: str) -> None:
        self.refused_count += 1
        if len(self.refused) < MAX_LISTED:
            self.refused.append(what)

    def summary(self, closing: bool = False) -> dict[str, Any]:
        """What arrived: ``state`` (``collected``: every rank handed its outputs over after
        succeeding, nothing refused; else ``partial``), counts per rank, what was skipped or refused."""
        world = range(self.settings.world_size)
        complete = all(self.done.get(r) == 0 for r in world) and not self.refused_count
        missing = [r for r in world if r not in self.done]
        return {
            "state": "collected" if complete else ("partial" if self.received or self.done else "none"),
            "closed": closing, "dir": self.settings.output_dir,
            "files": len(self.owners), "bytes": self.total_bytes,
            "ranks": {str(r): {"files": v[0], "bytes": v[1], "exit_code": self.done.get(r)}
                      for r, v in sorted(self.received.items())},
            "missing_ranks": missing, "skipped": self.skipped_count, "refused": self.refused_count,
            "skipped_files": list(self.skipped), "refused_files": list(self.refused),
        }

    # inputs

    def manifest(self) -> dict[str, Any]:
        """Every regular file of the declared inputs, with sizes (symlinks are not followed).

        Raises:
            Refused: 413, the inputs hold more than the budget.
        """
        files: list[dict[str, Any]] = []
        missing = []
        for root in self.settings.inputs:
            if os.path.isfile(root) and not os.path.islink(root):
                files.append({"path": root, "size": os.path.getsize(root), "mode": os.stat(root).st_mode & 0o777})
            elif os.path.isdir(root) and not os.path.islink(root):
                for rel, size in walk_files(root):
                    path = os.path.join(root, rel)
                    files.append({"path": path, "size": size, "mode": os.stat(path).st_mode & 0o777})
                    if len(files) > self.settings.max_files:
                        break
            else:
                missing.append(root)
        total = sum(f["size"] for f in files)
        if total > self.settings.max_input_bytes or len(files) > self.settings.max_files:
            raise Refused(413, f"the inputs hold {human(total)} in {len(files)}+ files; at most "
                          f"{human(self.settings.max_input_bytes)} and {self.settings.max_files} files "
                          "(storage.transfer) are fetched: list smaller folders, or put the data on a shared volume")
        return {"files": files, "bytes": total, "missing": missing}

    def input_file(self, path: str) -> str:
        """``path`` if it is a regular file inside a declared input (no symlink on the way).

        Raises:
            Refused: 403 outside the inputs, 404 not there.
        """
        path = os.path.normpath(path)
        root = next((r for r in self.settings.inputs if is_within(path, r)), None)
        if root is None or not os.path.isabs(path):
            raise Refused(403, f"{path} is not one of the job's inputs")
        if not os.path.isfile(path) or os.path.islink(path):
            raise Refused(404, f"{path} is not a file")
        if not is_within(os.path.realpath(path), os.path.realpath(root)):
            raise Refused(403, f"{path} leaves {root} through a symlink")
        return path


def _copy(src: Any, dst: Any, length: int) -> None:
    """Copy exactly ``length`` bytes; a short body raises."""
    left = length
    while left:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            raise Refused(400, f"the body ended {left} bytes early")
        dst.write(chunk)
        left -= len(chunk)


def _drain(src: Any, length: int) -> None:
    left = length
    while left:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "kubelab-collector"
        timeout = REQUEST_TIMEOUT

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # one summary line per delivery is the log; never the token

        def _answer(self, status: int, body: Mapping[str, Any] | bytes, close: bool = False) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), collector.settings.token.encode()):
                return True
            self._answer(401, {"message": "the transfer token does not match this job"}, close=True)
            return False

        def _route(self) -> tuple[str, list[str]]:
            url = urlsplit(self.path)
            return url.query, url.path.split("/")[1:]

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query, parts = self._route()
            if parts == ["healthz"]:
                self._answer(200, {"ok": True})
                return
            if not self._authorised():
                return
            try:
                if parts == ["inputs"]:
                    self._answer(200, collector.manifest())
                elif parts == ["inputs", "file"]:
                    raw = (parse_qs(query, errors="surrogateescape").get("path") or [""])[0]
                    path = collector.input_file(raw)
                    self._send_file(path)
                else:
                    self._answer(404, {"message": f"no such route {self.path[:100]}"})
            except Refused as e:
                self._answer(e.status, {"message": e.message})

        def _send_file(self, path: str) -> None:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                left = size
                while left:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        break  # the file shrank: the length check on the rank side says so
                    self.wfile.write(chunk)
                    left -= len(chunk)

        def _rank(self, raw: str) -> int:
            if not raw.isdigit() or int(raw) >= collector.settings.world_size:
                raise Refused(400, f"rank {raw[:20]!r} is not allowed; allowed: 0..{collector.settings.world_size - 1}")
            return int(raw)

        def _length(self) -> int:
            raw = self.headers.get("Content-Length")
            if raw is None or not raw.isdigit():
                raise Refused(411, "send a Content-Length")
            return int(raw)

        def do_PUT(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            _query, parts = self._route()
            try:
                if len(parts) < 3 or parts[0] != "outputs" or not collector.settings.output_dir:
                    raise Refused(404, "this job's outputs are not collected; PUT /outputs/<rank>/<path>")
                rank, length = self._rank(parts[1]), self._length()
                rel = safe_relpath(unquote_to_bytes("/".join(parts[2:])))
                answer = collector.receive(rank, rel, length, self.rfile)
                self._answer(201 if answer["kept"] else 200, answer)
            except Refused as e:
                self._answer(e.status, {"message": e.message}, close=e.unread)

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            _query, parts = self._route()
            try:
                if len(parts) != 3 or parts[0] != "outputs" or parts[2] != "done":
                    raise Refused(404, "POST /outputs/<rank>/done")
                rank, length = self._rank(parts[1]), self._length()
                if length > 64 * 1024:
                    raise Refused(413, "the done body is at most 64 KiB")
                body = json.loads(self.rfile.read(length) or b"{}")
                code = body.get("exit_code")
                unsent = [str(u)[:300] for u in (body.get("unsent") or [])][:MAX_LISTED]
                summary = collector.rank_done(rank, code if isinstance(code, int) else -1, unsent)
                print(f"{PREFIX}: {json.dumps(summary)}", flush=True)
                self._answer(200, summary)
            except (ValueError, AttributeError) as e:
                self._answer(400, {"message": f"the done body must be a JSON object: {e}"}, close=True)
            except Refused as e:
                self._answer(e.status, {"message": e.message}, close=True)

    return Handler


def serve(settings: Settings, *, ready: threading.Event | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Serve the ranks until every rank handed over its outputs after succeeding, or ``stop`` is set
    (SIGTERM); return the final summary (also printed).

    Raises:
        TransferError: The output folder cannot be made, or the port is taken.
    """
    collector = Collector(settings)
    collector.prepare()
    try:
        server = ThreadingHTTPServer(("0.0.0.0", settings.port), _handler(collector))  # noqa: S104 - the pod's own address
    except OSError as e:
        raise TransferError(f"cannot listen on port {settings.port}: {e.strerror}") from e
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="kubelab-collector", daemon=True)
    thread.start()
    what = f"outputs into {settings.output_dir}" if settings.output_dir else "no outputs"
    print(f"{PREFIX}: serving {settings.world_size} rank(s) on port {settings.port}: {what}; "
          f"{len(settings.inputs)} input path(s)", flush=True)
    if ready is not None:
        ready.set()
    stop = stop or threading.Event()
    while not (collector.finished.is_set() or stop.is_set()):
        stop.wait(0.2)
    server.shutdown()
    server.server_close()
    summary = collector.summary(closing=not collector.finished.is_set())
    print(f"{PREFIX}: {json.dumps(summary)}", flush=True)
    return summary


def collect_main(env: Mapping[str, str]) -> int:
    """``python -m kubelab.jobs.transfer collect``: serve until done or SIGTERM; 0, or 2 on a setup error."""
    try:
        settings = Settings.from_env(env)
    except TransferError as e:
        print(f"{PREFIX}: error: {e}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        serve(settings, stop=stop)
    except TransferError as e:
        print(f"{PREFIX}: error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


# -- the rank side -------------------------------------------------------------------------------


class _Client:
    """Requests to the collector, reconnecting when a connection breaks."""

    def __init__(self, url: str, token: str, timeout: float = REQUEST_TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise TransferError(f"KUBELAB_COLLECTOR={url!r} is not an http://host:port URL")
        self.host, self.port = parts.hostname, parts.port or 80
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None,
                attempts: int = 3) -> http.client.HTTPResponse:
        """One request, retried on a broken connection (the body must then be re-readable: a file is rewound)."""
        for attempt in range(attempts):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout, blocksize=CHUNK)
            try:
                if hasattr(body, "seek"):
                    body.seek(0)
                self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
                response = self.conn.getresponse()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn = None  # read this answer, then reconnect for the next
                return response
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == attempts - 1:
                    raise TransferError(f"the collector {self.host}:{self.port} broke the connection: {e}") from e
                time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        response = self.request(method, path, body, headers)
        data = response.read()
        try:
            return response.status, json.loads(data or b"{}")
        except ValueError:
            return response.status, {"message": data[:200].decode("utf-8", "replace")}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def wait_ready(self, timeout: float, sleep: float = 1.0) -> None:
        """Wait until the collector answers ``/healthz``.

        Raises:
            TransferError: It did not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                if time.monotonic() >= deadline:
                    raise TransferError(f"the job's collector {self.host}:{self.port} did not answer within "
                                        f"{timeout:g}s ({e}); it mounts your home on the node that holds it") from e
            if time.monotonic() >= deadline:
                raise TransferError(f"the job's collector {self.host}:{self.port} was not ready within {timeout:g}s")
            time.sleep(sleep)


def fetch_inputs(url: str, token: str, timeout: float) -> tuple[int, int]:
    """Copy the job's inputs from the collector to the same paths here; return (files, bytes).

    Raises:
        TransferError: The collector is unreachable, an input is missing or over the budget, or a
            file arrived short.
    """
    client = _Client(url, token)
    client.wait_ready(timeout)
    try:
        status, manifest = client.json("GET", "/inputs")
        if status != 200:
            raise TransferError(f"inputs: {manifest.get('message', status)}")
        if manifest.get("missing"):
            raise TransferError(f"inputs: {', '.join(manifest['missing'])} do(es) not exist in your home")
        total = 0
        for item in manifest["files"]:
            path, size = item["path"], int(item["size"])
            response = client.request("GET", f"/inputs/file?path={quote(os.fsencode(path))}")
            if response.status != 200:
                raise TransferError(f"inputs: {path}: {response.read()[:200].decode('utf-8', 'replace')}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                _copy(response, f, size)
            os.chmod(path, int(item.get("mode", 0o644)) & 0o777)
            total += size
        return len(manifest["files"]), total
    except Refused as e:
        raise TransferError(f"inputs: {e.message}") from e
    finally:
        client.close()


def send_outputs(url: str, token: str, rank: int, folder: str, exit_code: int, timeout: float) -> dict[str, Any]:
    """Hand every file under ``folder`` to the collector, then say this rank is done.

    Returns:
        ``{"sent", "bytes", "skipped", "unsent", "summary"}``; ``unsent`` names what the collector
        refused (over the budget) and why.

    Raises:
        TransferError: The collector is unreachable.
    """
    client = _Client(url, token)
    client.wait_ready(timeout)
    sent = size_sent = skipped = 0
    unsent: list[str] = []
    try:
        files = list(walk_files(folder)) if os.path.isdir(folder) else []
        for i, (rel, size) in enumerate(files):
            with open(os.path.join(folder, rel), "rb") as f:
                path = f"/outputs/{rank}/{quote(os.fsencode(rel))}"
                status, answer = client.json("PUT", path, body=f, headers={"Content-Length": str(size)})
            if status == 201:
                sent, size_sent = sent + 1, size_sent + size
            elif status == 200:
                skipped += 1
            else:
                unsent.append(f"{rel}: {answer.get('message', status)}")
                if status == 413:  # the budget is spent: the rest cannot come back either
                    unsent += [f"{r}: not sent, the job's output budget is spent" for r, _ in files[i + 1:]][:MAX_LISTED]
                    break
        body = json.dumps({"exit_code": exit_code, "sent": sent, "unsent": unsent}).encode()
        status, summary = client.json("POST", f"/outputs/{rank}/done", body=body,
                                      headers={"Content-Type": "application/json", "Content-Length": str(len(body))})
        return {"sent": sent, "bytes": size_sent, "skipped": skipped, "unsent": unsent,
                "summary": summary if status == 200 else None}
    finally:
        client.close()


def main(argv: list[str]) -> int:
    """``python -m kubelab.jobs.transfer collect``."""
    if argv != ["collect"]:
        print(f"usage: python -m kubelab.jobs.transfer collect (got {argv!r})", file=sys.stderr)
        return 2
    return collect_main(os.environ)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
