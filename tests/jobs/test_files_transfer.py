"""The collector and the ranks' side of the RWO route (kubelab.jobs.transfer), over real loopback HTTP.

The collector runs in a thread of this process with a temporary folder as the "home"; ranks are
either :func:`send_outputs` calls or real ``python -m kubelab.jobs.entrypoint`` processes. What is
checked is what matters for the user's home: only the output folder is ever written, never half a
file, never over the budget, and the lower rank's file wins.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.jobs import transfer
from kubelab.jobs.transfer import Settings, TransferError, fetch_inputs, send_outputs

TOKEN = "t0ken"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A collector serving in a thread; ``stop()`` is its SIGTERM."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self.result: dict[str, Any] = {}
        self.ready, self.halt = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=lambda: self.result.update(
            transfer.serve(settings, ready=self.ready, stop=self.halt)), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def stop(self) -> dict[str, Any]:
        self.halt.set()
        self.thread.join(10)
        return self.result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home" / "data" / "sub").mkdir(parents=True)
    (tmp_path / "home" / "data" / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "home" / "data" / "sub" / "b.bin").write_bytes(os.urandom(2000))
    (tmp_path / "home" / "notes.ipynb").write_text("{}")
    return tmp_path / "home"


def settings(home: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {"token": TOKEN, "world_size": 2, "home": str(home),
                            "output_dir": str(home / "kubelab-runs" / "job"), "inputs": [str(home / "data")],
                            "port": free_port(), "max_output_bytes": 10_000, "max_input_bytes": 10_000, "max_files": 10}
    base.update(kw)
    return Settings(**base)


@pytest.fixture
def collector(home: Path) -> Iterator[Running]:
    running = Running(settings(home))
    yield running
    running.stop()


def outputs(tmp_path: Path, rank: int, files: dict[str, bytes]) -> Path:
    folder = tmp_path / f"rank{rank}"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    folder.mkdir(exist_ok=True)
    return folder


def raw(url: str, method: str, path: str, body: bytes = b"", token: str = TOKEN) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}", "Content-Length": str(len(body))})
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, data


def test_two_ranks_outputs_arrive_and_the_collector_ends(collector: Running, home: Path, tmp_path: Path) -> None:
    r1 = outputs(tmp_path, 1, {"results.json": b'{"rank": 1}', "rank1/log.txt": b"one"})
    r0 = outputs(tmp_path, 0, {"results.json": b'{"rank": 0}', "checkpoint/model.pt": b"\x00" * 3000})
    first = send_outputs(collector.url, TOKEN, 1, str(r1), 0, timeout=10)
    assert first["sent"] == 2 and first["summary"]["state"] == "partial"
    second = send_outputs(collector.url, TOKEN, 0, str(r0), 0, timeout=10)
    assert second["sent"] == 2
    result = collector.stop()
    dest = home / "kubelab-runs" / "job"
    # Rank 0 came second, yet its results.json replaced rank 1's: the lower rank's file is kept.
    assert json.loads((dest / "results.json").read_text()) == {"rank": 0}
    assert (dest / "checkpoint" / "model.pt").read_bytes() == b"\x00" * 3000
    assert (dest / "rank1" / "log.txt").read_text() == "one"
    assert result["state"] == "collected" and result["closed"] is False and result["files"] == 3
    assert not [p for p in dest.rglob("*") if ".part" in p.name]


def test_a_higher_rank_never_replaces_a_lower_ranks_file(collector: Running, tmp_path: Path, home: Path) -> None:
    send_outputs(collector.url, TOKEN, 0, str(outputs(tmp_path, 0, {"model.pt": b"zero"})), 0, timeout=10)
    late = send_outputs(collector.url, TOKEN, 1, str(outputs(tmp_path, 1, {"model.pt": b"one"})), 0, timeout=10)
    assert late["sent"] == 0 and late["skipped"] == 1
    assert (home / "kubelab-runs" / "job" / "model.pt").read_bytes() == b"zero"
    assert collector.stop()["skipped"] == 1


def test_the_budget_is_never_exceeded_and_the_refusal_names_it(collector: Running, tmp_path: Path, home: Path) -> None:
    folder = outputs(tmp_path, 0, {"a.bin": b"a" * 6000, "b.bin": b"b" * 6000, "c.txt": b"c"})
    result = send_outputs(collector.url, TOKEN, 0, str(folder), 0, timeout=10)
    assert result["sent"] == 1
    assert any("b.bin" in u and "storage.transfer" in u for u in result["unsent"]), result["unsent"]
    assert any(u.startswith("c.txt: not sent") for u in result["unsent"]), result["unsent"]
    kept = sorted(p.name for p in (home / "kubelab-runs" / "job").iterdir())
    assert kept == ["a.bin"]
    summary = collector.stop()
    assert summary["state"] == "partial" and summary["bytes"] <= 10_000 and summary["refused"] >= 2


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/outputs/0/..%2F..%2Fnotes.ipynb", 400),
        ("/outputs/0/a/../../x", 400),
        ("/outputs/0/%2Fetc%2Fpasswd", 400),
        ("/outputs/0/a//b", 400),
        ("/outputs/7/x", 400),
        ("/outputs/zero/x", 400),
    ],
    ids=["dotdot-encoded", "dotdot", "absolute", "empty-part", "rank-out-of-range", "rank-not-a-number"],
)
def test_paths_outside_the_output_folder_are_refused(collector: Running, home: Path, path: str, status: int) -> None:
    before = sorted(str(p) for p in home.rglob("*"))
    code, body = raw(collector.url, "PUT", path, b"evil")
    assert code == status, body
    assert "message" in body
    assert sorted(str(p) for p in home.rglob("*") if "kubelab-runs" not in str(p)) == [
        p for p in before if "kubelab-runs" not in p]


def test_a_symlinked_folder_in_the_home_is_not_followed(collector: Running, home: Path, tmp_path: Path) -> None:
    (home / "kubelab-runs" / "job").mkdir(parents=True, exist_ok=True)
    (home / "kubelab-runs" / "job" / "sneaky").symlink_to(home / "data")
    code, body = raw(collector.url, "PUT", "/outputs/0/sneaky/a.csv", b"overwritten")
    assert code == 409 and "not a folder" in body["message"]
    assert (home / "data" / "a.csv").read_text() == "x,y\n1,2\n"


def test_a_wrong_token_writes_and_reads_nothing(collector: Running, home: Path) -> None:
    assert raw(collector.url, "PUT", "/outputs/0/x.txt", b"x", token="guess")[0] == 401
    assert raw(collector.url, "GET", "/inputs", token="guess")[0] == 401
    assert not (home / "kubelab-runs" / "job" / "x.txt").exists()


def test_a_rank_that_failed_hands_over_but_does_not_finish_the_collection(collector: Running, tmp_path: Path) -> None:
    send_outputs(collector.url, TOKEN, 0, str(outputs(tmp_path, 0, {"last.pt": b"ck"})), 0, timeout=10)
    failed = send_outputs(collector.url, TOKEN, 1, str(outputs(tmp_path, 1, {"partial.pt": b"p"})), 1, timeout=10)
    assert failed["sent"] == 1 and failed["summary"]["state"] == "partial"
    # It waits (a retry of rank 1 may still come) until it is stopped: then it says what it has.
    assert not collector.result
    summary = collector.stop()
    assert summary["closed"] is True and summary["state"] == "partial" and summary["files"] == 2
    assert summary["ranks"]["1"]["exit_code"] == 1


def test_a_collector_closed_before_a_rank_reported_names_it(collector: Running, tmp_path: Path) -> None:
    send_outputs(collector.url, TOKEN, 0, str(outputs(tmp_path, 0, {"x": b"1"})), 0, timeout=10)
    summary = collector.stop()
    assert summary["missing_ranks"] == [1] and summary["state"] == "partial"


def test_inputs_manifest_and_files(collector: Running, home: Path) -> None:
    code, manifest = raw(collector.url, "GET", "/inputs")
    assert code == 200 and manifest["missing"] == []
    assert sorted(Path(f["path"]).relative_to(home).as_posix() for f in manifest["files"]) == [
        "data/a.csv", "data/sub/b.bin"]
    code, body = raw(collector.url, "GET", f"/inputs/file?path={home}/notes.ipynb")
    assert code == 403 and "not one of the job's inputs" in body["message"]
    (home / "data" / "escape").symlink_to(home / "notes.ipynb")
    code, body = raw(collector.url, "GET", f"/inputs/file?path={home}/data/escape")
    assert code == 404


def test_inputs_over_the_budget_are_refused_with_the_route(home: Path, tmp_path: Path) -> None:
    (home / "data" / "big.bin").write_bytes(b"x" * 20_000)
    running = Running(settings(home))
    try:
        with pytest.raises(TransferError, match=r"at most 10.0 kB .*storage.transfer.*shared volume"):
            fetch_inputs(running.url, TOKEN, timeout=10)
    finally:
        running.stop()


def test_a_collector_that_never_answers_is_named(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="did not answer within 1s"):
        send_outputs(f"http://127.0.0.1:{free_port()}", TOKEN, 0, str(tmp_path), 0, timeout=1)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"KUBELAB_TRANSFER_TOKEN": None}, "incomplete"),
        ({"KUBELAB_OUTPUT_DIR": "/etc/out"}, "not inside the home"),
        ({"KUBELAB_INPUTS": '["/var/lib/data"]'}, "not inside the home"),
        ({"KUBELAB_WORLD_SIZE": "0"}, "WORLD_SIZE < 1"),
    ],
    ids=["no-token", "output-outside-home", "input-outside-home", "no-ranks"],
)
def test_the_collectors_settings_are_checked(change: dict[str, str | None], match: str) -> None:
    env = {"KUBELAB_TRANSFER_TOKEN": "x", "KUBELAB_WORLD_SIZE": "2", "KUBELAB_HOME": "/home/jovyan",
           "KUBELAB_OUTPUT_DIR": "/home/jovyan/kubelab-runs/j", "KUBELAB_INPUTS": "[]",
           "KUBELAB_MAX_OUTPUT_BYTES": "1", "KUBELAB_MAX_INPUT_BYTES": "1", "KUBELAB_MAX_FILES": "1"}
    env.update(change)
    with pytest.raises(TransferError, match=match):
        Settings.from_env({k: v for k, v in env.items() if v is not None})


def test_the_entrypoint_stages_files_and_hands_over_outputs_whatever_the_exit_code(
        collector: Running, home: Path, tmp_path: Path) -> None:
    """A real rank process: the shipped folder is copied into its (writable) home, the script
    writes under KUBELAB_OUTPUT_DIR and fails, and its outputs still reach the collector."""
    shipped = tmp_path / "configmap"
    (shipped / "proj").mkdir(parents=True)
    (shipped / "proj" / "train.py").write_text(
        "import os, pathlib, sys\n"
        "out = pathlib.Path(os.environ['KUBELAB_OUTPUT_DIR'])\n"
        "(out / 'checkpoint.pt').write_bytes(b'ck')\n"
        "pathlib.Path('proj/written-next-to-the-script.txt').write_text('ok')\n"
        "sys.exit(3)\n")
    rank_home, rank_out = tmp_path / "rank-home", tmp_path / "rank-out"
    rank_home.mkdir()
    env = {**os.environ, "HOME": str(rank_home), "KUBELAB_JOB": "job",
           "KUBELAB_FRAMEWORK": "replicas", "KUBELAB_RANK": "1", "KUBELAB_WORLD_SIZE": "2",
           "KUBELAB_PEERS": "127.0.0.1,127.0.0.1", "KUBELAB_SCRIPT": "proj/train.py",
           "KUBELAB_FILES_DIR": str(shipped), "KUBELAB_OUTPUT_DIR": str(rank_out), "KUBELAB_OUTPUT_COLLECT": "1",
           "KUBELAB_COLLECTOR": collector.url, "KUBELAB_TRANSFER_TOKEN": TOKEN, "KUBELAB_RENDEZVOUS_TIMEOUT": "10"}
    proc = subprocess.run([sys.executable, "-m", "kubelab.jobs.entrypoint", "--"], cwd=rank_home, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "copied 1 shipped file(s)" in proc.stderr and "handed 1 file(s)" in proc.stderr, proc.stderr
    assert (rank_home / "proj" / "written-next-to-the-script.txt").read_text() == "ok"
    assert (home / "kubelab-runs" / "job" / "checkpoint.pt").read_bytes() == b"ck"
    assert collector.stop()["ranks"]["1"]["exit_code"] == 3
