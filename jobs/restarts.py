"""Resume instead of fail: a job with ``restarts: N`` is started again when a rank fails or loses its pod.

What counts as a reason to restart (:func:`restart_trigger`, pure):

* a rank's pod is being deleted while the job runs: preemption (by the scheduler, or by Kueue,
  which suspends the Job), node loss, eviction, or anyone deleting it. The words come from the
  pod's ``DisruptionTarget`` condition where the cluster writes one (Kubernetes ≥ 1.26,
  ``pkg/apis/core/types.go`` ``PodReasonPreemptionByScheduler`` and friends), else from
  ``status.reason: Evicted``, else "pod deleted";
* a rank failed for good (its retries used up). In a one-worker PyTorch job that is torchrun's
  to handle: the entrypoint runs it with ``--max-restarts=N`` (elastic restarts of the worker
  process inside the living pod), so kubelab only restarts such a job when its pod is lost.

How (plain engine; JobSet's controller restarts a JobSet itself, ``failurePolicy.maxRestarts``):
the job's rank Jobs are recorded once, as created (:func:`snapshot`, gzip in the parent's
``ranks.gz``), then each restart runs as persisted steps, so that a hub killed at any point
carries on where it stopped (:class:`RestartDriver`, called by the jobs reconciler):

1. ``stopping``: the restart is counted in the parent (``restarts.json``) and every rank Job is
   deleted (their pods get SIGTERM);
2. once no rank pod is left, ``starting``: the rank Jobs are created again from the record
   (same names, so peers find each other at the same DNS names);
3. ``running``: the ranks resume from the latest checkpoint (``kubelab.jobs.checkpoint``); the
   step they resume from is read once from rank 0's log (``kubelab-checkpoint: resuming from step N``).

Status says ``Restarted 1 of 3: pod deleted (preempted); resumed from step 120``
(:func:`apply_restarts`), and a job with restarts left never reads ``Failed`` in between.
"""

from __future__ import annotations

import base64
import binascii
import copy
import gzip
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kubelab.core.naming import COMPONENT_COLLECTOR, COMPONENT_RANK, LABEL_COMPONENT, LABEL_JOB, LABEL_RANK, LABEL_USER
from kubelab.jobs.builders.common import BuildContext, is_within, mounted_roots, user_path
from kubelab.jobs.checkpoint import RESUME_LINE
from kubelab.jobs.kube import AlreadyExists
from kubelab.jobs.spec import JobSpec, JobSpecError, JobStatus
from kubelab.jobs.status import final_record, job_spec, latest, pod_rank

if TYPE_CHECKING:  # the reconciler owns the driver; only the service's type is needed here
    from kubelab.jobs.service import JobsService

log = logging.getLogger("kubelab.jobs.restarts")

#: Parent data keys: the restarts so far, and the rank Jobs as created (gzip, base64).
RESTARTS_KEY = "restarts.json"
RANKS_KEY = "ranks.gz"
#: Engines whose restarts kubelab drives (plain) or hands to the engine's controller (jobset).
RESTART_ENGINES = ("plain", "jobset")
STOPPING, STARTING, RUNNING = "stopping", "starting", "running"
#: Lines of rank 0's log searched for the step it resumed from.
RESUME_LOG_LINES = 400
#: How often (s), and how many times, rank 0's log is read while the resume line has not shown.
RESUME_POLL_SECONDS = 5.0
RESUME_POLLS = 60
#: The DisruptionTarget reasons Kubernetes writes on a pod it is about to delete, in words.
DISRUPTION_WORDS = {
    "PreemptionByScheduler": "preempted",
    "PreemptionByKubeScheduler": "preempted",
    "EvictionByEvictionAPI": "evicted",
    "DeletionByTaintManager": "node lost",
    "DeletionByPodGC": "node lost",
    "TerminationByKubelet": "node shutting down",
}
#: Labels the Job controller adds to a Job's pod template and selector; a Job created again gets new ones.
_CONTROLLER_LABELS = ("controller-uid", "job-name", "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name")


