"""Unit tests of container log files and the kubelet log API (a real TLS server on loopback)."""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
import threading

import pytest

from kubelab.devcluster.kubeletapi import KubeletApiServer, LogNotFound, LogSource, parse_query, stream_log
from kubelab.devcluster.logfile import LogQuery, LogWriter, encode_records, parse_record, parse_time, render, select
from kubelab.devcluster.pki import KUBELET_CLIENT_CN, CertPair, issue, make_ca, node_serving_cert

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC)


def records(data: bytes, at: datetime.datetime = T0, stream: str = "stdout"):
    return [parse_record(line) for line in encode_records(data, stream, at).splitlines()]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\nb\n", [(b"a", True), (b"b", True)]),
        (b"a\npartial", [(b"a", True), (b"partial", False)]),
        (b"\n", [(b"", True)]),
    ],
    ids=["lines", "trailing-partial", "empty-line"],
)
def test_encode_then_parse(data, expected):
    assert [(r.text, r.complete) for r in records(data)] == expected


def test_record_keeps_time_and_stream():
    (rec,) = records(b"x\n", stream="stderr")
    assert rec.stream == "stderr" and rec.time == T0 and rec.stamp == "2026-01-02T03:04:05.123456000Z"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2026-01-02T03:04:05Z", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)),
     ("2026-01-02T03:04:05.123456789Z", T0)],
    ids=["seconds", "nanoseconds"],
)
def test_parse_time(value, expected):
    assert parse_time(value) == expected


LATER = T0 + datetime.timedelta(seconds=10)
LOG = [*records(b"one\ntwo\n"), *records(b"thr", LATER), *records(b"ee\nfour\n", LATER)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (LogQuery(), b"one\ntwo\nthree\nfour\n"),
        (LogQuery(tail_lines=2), b"three\nfour\n"),
        (LogQuery(tail_lines=0), b""),
        (LogQuery(tail_lines=10), b"one\ntwo\nthree\nfour\n"),
        (LogQuery(since=LATER), b"three\nfour\n"),
    ],
    ids=["all", "tail-joins-partial-line", "tail-zero", "tail-more-than-all", "since"],
)
def test_select_and_render(query, expected):
    assert b"".join(render(select(LOG, query), query.timestamps)) == expected


def test_render_with_timestamps_prefixes_each_line_once():
    out = b"".join(render(LOG, timestamps=True)).decode().splitlines()
    assert out[2] == "2026-01-02T03:04:15.123456000Z three"
    assert all(line.startswith("2026-01-02T03:04:") for line in out)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("follow=true&tailLines=5&timestamps=true", LogQuery(follow=True, tail_lines=5, timestamps=True)),
        ("sinceSeconds=10", LogQuery(since=T0 - datetime.timedelta(seconds=10))),
        ("sinceTime=2026-01-02T03%3A04%3A05Z", LogQuery(since=T0.replace(microsecond=0))),
        ("limitBytes=7&previous=true", LogQuery(limit_bytes=7, previous=True)),
    ],
    ids=["follow-tail-timestamps", "since-seconds", "since-time", "limit-previous"],
)
def test_parse_query(query, expected):
    assert parse_query(query, T0) == expected


def test_stream_log_follows_until_container_ends(tmp_path):
    path = tmp_path / "0.log"
    writer = LogWriter(path)
    writer.write("stdout", b"first\n")
    running = threading.Event()
    running.set()

    def later() -> None:
        writer.write("stdout", b"second\n")
        running.clear()

    threading.Timer(0.3, later).start()
    out = b"".join(stream_log(LogSource(path, running.is_set), LogQuery(follow=True)))
    assert out == b"first\nsecond\n"


def test_stream_log_limit_bytes_cuts_mid_line(tmp_path):
    path = tmp_path / "0.log"
    LogWriter(path).write("stdout", b"hello\nworld\n")
    assert b"".join(stream_log(LogSource(path, lambda: False), LogQuery(limit_bytes=8))) == b"hello\nwo"


@pytest.fixture(scope="module")
def kubelet(tmp_path_factory):
    """A kubelet API server with one log, plus client certs with the right and a wrong CN."""
    pki = tmp_path_factory.mktemp("pki")
    ca = make_ca(pki)
    good = issue(ca, CertPair(pki / "good.crt", pki / "good.key"), KUBELET_CLIENT_CN, client=True)
    bad = issue(ca, CertPair(pki / "bad.crt", pki / "bad.key"), "some-user", org="system:masters", client=True)
    serving = node_serving_cert(pki, "test-node", "127.0.0.1")
    log = pki / "c.log"
    LogWriter(log).write("stdout", b"from the pod\n")

    def provider(ns: str, pod: str, container: str, previous: bool) -> LogSource:
        if (ns, pod, container) != ("ns", "p", "main"):
            raise LogNotFound(f'pods "{pod}" not found')
        return LogSource(log, lambda: False)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = KubeletApiServer(("127.0.0.1", port), (serving.cert, serving.key), ca.cert, KUBELET_CLIENT_CN, provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port, ca, good, bad
    server.shutdown()


def _get(port: int, ca: CertPair, cert: CertPair, path: str) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_kubelet_api_serves_logs_to_the_apiserver_cert(kubelet):
    port, ca, good, _ = kubelet
    assert _get(port, ca, good, "/containerLogs/ns/p/main") == (200, b"from the pod\n")
    status, body = _get(port, ca, good, "/containerLogs/ns/missing/main")
    assert status == 404 and b"not found" in body


def test_kubelet_api_refuses_other_client_names_from_the_same_ca(kubelet):
    port, ca, _, bad = kubelet
    assert _get(port, ca, bad, "/containerLogs/ns/p/main")[0] == 403


def test_kubelet_api_requires_a_client_cert(kubelet):
    port, ca, _, _ = kubelet
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        conn.request("GET", "/containerLogs/ns/p/main")
        conn.getresponse()
    conn.close()
