"""JobStatus from the engines' own objects and Kueue's Workload (pure), in words.

The condition types, reasons and messages are the ones each controller writes (see the sources
cited in ``jobs/status.py``); the emulation on real objects is ``test_engines_status.py``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubelab.core.catalogue import HomeStorage
from kubelab.jobs.builders import BuildContext, job_id, make_parent
from kubelab.jobs.spec import JobSpec
from kubelab.jobs.status import build_status, failure_record, first_failed, is_job_record

JID = job_id("alice", "ddp")
CTX = BuildContext(user="alice", namespace="ns", image="i", home=HomeStorage(access_mode="ReadWriteMany"),
                   queue="lab-a100")


def parent(engine: str, retries: int = 3, queue: str | None = None) -> dict[str, Any]:
    ctx = BuildContext(**{**CTX.__dict__, "queue": queue})
    return make_parent(JobSpec(name="ddp", script="t.py", workers=2, retries=retries), ctx, engine)


def cond(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def obj(kind: str, *conditions: dict[str, str], spec: dict | None = None, status: dict | None = None,
        name: str = JID) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "uid": "u-1"}, "spec": spec or {},
            "status": {"conditions": list(conditions), **(status or {})}}


def pod(rank: int, phase: str, restarts: int = 0, exit_code: int | None = None) -> dict[str, Any]:
    cs: dict[str, Any] = {"restartCount": restarts, "state": {"running": {}}}
    if exit_code is not None:
        cs["state"] = {"terminated": {"exitCode": exit_code, "reason": "Error", "finishedAt": "t"}}
    return {"metadata": {"name": f"{JID}-p{rank}", "labels": {"kubelab.io/rank": str(rank)}},
            "spec": {}, "status": {"phase": phase, "containerStatuses": [cs]}}


PT = "PyTorchJob"
DEADLINE = f"Job {JID} has failed because it was active longer than specified deadline"
BACKOFF = f"Job {JID} has failed because it has reached the specified backoff limit"
ENGINE_CASES = [
    pytest.param("kubeflow-v1", obj(PT, cond("Created", "PyTorchJobCreated")), [], "Pending", "", id="kf-created"),
    pytest.param("kubeflow-v1", obj(PT, cond("Created"), cond("Running", "PyTorchJobRunning")),
                 [pod(0, "Running"), pod(1, "Running")], "Running", "", id="kf-running"),
    pytest.param("kubeflow-v1", obj(PT, cond("Created"), cond("Restarting", "PyTorchJobRestarting"),
                                    spec={"runPolicy": {"backoffLimit": 3}}),
                 [pod(0, "Running", restarts=2), pod(1, "Running")], "Running", "Restarting (2 of 3)",
                 id="kf-restarting"),
    pytest.param("kubeflow-v1", obj(PT, cond("Created"), cond("Running", status="False"),
                                    cond("Succeeded", "PyTorchJobSucceeded")),
                 [], "Succeeded", "", id="kf-succeeded-pods-cleaned"),
    pytest.param("kubeflow-v1", obj(PT, cond("Created"), cond("Running", status="False"),
                                    cond("Failed", "PyTorchJobFailed", DEADLINE)),
                 [], "Failed", "Failed: deadline exceeded", id="kf-deadline-pods-deleted"),
    pytest.param("kubeflow-v1", obj(PT, cond("Failed", "PyTorchJobFailed", BACKOFF),
                                    spec={"runPolicy": {"backoffLimit": 3}}),
                 [], "Failed", "Failed: backoff limit reached (3 retries)", id="kf-backoff"),
    pytest.param("kubeflow-v1", obj(PT, cond("Failed", "PyTorchJobFailed",
                                             f"PyTorchJob {JID} is failed because 1 Worker replica(s) failed.")),
                 [], "Failed", "Failed: 1 Worker replica(s) failed", id="kf-worker-failed"),
    pytest.param("kubeflow-v1", obj(PT, cond("Created"), spec={"runPolicy": {"suspend": True}}), [], "Queued",
                 "Queued in lab-a100", id="kf-suspended-by-kueue"),
    pytest.param("trainer-v2", obj("TrainJob", cond("Complete", "AllJobsCompleted")), [], "Succeeded", "",
                 id="trainjob-complete"),
    pytest.param("trainer-v2", obj("TrainJob", cond("Failed", "DeadlineExceeded", "TrainJob exceeded its active deadline")),
                 [], "Failed", "Failed: deadline exceeded", id="trainjob-deadline"),
    pytest.param("trainer-v2", obj("TrainJob", cond("Suspended", "Suspended")), [], "Queued", "Queued in lab-a100",
                 id="trainjob-suspended"),
    pytest.param("jobset", obj("JobSet", cond("Completed", "AllJobsCompleted")), [], "Succeeded", "",
                 id="jobset-completed"),
    pytest.param("jobset", obj("JobSet", cond("Failed", "ReachedMaxRestarts",
                                              "jobset failed due to reaching max number of restarts"),
                               spec={"failurePolicy": {"maxRestarts": 3}}),
                 [], "Failed", "Failed: restarted the most times allowed (3)", id="jobset-max-restarts"),
    pytest.param("jobset", obj("JobSet", cond("Suspended", "SuspendedJobs")), [], "Queued", "Queued in lab-a100",
                 id="jobset-suspended"),
    pytest.param("jobset", obj("JobSet", spec={"failurePolicy": {"maxRestarts": 3}}, status={"restarts": 2}),
                 [pod(0, "Running"), pod(1, "Running")], "Running", "Restarting (2 of 3)", id="jobset-restarting"),
]


@pytest.mark.parametrize(("engine", "engine_object", "pods", "phase", "message"), ENGINE_CASES)
def test_the_engines_object_decides(engine: str, engine_object: dict, pods: list, phase: str, message: str) -> None:
    s = build_status(parent(engine, queue="lab-a100"), pods, [], {}, engine_object=engine_object)
    assert (s.phase, s.message) == (phase, message)
    if phase in ("Succeeded", "Failed") and not pods:
        # The pods were cleaned up: every rank ended with the job, none is left Pending.
        assert [r.phase for r in s.ranks] == [phase, phase]


def test_a_deadline_failure_with_pods_deleted_still_gets_a_final_record_with_the_reason() -> None:
    engine_object = obj(PT, cond("Failed", "PyTorchJobFailed", DEADLINE))
    s = build_status(parent("kubeflow-v1"), [], [], {}, engine_object=engine_object)
    assert s.failed_rank is None and s.ranks[1].message == "stopped: deadline exceeded"
    record = failure_record(s, first_failed(s.ranks, {}), [], "t9")
    assert record["phase"] == "Failed" and record["failed_rank"] is None
    assert record["message"] == "Failed: deadline exceeded"
    ended = {**parent("kubeflow-v1"), "data": {**parent("kubeflow-v1")["data"], "status.json": json.dumps(record)}}
    again = build_status(ended, [], [], {})
    assert (again.phase, again.message, again.finished) == ("Failed", "Failed: deadline exceeded", "t9")


def test_a_rank_that_failed_itself_is_named_even_when_the_engine_failed_the_job() -> None:
    engine_object = obj(PT, cond("Failed", "PyTorchJobFailed", f"PyTorchJob {JID} is failed because 1 Worker "
                                 "replica(s) failed."))
    s = build_status(parent("kubeflow-v1"), [pod(0, "Running"), pod(1, "Failed", exit_code=1)], [], {},
                     engine_object=engine_object)
    assert s.phase == "Failed" and s.failed_rank == 1 and s.message == "rank 1 failed: Error"
    assert failure_record(s, first_failed(s.ranks, {1: [pod(1, "Failed", exit_code=1)]}), ["boom"], "t")[
        "message"] == "rank 1 failed (Error); the other ranks were stopped"


def workload(*conditions: dict[str, str], owner: str = JID, queue: str = "lab-a100") -> dict[str, Any]:
    return {"kind": "Workload", "metadata": {"name": f"pytorchjob-{owner}-1a2b3",
                                             "ownerReferences": [{"kind": PT, "name": owner, "uid": "u-1"}]},
            "spec": {"queueName": queue}, "status": {"conditions": list(conditions)}}


PREEMPT = ("Preempted to accommodate a workload (UID: 9, JobUID: 8) due to prioritization in the ClusterQueue; "
           "preemptor path: /lab; preemptee path: /lab")
SUSPENDED = obj(PT, cond("Created"), cond("Suspended", "PyTorchJobSuspended"), spec={"runPolicy": {"suspend": True}})
RUNNING = obj(PT, cond("Created"), cond("Running", "PyTorchJobRunning"))
KUEUE_CASES = [
    pytest.param(SUSPENDED, workload(cond("QuotaReserved", "Pending", "couldn't assign flavors", "False")), 2, [],
                 "Queued", "Queued in lab-a100, position 3", id="queued-with-position"),
    pytest.param(SUSPENDED, workload(cond("QuotaReserved", "Pending", "couldn't assign flavors to pod set master",
                                          "False")), None, [], "Queued",
                 "Queued in lab-a100: couldn't assign flavors to pod set master", id="queued-no-visibility-api"),
    pytest.param(RUNNING, workload(cond("QuotaReserved", "QuotaReserved"), cond("Admitted", "Admitted")), None,
                 [pod(0, "Running"), pod(1, "Running")], "Running", "", id="admitted"),
    pytest.param(SUSPENDED, workload(cond("Evicted", "Preempted", PREEMPT), cond("Preempted", "InClusterQueue", PREEMPT),
                                     cond("Admitted", status="False")), None, [],
                 "Queued", "Preempted: prioritization in the ClusterQueue", id="preempted"),
    pytest.param(SUSPENDED, workload(cond("Evicted", "PodsReadyTimeout", "Exceeded the PodsReady timeout")), None, [],
                 "Queued", "Evicted (PodsReadyTimeout): Exceeded the PodsReady timeout", id="evicted"),
    pytest.param(RUNNING, workload(cond("QuotaReserved", status="False"), owner="someone-else"), None,
                 [pod(0, "Running"), pod(1, "Running")], "Running", "", id="others-workload-ignored"),
]


@pytest.mark.parametrize(("engine_object", "wl", "position", "pods", "phase", "message"), KUEUE_CASES)
def test_kueue_says_queued_admitted_preempted(engine_object: dict, wl: dict, position: int | None, pods: list,
                                              phase: str, message: str) -> None:
    s = build_status(parent("kubeflow-v1", queue="lab-a100"), pods, [], {}, engine_object=engine_object,
                     workload=wl, queue_position=position)
    assert (s.phase, s.message) == (phase, message)


def test_plain_retries_say_restarting() -> None:
    rank_job = {"metadata": {"name": f"{JID}-1"}, "spec": {}, "status": {}}
    failed_once = {**pod(1, "Failed", exit_code=1), "metadata": {"name": "a", "creationTimestamp": "t1",
                                                                 "labels": {"kubelab.io/rank": "1"}}}
    failed_twice = {**copy.deepcopy(failed_once), "metadata": {"name": "b", "creationTimestamp": "t2",
                                                               "labels": {"kubelab.io/rank": "1"}}}
    s = build_status(parent("plain"), [pod(0, "Running"), failed_once, failed_twice], [rank_job], {})
    assert (s.phase, s.message) == ("Running", "Restarting (2 of 3)")


FOREIGN = [
    pytest.param(lambda p: p["metadata"].pop("annotations"), id="no-annotations"),
    pytest.param(lambda p: p["metadata"]["labels"].pop("app.kubernetes.io/managed-by"), id="not-managed-by-kubelab"),
    pytest.param(lambda p: p["data"].update({"spec.json": "{not json"}), id="spec-not-json"),
    pytest.param(lambda p: p["data"].update({"spec.json": json.dumps({"name": "ddp"})}), id="spec-without-workers"),
    pytest.param(lambda p: p["data"].update({"spec.json": json.dumps({"name": "ddp", "workers": "2"})}),
                 id="workers-not-an-int"),
    pytest.param(lambda p: p["metadata"].update(name="someone-elses"), id="name-is-not-the-jobs-id"),
    pytest.param(lambda p: p["data"].pop("spec.json"), id="no-spec"),
]


@pytest.mark.parametrize("breaks", FOREIGN)
def test_records_kubelab_did_not_write_are_ignored_without_errors(breaks: Any) -> None:
    p = parent("plain")
    assert is_job_record(p)
    breaks(p)
    assert not is_job_record(p)
    s = build_status(p, [pod(0, "Running")], [], {})  # no KeyError
    assert s.ranks == []


def test_foreign_pods_engine_objects_and_records_are_ignored() -> None:
    odd = {"metadata": {"name": "x", "labels": {"kubelab.io/rank": "not-a-number"}}, "status": {"phase": "Failed"}}
    nameless = {"metadata": {}, "status": {"phase": "Failed"}}
    other = obj(PT, cond("Failed", "PyTorchJobFailed", DEADLINE), name="another-job")
    p = parent("kubeflow-v1")
    p["data"]["status.json"] = "[1, 2]"
    s = build_status(p, [odd, nameless, pod(0, "Running")], [nameless], {}, engine_object=other)
    assert s.phase == "Running" and s.message == ""