# -- checks at submit (pure) ---------------------------------------------------------------------


def check(spec: JobSpec, ctx: BuildContext, engine: str, max_restarts: int) -> None:
    """Refuse ``restarts`` over the catalogue's cap or on an engine that cannot restart, and a
    ``checkpoint_dir`` that job pods (or a restart of them) would not find again.

    Raises:
        JobSpecError: On ``restarts`` or ``checkpoint_dir``; the message names what is allowed
            and the route to take instead.
    """
    if spec.restarts > max_restarts:
        raise JobSpecError("restarts", f"{spec.restarts} is not allowed; allowed: 0..{max_restarts} "
                           "(the catalogue's jobs.maxRestarts)")
    if spec.restarts and engine not in RESTART_ENGINES:
        raise JobSpecError("restarts", f"the engine {engine} restarts pods its own way (use retries); "
                           f"restarts work on the engines {', '.join(RESTART_ENGINES)}")
    if spec.checkpoint_dir is None:
        return
    roots = mounted_roots(ctx)
    path = user_path(ctx, spec.checkpoint_dir)
    if not roots:
        raise JobSpecError("checkpoint_dir", f"{spec.checkpoint_dir}: job pods cannot mount your files here (homes "
                           f"are {ctx.home.access_mode} and there is no shared volume), so a checkpoint would be "
                           "lost with its pod; ask for ReadWriteMany homes or a shared volume in the catalogue, or "
                           "write results to output_dir (they are collected when the job ends)")
    if path in roots or not any(is_within(path, r) for r in roots):
        where = " or ".join(roots)
        raise JobSpecError("checkpoint_dir", f"{spec.checkpoint_dir} is {'all of' if path in roots else 'outside'} "
                           f"the files job pods mount; use a folder under {where}, e.g. "
                           f"{roots[0].rstrip('/')}/kubelab-runs/{spec.name}/checkpoints")


# -- what happened (pure) ------------------------------------------------------------------------


def deletion_words(pod: Mapping[str, Any]) -> str:
    """Why a rank's pod went away, in words: ``pod deleted (preempted)``."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            why = DISRUPTION_WORDS.get(cond.get("reason", ""), cond.get("reason") or "")
            return f"pod deleted ({why})" if why else "pod deleted"
    if status.get("reason") == "Evicted":
        return "pod deleted (evicted)"
    return "pod deleted"


def elastic(spec: Mapping[str, Any]) -> bool:
    """Whether torchrun restarts the job's failed processes itself (one-worker PyTorch jobs)."""
    return spec.get("framework", "pytorch") == "pytorch" and spec.get("workers") == 1


def restart_trigger(spec: Mapping[str, Any], pods: list[Mapping[str, Any]],
                    rank_jobs: list[Mapping[str, Any]]) -> tuple[int, str] | None:
    """``(rank, reason)`` when the job must restart now, else None (pure).

    Args:
        spec: The job's spec as its record keeps it.
        pods: The job's pods (the collector's are ignored).
        rank_jobs: The job's rank Jobs.
    """
    by_rank: dict[int, list[Mapping[str, Any]]] = {}
    for pod in pods:
        rank = pod_rank(pod)
        if rank is not None and (pod["metadata"].get("labels") or {}).get(LABEL_COMPONENT) != COMPONENT_COLLECTOR:
            by_rank.setdefault(rank, []).append(pod)
    for rank in sorted(by_rank):
        pod = latest(by_rank[rank])
        if pod is not None and pod["metadata"].get("deletionTimestamp"):
            job = _rank_job(rank_jobs, rank)
            if job is not None and (job.get("spec") or {}).get("suspend"):
                return rank, "pod deleted (preempted by Kueue)"
            if _phase(pod) != "Succeeded":
                return rank, deletion_words(pod)
    if elastic(spec):
        return None  # torchrun --max-restarts restarts failed processes in place
    for job in sorted(rank_jobs, key=lambda j: _int((j["metadata"].get("labels") or {}).get(LABEL_RANK))):
        failed = _condition(job, "Failed")
        if failed is None or "deadline" in f"{failed.get('reason', '')} {failed.get('message', '')}".lower():
            continue  # the job's deadline is the job's end, not a reason to run longer
        rank = _int((job["metadata"].get("labels") or {}).get(LABEL_RANK))
        pod = latest(by_rank.get(rank, []))
        code = _exit_code(pod) if pod is not None else None
        return rank, f"rank {rank} failed" + (f" (exit code {code})" if code is not None else "")
    return None


