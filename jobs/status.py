"""Turn the cached objects of one job into a :class:`~kubelab.jobs.spec.JobStatus` (pure).

Inputs are the API's JSON dicts as the watch delivers them: the parent ConfigMap (the job's
record, with the final status once the job ended), the rank Jobs (plain engine; JobSet's child
Jobs), the pods and, where the engine has one, the engine's own object (PyTorchJob, TFJob,
MPIJob, TrainJob, JobSet) and Kueue's Workload for it.

What each engine's controller writes, and so what is read here:

- Kubeflow training-operator v1.9.4 (``pkg/util/status.go``, ``pkg/controller.v1/common/job.go``,
  ``pkg/controller.v1/pytorch/pytorchjob_controller.go``): conditions ``Created``, ``Running``,
  ``Restarting`` (exclusive with Running), ``Succeeded``, ``Failed``, ``Suspended``, reasons
  ``<Kind><Reason>``; at the active deadline or backoff limit it sets ``Failed`` first and then
  deletes the pods (``cleanPodPolicy: All``), so the condition is all that is left.
- Trainer v2.3.0 (``pkg/apis/trainer/v1alpha1/trainjob_types.go``): ``Suspended``, ``Complete``,
  ``Failed`` (reason ``DeadlineExceeded`` at ``activeDeadlineSeconds``).
- JobSet v0.12.0 (``api/jobset/v1alpha2/jobset_types.go``, ``pkg/constants``): ``Completed``,
  ``Failed`` (``ReachedMaxRestarts``, ``FailedJobs``), ``Suspended``; ``status.restarts``.
- Kueue v0.19.2 Workload (``apis/kueue/v1beta2/workload_types.go``, ``pkg/workload/workload.go``,
  ``pkg/scheduler/preemption/preemption.go``): ``QuotaReserved``, ``Admitted``, ``Evicted``,
  ``Preempted``; the visibility API's ``positionInLocalQueue`` counts from 0.

The job's ``message`` says it in words: ``Queued in lab-a100, position 3``, ``Preempted: ...``,
``Restarting (2 of 3)``, ``Failed: deadline exceeded``. Objects kubelab did not create (no kubelab
record, a name or owner that is not the job's) are ignored, never an error.
"""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelab.core.naming import (
    ANNOTATION_ENGINE,
    ANNOTATION_FILES,
    ANNOTATION_USER,
    COMPONENT_PARENT,
    LABEL_COMPONENT,
    LABEL_RANK,
    MANAGED_BY,
    MANAGED_BY_VALUE,
)
from kubelab.jobs.builders.common import job_id
from kubelab.jobs.builders.jobset import COMPLETION_INDEX
from kubelab.jobs.builders.kubeflow import REPLICA_INDEX_LABEL
from kubelab.jobs.collect import outputs_status
from kubelab.jobs.spec import FRAMEWORKS, JobStatus, RankStatus

STATUS_KEY = "status.json"
SPEC_KEY = "spec.json"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
OPERATOR_LABEL = "training.kubeflow.org/operator-name"
FINAL_PHASES = ("Succeeded", "Failed", "Cancelled")
#: A rank's phase once the job failed and the rank was (or is being) torn down.
STOPPED = "Stopped"
KUBEFLOW_KINDS = ("PyTorchJob", "TFJob", "MPIJob")


@dataclass(frozen=True)
class EngineVerdict:
    """What an engine's (or Kueue's) object says about the whole job.

    Attributes:
        phase: ``Succeeded``, ``Failed``, ``Queued`` or ``Running``; None when it says nothing the
            ranks do not (the ranks then decide).
        message: The words for the job's ``message`` (empty: none).
    """

    phase: str | None = None
    message: str = ""


NO_VERDICT = EngineVerdict()


# -- reading the objects ----------------------------------------------------------------------


