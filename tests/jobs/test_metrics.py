"""``kubelab.jobs.metrics``: validation, the bounded buffer, the sinks, the flush at exit."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.jobs import metrics
from kubelab.jobs.metrics import FileSink, HttpSink, Recorder, Sink, current_rank, sink_from_env


class ListSink(Sink):
    """Keeps batches in a list; answers with the given results in turn (True = taken)."""

    def __init__(self, results: list[bool | Exception] | None = None) -> None:
        self.batches: list[dict[str, Any]] = []
        self.results = list(results or [])

    def send(self, batch: dict[str, Any], timeout: float) -> bool:
        result = self.results.pop(0) if self.results else True
        if isinstance(result, Exception):
            raise result
        if result:
            self.batches.append(json.loads(json.dumps(batch)))
        return result


@pytest.mark.parametrize(
    ("step", "scalars", "kept"),
    [
        (0, {"loss": 0.5}, True),
        (3, {"loss": 1, "train/acc": 0.9, "lr-0.x": 1e-3}, True),
        (-1, {"loss": 0.5}, False),
        (True, {"loss": 0.5}, False),
        ("7", {"loss": 0.5}, False),
        (1, {"loss": float("nan")}, False),
        (1, {"loss": float("inf")}, False),
        (1, {"loss": "0.5"}, False),
        (1, {"loss": True}, False),
        (1, {"loss": [1.0]}, False),
        (1, {"9lives": 1.0}, False),
        (1, {"a" * 65: 1.0}, False),
        (1, {"bad name": 1.0}, False),
        (1, {f"m{i}": 1.0 for i in range(33)}, False),
    ],
    ids=["one", "several", "negative-step", "bool-step", "str-step", "nan", "inf", "str-value", "bool-value",
         "list-value", "digit-first", "too-long", "space", "too-many"],
)
def test_log_validates_names_and_values(step: Any, scalars: dict[str, Any], kept: bool,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    sink = ListSink()
    rec = Recorder(sink, rank=0, start=False)
    assert rec.log(step, scalars) is kept
    if not kept:
        assert rec.invalid >= 1 and "kubelab: " in capsys.readouterr().err
    rec.flush_once()
    points = sink.batches[0]["points"] if sink.batches else []
    assert len(points) == (len(scalars) if kept else 0)


def test_numpy_like_and_tensor_values_are_numbers() -> None:
    torch = pytest.importorskip("torch")
    sink = ListSink()
    rec = Recorder(sink, rank=2, start=False)
    assert rec.log(torch.tensor(4), {"loss": torch.tensor(0.25), "x": torch.tensor([1.0, 2.0])}) is False
    rec.flush_once()
    assert sink.batches == [{"rank": 2, "points": [["loss", 4, 0.25]], "dropped": 0}]


def test_a_bad_value_is_reported_once(capsys: pytest.CaptureFixture[str]) -> None:
    rec = Recorder(None, rank=0, start=False)
    for _ in range(5):
        rec.log(1, {"loss": float("nan")})
    assert capsys.readouterr().err.count("not a finite number") == 1 and rec.invalid == 5


def test_the_buffer_drops_the_oldest_and_counts_them() -> None:
    sink = ListSink()
    rec = Recorder(sink, rank=0, max_buffer=10, start=False)
    for step in range(25):
        rec.log(step, {"loss": float(step)})
    assert rec.dropped == 15
    rec.flush_once()
    assert [p[1] for p in sink.batches[0]["points"]] == list(range(15, 25))
    assert sink.batches[0]["dropped"] == 15


def test_a_batch_is_retried_then_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = ListSink([False, False, True])
    rec = Recorder(sink, rank=0, start=False)
    rec.log(1, {"loss": 1.0})
    assert rec.flush_once() is True and rec.sent == 1
    never = ListSink([False] * metrics.SEND_ATTEMPTS)
    rec = Recorder(never, rank=0, start=False)
    rec.log(1, {"loss": 1.0, "acc": 0.5})
    assert rec.flush_once() is False and rec.dropped == 2 and never.batches == []


def test_a_refused_batch_is_dropped_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    sink = ListSink([ValueError("the jobs service refused the metrics: 401 Unauthorized")])
    rec = Recorder(sink, rank=0, start=False)
    rec.log(1, {"loss": 1.0})
    assert rec.flush_once() is False and rec.dropped == 1 and sink.results == []
    assert "401 Unauthorized" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "rank"),
    [({}, 0), ({"KUBELAB_RANK": "3"}, 3), ({"KUBELAB_RANK": "0", "KUBELAB_RANK_OFFSET": "1"}, 1),
     ({"RANK": "5", "KUBELAB_RANK": "1"}, 5), ({"RANK": "x", "KUBELAB_RANK": "2"}, 2)],
    ids=["none", "kubelab", "offset", "torchrun-wins", "garbage-rank"],
)
def test_rank_comes_from_torchrun_else_kubelab(env: dict[str, str], rank: int) -> None:
    assert current_rank(env) == rank


def test_the_sink_comes_from_the_environment(tmp_path: Path) -> None:
    assert sink_from_env({}) is None
    assert isinstance(sink_from_env({"KUBELAB_METRICS_FILE": str(tmp_path / "m")}), FileSink)
    http_sink = sink_from_env({"KUBELAB_METRICS_URL": "http://127.0.0.1:1/x", "KUBELAB_METRICS_TOKEN": "t"})
    assert isinstance(http_sink, HttpSink)
    assert sink_from_env({"KUBELAB_METRICS_URL": "http://127.0.0.1:1/x"}) is None  # no token, no send


class _Ingest(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []
    status = 204

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Authorization"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ingest_server() -> Iterator[tuple[str, type[_Ingest]]]:
    handler = type("Ingest", (_Ingest,), {"received": [], "status": 204})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ingest", handler
    server.shutdown()
    server.server_close()


def test_http_sink_posts_json_with_the_token(ingest_server: tuple[str, type[_Ingest]]) -> None:
    url, handler = ingest_server
    sink = HttpSink(url, "s3cret")
    assert sink.send({"rank": 1, "points": [["loss", 0, 1.5]], "dropped": 0}, 2) is True
    assert handler.received == [("Bearer s3cret", {"rank": 1, "points": [["loss", 0, 1.5]], "dropped": 0})]
    handler.status = 401
    with pytest.raises(ValueError, match="refused the metrics: 401"):
        sink.send({"rank": 1, "points": [], "dropped": 0}, 2)
    handler.status = 503
    assert sink.send({"rank": 1, "points": [], "dropped": 0}, 2) is False
    assert HttpSink("http://127.0.0.1:9/unreachable", "t").send({"points": []}, 0.5) is False


SCRIPT = textwrap.dedent("""
    import sys, time
    from kubelab.jobs import metrics
    for step in range(int(sys.argv[1])):
        metrics.log(step, loss=1.0 / (step + 1))
    time.sleep(float(sys.argv[2]))
""")


@pytest.mark.parametrize(("steps", "sleep"), [(50, 0.0), (3000, 1.5)], ids=["exit-at-once", "after-a-flush"])
def test_every_point_reaches_the_file_by_exit(tmp_path: Path, steps: int, sleep: float) -> None:
    path = tmp_path / "metrics.jsonl"
    env = {"KUBELAB_METRICS_FILE": str(path), "KUBELAB_RANK": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", SCRIPT, str(steps), str(sleep)], env=env, check=True, timeout=60)
    batches = [json.loads(line) for line in path.read_text().splitlines()]
    assert {b["rank"] for b in batches} == {1}
    assert all(len(b["points"]) <= metrics.MAX_BATCH for b in batches)
    assert [p[1] for b in batches for p in b["points"]] == list(range(steps))


def test_background_thread_sends_about_once_a_second() -> None:
    sink = ListSink()
    rec = Recorder(sink, rank=0, flush_seconds=0.05)
    try:
        rec.log(1, {"loss": 1.0})
        for _ in range(100):
            if sink.batches:
                break
            threading.Event().wait(0.02)
        assert sink.batches and sink.batches[0]["points"] == [["loss", 1, 1.0]]
    finally:
        rec.close(1)
