"""HubBackend over real HTTP: error mapping, streamed logs, retries and the token header.

The server here is a real tornado server answering the REST API of docs/jobs.md with the
documented bodies; it stands in for the jobs service only to produce answers the real service
gives rarely or never on demand (a dropped connection, a 502 page from a proxy, a slow log
stream). The same client against the real service, inside a real hub, is
``test_client_service.py``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.httpserver
import tornado.web

from kubelab.jobs import JobClient, JobSpec, JobSpecError
from kubelab.jobs.backends.hub import HubBackend

TOKEN = "secret-token-abc"


class Service:
    """State of the stand-in service, shared by its handlers."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.drop_next_post = False
        self.log_lines: list[str] = []
        self.log_delay = 0.0
        self.files: dict[str, str] | None = None
        self.files_mode = "home"
        self.pending_follows = 0  # follows answered empty, as for a pod that is still starting


class Handler(tornado.web.RequestHandler):
    def initialize(self, service: Service) -> None:
        self.service = service

    def prepare(self) -> None:
        self.service.requests.append((self.request.method, self.request.uri))
        if self.request.headers.get("Authorization") != f"token {TOKEN}":
            self.fail(403, "missing scope custom:kubelab:jobs")

    def fail(self, status: int, message: str, **extra: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status, "message": message, **extra}))


class OptionsHandler(Handler):
    def get(self) -> None:
        self.write({"user": "alice", "frameworks": ["pytorch"], "gpu_classes": [], "max_workers": 4,
                    "quota": {"max_gpus": 2, "used_gpus": 0, "remaining_gpus": 2, "used_by": []},
                    "files": self.service.files_mode})


class JobsHandler(Handler):
    def get(self) -> None:
        self.write({"jobs": list(self.service.jobs.values())})

    def post(self) -> None:
        body = json.loads(self.request.body)
        files = body.pop("files", None)
        try:
            spec = JobSpec.from_dict(body)
        except JobSpecError as e:
            return self.fail(400, str(e), field=e.field)
        if spec.gpus_per_worker > 2:
            return self.fail(400, f"gpus_per_worker: {spec.gpus_per_worker} is not allowed; allowed: 1, 2",
                             field="gpus_per_worker")
        if spec.total_gpus > 2:
            return self.fail(403, "GPU quota: you use 1 of 2 GPUs (server 'gpu' 1 GPU); this job needs 4")
        if spec.name in self.service.jobs:
            return self.fail(409, f"job '{spec.name}' already exists")
        self.service.files = files
        self.service.jobs[spec.name] = {"name": spec.name, "user": "alice", "framework": spec.framework,
                                        "workers": spec.workers, "phase": "Pending"}
        if self.service.drop_next_post:
            # The job was created, but the answer never arrives: the connection just closes.
            self.service.drop_next_post = False
            self.request.connection.stream.close()
            return None
        self.set_status(201)
        self.write(self.service.jobs[spec.name])
        return None


class JobHandler(Handler):
    def get(self, name: str) -> None:
        if name not in self.service.jobs:
            return self.fail(404, f"no job '{name}'")
        self.write(self.service.jobs[name])
        return None

    def delete(self, name: str) -> None:
        if self.service.jobs.pop(name, None) is None:
            return self.fail(404, f"no job '{name}'")
        self.write({"name": name, "user": "alice", "framework": "pytorch", "workers": 1, "phase": "Cancelled"})
        return None


class LogsHandler(Handler):
    async def get(self, name: str) -> None:
        if name not in self.service.jobs:
            return self.fail(404, f"no job '{name}'")
        if self.get_argument("rank") == "9":
            return self.fail(400, "rank: 9 is not allowed; allowed: 0..1", field="rank")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        follow = self.get_argument("follow") == "1"
        if follow and self.service.pending_follows:
            self.service.pending_follows -= 1
            return None  # the real service gives up waiting for a pod that has not started
        lines = self.service.log_lines
        tail = self.get_argument("tail", None)
        if tail is not None:
            lines = lines[-int(tail):]
        for line in lines:
            self.write(line + "\n")
            await self.flush()  # one chunk per line, as a followed pod log arrives
            await asyncio.sleep(self.service.log_delay)
        if follow:  # a follow ends when the rank's container ends
            self.service.jobs[name]["phase"] = "Succeeded"
        return None


class BrokenHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        # What a proxy in front of a stopped hub answers: HTML, not the service's JSON.
        self.set_status(502)
        self.finish("<html><body>Bad Gateway: upstream hub is not running</body></html>")