def _true(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """The condition ``kind`` of ``obj`` when its status is True."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None



def _int(value: Any) -> int | None:
    """A label/annotation value as an int, None when it is not one (objects made by others)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def pod_rank(pod: Mapping[str, Any]) -> int | None:
    """The rank of a job pod: kubelab's rank label, else the engine's index (JobSet, Kubeflow v1)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if LABEL_RANK in labels:
        return _int(labels[LABEL_RANK])
    if COMPLETION_INDEX in annotations:
        return _int(annotations[COMPLETION_INDEX])
    if REPLICA_INDEX_LABEL in labels:
        index = _int(labels[REPLICA_INDEX_LABEL])
        kind = labels.get(REPLICA_TYPE_LABEL, "").lower()
        if index is None:
            return None
        if kind in ("master", "launcher"):
            return 0
        # PyTorchJob Workers follow the Master and MPIJob Workers the Launcher; TFJob has Workers only.
        return index if "tfjob" in labels.get(OPERATOR_LABEL, "") else index + 1
    return None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return term
    return None


def _restarts(pods: Iterable[Mapping[str, Any]]) -> int:
    return sum(int(cs.get("restartCount") or 0) for p in pods
               for cs in (p.get("status") or {}).get("containerStatuses") or [])


def _waiting(pod: Mapping[str, Any]) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        wait = (cs.get("state") or {}).get("waiting")
        if wait and wait.get("reason"):
            return f"{wait['reason']}: {wait.get('message', '')}".rstrip(": ")
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".rstrip(": ")
    return ""


def latest(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest pod (a retried rank has several)."""
    pods = list(pods)
    if not pods:
        return None
    return max(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))


def rank_status(rank: int, pods: list[Mapping[str, Any]], rank_job: Mapping[str, Any] | None) -> RankStatus:
    """Status of one rank from its pods and (plain engine) its batch Job."""
    pod = latest(pods)
    out = RankStatus(rank=rank)
    if pod is not None:
        out.pod = pod["metadata"]["name"]
        out.node = (pod.get("spec") or {}).get("nodeName")
        out.phase = (pod.get("status") or {}).get("phase") or "Pending"
        term = _terminated(pod)
        if term:
            out.exit_code = term.get("exitCode")
            out.message = term.get("reason", "") if out.exit_code else ""
        else:
            out.message = _waiting(pod)
        if out.phase == "Unknown":
            out.phase = "Pending"
    if rank_job is not None:
        failed = _true(rank_job, "Failed")
        if _true(rank_job, "Complete"):
            out.phase = "Succeeded"
        elif failed:
            out.phase = "Failed"
            out.message = f"{failed.get('reason', '')}: {failed.get('message', '')}".rstrip(": ")
            if term and term.get("reason") not in (None, "", "Error", "Completed"):
                # The container's own end (OOMKilled) names the cause; the Job controller's
                # BackoffLimitExceeded only says that it gave up.
                out.message = str(term["reason"])
        elif (rank_job.get("spec") or {}).get("suspend"):
            out.phase = "Queued"
        elif out.phase == "Failed":
            # The pod failed but the Job has retries left: a new pod is coming.
            out.phase = "Pending"
            out.message = f"retrying after exit code {out.exit_code}"
    return out


def failure_time(pod: Mapping[str, Any] | None) -> str:
    """When a pod's container ended (for ordering failed ranks); empty if unknown."""
    term = _terminated(pod) if pod else None
    return (term or {}).get("finishedAt") or "~"


def job_phase(ranks: list[RankStatus], queued: bool = False) -> str:
    """The job's phase from its ranks: any Failed → Failed; all Succeeded → Succeeded; ..."""
    phases = [r.phase for r in ranks]
    if "Failed" in phases:
        return "Failed"
    if phases and all(p == "Succeeded" for p in phases):
        return "Succeeded"
    if queued or "Queued" in phases:
        return "Queued"
    if "Running" in phases or "Succeeded" in phases:
        return "Running"
    return "Pending"


def final_record(parent: Mapping[str, Any]) -> dict[str, Any] | None:
    """The final status written into the parent when the job ended, if any (None if unreadable)."""
    raw = (parent.get("data") or {}).get(STATUS_KEY)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("phase") in FINAL_PHASES else None