def _phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _exit_code(pod: Mapping[str, Any]) -> int | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return term.get("exitCode")
    return None


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _rank_job(rank_jobs: list[Mapping[str, Any]], rank: int) -> Mapping[str, Any] | None:
    return next((j for j in rank_jobs if (j["metadata"].get("labels") or {}).get(LABEL_RANK) == str(rank)), None)


def restarts_record(parent: Mapping[str, Any]) -> dict[str, Any] | None:
    """The job's ``restarts.json`` (None before its first restart or when unreadable)."""
    raw = (parent.get("data") or {}).get(RESTARTS_KEY)
    try:
        record = json.loads(raw) if raw else None
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("history"), list) else None


def restart_words(record: Mapping[str, Any]) -> str:
    """``Restarted 1 of 3: pod deleted (preempted); resumed from step 120``."""
    history = record.get("history") or []
    if not history:
        return ""
    last = history[-1]
    words = f"Restarted {record.get('used', len(history))} of {record.get('limit', '?')}: {last.get('reason', '')}"
    if last.get("resumed_from") is not None:
        words += f"; resumed from step {last['resumed_from']}"
    elif record.get("state") in (STOPPING, STARTING):
        words += "; starting the ranks again"
    elif record.get("state") == RUNNING:
        words += "; no checkpoint read yet" if last.get("resume_unknown") else ""
    return words


def apply_restarts(status: JobStatus, parent: Mapping[str, Any]) -> None:
    """Put the job's restarts into its status (the jobs service calls this for every read).

    A job that is being restarted, or whose failed rank is about to be restarted, reads
    ``Running`` with the restart in its message, never ``Failed``: ``wait()`` must not return.
    """
    spec = job_spec(parent) or {}
    limit = int(spec.get("restarts") or 0)
    if not limit:
        return
    record = restarts_record(parent) or {"used": 0, "limit": limit, "history": [], "state": RUNNING}
    words = restart_words(record)
    status.restarts = {"used": record.get("used", 0), "limit": limit, "history": record.get("history", []),
                       "message": words}
    if final_record(parent) is not None:
        if words and not status.message:
            status.message = words
        elif words and status.phase == "Failed":
            status.message = f"{status.message} ({words.lower()})"
        return
    restarting = record.get("state") in (STOPPING, STARTING)
    retry_failed = (status.phase == "Failed" and record.get("used", 0) < limit and not elastic(spec)
                    and "deadline" not in status.message.lower())
    if restarting or retry_failed:
        status.phase = "Running"
        status.failed_rank = None
        status.message = words if restarting else f"Restarting ({record.get('used', 0) + 1} of {limit})"
    elif words:
        status.message = words + (f"; {status.message}" if status.message else "")


# -- the rank Jobs as created (pure) -------------------------------------------------------------


