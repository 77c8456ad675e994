"""The local-process backend runs a JobSpec as real processes through the real entrypoint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubelab.jobs import JobClient, JobSpec, JobSpecError
from kubelab.jobs.backends.local import LocalBackend, descendants

DDP_SCRIPT = Path(__file__).parent / "ddp_steps.py"
# The server side's script, the one the cluster tests run: the loss test runs exactly that.
SHARED_DDP = Path(__file__).parents[1] / "scripts" / "ddp_linreg.py"

FINAL = re.compile(r"rank=(\d+) world_size=(\d+) .*final_loss=([0-9.eE+-]+)")


def final_losses(client: JobClient, name: str, workers: int) -> dict[int, float]:
    """rank -> final_loss, from each rank's own log; checks every rank reports its world size."""
    losses = {}
    for rank in range(workers):
        found = [FINAL.search(line) for line in client.logs(name, rank=rank)]
        match = next(m for m in found if m)
        assert (int(match[1]), int(match[2])) == (rank, workers)
        losses[rank] = float(match[3])
    return losses


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_worker_ddp_reaches_the_single_process_loss(local_client: JobClient) -> None:
    spec = JobSpec(name="ddp", script=str(SHARED_DDP), workers=2)
    assert local_client.submit(spec).phase == "Running"
    single = local_client.submit(name="single", script=str(SHARED_DDP), workers=1)
    assert single.workers == 1

    for name in ("ddp", "single"):
        status = local_client.wait(name, timeout=180)
        assert status.phase == "Succeeded", (name, status, list(local_client.logs(name, rank=0)))
        assert [r.exit_code for r in status.ranks] == [0] * status.workers

    ddp = final_losses(local_client, "ddp", 2)
    one = final_losses(local_client, "single", 1)
    # DDP keeps the replicas identical, so both ranks evaluate the same model on the same data.
    assert ddp[0] == ddp[1]
    # Tolerance 1e-5 relative: two ranks average two shard gradients where one process takes one
    # mean over all rows; in float32 that summation order differs in the last bits, and 200 SGD
    # steps on this well-conditioned problem keep the difference far below 1e-5.
    assert ddp[0] == pytest.approx(one[0], rel=1e-5)
    # And it trained: the noise added to y has variance 1e-4, the floor of the achievable loss.
    assert 0.5e-4 < ddp[0] < 2e-4


def test_failing_rank_fails_the_job_and_tears_down_the_others(local_client: JobClient) -> None:
    local_client.submit(name="broken", script=DDP_SCRIPT.name, workers=2, args=["--fail-rank", "1"])
    status = local_client.wait("broken", timeout=180)

    assert status.phase == "Failed"
    assert status.failed_rank == 1
    assert status.ranks[1].phase == "Failed" and status.ranks[1].exit_code not in (None, 0)
    assert any("failing on purpose" in line for line in status.last_logs)
    assert "rank 1 exited with code" in status.message
    # Rank 0 was blocked in the first all-reduce; the backend stopped it instead of letting it hang.
    assert status.ranks[0].phase == "Cancelled"
    assert not pid_alive(int(status.ranks[0].pod.removeprefix("pid:")))


def test_cancel_stops_every_process_and_delete_removes_the_job(local_client: JobClient, tmp_path: Path) -> None:
    local_client.submit(name="long", script=DDP_SCRIPT.name, workers=2, args=["--steps", "100000000"])
    # Wait until both ranks are in the training loop, so cancel has torchrun's children to stop.
    deadline = time.monotonic() + 120
    while not all(any("step=0" in line for line in local_client.logs("long", rank=r)) for r in range(2)):
        assert time.monotonic() < deadline, "ranks never started training"
        time.sleep(0.5)
    with pytest.raises(TimeoutError, match="job 'long' still Running after 0.5 s"):
        local_client.wait("long", timeout=0.5)
    status = local_client.get("long")
    pids = [int(r.pod.removeprefix("pid:")) for r in status.ranks]
    # Each rank: the entrypoint, the torchrun agent below it, and the training worker below that.
    tree = pids + [child for pid in pids for child in descendants(pid)]
    assert len(tree) >= 6

    local_client.cancel("long")

    assert [p for p in tree if pid_alive(p)] == []
    # History: the cancelled job stays, with its logs, until it is deleted.
    assert local_client.get("long").phase == "Cancelled"
    assert any("step=0" in line for line in local_client.logs("long", rank=0))
    local_client.delete("long")
    with pytest.raises(KeyError, match="no job 'long'"):
        local_client.get("long")
    assert not (tmp_path / "jobs" / "long").exists()


@pytest.mark.parametrize(
    ("fields", "field", "match"),
    [
        ({"workers": 99}, "workers", r"workers: 99 is not allowed here; allowed: 1\.\.2"),
        ({"gpus_per_worker": 1, "gpu_class": "local"}, "gpus_per_worker", "this machine has 0"),
        ({"bogus": 1}, "bogus", "unknown field"),
    ],
    ids=["too-many-workers", "no-gpu-here", "unknown-field"],
)
def test_refused_specs_name_the_field(tmp_path: Path, fields: dict, field: str, match: str) -> None:
    (tmp_path / "t.py").write_text("print('hi')\n")
    client = JobClient(LocalBackend(tmp_path / "jobs", workdir=tmp_path, max_workers=2))
    with pytest.raises(JobSpecError, match=match) as info:
        client.submit(name="x", script="t.py", **fields)
    assert info.value.field == field
    assert client.list() == []
    assert not (tmp_path / "jobs" / "x").exists()


def test_duplicate_name_and_bad_rank(local_client: JobClient) -> None:
    local_client.submit(name="dup", script=DDP_SCRIPT.name, workers=1, args=["--steps", "1"])
    with pytest.raises(JobSpecError, match="job 'dup' already exists"):
        local_client.submit(name="dup", script=DDP_SCRIPT.name, workers=1)
    with pytest.raises(JobSpecError, match=r"rank: 3 is not allowed; allowed: 0\.\.0"):
        local_client.logs("dup", rank=3)
    with pytest.raises(KeyError, match="no job 'nope'"):
        local_client.cancel("nope")


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "replicas"])
def test_rank_env_is_what_the_entrypoint_expects(framework: str) -> None:
    """The local env satisfies jobs/CONTRACT.md: the real entrypoint plans a launch from it."""
    backend = LocalBackend("/nonexistent")
    spec = JobSpec(name="env", framework=framework, script="train.py", workers=2)
    ports = [40001, 40002]
    plans = []
    for rank in range(2):
        env = {**os.environ, **backend.rank_env(spec, rank, ports)}
        out = subprocess.run(
            [sys.executable, "-m", "kubelab.jobs.entrypoint", "--dry-run", "--", "--lr", "0.1"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        plans.append(json.loads(out.strip().splitlines()[-1]))
    if framework == "pytorch":
        assert "--node_rank=1" in plans[1]["argv"] and "--master_port=40001" in plans[1]["argv"]
    if framework == "tensorflow":
        for rank, plan in enumerate(plans):
            tf_config = json.loads(plan["env"]["TF_CONFIG"])
            assert tf_config == {"cluster": {"worker": ["127.0.0.1:40001", "127.0.0.1:40002"]},
                                 "task": {"type": "worker", "index": rank}}
    assert all(plan["argv"][-2:] == ["--lr", "0.1"] for plan in plans)
