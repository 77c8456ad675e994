"""The accounting component on a real database (SQLite and PostgreSQL), fed pod changes offline.

The cluster cache is filled through ``apply`` (the JSON a watch would deliver), so every case runs
in milliseconds with a clock the test moves; the same component on a real hub and devcluster is
tested in ``test_admin_hub.py``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine

from kubelab.admin.accountant import GpuAccountant
from kubelab.admin.store import IntervalStore
from kubelab.core.cluster import ClusterCache
from kubelab.core.platform import Platform
from kubelab.core.quota import QuotaLedger
from tests.admin.pods import catalogue, node, pod

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def hub(db_url: str, clock: Clock) -> tuple[GpuAccountant, ClusterCache]:
    """A platform with an offline cache and an accountant attached, as the hub builds them."""
    platform = Platform(catalogue())
    platform.cluster = ClusterCache(None)
    platform.ledger = QuotaLedger(platform.cluster, platform.catalogue)
    engine = create_engine(db_url)
    accountant = GpuAccountant(platform, engine=lambda: engine, clock=clock, heartbeat_seconds=3600)
    accountant.attach(platform.cluster)
    platform.cluster.apply("nodes", "ADDED", node("gpu-0"))
    return accountant, platform.cluster


async def settle(accountant: GpuAccountant) -> None:
    await accountant.settled()


async def test_a_watched_server_counts_from_bound_to_gone(db_url: str) -> None:
    clock = Clock()
    acc, cache = hub(db_url, clock)
    await acc.start()
    uid = uuid.uuid4().hex
    cache.apply("pods", "ADDED", pod("s", uid=uid, gpus=2, node_name="", phase="Pending"))
    clock.now = T0 + timedelta(seconds=1.5)
    cache.apply("pods", "MODIFIED", pod("s", uid=uid, gpus=2))
    await settle(acc)
    clock.now = T0 + timedelta(seconds=91.5)
    cache.apply("pods", "DELETED", pod("s", uid=uid, gpus=2))
    await settle(acc)
    iv = acc.store.of_pod(uid)
    assert (iv.start, iv.end, iv.gpus, iv.kind, iv.user) == (T0 + timedelta(seconds=1.5), T0 + timedelta(seconds=91.5),
                                                             2, "server", "alice")
    assert iv.gpu_seconds(clock.now) == 180.0
    await acc.stop()


async def test_a_server_that_ended_while_the_hub_was_down_closes_at_its_finished_at(db_url: str) -> None:
    clock = Clock()
    uid = uuid.uuid4().hex
    acc, cache = hub(db_url, clock)
    await acc.start()
    cache.apply("pods", "ADDED", pod("s", uid=uid))  # already bound when first seen: its PodScheduled time
    await settle(acc)
    await acc.stop()  # the hub goes down
    clock.now = T0 + timedelta(hours=1)
    acc2, cache2 = hub(db_url, clock)  # the hub comes back: the pod Succeeded meanwhile
    cache2.apply("pods", "ADDED", pod("s", uid=uid, phase="Succeeded", finished="2026-05-01T10:40:00Z"))
    cache2.apply("pods", "DELETED", pod("s", uid=uid, phase="Succeeded", finished="2026-05-01T10:40:00Z"))
    await acc2.start()  # after the hub already deleted the pod: seen through attach()
    await settle(acc2)
    iv = acc2.store.of_pod(uid)
    assert (iv.start, iv.end) == (T0, T0 + timedelta(minutes=40))
    assert uid not in acc2.open
    await acc2.stop()


async def test_a_pod_gone_while_the_hub_was_down_closes_at_its_last_heartbeat(db_url: str) -> None:
    clock = Clock()
    uid = uuid.uuid4().hex
    acc, cache = hub(db_url, clock)
    await acc.start()
    cache.apply("pods", "ADDED", pod("r0", uid=uid, job="ddp", groups="lab-b"))
    await settle(acc)
    clock.now = T0 + timedelta(minutes=25)
    acc.beat()
    await acc.stop()
    clock.now = T0 + timedelta(hours=2)
    acc2, _ = hub(db_url, clock)  # nothing of the pod is left in the cluster
    await acc2.start()
    await settle(acc2)
    iv = IntervalStore(acc2.store.engine).of_pod(uid)
    assert (iv.kind, iv.name, iv.group, iv.end) == ("job", "ddp", "lab-b", T0 + timedelta(minutes=25))
    await acc2.stop()


async def test_a_restart_while_it_runs_keeps_one_interval(db_url: str) -> None:
    clock = Clock()
    uid = uuid.uuid4().hex
    acc, cache = hub(db_url, clock)
    await acc.start()
    cache.apply("pods", "ADDED", pod("s", uid=uid))
    await settle(acc)
    await acc.stop()
    clock.now = T0 + timedelta(minutes=10)
    acc2, cache2 = hub(db_url, clock)
    cache2.apply("pods", "ADDED", pod("s", uid=uid))
    await acc2.start()
    await settle(acc2)
    assert acc2.open[uid].start == T0
    rows = [r for r in acc2.usage(T0, T0 + timedelta(days=1)) if r["user"] == "alice"]
    assert sum(r["gpu_seconds"] for r in rows) >= 600
    await acc2.stop()


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
async def test_a_watched_end_of_a_job_rank_closes_at_once(db_url: str, phase: str) -> None:
    clock = Clock()
    uid = uuid.uuid4().hex
    acc, cache = hub(db_url, clock)
    await acc.start()
    cache.apply("pods", "ADDED", pod("r0", uid=uid, job="ddp"))
    await settle(acc)
    clock.now = T0 + timedelta(seconds=30)
    cache.apply("pods", "MODIFIED", pod("r0", uid=uid, job="ddp", phase=phase, finished="2026-05-01T10:00:29Z"))
    await settle(acc)
    assert acc.store.of_pod(uid).end == T0 + timedelta(seconds=30)
    await acc.stop()
