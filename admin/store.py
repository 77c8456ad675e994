"""GPU-hour intervals in the hub's own database (JupyterHub's ``db_url``), through SQLAlchemy.

kubelab keeps its table (:data:`INTERVALS`, ``kubelab_gpu_intervals``) beside JupyterHub's, on the
engine JupyterHub made from ``JupyterHub.db_url``, so a site needs no second database and its
backups hold the GPU-hours too. The table is on its own ``MetaData``, not JupyterHub's ``orm.Base``:
JupyterHub's schema, its alembic revision and ``jupyterhub upgrade-db`` are untouched, and the
table is created with ``CREATE TABLE IF NOT EXISTS`` semantics at start-up.

Works with SQLite (the default ``jupyterhub.sqlite``) and PostgreSQL (z2jh's ``hub.db.type:
postgres``); only portable types are used. Times are stored as naive UTC, as JupyterHub stores its
own (``orm.Spawner.last_activity``).

Every write is one short transaction committed at once, so the hub's own session never waits
on it for long (SQLite locks the whole file while a transaction writes).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from jupyterhub.app import JupyterHub
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    insert,
    or_,
    select,
    update,
)

from .accounting import Allocation, Interval

METADATA = MetaData()
#: One row per allocation (pod UID): who, what, how many GPUs of which class, from when to when.
INTERVALS = Table(
    "kubelab_gpu_intervals",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pod_uid", String(64), nullable=False, unique=True),
    Column("namespace", String(253), nullable=False),
    Column("pod", String(253), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("username", String(255), nullable=False),
    Column("groupname", String(255), nullable=False),
    Column("gpu_class", String(63), nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("started", DateTime, nullable=False),
    Column("ended", DateTime, nullable=True),
    Column("last_seen", DateTime, nullable=False),
    Index("ix_kubelab_gpu_intervals_ended", "ended"),
    Index("ix_kubelab_gpu_intervals_started", "started"),
)


def _naive(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None)


def _aware(when: datetime | None) -> datetime | None:
    return None if when is None else when.replace(tzinfo=UTC)


def hub_engine() -> Engine | None:
    """The engine of the JupyterHub running in this process (None before its database is set up)."""
    if not JupyterHub.initialized():
        return None
    factory = getattr(JupyterHub.instance(), "session_factory", None)
    return None if factory is None else factory.kw.get("bind")


class IntervalStore:
    """The intervals table on one engine.

    Args:
        engine: The hub's engine (:func:`hub_engine`), or any engine in tests.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self) -> None:
        """Create the table and its indexes if they do not exist."""
        METADATA.create_all(self.engine, checkfirst=True)

    def open(self, alloc: Allocation, start: datetime, seen: datetime) -> bool:
        """Record that ``alloc`` took its GPUs at ``start``; False if its pod has an interval already."""
        with self.engine.begin() as conn:
            if conn.execute(select(INTERVALS.c.id).where(INTERVALS.c.pod_uid == alloc.uid)).first():
                return False
            conn.execute(insert(INTERVALS).values(
                pod_uid=alloc.uid, namespace=alloc.namespace, pod=alloc.pod, kind=alloc.kind, name=alloc.name,
                username=alloc.user, groupname=alloc.group, gpu_class=alloc.gpu_class, gpus=alloc.gpus,
                started=_naive(start), ended=None, last_seen=_naive(max(seen, start)),
            ))
        return True

    def close(self, uid: str, end: datetime) -> bool:
        """End the open interval of pod ``uid`` at ``end``; False if it has none open."""
        with self.engine.begin() as conn:
            row = conn.execute(select(INTERVALS.c.started).where(
                and_(INTERVALS.c.pod_uid == uid, INTERVALS.c.ended.is_(None)))).first()
            if row is None:
                return False
            ended = max(_naive(end), row.started)  # never a negative interval, whatever the clocks say
            conn.execute(update(INTERVALS).where(INTERVALS.c.pod_uid == uid).values(ended=ended, last_seen=ended))
        return True

    def heartbeat(self, uids: Iterable[str], now: datetime) -> None:
        """Record that the open intervals of ``uids`` were still held at ``now`` (one statement)."""
        uids = list(uids)
        if not uids:
            return
        with self.engine.begin() as conn:
            conn.execute(update(INTERVALS).where(and_(INTERVALS.c.pod_uid.in_(uids), INTERVALS.c.ended.is_(None)))
                         .values(last_seen=_naive(now)))

    def of_pod(self, uid: str) -> Interval | None:
        """The interval of pod ``uid``, if any."""
        found = self._select(INTERVALS.c.pod_uid == uid)
        return found[0] if found else None

    def open_intervals(self) -> list[Interval]:
        """Every interval that has not ended."""
        return self._select(INTERVALS.c.ended.is_(None))

    def overlapping(self, since: datetime, until: datetime) -> list[Interval]:
        """Every interval that held GPUs at some time in ``[since, until)``."""
        return self._select(and_(INTERVALS.c.started < _naive(until),
                                 or_(INTERVALS.c.ended.is_(None), INTERVALS.c.ended > _naive(since))))

    def _select(self, where: object) -> list[Interval]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(INTERVALS).where(where).order_by(INTERVALS.c.id)).all()  # type: ignore[arg-type]
        return [Interval(
            uid=r.pod_uid, namespace=r.namespace, pod=r.pod, kind=r.kind, name=r.name, user=r.username,
            group=r.groupname, gpu_class=r.gpu_class, gpus=r.gpus, start=_aware(r.started),  # type: ignore[arg-type]
            end=_aware(r.ended), last_seen=_aware(r.last_seen), id=r.id,
        ) for r in rows]