def clean_rank_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A rank Job as the builder made it, from the API server's copy: without status, server
    fields and the labels and selector the Job controller added (a new Job gets its own)."""
    meta = job.get("metadata") or {}
    out: dict[str, Any] = {
        "apiVersion": job.get("apiVersion", "batch/v1"),
        "kind": "Job",
        "metadata": {k: copy.deepcopy(meta[k]) for k in ("name", "namespace", "labels", "annotations",
                                                          "ownerReferences") if k in meta},
        "spec": copy.deepcopy(dict(job.get("spec") or {})),
    }
    out["spec"].pop("selector", None)
    out["spec"].pop("manualSelector", None)
    template_labels = ((out["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    for key in _CONTROLLER_LABELS:
        template_labels.pop(key, None)
    for key in _CONTROLLER_LABELS:
        out["metadata"].get("labels", {}).pop(key, None)
    return out


def snapshot(rank_jobs: list[Mapping[str, Any]]) -> str:
    """The rank Jobs, cleaned, as gzip-compressed JSON in base64 (a parent ConfigMap value)."""
    jobs = sorted((clean_rank_job(j) for j in rank_jobs), key=lambda j: j["metadata"]["name"])
    return base64.b64encode(gzip.compress(json.dumps(jobs, sort_keys=True).encode(), mtime=0)).decode()


def load_snapshot(text: str) -> list[dict[str, Any]]:
    """The rank Jobs of :func:`snapshot`.

    Raises:
        ValueError: Not a snapshot.
    """
    try:
        jobs = json.loads(gzip.decompress(base64.b64decode(text, validate=True)))
    except (OSError, EOFError, binascii.Error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"not a snapshot of rank Jobs: {e}") from e
    if not isinstance(jobs, list) or not all(isinstance(j, dict) and j.get("kind") == "Job" for j in jobs):
        raise ValueError("not a list of Jobs")
    return jobs


def with_restarts_left(job: dict[str, Any], left: int) -> dict[str, Any]:
    """The rank Job with ``KUBELAB_RESTARTS`` set to the restarts still left (torchrun's budget)."""
    job = copy.deepcopy(job)
    for container in ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
        env = [e for e in container.get("env") or [] if e.get("name") != "KUBELAB_RESTARTS"]
        container["env"] = env + [{"name": "KUBELAB_RESTARTS", "value": str(max(0, left))}]
    return job


# -- the driver (in the hub's reconciler) ---------------------------------------------------------


class RestartDriver:
    """Restarts of the plain engine's jobs, one persisted step per reconcile.

    Args:
        service: The started jobs service (its cache, API and clock).
        requeue: ``requeue(job id, seconds)``: look at the job again later (the work queue's
            ``add_after``), for the resume line that a log does not announce by an event.
    """

    def __init__(self, service: JobsService, requeue: Any) -> None:
        self.service = service
        self.requeue = requeue
        self._resume_polls: dict[str, int] = {}

    async def step(self, jid: str, parent: Mapping[str, Any], status: JobStatus, now: str) -> bool:
        """Take the next restart step of job ``jid``; True when the reconcile must stop here.

        Raises:
            RuntimeError, ApiException: Transient; the reconcile is retried.
        """
        spec = job_spec(parent) or {}
        limit = int(spec.get("restarts") or 0)
        if not limit or status.engine != "plain":
            return False
        service = self.service
        assert service.cache is not None and service.api is not None
        labels = parent["metadata"].get("labels") or {}
        user, job = labels.get(LABEL_USER, ""), labels.get(LABEL_JOB, "")
        rank_jobs = [j for j in service.cache.of_job("jobs", user, job)
                     if (j["metadata"].get("labels") or {}).get(LABEL_COMPONENT) == COMPONENT_RANK]
        pods = [p for p in service.cache.of_job("pods", user, job)
                if (p["metadata"].get("labels") or {}).get(LABEL_COMPONENT) == COMPONENT_RANK]
        final = final_record(parent)
        record = restarts_record(parent) or {"used": 0, "limit": limit, "history": [], "state": RUNNING}
        if final is not None:
            if final.get("phase") == "Cancelled" and record.get("history"):
                # Cancelled mid-restart: ranks a restart created after the cancel must not run on.
                for j in rank_jobs:
                    if not j["metadata"].get("deletionTimestamp"):
                        await service.api.delete("Job", j["metadata"]["name"])
            return False
        state = record.get("state", RUNNING)
        if state == STOPPING:
            for j in rank_jobs:
                if not j["metadata"].get("deletionTimestamp"):
                    await service.api.delete("Job", j["metadata"]["name"])
            if rank_jobs or pods:
                return True  # their DELETED events queue this job again
            record["state"] = STARTING
            await self._write(jid, parent, {RESTARTS_KEY: json.dumps(record)})
            return True
        if state == STARTING:
            saved = (parent.get("data") or {}).get(RANKS_KEY)
            if not saved:
                raise RuntimeError(f"job {jid}: no record of its rank Jobs to start again")
            left = limit - int(record.get("used", 0))
            present = {j["metadata"]["name"] for j in rank_jobs}
            try:
                manifests = load_snapshot(saved)
            except ValueError as e:
                raise RuntimeError(f"job {jid}: its record of rank Jobs is unreadable: {e}") from e
            for manifest in manifests:
                if manifest["metadata"]["name"] in present:
                    continue
                try:
                    await service.api.create(with_restarts_left(manifest, left))
                except AlreadyExists:
                    pass  # created by an earlier attempt of this step
            record["state"] = RUNNING
            await self._write(jid, parent, {RESTARTS_KEY: json.dumps(record)})
            self.requeue(jid, RESUME_POLL_SECONDS)
            return True
        # Running: record the rank Jobs once, then watch for a reason to restart.
        if RANKS_KEY not in (parent.get("data") or {}):
            if len(rank_jobs) == int(spec.get("workers") or 0) and not any(
                    j["metadata"].get("deletionTimestamp") for j in rank_jobs):
                await self._write(jid, parent, {RANKS_KEY: snapshot(rank_jobs)})
                parent = service.cache.parents.get(jid) or parent
            else:
                return False
        await self._note_resume(jid, parent, record, pods)
        trigger = restart_trigger(spec, pods, rank_jobs)
        if trigger is None or int(record.get("used", 0)) >= limit:
            return False
        rank, reason = trigger
        record["used"] = int(record.get("used", 0)) + 1
        record["limit"] = limit
        record["state"] = STOPPING
        record["history"] = [*record.get("history", []), {"n": record["used"], "at": now, "rank": rank,
                                                           "reason": reason, "resumed_from": None}]
        log.info("job %s: restart %d of %d: %s", jid, record["used"], limit, reason)
        await self._write(jid, parent, {RESTARTS_KEY: json.dumps(record)})
        for j in rank_jobs:
            await service.api.delete("Job", j["metadata"]["name"])
        return True

    async def _note_resume(self, jid: str, parent: Mapping[str, Any], record: dict[str, Any],
                           pods: list[Mapping[str, Any]]) -> None:
        """Read, once per restart, the step rank 0 resumed from (its ``kubelab-checkpoint`` line)."""
        history = record.get("history") or []
        if not history or history[-1].get("resumed_from") is not None or history[-1].get("resume_unknown"):
            return
        pod = latest(p for p in pods if pod_rank(p) == 0)
        if pod is None or _phase(pod) == "Pending":
            return  # its start is an event: this job is queued again then
        assert self.service.api is not None
        lines = await self.service.api.tail_lines(pod["metadata"]["name"], RESUME_LOG_LINES)
        steps = [m.group("step") for m in map(RESUME_LINE.search, lines) if m]
        polls = self._resume_polls.get(jid, 0) + 1
        if steps:
            history[-1]["resumed_from"] = int(steps[-1])
        elif _phase(pod) != "Running" or polls >= RESUME_POLLS:
            history[-1]["resume_unknown"] = True  # it ended (or never says): started from scratch
        else:
            self._resume_polls[jid] = polls
            self.requeue(jid, RESUME_POLL_SECONDS)
            return
        self._resume_polls.pop(jid, None)
        await self._write(jid, parent, {RESTARTS_KEY: json.dumps(record)})

    async def _write(self, jid: str, parent: Mapping[str, Any], data: Mapping[str, str]) -> None:
        """Patch the parent's data and apply it to the cache (readers never see the older record)."""
        service = self.service
        assert service.api is not None and service.cache is not None
        try:
            await service.api.patch_configmap_data(jid, data)
        except KeyError:
            return  # deleted meanwhile
        current = service.cache.parents.get(jid) or parent
        service.cache.apply("configmaps", "MODIFIED", {**current, "data": {**(current.get("data") or {}), **data}})