def make_app(service: Service) -> tornado.web.Application:
    prefix = r"/hub/api/kubelab"
    kw = {"service": service}
    return tornado.web.Application([
        (rf"{prefix}/options", OptionsHandler, kw),
        (rf"{prefix}/jobs", JobsHandler, kw),
        (rf"{prefix}/jobs/([^/]+)", JobHandler, kw),
        (rf"{prefix}/jobs/([^/]+)/logs", LogsHandler, kw),
        (r"/broken/hub/api/kubelab/options", BrokenHandler),
    ])


class ServerThread:
    """The stand-in service on 127.0.0.1:<port>, in a thread with its own event loop."""

    def __init__(self, service: Service, port: int) -> None:
        self.service, self.port = service, port
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        server = tornado.httpserver.HTTPServer(make_app(self.service))
        server.listen(self.port, "127.0.0.1")
        self.ready.set()
        self.loop.run_forever()
        server.stop()
        self.loop.close()

    def start(self) -> ServerThread:
        self.thread.start()
        self.ready.wait(10)
        return self

    def stop(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def service() -> Iterator[tuple[Service, str]]:
    state = Service()
    port = free_port()
    server = ServerThread(state, port).start()
    yield state, f"http://127.0.0.1:{port}/hub/api"
    server.stop()


@pytest.fixture
def client(service: tuple[Service, str]) -> JobClient:
    return JobClient("hub", api_url=service[1], token=TOKEN, retries=2, backoff=0.05)


@pytest.mark.parametrize(
    ("fields", "error", "match", "field"),
    [
        ({"gpus_per_worker": 8, "gpu_class": "a100"}, JobSpecError, r"8 is not allowed; allowed: 1, 2",
         "gpus_per_worker"),
        ({"workers": 2, "gpus_per_worker": 2, "gpu_class": "a100"}, PermissionError,
         r"GPU quota: you use 1 of 2 GPUs \(server 'gpu' 1 GPU\)", None),
    ],
    ids=["400-names-the-field", "403-quota"],
)
def test_submit_errors_map_to_exceptions(client: JobClient, fields: dict, error: type, match: str,
                                         field: str | None) -> None:
    with pytest.raises(error, match=match) as info:
        client.submit(name="big", script="train.py", **fields)
    if field is not None:
        assert info.value.field == field
        assert info.value.problem == "8 is not allowed; allowed: 1, 2"


def test_unknown_field_from_the_service_names_it(client: JobClient, service: tuple[Service, str]) -> None:
    # Sent raw: JobSpec would refuse the key before sending; the service must too.
    backend = client.backend
    assert isinstance(backend, HubBackend)
    with pytest.raises(JobSpecError, match="unknown field") as info:
        backend._request("POST", "jobs", json={"name": "x", "script": "t.py", "colour": "red"})
    assert info.value.field == "colour"


def test_404_409_and_other_statuses(client: JobClient, service: tuple[Service, str]) -> None:
    with pytest.raises(KeyError, match="no job 'ghost'"):
        client.get("ghost")
    with pytest.raises(KeyError, match="no job 'ghost'"):
        client.cancel("ghost")
    client.submit(name="ddp", script="train.py", workers=2)
    with pytest.raises(JobSpecError, match="job 'ddp' already exists") as info:
        client.submit(name="ddp", script="train.py", workers=2)
    assert info.value.field == "name"
    proxied = JobClient("hub", api_url=service[1].replace("/hub/api", "/broken/hub/api"), token=TOKEN)
    with pytest.raises(RuntimeError, match=r"GET http://127\.0\.0\.1:\d+/broken/hub/api/kubelab/options: "
                                           r"502 Bad Gateway: <html><body>Bad Gateway: upstream hub"):
        proxied.options()


def test_wrong_token_is_a_permission_error_and_never_shown(service: tuple[Service, str]) -> None:
    client = JobClient("hub", api_url=service[1], token="not-the-token")
    with pytest.raises(PermissionError, match="missing scope custom:kubelab:jobs") as info:
        client.list()
    assert "not-the-token" not in str(info.value) and "not-the-token" not in repr(client)


def test_submit_list_get_cancel_round_trip(client: JobClient, service: tuple[Service, str]) -> None:
    status = client.submit(JobSpec(name="ddp", script="train.py", workers=2))
    assert (status.name, status.phase, status.workers) == ("ddp", "Pending", 2)
    assert [j.name for j in client.list()] == ["ddp"]
    assert client.get("ddp").framework == "pytorch"
    client.cancel("ddp")
    assert client.list() == []
    assert ("DELETE", "/hub/api/kubelab/jobs/ddp") in service[0].requests


def test_logs_are_streamed_line_by_line(client: JobClient, service: tuple[Service, str]) -> None:
    state = service[0]
    client.submit(name="ddp", script="train.py")
    state.log_lines = [f"line {i}" for i in range(5)]
    state.log_delay = 0.4
    start = time.monotonic()
    lines = client.logs("ddp", rank=1, follow=True)
    first = next(lines)
    # The first line arrives long before the server has written all five (2 s in all).
    assert first == "line 0" and time.monotonic() - start < 1.5
    assert list(lines) == [f"line {i}" for i in range(1, 5)]
    assert state.requests[-2:] == [("GET", "/hub/api/kubelab/jobs/ddp/logs?rank=1&follow=1"),
                                   ("GET", "/hub/api/kubelab/jobs/ddp")]  # checks the rank ended
    state.log_delay = 0
    assert list(client.logs("ddp", tail=2)) == ["line 3", "line 4"]

    # A follow that the service ends before the rank started is opened again until it has.
    state.jobs["ddp"]["phase"] = "Pending"
    state.pending_follows = 2
    assert list(client.logs("ddp", follow=True)) == [f"line {i}" for i in range(5)]
    follows = [r for r in state.requests if "follow=1" in r[1]]
    assert len(follows) == 4  # the one above, two empty answers, and the one with the lines
    with pytest.raises(JobSpecError, match=r"rank: 9 is not allowed") as info:
        list(client.logs("ddp", rank=9))
    assert info.value.field == "rank"


def test_connection_errors_are_retried_until_the_service_is_up() -> None:
    port = free_port()
    state = Service()
    server = ServerThread(state, port)
    # Nothing listens yet: the first attempts get "connection refused", a real fault.
    threading.Timer(0.6, server.start).start()
    client = JobClient("hub", api_url=f"http://127.0.0.1:{port}/hub/api", token=TOKEN, retries=8, backoff=0.2)
    try:
        assert client.options()["user"] == "alice"
    finally:
        server.ready.wait(5)
        server.stop()


def test_unreachable_service_is_a_runtime_error_with_context() -> None:
    port = free_port()  # nothing listens there
    client = JobClient("hub", api_url=f"http://127.0.0.1:{port}/hub/api", token=TOKEN, retries=2, backoff=0.01)
    with pytest.raises(RuntimeError, match=rf"GET http://127\.0\.0\.1:{port}/hub/api/kubelab/jobs: cannot reach "
                                           r"the kubelab jobs service after 3 attempt\(s\)"):
        client.list()


def test_submit_retried_after_a_dropped_answer_returns_the_created_job(
    client: JobClient, service: tuple[Service, str]
) -> None:
    state = service[0]
    state.drop_next_post = True
    status = client.submit(name="ddp", script="train.py", workers=2)
    assert status.name == "ddp" and status.workers == 2
    posts = [r for r in state.requests if r[0] == "POST"]
    assert len(posts) == 2  # the dropped one, and the retry that was answered 409
    assert ("GET", "/hub/api/kubelab/jobs/ddp") in state.requests


def test_script_folder_is_sent_when_pods_cannot_see_the_home(
    client: JobClient, service: tuple[Service, str], tmp_path: Any
) -> None:
    state = service[0]
    state.files_mode = "configmap"
    project = tmp_path / "proj"
    (project / "pkg").mkdir(parents=True)
    (project / "train.py").write_text("print('hi')\n")
    (project / "pkg" / "model.py").write_text("X = 1\n")
    (project / ".ipynb_checkpoints").mkdir()
    (project / ".ipynb_checkpoints" / "train-checkpoint.py").write_text("old\n")
    client.backend.home = tmp_path
    client.submit(name="cm", script="proj/train.py")
    assert sorted(state.files or {}) == ["proj/pkg/model.py", "proj/train.py"]

    (project / "big.bin").write_bytes(b"\0" * (1024 * 1024 + 1))
    with pytest.raises(JobSpecError, match=r"files: the script's folder .* holds more than 1 MiB"):
        client.submit(name="cm2", script="proj/train.py")


def test_auto_picks_the_hub_when_a_token_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:1/hub/api")
    assert isinstance(JobClient().backend, HubBackend)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    assert type(JobClient(root=tmp_path).backend).__name__ == "LocalBackend"
    with pytest.raises(ValueError, match="backend='k8s' is not allowed"):
        JobClient("k8s")
