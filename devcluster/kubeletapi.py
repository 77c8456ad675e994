"""The part of the kubelet API the apiserver calls for logs: ``GET /containerLogs/{ns}/{pod}/{container}``.

HTTPS on the node's InternalIP and port, with a serving cert signed by the cluster
CA. Clients must present a cert from that CA with the apiserver's kubelet-client
CN: the same CA signs user certs, so the CA alone would let any user in. The TLS
handshake runs in each connection's own thread so one slow client never stalls
the accept loop.
"""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubelab.devcluster.logfile import LogQuery, Record, parse_record, parse_time, render, select

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class LogSource:
    """Where one container instance's log is and whether it may still grow.

    Attributes:
        path: The log file.
        live: Returns True while the container instance still runs.
    """

    path: Path
    live: Callable[[], bool]


class LogNotFound(LookupError):
    """No such pod/container, or it has no log yet; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


Provider = Callable[[str, str, str, bool], LogSource]


def parse_query(query: str, now: datetime.datetime) -> LogQuery:
    """Turn the apiserver's query string into a :class:`LogQuery`.

    Raises:
        ValueError: For malformed numbers or times.
    """
    q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}

    def flag(name: str) -> bool:
        return q.get(name, "false").lower() in ("true", "1")

    since = None
    if "sinceSeconds" in q:
        since = now - datetime.timedelta(seconds=int(q["sinceSeconds"]))
    elif "sinceTime" in q:
        since = parse_time(q["sinceTime"])
    return LogQuery(
        follow=flag("follow"),
        tail_lines=int(q["tailLines"]) if "tailLines" in q else None,
        timestamps=flag("timestamps"),
        since=since,
        limit_bytes=int(q["limitBytes"]) if "limitBytes" in q else None,
        previous=flag("previous"),
    )


def _complete_lines(buffer: bytearray) -> list[bytes]:
    """Pop the complete lines from ``buffer`` (a record may be mid-write at the end)."""
    end = buffer.rfind(b"\n")
    if end < 0:
        return []
    lines = bytes(buffer[: end + 1]).splitlines()
    del buffer[: end + 1]
    return lines


def stream_log(source: LogSource, query: LogQuery, closed: Callable[[], bool] = lambda: False) -> Iterator[bytes]:
    """Yield the log's bytes for ``query``; with follow, keep yielding until the container ends.

    Args:
        source: The log file and its liveness.
        query: The options.
        closed: Returns True when the client went away (stop early).
    """
    remaining = query.limit_bytes
    buffer = bytearray()
    with open(source.path, "rb") as f:
        buffer += f.read()
        records = [r for r in map(parse_record, _complete_lines(buffer)) if r is not None]
        at_start = True
        pending: list[Record] = select(records, query)
        while True:
            for piece in render(pending, query.timestamps, at_start):
                if remaining is not None:
                    piece = piece[:remaining]
                    remaining -= len(piece)
                if piece:
                    yield piece
                if remaining is not None and remaining <= 0:
                    return
            if pending:
                at_start = pending[-1].complete
                pending = []
            if not query.follow or closed():
                return
            live = source.live()
            chunk = f.read()
            if not chunk:
                if not live:
                    return
                time.sleep(POLL_SECONDS)
                continue
            buffer += chunk
            pending = [r for r in map(parse_record, _complete_lines(buffer)) if r is not None]
            if query.since is not None:
                pending = [r for r in pending if r.time >= query.since]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KubeletApiServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        log.debug("kubelet api %s: " + format, self.client_address[0], *args)

    def _error(self, status: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["healthz"]:
            self._error(200, "ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._error(404, f"not found: {url.path} (this process node serves only /containerLogs)")
            return
        _, namespace, pod, container = parts
        try:
            query = parse_query(url.query, datetime.datetime.now(datetime.UTC))
            source = self.server.provider(namespace, pod, container, query.previous)
        except ValueError as e:
            self._error(400, f"bad log query: {e}")
            return
        except LogNotFound as e:
            self._error(e.status, str(e))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for piece in stream_log(source, query):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            # The apiserver closes the stream when its client goes away (kubectl logs -f ^C).
            self.close_connection = True


class _Refuse(BaseHTTPRequestHandler):
    """Answers any request with 403 after reading it (closing unread input would reset the connection)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        log.debug("kubelet api refused %s: " + format, self.client_address[0], *args)

    def parse_request(self) -> bool:
        if super().parse_request():
            self.close_connection = True
            body = b"forbidden: only the apiserver's kubelet client certificate is accepted\n"
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        return False


class KubeletApiServer(ThreadingHTTPServer):
    """HTTPS server for one node's kubelet API.

    Args:
        address: ``(ip, port)`` to listen on.
        cert: Serving cert and key paths.
        ca: The cluster CA that must have signed clients' certs.
        allowed_cn: The only client CN accepted (the apiserver's kubelet-client cert).
        provider: Finds a container's log.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], cert: tuple[Path, Path], ca: Path, allowed_cn: str, provider: Provider
    ) -> None:
        super().__init__(address, _Handler)
        self.provider = provider
        self.allowed_cn = allowed_cn
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert[0]), str(cert[1]))
        self.context.load_verify_locations(str(ca))
        self.context.verify_mode = ssl.CERT_REQUIRED

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        """Handshake in the connection's thread, check the client CN, then serve HTTP."""
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.info("kubelet api: TLS handshake from %s failed: %s", client_address[0], e)
            return
        try:
            subject = dict(x[0] for x in tls.getpeercert().get("subject", ()))
            if subject.get("commonName") != self.allowed_cn:
                log.warning("kubelet api: refused client CN %r", subject.get("commonName"))
                _Refuse(tls, client_address, self)
                return
            # Follow streams can be idle for long; only the handshake needs a timeout.
            tls.settimeout(None)
            self.RequestHandlerClass(tls, client_address, self)
        except (OSError, ssl.SSLError) as e:
            log.debug("kubelet api: connection from %s ended: %s", client_address[0], e)
        finally:
            tls.close()


def serve_in_thread(server: KubeletApiServer, name: str) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return thread
