"""Resume instead of fail, the parts without a cluster: the submit checks, what triggers a restart,
what status says, and the rank Jobs recorded for recreation (``kubelab.jobs.restarts``)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubelab.core.catalogue import HomeStorage, SharedStorage
from kubelab.core.platform import Platform
from kubelab.jobs import entrypoint, restarts
from kubelab.jobs.builders import plain
from kubelab.jobs.builders.common import BuildContext, job_id
from kubelab.jobs.engines import select
from kubelab.jobs.pages import status_html
from kubelab.jobs.service import JobsService
from kubelab.jobs.spec import JobSpec, JobSpecError, JobStatus, RankStatus
from kubelab.widgets.views import job_detail_html
from tests.jobs.helpers import catalogue

RWX = HomeStorage(access_mode="ReadWriteMany", mount_path="/home/jovyan")
RWO = HomeStorage(access_mode="ReadWriteOnce", mount_path="/home/jovyan")
SHARED = SharedStorage("lab-shared", "/shared")


def service(**catalogue_overrides: Any) -> JobsService:
    svc = JobsService(Platform(catalogue(**catalogue_overrides)), "jobs")
    svc.engines = select(set(), "plain")
    return svc


def ctx(home: HomeStorage = RWX, shared: SharedStorage | None = None) -> BuildContext:
    return BuildContext(user="alice", namespace="jobs", image="img", home=home, shared=shared)


def spec(**kw: Any) -> JobSpec:
    return JobSpec(**{"name": "ddp", "script": "train.py", "workers": 2, **kw})


# -- checks at submit ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "home", "shared", "engine", "field", "match"), [
    ({"restarts": 4}, RWX, None, "plain", "restarts", r"4 is not allowed; allowed: 0\.\.3 \(the catalogue's jobs.maxRestarts\)"),
    ({"restarts": 1}, RWX, None, "kubeflow-v1", "restarts", "the engine kubeflow-v1 restarts pods its own way"),
    ({"checkpoint_dir": "/tmp/ckpt"}, RWX, None, "plain", "checkpoint_dir",
     "/tmp/ckpt is outside the files job pods mount; use a folder under /home/jovyan"),
    ({"checkpoint_dir": "~"}, RWX, None, "plain", "checkpoint_dir", "is all of the files job pods mount"),
    ({"checkpoint_dir": "~/ckpt"}, RWO, SHARED, "plain", "checkpoint_dir",
     "~/ckpt is outside the files job pods mount; use a folder under /shared, e.g. /shared/kubelab-runs/ddp"),
    ({"checkpoint_dir": "~/ckpt"}, RWO, None, "plain", "checkpoint_dir",
     "job pods cannot mount your files here .*ReadWriteOnce.*ask for ReadWriteMany homes or a shared volume"),
], ids=["over-the-cap", "engine-cannot", "outside-the-files", "the-whole-home", "rwo-home-with-shared", "rwo-no-shared"])
def test_submit_checks_refuse_naming_the_field_and_the_route(kw: dict[str, Any], home: HomeStorage,
                                                              shared: SharedStorage | None, engine: str, field: str,
                                                              match: str) -> None:
    with pytest.raises(JobSpecError, match=match) as e:
        restarts.check(spec(**kw), ctx(home, shared), engine, max_restarts=3)
    assert e.value.field == field


@pytest.mark.parametrize(("kw", "home", "shared", "engine"), [
    ({"restarts": 3, "checkpoint_dir": "~/runs/ddp/ckpt"}, RWX, None, "plain"),
    ({"restarts": 2, "checkpoint_dir": "/shared/ckpt"}, RWO, SHARED, "jobset"),
    ({"restarts": 0}, RWO, None, "trainer-v2"),
], ids=["rwx-home", "shared-volume", "no-restarts"])
def test_submit_checks_accept(kw: dict[str, Any], home: HomeStorage, shared: SharedStorage | None,
                              engine: str) -> None:
    restarts.check(spec(**kw), ctx(home, shared), engine, max_restarts=3)


@pytest.mark.parametrize(("body", "field", "match"), [
    ({"restarts": 101}, "restarts", r"101 is not allowed; an integer in 0\.\.100"),
    ({"restarts": 4}, "restarts", r"allowed: 0\.\.3"),
    ({"checkpoint_dir": ""}, "checkpoint_dir", "must be a folder of your files"),
    ({"checkpoint_dir": "/etc/ckpt"}, "checkpoint_dir", "/etc/ckpt is outside the files job pods mount"),
], ids=["spec-bound", "catalogue-cap", "empty", "outside"])
def test_the_service_refuses_before_anything_is_created(body: dict[str, Any], field: str, match: str) -> None:
    with pytest.raises(JobSpecError, match=match) as e:
        service().prepare("alice", [], {"name": "x", "script": "t.py", **body})
    assert e.value.field == field


def test_the_catalogue_cap_is_the_catalogues() -> None:
    svc = service(jobs={"engine": "plain", "maxRestarts": 0})
    with pytest.raises(JobSpecError, match=r"allowed: 0\.\.0"):
        svc.prepare("alice", [], {"name": "x", "script": "t.py", "restarts": 1})


def test_ranks_get_the_checkpoint_folder_and_torchruns_budget() -> None:
    job = plain.make_rank_job(spec(restarts=2, checkpoint_dir="runs/ckpt"), ctx(), 0)
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBELAB_CHECKPOINT_DIR"] == "/home/jovyan/runs/ckpt" and env["KUBELAB_RESTARTS"] == "2"
    plain_env = {e["name"] for e in plain.make_rank_job(spec(), ctx(), 0)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {"KUBELAB_CHECKPOINT_DIR", "KUBELAB_RESTARTS"} & plain_env


@pytest.mark.parametrize(("world", "restarts_env", "flag"), [
    (1, "2", "--max-restarts=2"), (1, "0", None), (2, "2", None),
], ids=["one-worker-elastic", "no-budget", "multi-worker-kubelab-restarts"])
def test_torchrun_restarts_processes_only_in_one_worker_jobs(world: int, restarts_env: str, flag: str | None) -> None:
    launch = entrypoint.plan({"KUBELAB_FRAMEWORK": "pytorch", "KUBELAB_RANK": "0", "KUBELAB_WORLD_SIZE": str(world),
                              "KUBELAB_PEERS": ",".join(["a", "b"][:world]), "KUBELAB_SCRIPT": "t.py",
                              "KUBELAB_RESTARTS": restarts_env}, [], python="python")
    found = [a for a in launch.argv if a.startswith("--max-restarts")]
    assert found == ([flag] if flag else [])


# -- what triggers a restart -------------------------------------------------------------------------


def pod(rank: int, phase: str = "Running", *, deleting: bool = False, exit_code: int | None = None,
        conditions: list[dict[str, Any]] | None = None, reason: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"ddp-{rank}-x", "creationTimestamp": "2026-01-01T00:00:00Z",
                            "labels": {"kubelab.io/rank": str(rank), "kubelab.io/component": "rank"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if exit_code is not None:
        status["containerStatuses"] = [{"state": {"terminated": {"exitCode": exit_code}}}]
    if reason:
        status["reason"] = reason
    return {"metadata": meta, "status": status}


def rank_job(rank: int, *, failed: str | None = None, suspend: bool = False) -> dict[str, Any]:
    conditions = [{"type": "Failed", "status": "True", "reason": failed, "message": ""}] if failed else []
    return {"metadata": {"name": f"ddp-{rank}", "labels": {"kubelab.io/rank": str(rank)}},
            "spec": {"suspend": suspend}, "status": {"conditions": conditions}}


DDP = {"framework": "pytorch", "workers": 2}
ONE = {"framework": "pytorch", "workers": 1}


@pytest.mark.parametrize(("job", "pods", "jobs", "expected"), [
    (DDP, [pod(0), pod(1)], [rank_job(0), rank_job(1)], None),
    (DDP, [pod(0), pod(1, deleting=True)], [rank_job(0), rank_job(1)], (1, "pod deleted")),
    (DDP, [pod(0), pod(1, deleting=True, conditions=[
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}])],
     [rank_job(0), rank_job(1)], (1, "pod deleted (preempted)")),
    (DDP, [pod(0, deleting=True, conditions=[
        {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}]), pod(1)],
     [rank_job(0), rank_job(1)], (0, "pod deleted (node lost)")),
    (DDP, [pod(0, "Failed", deleting=True, reason="Evicted"), pod(1)], [rank_job(0), rank_job(1)],
     (0, "pod deleted (evicted)")),
    (DDP, [pod(0), pod(1, deleting=True)], [rank_job(0), rank_job(1, suspend=True)],
     (1, "pod deleted (preempted by Kueue)")),
    (DDP, [pod(0), pod(1, "Failed", exit_code=1)], [rank_job(0), rank_job(1, failed="BackoffLimitExceeded")],
     (1, "rank 1 failed (exit code 1)")),
    (DDP, [pod(0), pod(1, "Failed", exit_code=1)], [rank_job(0), rank_job(1, failed="DeadlineExceeded")], None),
    (DDP, [pod(0, "Succeeded", deleting=True), pod(1)], [rank_job(0), rank_job(1)], None),
    (ONE, [pod(0, "Failed", exit_code=1)], [rank_job(0, failed="BackoffLimitExceeded")], None),
    (ONE, [pod(0, deleting=True)], [rank_job(0)], (0, "pod deleted")),
], ids=["all-running", "pod-deleted", "preempted", "node-lost", "evicted", "kueue-preempted", "rank-failed",
        "deadline-is-the-end", "a-finished-rank-going", "one-worker-torchrun-restarts-it", "one-worker-pod-lost"])
def test_restart_trigger(job: dict[str, Any], pods: list[dict[str, Any]], jobs: list[dict[str, Any]],
                         expected: tuple[int, str] | None) -> None:
    assert restarts.restart_trigger(job, pods, jobs) == expected


# -- what status says ------------------------------------------------------------------------------


def parent(record: dict[str, Any] | None, *, limit: int = 3, final: dict[str, Any] | None = None) -> dict[str, Any]:
    data = {"spec.json": json.dumps({"name": "ddp", "workers": 2, "framework": "pytorch", "restarts": limit})}
    if record is not None:
        data[restarts.RESTARTS_KEY] = json.dumps(record)
    if final is not None:
        data["status.json"] = json.dumps(final)
    return {"metadata": {"name": job_id("alice", "ddp"), "labels": {
        "app.kubernetes.io/managed-by": "kubelab", "kubelab.io/component": "job"},
        "annotations": {"kubelab.io/username": "alice"}}, "data": data}


def status(phase: str, message: str = "") -> JobStatus:
    return JobStatus(name="ddp", user="alice", framework="pytorch", workers=2, phase=phase, message=message,
                     failed_rank=1 if phase == "Failed" else None,
                     ranks=[RankStatus(0, "Running"), RankStatus(1, phase)])


RESTARTED = {"used": 1, "limit": 3, "state": "running", "history": [
    {"n": 1, "at": "t", "rank": 1, "reason": "pod deleted (preempted)", "resumed_from": 120}]}


def test_a_failed_rank_with_restarts_left_never_reads_failed() -> None:
    s = status("Failed", "rank 1 failed: Error")
    restarts.apply_restarts(s, parent(None))
    assert (s.phase, s.message, s.failed_rank) == ("Running", "Restarting (1 of 3)", None)
    spent = {**RESTARTED, "used": 3}
    s = status("Failed", "rank 1 failed: Error")
    restarts.apply_restarts(s, parent(spent))
    assert s.phase == "Failed", "with no restart left it fails"


def test_status_says_how_often_and_why_and_from_which_step() -> None:
    s = status("Running")
    restarts.apply_restarts(s, parent(RESTARTED))
    assert s.message == "Restarted 1 of 3: pod deleted (preempted); resumed from step 120"
    assert s.restarts["used"] == 1 and s.restarts["limit"] == 3
    s = status("Pending")
    restarts.apply_restarts(s, parent({**RESTARTED, "state": "stopping",
                                      "history": [{**RESTARTED["history"][0], "resumed_from": None}]}))
    assert (s.phase, s.message) == ("Running", "Restarted 1 of 3: pod deleted (preempted); starting the ranks again")
    done = status("Succeeded")
    restarts.apply_restarts(done, parent(RESTARTED, final={"phase": "Succeeded", "message": ""}))
    assert done.phase == "Succeeded" and done.message.startswith("Restarted 1 of 3")


# -- the rank Jobs, recorded and created again ----------------------------------------------------------


def as_the_api_server_returns(job: dict[str, Any]) -> dict[str, Any]:
    """A Job with what the API server and the Job controller add (Kubernetes 1.20)."""
    out = copy.deepcopy(job)
    out["metadata"].update(uid="u-1", resourceVersion="42", creationTimestamp="2026-01-01T00:00:00Z",
                           ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "p", "uid": "u"}])
    out["metadata"]["labels"]["controller-uid"] = "u-1"
    out["spec"]["selector"] = {"matchLabels": {"controller-uid": "u-1"}}
    out["spec"]["template"]["metadata"]["labels"].update({"controller-uid": "u-1", "job-name": out["metadata"]["name"]})
    out["status"] = {"active": 1, "startTime": "2026-01-01T00:00:01Z"}
    return out


def test_a_recorded_rank_job_is_the_one_the_builder_made() -> None:
    built = [plain.make_rank_job(spec(restarts=1, checkpoint_dir="~/ckpt"), ctx(), r) for r in range(2)]
    served = [as_the_api_server_returns(j) for j in built]
    again = restarts.load_snapshot(restarts.snapshot(served))
    owner = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "p", "uid": "u"}]
    assert again == [{**j, "metadata": {**j["metadata"], "ownerReferences": owner}} for j in built]
    left = restarts.with_restarts_left(again[0], 1)
    env = left["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "KUBELAB_RESTARTS"] == ["1"]


def test_a_snapshot_is_small_and_refuses_what_is_not_one() -> None:
    served = [as_the_api_server_returns(plain.make_rank_job(spec(workers=64), ctx(), r)) for r in range(64)]
    assert len(restarts.snapshot(served)) < 20_000  # 64 ranks in a ConfigMap value, well below 1 MiB
    with pytest.raises(ValueError, match="not a snapshot of rank Jobs"):
        restarts.load_snapshot("bm90IGEgc25hcHNob3Q=")


def test_the_widget_and_the_hub_page_say_it_too() -> None:
    s = status("Running")
    restarts.apply_restarts(s, parent(RESTARTED))
    words = "Restarted 1 of 3: pod deleted (preempted); resumed from step 120"
    assert words in job_detail_html(s)
    assert words in status_html(s)