def job_spec(parent: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The JobSpec fields kept in a kubelab job's parent, or None for a ConfigMap kubelab did not
    make (not labelled as a job record, no user annotation, no readable spec).

    Read-only: the same record is parsed once (:func:`_checked_spec`), since every quota check
    reads every live job's spec.
    """
    meta = parent.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) != MANAGED_BY_VALUE or labels.get(LABEL_COMPONENT) != COMPONENT_PARENT:
        return None
    user, name = (meta.get("annotations") or {}).get(ANNOTATION_USER), meta.get("name")
    raw = (parent.get("data") or {}).get(SPEC_KEY)
    if not user or not name or not isinstance(raw, str):
        return None
    return _checked_spec(raw, user, name)


@functools.lru_cache(maxsize=8192)
def _checked_spec(raw: str, user: str, name: str) -> Mapping[str, Any] | None:
    """The parsed spec of the parent ``name`` of ``user``, if it is one kubelab wrote (memoised:
    records never change their spec, and a submit with 500 live jobs read 500 of them)."""
    try:
        spec = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return None
    workers = spec.get("workers")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        return None
    if spec.get("framework", "pytorch") not in FRAMEWORKS:
        return None
    if job_id(user, spec["name"]) != name:
        return None  # a record under another job's name: not one kubelab wrote
    return types.MappingProxyType(spec)


def is_job_record(parent: Mapping[str, Any]) -> bool:
    """Whether ``parent`` is the record of a job kubelab made (others are ignored, not errors)."""
    return job_spec(parent) is not None


#: The jobs cache's index of parents that may hold GPUs: ``by_index(GPU_INDEX, DECLARES_GPUS)``.
GPU_INDEX = "gpus"
DECLARES_GPUS = "declared"


def declared_gpus(spec: Mapping[str, Any]) -> int:
    """GPUs a job's spec asks for in all: ``gpus_per_worker × workers``."""
    return int(spec.get("gpus_per_worker") or 0) * int(spec.get("workers") or 0)


def gpu_index(parent: Mapping[str, Any]) -> tuple[str, ...]:
    """Index function of the parents: a live job that asks for GPUs is filed under
    :data:`DECLARES_GPUS`. Computed once per change of the parent, so that a quota check looks
    only at these jobs and not at every live job (issue 10: 550 CPU jobs slowed every submit)."""
    spec = job_spec(parent)
    if spec is None or final_record(parent) is not None or not declared_gpus(spec):
        return ()
    return (DECLARES_GPUS,)


# -- what the engines say ---------------------------------------------------------------------


def restarting(done: int, limit: int | None) -> str:
    """``Restarting (2 of 3)``: restarts so far, of the retries allowed."""
    return f"Restarting ({done} of {limit})" if limit is not None else f"Restarting ({done})"


_DEADLINE = re.compile(r"deadline", re.I)
_BACKOFF = re.compile(r"backoff ?limit", re.I)


def failed_words(reason: str, message: str, *, retries: int | None = None) -> str:
    """``Failed: deadline exceeded`` and the like, from a Failed condition's reason and message."""
    text = f"{reason} {message}"
    if _DEADLINE.search(text):
        return "Failed: deadline exceeded"
    if _BACKOFF.search(text):
        return "Failed: backoff limit reached" + (f" ({retries} retries)" if retries is not None else "")
    if reason == "ReachedMaxRestarts":
        return "Failed: restarted the most times allowed" + (f" ({retries})" if retries is not None else "")
    detail = message or reason
    # "PyTorchJob x is failed because 1 Worker replica(s) failed." → "1 Worker replica(s) failed"
    because = re.search(r"because (.+?)\.?$", detail)
    return f"Failed: {because.group(1) if because else detail.rstrip('.')}"


def kubeflow_verdict(obj: Mapping[str, Any], pods: Iterable[Mapping[str, Any]] = ()) -> EngineVerdict:
    """What a PyTorchJob, TFJob or MPIJob's conditions say."""
    run_policy = (obj.get("spec") or {}).get("runPolicy") or {}
    limit = _int(run_policy.get("backoffLimit"))
    failed = _true(obj, "Failed")
    if failed:
        return EngineVerdict("Failed", failed_words(failed.get("reason", ""), failed.get("message", ""),
                                                    retries=limit))
    if _true(obj, "Succeeded"):
        return EngineVerdict("Succeeded")
    if _true(obj, "Suspended") or (run_policy.get("suspend") and not _true(obj, "Running")):
        return EngineVerdict("Queued")
    if _true(obj, "Restarting"):
        return EngineVerdict("Running", restarting(_restarts(pods), limit))
    if _true(obj, "Running"):
        return EngineVerdict("Running")
    return NO_VERDICT


def trainjob_verdict(obj: Mapping[str, Any]) -> EngineVerdict:
    """What a TrainJob's conditions say (Trainer copies Completed/Failed from its JobSet)."""
    failed = _true(obj, "Failed")
    if failed:
        return EngineVerdict("Failed", failed_words(failed.get("reason", ""), failed.get("message", "")))
    if _true(obj, "Complete"):
        return EngineVerdict("Succeeded")
    if _true(obj, "Suspended") or (obj.get("spec") or {}).get("suspend"):
        return EngineVerdict("Queued")
    return NO_VERDICT


def jobset_verdict(obj: Mapping[str, Any]) -> EngineVerdict:
    """What a JobSet's conditions and restart count say."""
    max_restarts = _int(((obj.get("spec") or {}).get("failurePolicy") or {}).get("maxRestarts"))
    failed = _true(obj, "Failed")
    if failed:
        return EngineVerdict("Failed", failed_words(failed.get("reason", ""), failed.get("message", ""),
                                                    retries=max_restarts))
    if _true(obj, "Completed"):
        return EngineVerdict("Succeeded")
    if _true(obj, "Suspended") or (obj.get("spec") or {}).get("suspend"):
        return EngineVerdict("Queued")
    restarts = _int((obj.get("status") or {}).get("restarts")) or 0
    if restarts:
        return EngineVerdict("Running", restarting(restarts, max_restarts))
    return NO_VERDICT


def engine_verdict(obj: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]] = ()) -> EngineVerdict:
    """The verdict of an engine's object, by kind."""
    kind = (obj or {}).get("kind")
    if kind in KUBEFLOW_KINDS:
        return kubeflow_verdict(obj or {}, pods)
    if kind == "TrainJob":
        return trainjob_verdict(obj or {})
    if kind == "JobSet":
        return jobset_verdict(obj or {})
    return NO_VERDICT


