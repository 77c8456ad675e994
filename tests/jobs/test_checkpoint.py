"""``kubelab.jobs.checkpoint``: atomic saves, the newest complete checkpoint back, a kill mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kubelab.jobs import checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _rank0(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "KUBELAB_RANK", "KUBELAB_RANK_OFFSET", checkpoint.ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A script that never imported torch (other tests of the session may have): pickle files."""
    monkeypatch.delitem(sys.modules, "torch", raising=False)


def test_save_then_latest_returns_the_highest_step_and_keeps_the_newest_two(tmp_path: Path, no_torch: None) -> None:
    for step in (0, 20, 40, 60):
        checkpoint.save({"w": [step, step + 1], "step": step}, step, folder_path=tmp_path)
    found = checkpoint.latest(tmp_path)
    assert found is not None and found.step == 60 and found.state == {"w": [60, 61], "step": 60}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0000000040.pkl", "checkpoint-0000000060.pkl"]


def test_the_folder_comes_from_the_job_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], no_torch: None) -> None:
    assert checkpoint.latest() is None  # no checkpoint_dir: a first run, nothing to resume
    with pytest.raises(ValueError, match="no checkpoint folder: set checkpoint_dir"):
        checkpoint.save({}, 1)
    monkeypatch.setenv(checkpoint.ENV, str(tmp_path / "ckpt"))
    assert checkpoint.latest() is None
    path = checkpoint.save({"a": 1}, 7)
    assert path == tmp_path / "ckpt" / "checkpoint-0000000007.pkl"
    assert checkpoint.latest().state == {"a": 1}  # type: ignore[union-attr]
    # Rank 0 says where it resumes from (the jobs service reports it after a restart).
    assert checkpoint.RESUME_LINE.search(capsys.readouterr().err).group("step") == "7"  # type: ignore[union-attr]


def test_only_rank_0_writes_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    assert checkpoint.save({"a": 1}, 1, folder_path=tmp_path) is None
    assert list(tmp_path.iterdir()) == []
    assert checkpoint.save({"a": 1}, 1, folder_path=tmp_path / "r1", all_ranks=True) is not None


@pytest.mark.parametrize(("step", "keep", "match"), [
    (-1, 2, "step -1 is not allowed"), (10**10, 2, "is not allowed"), (True, 2, "step True"),
    ("3", 2, "step '3'"), (1, 0, "keep 0 is not allowed"),
], ids=["negative", "too-big", "bool", "string", "keep-0"])
def test_bad_arguments_are_refused(tmp_path: Path, step: object, keep: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        checkpoint.save({}, step, folder_path=tmp_path, keep=keep)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_torch_states_are_written_with_torch_save(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 1)
    checkpoint.save({"model": model.state_dict(), "step": 5}, 5, folder_path=tmp_path)
    found = checkpoint.latest(tmp_path)
    assert found is not None and found.path.suffix == ".pt"
    assert torch.equal(found.state["model"]["weight"], model.state_dict()["weight"])


def test_a_damaged_newest_file_falls_back_to_the_one_before(tmp_path: Path) -> None:
    checkpoint.save({"ok": 1}, 1, folder_path=tmp_path)
    (tmp_path / "checkpoint-0000000002.pkl").write_bytes(b"\x80\x05truncated")
    found = checkpoint.latest(tmp_path)
    assert found is not None and found.step == 1 and found.state == {"ok": 1}


SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from kubelab.jobs import checkpoint

    class Slow:
        # Pickling this takes a while and writes as it goes: the kill lands mid-write.
        def __reduce__(self):
            time.sleep(0.05)
            return (bytes, (b"x" * 65536,))

    folder = sys.argv[1]
    checkpoint.save({"step": 10, "weights": [1.0, 2.0]}, 10, folder_path=folder)
    print("first saved", flush=True)
    checkpoint.save({"step": 20, "blobs": [Slow() for _ in range(10_000)]}, 20, folder_path=folder)
    print("second saved", flush=True)
""")


def test_a_kill_mid_write_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "first saved"
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".tmp") and p.stat().st_size > 256 * 1024 for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "the second save never started writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # The torn write is a temporary file; the complete checkpoint is the first one, untouched.
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")] == ["checkpoint-0000000010.pkl"]
    found = checkpoint.latest(tmp_path)
    assert found is not None and found.step == 10 and found.state == {"step": 10, "weights": [1.0, 2.0]}


def test_the_helper_imports_no_framework() -> None:
    code = ("import sys, kubelab.jobs.checkpoint; "
            "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'kubernetes', 'yaml')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]", out.stderr
