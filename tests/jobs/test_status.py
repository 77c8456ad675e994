"""JobStatus from cached objects (pure): rank phases, failures, retries and the final record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelab.core.catalogue import HomeStorage
from kubelab.jobs.builders import BuildContext, job_id, make_parent
from kubelab.jobs.spec import JobSpec, RankStatus
from kubelab.jobs.status import DECLARES_GPUS, build_status, gpu_index, job_phase, pod_rank

SPEC = JobSpec(name="ddp", script="t.py", workers=2)
JID = job_id("alice", "ddp")
PARENT = {**make_parent(SPEC, BuildContext(user="alice", namespace="ns", image="i", home=HomeStorage(access_mode="ReadWriteMany")), "plain")}
PARENT["metadata"]["creationTimestamp"] = "2026-11-22T20:00:00Z"


def pod(rank: int, phase: str, *, exit_code: int | None = None, created: str = "t1", name: str = "") -> dict:
    status: dict[str, Any] = {"phase": phase}
    if exit_code is not None:
        status["containerStatuses"] = [{"state": {"terminated": {"exitCode": exit_code, "reason": "Error",
                                                                 "finishedAt": f"2026-11-22T20:0{rank}:00Z"}}}]
    return {"metadata": {"name": name or f"{JID}-{rank}-{created}", "creationTimestamp": created,
                         "labels": {"kubelab.io/rank": str(rank)}},
            "spec": {"nodeName": "cpu-0"}, "status": status}


def job(rank: int, condition: str | None = None, suspend: bool = False) -> dict:
    conds = [{"type": condition, "status": "True", "reason": "BackoffLimitExceeded",
              "message": "Job has reached the specified backoff limit"}] if condition else []
    return {"metadata": {"name": f"{JID}-{rank}"}, "spec": {"suspend": suspend}, "status": {"conditions": conds}}


CASES = [
    pytest.param([], [], "Pending", ["Pending", "Pending"], id="nothing-yet"),
    pytest.param([pod(0, "Running"), pod(1, "Pending")], [job(0), job(1)], "Running", ["Running", "Pending"],
                 id="one-running"),
    pytest.param([pod(0, "Succeeded", exit_code=0), pod(1, "Succeeded", exit_code=0)],
                 [job(0, "Complete"), job(1, "Complete")], "Succeeded", ["Succeeded", "Succeeded"], id="succeeded"),
    # Rank 0's pod still runs while it is torn down, but it reads as stopped (issue 10).
    pytest.param([pod(0, "Running"), pod(1, "Failed", exit_code=1)], [job(0), job(1, "Failed")], "Failed",
                 ["Stopped", "Failed"], id="rank1-failed-for-good"),
    pytest.param([pod(0, "Running"), pod(1, "Failed", exit_code=1)], [job(0), job(1)], "Running",
                 ["Running", "Pending"], id="rank1-failed-but-retrying"),
    pytest.param([pod(1, "Failed", exit_code=1, created="t1"), pod(1, "Running", created="t2")], [job(1)], "Running",
                 ["Pending", "Running"], id="retried-pod-is-the-newest"),
    pytest.param([], [job(0, suspend=True), job(1, suspend=True)], "Queued", ["Queued", "Queued"], id="kueue-queued"),
]


@pytest.mark.parametrize(("pods", "jobs", "phase", "ranks"), CASES)
def test_status(pods: list[dict], jobs: list[dict], phase: str, ranks: list[str]) -> None:
    s = build_status(PARENT, pods, jobs, {})
    assert s.phase == phase
    assert [r.phase for r in s.ranks] == ranks
    assert s.user == "alice" and s.workers == 2 and s.created == "2026-11-22T20:00:00Z"


def test_failed_rank_is_named_with_its_exit_code() -> None:
    s = build_status(PARENT, [pod(0, "Running"), pod(1, "Failed", exit_code=1)], [job(0), job(1, "Failed")], {})
    assert s.failed_rank == 1 and "rank 1 failed" in s.message
    assert s.ranks[1].exit_code == 1


@pytest.mark.parametrize(("reason", "message"), [
    pytest.param("OOMKilled", "OOMKilled", id="oom-killed-names-the-cause"),
    pytest.param("Error", "BackoffLimitExceeded: Job has reached the specified backoff limit", id="plain-error"),
])
def test_a_failed_rank_keeps_its_containers_reason_over_the_jobs(reason: str, message: str) -> None:
    failed = pod(0, "Failed", exit_code=137)
    failed["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = reason
    s = build_status(PARENT, [failed], [job(0, "Failed")], {})
    assert s.ranks[0].message == message and s.ranks[0].exit_code == 137


def failed_parent(rank0_phase: str, rank0_message: str = "") -> dict:
    """PARENT with the final record of a job whose rank 1 failed, rank 0 saved as ``rank0_phase``."""
    record = {"phase": "Failed", "failed_rank": 1, "last_logs": ["boom"], "message": "rank 1 failed",
              "finished": "t9", "ranks": [{"rank": 0, "phase": rank0_phase, "pod": "p0", "node": "n", "exit_code": None,
                                          "message": rank0_message},
                                         {"rank": 1, "phase": "Failed", "pod": "p1", "node": "n", "exit_code": 1,
                                          "message": "Error"}]}
    return {**PARENT, "data": {**PARENT["data"], "status.json": json.dumps(record)}}


def test_final_record_wins_and_keeps_torn_down_ranks() -> None:
    parent = failed_parent("Running")
    s = build_status(parent, [pod(1, "Failed", exit_code=1)], [job(1, "Failed")], {})
    assert (s.phase, s.failed_rank, s.last_logs, s.finished) == ("Failed", 1, ["boom"], "t9")
    assert s.ranks[0].pod == "p0" and s.ranks[1].exit_code == 1


def test_a_rank_recorded_as_stopped_stays_stopped_while_the_teardown_ends_its_pod() -> None:
    # The record saved rank 0 as stopped; then the teardown deleted its Job (background
    # propagation: the Job goes first) and SIGTERM ended its pod with 143, which alone reads Failed.
    parent = failed_parent("Stopped", "stopped: rank 1 failed")
    pods = [pod(0, "Failed", exit_code=143), pod(1, "Failed", exit_code=1)]
    s = build_status(parent, pods, [job(1, "Failed")], {})
    assert [r.phase for r in s.ranks] == ["Stopped", "Failed"]
    assert s.ranks[0].message == "stopped: rank 1 failed" and s.ranks[1].exit_code == 1
    # Without the record (a rank that failed by itself) the same pod reads Failed: the rule is the record's.
    assert build_status(PARENT, pods[:1], [], {}).ranks[0].phase == "Failed"


def test_events_summary_starts_with_the_files_line() -> None:
    p = pod(0, "Pending", name="pod-a")
    s = build_status(PARENT, [p], [], {"pod-a": ["Scheduled: assigned to cpu-0"]})
    assert s.events == ["files: home claim home-alice mounted at /home/jovyan", "rank 0: Scheduled: assigned to cpu-0"]


@pytest.mark.parametrize(("labels", "annotations", "rank"), [
    pytest.param({"kubelab.io/rank": "3"}, {}, 3, id="plain"),
    pytest.param({}, {"batch.kubernetes.io/job-completion-index": "2"}, 2, id="jobset"),
    pytest.param({"training.kubeflow.org/replica-type": "master", "training.kubeflow.org/replica-index": "0"}, {}, 0,
                 id="pytorchjob-master"),
    pytest.param({"training.kubeflow.org/replica-type": "worker", "training.kubeflow.org/replica-index": "0"}, {}, 1,
                 id="pytorchjob-worker"),
    pytest.param({"training.kubeflow.org/replica-type": "worker", "training.kubeflow.org/replica-index": "1",
                  "training.kubeflow.org/operator-name": "tfjob-controller"}, {}, 1, id="tfjob-worker"),
    pytest.param({}, {}, None, id="unknown"),
])
def test_pod_rank(labels: dict, annotations: dict, rank: int | None) -> None:
    assert pod_rank({"metadata": {"labels": labels, "annotations": annotations}}) == rank


@pytest.mark.parametrize(("phases", "expected"), [
    pytest.param(["Succeeded", "Running"], "Running", id="partly-done"),
    pytest.param(["Failed", "Succeeded"], "Failed", id="any-failed"),
    pytest.param(["Queued", "Pending"], "Queued", id="queued"),
])
def test_job_phase(phases: list[str], expected: str) -> None:
    assert job_phase([RankStatus(rank=i, phase=p) for i, p in enumerate(phases)]) == expected


def test_the_gpu_index_files_only_live_jobs_that_ask_for_gpus() -> None:
    gpu = make_parent(JobSpec(name="big", script="t.py", workers=2, gpus_per_worker=1, gpu_class="a100"),
                      BuildContext(user="alice", namespace="ns", image="i", home=HomeStorage(access_mode="ReadWriteMany")),
                      "plain")
    assert gpu_index(gpu) == (DECLARES_GPUS,)
    assert gpu_index(PARENT) == (), "a CPU job holds no GPU: a quota check never reads it"
    ended = {**gpu, "data": {**gpu["data"], "status.json": json.dumps({"phase": "Failed", "finished": "t9"})}}
    assert gpu_index(ended) == (), "an ended job holds nothing, whether its pods are gone or not"
    foreign = {**gpu, "metadata": {**gpu["metadata"], "labels": {}}}
    assert gpu_index(foreign) == (), "a ConfigMap kubelab did not make"
