"""Turn the cached objects of one job into a :class:`~kubelab.jobs.spec.JobStatus` (pure).

Inputs are the API's JSON dicts as the watch delivers them: the parent ConfigMap (the job's
record, with the final status once the job ended), the rank Jobs (plain engine) and the pods.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubelab.core.naming import ANNOTATION_ENGINE, ANNOTATION_FILES, ANNOTATION_USER, LABEL_RANK
from kubelab.jobs.builders.common import job_id
from kubelab.jobs.builders.jobset import COMPLETION_INDEX
from kubelab.jobs.builders.kubeflow import REPLICA_INDEX_LABEL
from kubelab.jobs.spec import JobStatus, RankStatus

STATUS_KEY = "status.json"
SPEC_KEY = "spec.json"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
OPERATOR_LABEL = "training.kubeflow.org/operator-name"
FINAL_PHASES = ("Succeeded", "Failed", "Cancelled")


def pod_rank(pod: Mapping[str, Any]) -> int | None:
    """The rank of a job pod: kubelab's rank label, else the engine's index (JobSet, Kubeflow v1)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if LABEL_RANK in labels:
        return int(labels[LABEL_RANK])
    if COMPLETION_INDEX in annotations:
        return int(annotations[COMPLETION_INDEX])
    if REPLICA_INDEX_LABEL in labels:
        index = int(labels[REPLICA_INDEX_LABEL])
        kind = labels.get(REPLICA_TYPE_LABEL, "").lower()
        if kind in ("master", "launcher"):
            return 0
        # PyTorchJob Workers follow the Master and MPIJob Workers the Launcher; TFJob has Workers only.
        return index if "tfjob" in labels.get(OPERATOR_LABEL, "") else index + 1
    return None


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return term
    return None


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
        failed = _condition(rank_job, "Failed")
        if _condition(rank_job, "Complete"):
            out.phase = "Succeeded"
        elif failed:
            out.phase = "Failed"
            out.message = f"{failed.get('reason', '')}: {failed.get('message', '')}".rstrip(": ")
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
    """The final status written into the parent when the job ended, if any."""
    raw = (parent.get("data") or {}).get(STATUS_KEY)
    return json.loads(raw) if raw else None


def build_status(parent: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
                 rank_jobs: Iterable[Mapping[str, Any]], events: Mapping[str, list[str]]) -> JobStatus:
    """The :class:`JobStatus` of one job from its cached objects."""
    meta = parent["metadata"]
    annotations = meta.get("annotations") or {}
    data = parent.get("data") or {}
    spec = json.loads(data[SPEC_KEY])
    user = annotations.get(ANNOTATION_USER, "")
    jid = job_id(user, spec["name"])
    by_rank: dict[int, list[Mapping[str, Any]]] = {}
    for pod in pods:
        r = pod_rank(pod)
        if r is not None:
            by_rank.setdefault(r, []).append(pod)
    jobs = {j["metadata"]["name"]: j for j in rank_jobs}
    ranks = [rank_status(r, by_rank.get(r, []), jobs.get(f"{jid}-{r}")) for r in range(spec["workers"])]
    final = final_record(parent)
    status = JobStatus(
        name=spec["name"],
        user=user,
        framework=spec["framework"],
        workers=spec["workers"],
        gpus_per_worker=spec.get("gpus_per_worker", 0),
        gpu_class=spec.get("gpu_class"),
        engine=annotations.get(ANNOTATION_ENGINE, "plain"),
        created=meta.get("creationTimestamp"),
        ranks=ranks,
        queue=data.get("queue") or None,
    )
    status.phase = job_phase(ranks)
    if final:
        status.phase = final["phase"]
        status.finished = final.get("finished")
        status.message = final.get("message", "")
        status.failed_rank = final.get("failed_rank")
        status.last_logs = final.get("last_logs", [])
        saved = {r["rank"]: r for r in final.get("ranks", [])}
        # Torn-down ranks keep the state they had when the job ended.
        status.ranks = [r if r.pod else RankStatus(**saved[r.rank]) if r.rank in saved else r for r in ranks]
    if status.phase == "Failed" and status.failed_rank is None:
        failed = [r for r in ranks if r.phase == "Failed"]
        if failed:
            status.failed_rank = failed[0].rank
            status.message = f"rank {failed[0].rank} failed: {failed[0].message or f'exit code {failed[0].exit_code}'}"
    files = annotations.get(ANNOTATION_FILES)
    status.events = ([files] if files else []) + [
        f"rank {r.rank}: {e}" for r in ranks if r.pod for e in events.get(r.pod, [])
    ][-10:]
    return status
