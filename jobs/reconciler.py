"""Drive every job to its end, from hub start-up on: a work queue keyed by job (client-go's pattern).

The jobs cache's watch events only queue the job's id (:meth:`JobReconciler.on_change`); workers
then :meth:`~JobReconciler.reconcile` it from the cache:

* a job whose ranks all succeeded gets its final record (``Succeeded``) in its parent;
* a job with a rank failed for good gets its final record (``Failed``, the first failed rank, its
  last log lines), and then, on the plain engine, its other ranks are torn down (the failed
  rank's Job and pod stay, for post-mortem logs). The other engines' controllers tear their own
  ranks down (cleanPodPolicy, JobSet, Trainer);
* a job whose outputs a collector brings into a ReadWriteOnce home (:mod:`kubelab.jobs.collect`)
  gets the collector's result recorded once it stopped, and the collector is stopped once the job
  has ended and no rank pod runs any more (a separate step, :meth:`JobReconciler._reconcile_outputs`);
* with a retention in the catalogue (``jobs.retention``), an ended job is deleted once it ended
  that long ago (its parent goes, and ownerReferences cascade to the rest, metrics too); until
  then the queue looks at it again when it is due (``add_after``), so no timer thread and no scan
  is needed, and a hub restart reschedules every ended job from the relist. Trials of a sweep
  (parents with an owner) go with their sweep instead.

Every step is idempotent, so a reconcile may be retried at any point: a transient API error is
retried with exponential backoff, a job whose objects are gone is dropped. At start every job in
the cache is queued, so a job that ended while the hub was down is finished without any request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from kubelab.core.duration import format_duration
from kubelab.core.naming import (
    COMPONENT_COLLECTOR,
    LABEL_COMPONENT,
    LABEL_JOB,
    LABEL_RANK,
    LABEL_USER,
    collector_name,
    owner_of,
    user_label,
)
from kubelab.core.workqueue import WorkQueue
from kubelab.jobs.collect import CLOSE, OUTPUTS_KEY, WAIT, collector_of, collector_step, record_for, summary_from_log
from kubelab.jobs.explain import headline
from kubelab.jobs.restarts import RestartDriver
from kubelab.jobs.spec import JobStatus
from kubelab.jobs.status import (
    STATUS_KEY,
    failure_record,
    final_record,
    first_failed,
    is_job_record,
    latest,
    pod_rank,
)

if TYPE_CHECKING:  # the service owns the reconciler; only its type is needed here
    from kubelab.jobs.service import JobsService

log = logging.getLogger("kubelab.jobs.reconciler")

#: Log lines of the failed rank kept in the job's record (its pod may be gone later): enough to
#: hold the user's traceback above torchrun's own (~35 lines of ChildFailedError and banner).
LAST_LOG_LINES = 120
#: Times a failed job's record waits (by the queue's backoff) for its failed rank's log to be readable.
LOG_RETRIES = 4
#: Looks (2 s apart) at a collector that has every output and is about to exit, before stopping it anyway.
CLOSE_WAITS = 5
#: What a reconcile retries on: the API server failing, unreachable or slow.
TRANSIENT = (RuntimeError, ApiException, TimeoutError, aiohttp.ClientError, OSError)


class JobReconciler:
    """The jobs service's reconciler.

    Args:
        service: The started service (its cache and API).
        workers: Concurrent reconciles.
    """

    def __init__(self, service: JobsService, *, workers: int = 4) -> None:
        self.service = service
        self.queue = WorkQueue("jobs", self.reconcile, retry_on=TRANSIENT, workers=workers)
        self._log_waits: dict[str, int] = {}
        self._close_waits: dict[str, int] = {}
        self.restarts = RestartDriver(service, self.queue.add_after)

    def start(self) -> None:
        """Start the workers and queue every job in the cache (the relist after a restart)."""
        self.queue.start()
        assert self.service.cache is not None
        for name, parent in list(self.service.cache.parents.items()):
            if is_job_record(parent):
                self.queue.add(name)

    async def stop(self) -> None:
        await self.queue.stop()

    def on_change(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """A job object changed: queue its job (nothing else happens in the watch's callback)."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if LABEL_JOB not in labels or self.service.cache is None:
            return
        for parent in self.service.cache.of_job("configmaps", labels.get(LABEL_USER, ""), labels[LABEL_JOB]):
            if is_job_record(parent):
                self.queue.add(parent["metadata"]["name"])

    async def reconcile(self, jid: str) -> None:
        """Converge one job: write its final record when it ended, tear down what must go.

        Raises:
            RuntimeError, ApiException, TimeoutError, aiohttp.ClientError: Transient; retried.
        """
        service = self.service
        assert service.cache is not None and service.api is not None
        parent = service.cache.parents.get(jid)
        if parent is None or not is_job_record(parent):
            return  # deleted (cancelled), or not a job's record: nothing to do
        record = final_record(parent)
        if record is not None and await self._retain(jid, parent, record):
            return  # past the catalogue's retention: deleted
        status = service.status(parent)
        await self._reconcile_outputs(jid, parent, record is not None or status.done)
        if await self.restarts.step(jid, parent, status, now()):
            return  # a restart step ran (kubelab.jobs.restarts); the job is not ending
        if record is None:
            if status.phase == "Succeeded":
                record = {"phase": "Succeeded", "finished": now(), "message": "",
                          "ranks": [r.__dict__ for r in status.ranks]}
            elif status.phase == "Failed":
                record = await self._failure_record(status)
            else:
                return
            try:
                await service.api.patch_configmap_data(jid, {STATUS_KEY: json.dumps(record)})
            except KeyError:
                return  # cancelled meanwhile
            # The watch will confirm; update now so that readers never see a stale phase.
            service.cache.apply("configmaps", "MODIFIED",
                                {**parent, "data": {**(parent.get("data") or {}), STATUS_KEY: json.dumps(record)}})
            await service.metrics.job_ended(jid)  # its followers see the end; its series are written
        if record["phase"] == "Failed" and status.engine == "plain":
            await self._tear_down(jid, status, record.get("failed_rank"))
        await self._retain(jid, parent, record)

    async def _retain(self, jid: str, parent: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
        """Delete an ended job past the catalogue's ``jobs.retention``, or look again when it is due.

        Returns:
            True when the job was deleted.
        """
        service = self.service
        retention = service.catalogue.jobs.retention_seconds
        if retention is None or parent["metadata"].get("ownerReferences"):
            return False  # kept until its user deletes it; a sweep's trial goes with its sweep
        left = retention_left(record.get("finished"), datetime.now(UTC), retention)
        if left is None:
            log.warning("job %s: its record has no readable end time %r; jobs.retention cannot apply", jid,
                        record.get("finished"))
            return False
        if left > 0:
            self.queue.add_after(jid, left)
            return False
        labels = parent["metadata"].get("labels") or {}
        owner = owner_of(parent["metadata"].get("annotations"))
        if owner is None:
            log.warning("job %s: its record names no owner; jobs.retention cannot apply", jid)
            return False
        try:
            await service.delete(owner, labels.get(LABEL_JOB, ""))
        except KeyError:
            return True  # deleted meanwhile
        log.info("job %s: ended at %s, past jobs.retention (%s): deleted", jid, record.get("finished"),
                 format_duration(retention))
        return True

    async def _failure_record(self, status: JobStatus) -> dict[str, Any]:
        """The record of a failed job: its first failed rank, why, and that rank's last log lines."""
        service = self.service
        assert service.api is not None
        assert service.cache is not None
        by_rank: dict[int, list[Mapping[str, Any]]] = {}
        for pod in service.cache.of_job("pods", _user_label(status), status.name):
            rank = pod_rank(pod)
            if rank is not None:
                by_rank.setdefault(rank, []).append(pod)
        first = first_failed(status.ranks, by_rank)
        if first is None:
            # The engine failed the job as a whole (a deadline, its backoff limit, pods cleaned up):
            # no rank is to blame, the engine's words are the reason.
            return failure_record(status, None, [], now())
        last_logs = await service.api.tail_lines(first.pod, LAST_LOG_LINES) if first.pod else []
        if not last_logs and first.pod:
            # Seen under load: the Job's Failed condition arrives before the pod (or its log) can be
            # read, and the record would keep no lines, so no headline. Wait a little, boundedly.
            jid = f"{status.name}/{status.user}"
            waits = self._log_waits.get(jid, 0)
            if waits < LOG_RETRIES:
                self._log_waits[jid] = waits + 1
                raise RuntimeError(f"job {status.name}: the failed rank {first.rank}'s log is not readable yet")
            self._log_waits.pop(jid, None)
        # The headline names the user's own error (their traceback's last line, "can't open file"),
        # not torchrun's banner nor the Job controller's BackoffLimitExceeded.
        reason = headline(last_logs) or first.message or f"exit code {first.exit_code}"
        return {
            "phase": "Failed", "finished": now(), "failed_rank": first.rank, "last_logs": last_logs,
            "message": f"rank {first.rank} failed: {reason}; the other ranks were stopped",
            "ranks": [r.__dict__ for r in status.ranks],
        }

    async def _tear_down(self, jid: str, status: JobStatus, failed_rank: int | None) -> None:
        """Delete every rank Job but the failed one, and the headless Service (idempotent)."""
        service = self.service
        assert service.cache is not None and service.api is not None
        for job in service.cache.of_job("jobs", _user_label(status), status.name):
            meta = job["metadata"]
            if (meta.get("labels") or {}).get(LABEL_COMPONENT) == COMPONENT_COLLECTOR:
                continue  # it still receives the stopped ranks' outputs; _reconcile_outputs closes it
            if (meta.get("labels") or {}).get(LABEL_RANK) != str(failed_rank) and not meta.get("deletionTimestamp"):
                await service.api.delete("Job", meta["name"])
        await service.api.delete("Service", jid)

    # -- outputs of ReadWriteOnce homes: the job's collector (issue 17, kubelab.jobs.collect) ------

    async def _reconcile_outputs(self, jid: str, parent: Mapping[str, Any], job_done: bool) -> None:
        """Record what the job's collector brought into the home once it stopped; stop it once the
        job has ended and no rank pod runs any more (a failed or stopped rank never reports)."""
        service = self.service
        assert service.cache is not None and service.api is not None
        labels = parent["metadata"].get("labels") or {}
        pods = service.cache.of_job("pods", labels.get(LABEL_USER, ""), labels.get(LABEL_JOB, ""))
        step = collector_step(parent, job_done, pods)
        if step == WAIT:
            return
        pod = collector_of(pods)
        lines = await service.api.tail_lines(pod["metadata"]["name"], 40) if pod is not None else []
        summary = summary_from_log(lines)
        if step == CLOSE:
            waits = self._close_waits.get(jid, 0)
            if summary is not None and summary.get("state") == "collected" and waits < CLOSE_WAITS:
                # It has everything and is exiting by itself (the cache lags its end): record it then.
                self._close_waits[jid] = waits + 1
                self.queue.add_after(jid, 2.0)
                return
            self._close_waits.pop(jid, None)
            await service.api.delete("Job", collector_name(jid))
            if summary is not None:
                summary = {**summary, "closed": True}
        result = json.dumps(record_for(summary, pod, lines))
        try:
            await service.api.patch_configmap_data(jid, {OUTPUTS_KEY: result})
        except KeyError:
            return  # deleted meanwhile
        service.cache.apply("configmaps", "MODIFIED",
                            {**parent, "data": {**(parent.get("data") or {}), OUTPUTS_KEY: result}})

    def _rank_pod(self, status: JobStatus, rank: int) -> Mapping[str, Any] | None:
        assert self.service.cache is not None
        return latest(p for p in self.service.cache.of_job("pods", _user_label(status), status.name)
                      if pod_rank(p) == rank)


def _user_label(status: JobStatus) -> str:
    return user_label(status.user)


def retention_left(finished: Any, at: datetime, retention: int) -> float | None:
    """Seconds until a job that ended at ``finished`` is past ``retention`` (<= 0: it is), or None
    when ``finished`` is no RFC 3339 time.

    Args:
        finished: The record's end time, as :func:`now` writes it.
        at: The current time (aware).
        retention: ``jobs.retention`` in seconds.
    """
    if not isinstance(finished, str):
        return None
    try:
        ended = datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    # The record has whole seconds: the job ended up to one second after the stamp.
    return (ended - at).total_seconds() + 1 + retention


def now() -> str:
    """The current time as the API server writes it (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
