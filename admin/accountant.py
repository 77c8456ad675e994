"""GPU accounting as a platform component: it follows the cluster and keeps the intervals table.

:class:`GpuAccountant` is attached to the platform's cluster cache before its first LIST
(:meth:`kubelab.core.platform.Platform.start` calls :meth:`GpuAccountant.attach`), so it sees every
pod change from hub start-up on, even those that happen before its own :meth:`start` runs (the hub
deleting, at start-up, the pod of a server that stopped while it was down). The cache's listener
only notes what it saw and when (the hub's clock, finer than the API's whole seconds) and queues
the pod; a :class:`~kubelab.core.workqueue.WorkQueue` worker writes the interval (retried with
backoff when the database is busy).

When an interval starts and ends:

* a pod seen being bound: from that moment; a pod already bound when first seen (the hub was down
  when it started): from its ``PodScheduled`` time (:func:`~kubelab.admin.accounting.started_at`);
* a pod seen ending or going away: at that moment;
* an open interval whose pod ended while the hub was down (:func:`~kubelab.admin.accounting.recovered_end`):
  at its containers' ``finishedAt`` when the pod still exists, else at the last time the hub saw
  it hold its GPUs, which a heartbeat writes every ``heartbeat_seconds`` for every open interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from kubelab.core.cluster import ClusterCache
from kubelab.core.platform import Platform
from kubelab.core.records import PodInfo
from kubelab.core.workqueue import WorkQueue

from .accounting import Allocation, Interval, allocation_of, recovered_end, started_at, usage_rows
from .store import IntervalStore, hub_engine

log = logging.getLogger("kubelab.admin.accountant")

#: Seconds between heartbeats of the open intervals (the error bound of an end nobody saw).
HEARTBEAT_SECONDS = 5.0


def utcnow() -> datetime:
    """Aware UTC now."""
    return datetime.now(UTC)


@dataclass
class Track:
    """What the hub saw of one GPU pod in this process.

    Attributes:
        alloc: The allocation while it holds GPUs, else None.
        raw: The pod's last JSON (its ``finishedAt`` when it ended).
        start: When it took its GPUs (set once it is seen holding).
        end: When it was seen to stop holding them (None: not seen, or not ended).
        last_held: The last time it was seen holding them.
        seen_unheld: It was seen not holding GPUs (Pending, unbound) before: its start was watched.
        gone: Its object was deleted.
    """

    alloc: Allocation | None = None
    raw: Mapping[str, Any] | None = None
    start: datetime | None = None
    end: datetime | None = None
    last_held: datetime | None = None
    seen_unheld: bool = False
    gone: bool = False


def _uid(pod: PodInfo) -> str | None:
    return ((pod.raw or {}).get("metadata") or {}).get("uid")


class GpuAccountant:
    """Keeps one interval per GPU-holding pod in the hub's database.

    Args:
        platform: The hub's platform (catalogue, cluster cache).
        engine: Returns the SQLAlchemy engine; default :func:`~kubelab.admin.store.hub_engine` (the hub's).
        heartbeat_seconds: Seconds between heartbeats of the open intervals, or a function returning
            them (read when the heartbeat starts: the hub's settings are complete by then).
        clock: Aware-UTC clock.
    """

    name = "gpu-accounting"

    def __init__(self, platform: Platform, *, engine: Callable[[], Engine | None] = hub_engine,
                 heartbeat_seconds: float | Callable[[], float] = HEARTBEAT_SECONDS,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.platform = platform
        self.catalogue = platform.catalogue
        self._engine = engine
        self.heartbeat_seconds = heartbeat_seconds
        self.clock = clock
        self.store: IntervalStore | None = None
        self.cluster: ClusterCache | None = None
        self.tracks: dict[str, Track] = {}
        self.open: dict[str, Interval] = {}
        self.queue: WorkQueue | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> GpuAccountant:
        return self  # shared by the handlers, like the platform (traitlets copies config values)

    # -- following the cluster -----------------------------------------------------------------

    def attach(self, cluster: ClusterCache) -> None:
        """Follow ``cluster`` from now on (called before its first LIST)."""
        if self.cluster is cluster:
            return
        self.cluster = cluster
        self.queue = WorkQueue("gpu-accounting", self.reconcile, retry_on=(SQLAlchemyError,), workers=1,
                               max_delay=10.0)
        cluster.add_listener(self._on_change)
        if cluster.started:
            self._relist()

    def _on_change(self, kind: str, event_type: str, record: Any) -> None:
        if kind != "pods":
            return
        if event_type == "RELIST":
            self._relist()
        elif isinstance(record, PodInfo):
            self._observe(record, gone=event_type == "DELETED")

    def _relist(self) -> None:
        """A LIST replaced the pods: observe each, and every tracked pod it lacks went away."""
        assert self.cluster is not None
        present = set()
        for pod in list(self.cluster.pods.values()):
            uid = self._observe(pod, gone=False)
            if uid:
                present.add(uid)
        for uid in list(self.tracks.keys() | self.open.keys()):
            if uid not in present:
                self._gone(uid)

    def _observe(self, pod: PodInfo, *, gone: bool) -> str | None:
        """Note what ``pod`` is now (no I/O); queue it. Returns its uid if it is a GPU pod of kubelab."""
        uid = _uid(pod)
        if uid is None or not pod.user or not pod.requests:
            return None
        assert self.cluster is not None
        now = self.clock()
        alloc = None if gone else allocation_of(pod, self.cluster.nodes, self.catalogue)
        track = self.tracks.setdefault(uid, Track())
        track.raw = pod.raw
        if alloc is not None:
            if track.start is None:
                # watched while it was bound: the hub's clock; else (the hub was down) the pod's own record
                track.start = now if track.seen_unheld else (started_at(pod.raw) or now)
            track.alloc, track.last_held, track.end = alloc, now, None
        else:
            if track.alloc is not None and track.last_held is not None:
                track.end = now  # seen holding in this process, and now seen not holding: watched
            track.alloc = None
            track.seen_unheld = True
            track.gone = gone
        if self.queue is not None:
            self.queue.add(uid)
        return uid

    def _gone(self, uid: str) -> None:
        track = self.tracks.setdefault(uid, Track())
        # gone during a watch outage (or before the hub came up): when exactly is not known
        track.alloc, track.gone, track.seen_unheld = None, True, True
        if self.queue is not None:
            self.queue.add(uid)

    # -- lifecycle (a platform component) ------------------------------------------------------

    async def start(self) -> None:
        """Create the table, load the open intervals, reconcile them with the cluster, start the heartbeat.

        Raises:
            RuntimeError: The hub's database is not set up yet (retried by the platform).
            sqlalchemy.exc.SQLAlchemyError: The database failed.
        """
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the hub's database is not set up yet")
        store = IntervalStore(engine)
        store.create()
        cluster = self.platform.cluster
        assert cluster is not None
        self.attach(cluster)
        self.open = {iv.uid: iv for iv in store.open_intervals()}
        self.store = store
        assert self.queue is not None
        for uid in self.open:
            if uid not in self.tracks:
                self._gone(uid)  # not in the cluster since the hub started: it ended while the hub was down
        for uid in list(self.tracks):
            self.queue.add(uid)
        self.queue.start()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat(), name="kubelab-gpu-heartbeat")
        log.info("kubelab GPU accounting: %d open intervals", len(self.open))

    async def stop(self) -> None:
        """Stop the heartbeat and the worker."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self.queue is not None:
            await self.queue.stop()

    async def _beat(self) -> None:
        every = self.heartbeat_seconds() if callable(self.heartbeat_seconds) else self.heartbeat_seconds
        while True:
            await asyncio.sleep(every)
            self.beat()

    def beat(self) -> None:
        """Write "still held now" for every open interval whose pod the hub sees holding GPUs."""
        if self.store is None:
            return
        now = self.clock()
        held = [uid for uid, t in self.tracks.items() if t.alloc is not None and uid in self.open]
        try:
            self.store.heartbeat(held, now)
        except SQLAlchemyError as e:
            # the next beat writes a later time anyway; the bound on an unseen end grows meanwhile
            log.warning("GPU accounting heartbeat not written: %s", e)
            return
        for uid in held:
            iv = self.open[uid]
            self.open[uid] = Interval(**{**iv.__dict__, "last_seen": now})

    # -- reconciling ---------------------------------------------------------------------------

    async def reconcile(self, uid: str) -> None:
        """Make the database agree with what was seen of pod ``uid``: open, close, or nothing.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database failed (retried with backoff).
        """
        if self.store is None:
            return  # start() queues every pod again once the table is loaded
        track = self.tracks.get(uid)
        if track is None:
            return
        now = self.clock()
        interval = self.open.get(uid)
        if track.alloc is not None:
            if interval is None and self.store.open(track.alloc, track.start or now, now):
                self.open[uid] = Interval(**{**track.alloc.__dict__, "start": track.start or now, "last_seen": now})
            return
        if interval is not None:
            seen = max((t for t in (interval.last_seen, track.last_held) if t is not None), default=None)
            end = track.end or recovered_end(track.raw, seen, now)
            self.store.close(uid, end)
            del self.open[uid]
            log.info("GPU interval of %s %s/%s closed: %.0f GPU-s", interval.kind, interval.user, interval.name,
                     interval.gpu_seconds(end))
        if track.gone:
            self.tracks.pop(uid, None)

    async def settled(self, timeout: float = 10) -> None:
        """Wait until every queued pod is reconciled (tests, and the admin page after a stop)."""
        if self.queue is not None:
            await self.queue.join(timeout)

    # -- reading -------------------------------------------------------------------------------

    def usage(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """GPU-seconds per month, user, group, class and kind in ``[since, until)``.

        Raises:
            RuntimeError: Accounting has not started (the database is not set up yet).
            sqlalchemy.exc.SQLAlchemyError: The database failed.
        """
        if self.store is None:
            raise RuntimeError("GPU accounting has not started yet")
        return usage_rows(self.store.overlapping(since, until), self.clock(), since, until)
