"""When the reconciler records or closes a job's collector, and what the job's status says about
its outputs (kubelab.jobs.collect, pure), plus the shapes JobSpec accepts for output_dir/inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelab.jobs.collect import CLOSE, RECORD, WAIT, collector_step, outputs_status, record_for, summary_from_log
from kubelab.jobs.explain import explain
from kubelab.jobs.spec import JobSpec, JobSpecError, JobStatus, RankStatus

DIR = "/home/jovyan/kubelab-runs/ddp"


def parent(route: str = "collect", record: dict[str, Any] | None = None) -> dict[str, Any]:
    data = {"outputs.json": json.dumps(record)} if record is not None else {}
    return {"metadata": {"name": "ddp-1", "annotations": {"kubelab.io/outputs": json.dumps({"dir": DIR, "route": route})}},
            "data": data}


def pod(component: str, phase: str, node: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": f"{component}-{phase}", "labels": {"kubelab.io/component": component}},
            "spec": {"nodeName": node} if node else {}, "status": {"phase": phase}}


COLLECTOR = "job-collector"
STEPS = [
    pytest.param(parent("direct"), True, [pod("rank", "Succeeded")], WAIT, id="direct-route-has-no-collector"),
    pytest.param(parent(), False, [pod(COLLECTOR, "Running"), pod("rank", "Running")], WAIT, id="ranks-at-work"),
    pytest.param(parent(), True, [pod(COLLECTOR, "Running"), pod("rank", "Running")], WAIT,
                 id="job-ended-but-a-stopped-rank-still-hands-over"),
    pytest.param(parent(), True, [pod(COLLECTOR, "Running"), pod("rank", "Failed"), pod("rank", "Succeeded")], CLOSE,
                 id="job-ended-and-every-rank-stopped"),
    pytest.param(parent(), False, [pod(COLLECTOR, "Succeeded"), pod("rank", "Succeeded")], RECORD, id="collector-done"),
    pytest.param(parent(), False, [pod(COLLECTOR, "Failed"), pod("rank", "Running")], RECORD, id="collector-failed-early"),
    pytest.param(parent(), True, [pod("rank", "Failed")], RECORD, id="collector-gone"),
    pytest.param(parent(record={"state": "collected"}), True, [pod(COLLECTOR, "Succeeded")], WAIT, id="already-recorded"),
]


@pytest.mark.parametrize(("par", "done", "pods", "step"), STEPS)
def test_collector_step(par: dict[str, Any], done: bool, pods: list[dict[str, Any]], step: str) -> None:
    assert collector_step(par, done, pods) == step


def test_the_last_summary_line_wins_and_noise_is_ignored() -> None:
    lines = ["kubelab-collector: serving 2 rank(s)", 'kubelab-collector: {"state": "partial", "files": 1}',
             "kubelab-collector: {not json}", 'kubelab-collector: {"state": "collected", "files": 2}']
    assert summary_from_log(lines) == {"state": "collected", "files": 2}
    assert summary_from_log(["Traceback", "OSError: read-only"]) is None


def test_a_collector_that_failed_without_a_report_says_why() -> None:
    record = record_for(None, pod(COLLECTOR, "Failed"), ["kubelab-collector: error: cannot create /home/jovyan/x"])
    assert record["state"] == "failed" and "cannot create /home/jovyan/x" in record["message"]


STATUS = [
    pytest.param(parent("direct"), False, [], "writing", "write their outputs to " + DIR, id="direct"),
    pytest.param(parent(), False, [pod(COLLECTOR, "Running", "kubelab-cpu")], "waiting",
                 "come into your home at the same path when each rank ends (the collector runs on kubelab-cpu)",
                 id="collect-running"),
    pytest.param(parent(), True, [pod(COLLECTOR, "Running")], "collecting", "being brought into", id="collecting"),
    pytest.param(parent(record={"state": "collected", "files": 2, "bytes": 2_500_000}), True, [], "collected",
                 "2 file(s) (2.5 MB) came back into your home at " + DIR, id="collected"),
    pytest.param(parent(record={"state": "partial", "files": 1, "bytes": 10, "missing_ranks": [1], "refused": 3}),
                 True, [], "partial", "rank(s) 1 sent nothing ... 3 file(s) were over the job's output budget",
                 id="partial"),
    pytest.param(parent(record={"state": "failed", "message": "the job's collector was gone before it reported"}),
                 True, [], "failed", "No outputs came back: the job's collector was gone", id="failed"),
]


@pytest.mark.parametrize(("par", "done", "pods", "state", "says"), STATUS)
def test_outputs_status_says_where_and_whether(par: dict[str, Any], done: bool, pods: list[dict[str, Any]],
                                              state: str, says: str) -> None:
    out = outputs_status(par, pods, done)
    assert out["dir"] == DIR and out["state"] == state
    assert all(part in out["message"] for part in says.split(" ... ")), out["message"]


def test_a_job_from_before_outputs_existed_reports_none() -> None:
    assert outputs_status({"metadata": {"annotations": {}}}, [], True) == {}


@pytest.mark.parametrize(
    ("fields", "field", "match"),
    [
        ({"output_dir": ""}, "output_dir", "non-empty"),
        ({"output_dir": 3}, "output_dir", "must be a string"),
        ({"output_dir": "a\x00b"}, "output_dir", "NUL"),
        ({"inputs": "data"}, "inputs", "list of paths"),
        ({"inputs": ["d"] * 33}, "inputs", "at most 32"),
        ({"inputs": [" "]}, "inputs", "empty"),
        ({"inputs": ["x" * 1025]}, "inputs", "at most 1024"),
    ],
    ids=["empty-output", "output-not-text", "output-nul", "inputs-not-a-list", "too-many-inputs", "blank-input",
         "input-too-long"],
)
def test_spec_shapes(fields: dict[str, Any], field: str, match: str) -> None:
    with pytest.raises(JobSpecError, match=match) as err:
        JobSpec(name="x", script="t.py", **fields)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("event", "kind", "says"),
    [
        ('rank 1: Evicted: Usage of EmptyDir volume "scratch" exceeds the limit "10Gi". ', "scratch-full",
         "Rank 1 filled its scratch space (10Gi: /tmp"),
        ('rank 0: Evicted: Usage of EmptyDir volume "outputs" exceeds the limit "2Gi". ', "outputs-full",
         "Rank 0 wrote more outputs than the job may bring back into your home (2Gi"),
    ],
    ids=["scratch", "outputs"],
)
def test_a_rank_evicted_for_its_files_is_said_in_plain_words(event: str, kind: str, says: str) -> None:
    job = JobStatus(name="ddp", user="alice", framework="pytorch", workers=2, phase="Failed",
                    ranks=[RankStatus(rank=0, phase="Failed"), RankStatus(rank=1, phase="Failed")], events=[event])
    why = explain(job)
    assert why is not None and why.kind == kind and why.sentence.startswith(says), why