def preempted_words(message: str) -> str:
    """``Preempted: <why>``; Kueue's message names the preemptor's UIDs and paths, the why is enough."""
    why = re.search(r"due to ([^;]+)", message)
    return f"Preempted: {why.group(1).strip() if why else message or 'by Kueue'}"


def workload_verdict(workload: Mapping[str, Any], queue: str | None = None,
                     position: int | None = None) -> EngineVerdict:
    """What Kueue's Workload says: queued (with its position), admitted, evicted or preempted.

    Args:
        queue: The LocalQueue to name when the Workload names none.
        position: ``positionInLocalQueue`` from Kueue's visibility API (0-based), if known.
    """
    queue = (workload.get("spec") or {}).get("queueName") or queue or "?"
    evicted = _true(workload, "Evicted")
    preempted = _true(workload, "Preempted")
    if preempted or (evicted and evicted.get("reason") == "Preempted"):
        cond = preempted or evicted or {}
        return EngineVerdict("Queued", preempted_words(cond.get("message", "")))
    if evicted:
        return EngineVerdict("Queued", f"Evicted ({evicted.get('reason', '')}): {evicted.get('message', '')}".rstrip(": "))
    if _true(workload, "Admitted") or _true(workload, "Finished"):
        return NO_VERDICT
    words = f"Queued in {queue}"
    if position is not None:
        words += f", position {position + 1}"
    else:
        for cond in (workload.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "QuotaReserved" and cond.get("status") == "False" and cond.get("message"):
                words += f": {cond['message']}"
    return EngineVerdict("Queued", words)


def _owned_by(obj: Mapping[str, Any], names: set[str]) -> bool:
    return any(ref.get("name") in names for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


# -- the job ----------------------------------------------------------------------------------


def build_status(parent: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
                 rank_jobs: Iterable[Mapping[str, Any]], events: Mapping[str, list[str]], *,
                 engine_object: Mapping[str, Any] | None = None, workload: Mapping[str, Any] | None = None,
                 queue_position: int | None = None) -> JobStatus:
    """The :class:`JobStatus` of one job from its cached objects.

    Args:
        parent: The job's parent ConfigMap (check it with :func:`is_job_record` first; a record kubelab
            did not write gets an empty Pending status rather than an error).
        pods: The job's pods (others' pods and pods without a rank are skipped).
        rank_jobs: batch Jobs labelled with the job (plain ranks, JobSet's child Jobs).
        events: Pod name → its recent events.
        engine_object: The engine's object (PyTorchJob, TFJob, MPIJob, TrainJob, JobSet), if any;
            one that is not this job's (another name) is ignored.
        workload: Kueue's Workload of the engine object (or of a plain rank Job), if any; one owned
            by something else is ignored.
        queue_position: The Workload's ``positionInLocalQueue`` (0-based), where the visibility API exists.
    """
    meta = parent.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    data = parent.get("data") or {}
    spec = job_spec(parent) or {"name": str(meta.get("name", "")), "workers": 0, "framework": "pytorch"}
    user = annotations.get(ANNOTATION_USER, "")
    jid = job_id(user, spec["name"])
    pods = [p for p in pods if (p.get("metadata") or {}).get("name")]
    by_rank: dict[int, list[Mapping[str, Any]]] = {}
    for pod in pods:
        r = pod_rank(pod)
        if r is not None:
            by_rank.setdefault(r, []).append(pod)
    jobs = {j["metadata"]["name"]: j for j in rank_jobs if (j.get("metadata") or {}).get("name")}
    ranks = [rank_status(r, by_rank.get(r, []), jobs.get(f"{jid}-{r}")) for r in range(spec["workers"])]
    status = JobStatus(
        name=spec["name"],
        user=user,
        framework=spec.get("framework", "pytorch"),
        workers=spec["workers"],
        gpus_per_worker=spec.get("gpus_per_worker", 0),
        gpu_class=spec.get("gpu_class"),
        engine=annotations.get(ANNOTATION_ENGINE, "plain"),
        created=meta.get("creationTimestamp"),
        ranks=ranks,
        queue=data.get("queue") or None,
    )
    status.phase = job_phase(ranks)
    _apply_verdicts(status, spec, pods, jobs, jid, engine_object, workload, queue_position)
    final = final_record(parent)
    if final:
        status.phase = final["phase"]
        status.finished = final.get("finished")
        status.message = final.get("message", "")
        status.failed_rank = final.get("failed_rank")
        status.last_logs = final.get("last_logs", [])
        saved = {r["rank"]: r for r in final.get("ranks", []) if isinstance(r, dict) and "rank" in r}
        # Torn-down ranks keep the state they had when the job ended. A rank saved as stopped stays
        # stopped while its pod is still there: the teardown's SIGTERM ends it with exit code 143,
        # which reads as Failed once its Job is gone (seen in CI: ranks "Failed, Failed").
        status.ranks = [RankStatus(**saved[r.rank]) if r.rank in saved
                        and (not r.pod or saved[r.rank].get("phase") == STOPPED) else r for r in status.ranks]
    if status.phase == "Failed" and status.failed_rank is None and not final:
        culprit = first_failed(status.ranks, by_rank)
        if culprit is not None:
            status.failed_rank = culprit.rank
            why = culprit.message or f"exit code {culprit.exit_code}"
            status.message = f"rank {culprit.rank} failed: {why}"
    if status.phase == "Failed":
        # The other ranks are being (or were) torn down: they read as stopped, never as Running,
        # whatever the record saved or the cache still shows (issue 10: "Running for 37 minutes").
        why = f"rank {status.failed_rank} failed" if status.failed_rank is not None else "the job failed"
        for r in status.ranks:
            if r.phase not in FINAL_PHASES and r.phase != STOPPED:
                r.phase, r.message = STOPPED, f"stopped: {why}"
    files = annotations.get(ANNOTATION_FILES)
    status.events = ([files] if files else []) + [
        f"rank {r.rank}: {e}" for r in status.ranks if r.pod for e in events.get(r.pod, [])
    ][-10:]
    status.outputs = outputs_status(parent, pods, status.done)
    return status


def _apply_verdicts(status: JobStatus, spec: Mapping[str, Any], pods: list[Mapping[str, Any]],
                    jobs: Mapping[str, Mapping[str, Any]], jid: str, engine_object: Mapping[str, Any] | None,
                    workload: Mapping[str, Any] | None, queue_position: int | None) -> None:
    """Let the engine's object, then Kueue's Workload, say what the ranks cannot."""
    if engine_object is not None and (engine_object.get("metadata") or {}).get("name") != jid:
        engine_object = None  # not this job's: ignore
    engine = engine_verdict(engine_object, pods)
    owners = {jid, *jobs}
    kueue = (workload_verdict(workload, status.queue, queue_position)
             if workload is not None and _owned_by(workload, owners) else NO_VERDICT)
    retrying = [r for r in status.ranks if r.message.startswith("retrying after")]
    if engine.phase in ("Succeeded", "Failed"):
        status.phase, status.message = engine.phase, engine.message
        if engine.phase == "Failed" and any(
                (_true(j, "Failed") or {}).get("reason") == "DeadlineExceeded" for j in jobs.values()):
            status.message = "Failed: deadline exceeded"  # JobSet says "job failures"; its child Job says why
        # cleanPodPolicy All (and Trainer's deadline) delete the pods: ranks without one ended with the job.
        for r in status.ranks:
            if r.pod is None and r.phase not in FINAL_PHASES:
                r.phase = engine.phase
                r.message = "" if engine.phase == "Succeeded" else f"stopped: {engine.message.removeprefix('Failed: ')}"
        return
    if status.phase == "Failed":
        deadline = [r for r in status.ranks if r.phase == "Failed" and _DEADLINE.search(r.message)]
        if deadline:
            status.message = "Failed: deadline exceeded"
        return
    if status.phase == "Succeeded":
        return
    if kueue.phase is not None:
        status.phase, status.message = kueue.phase, kueue.message
        for r in status.ranks:
            if r.pod is None:
                r.phase = "Queued"
        return
    if engine.phase == "Queued":
        status.phase, status.message = "Queued", f"Queued in {status.queue}" if status.queue else "Suspended"
        for r in status.ranks:
            if r.pod is None:
                r.phase = "Queued"
    elif engine.message:
        status.message = engine.message  # Restarting (n of m); the ranks say Running or Pending
    elif status.phase == "Queued" and status.queue:
        status.message = f"Queued in {status.queue}"
    elif retrying:
        failures = max(sum(1 for p in pods if pod_rank(p) == r.rank and (p.get("status") or {}).get("phase") == "Failed")
                       for r in retrying)
        status.message = restarting(failures, spec.get("retries", 0))


def first_failed(ranks: list[RankStatus], pods_by_rank: Mapping[int, list[Mapping[str, Any]]]) -> RankStatus | None:
    """The rank whose own pod failed first (by container finish time); None when no rank's pod
    failed (the engine failed the job, e.g. at its deadline)."""
    # A rank stopped by the engine, or ended by the job's deadline, is not the one that failed.
    failed = [r for r in ranks if r.phase == "Failed" and not r.message.startswith("stopped:")
              and not _DEADLINE.search(r.message)]
    if not failed:
        return None
    return min(failed, key=lambda r: (failure_time(latest(pods_by_rank.get(r.rank, []))), r.rank))


def failure_record(status: JobStatus, culprit: RankStatus | None, last_logs: list[str], finished: str) -> dict[str, Any]:
    """The final record of a failed job: the rank that failed and its last lines, or, when the
    engine failed it as a whole (deadline, backoff limit, pods already cleaned up), the engine's words."""
    if culprit is not None:
        why = culprit.message or f"exit code {culprit.exit_code}"
        message = f"rank {culprit.rank} failed ({why}); the other ranks were stopped"
    else:
        message = status.message or "Failed"
    return {"phase": "Failed", "finished": finished, "failed_rank": culprit.rank if culprit else None,
            "last_logs": last_logs, "message": message, "ranks": [r.__dict__ for r in status.ranks]}
