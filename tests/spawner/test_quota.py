"""QuotaLedger over a real ClusterCache fed with pod JSON (no API server involved)."""

from __future__ import annotations

import asyncio

import pytest
from kube_objects import pod

from kubelab.core.cluster import ClusterCache
from kubelab.core.quota import Holding, QuotaExceeded, QuotaLedger

SERVER = {"kubelab.io/user": "alice", "kubelab.io/server": "new"}


def ledger_with(catalogue, pods):
    cache = ClusterCache(api=None)  # type: ignore[arg-type]  # filled offline through apply()
    for p in pods:
        cache.apply("pods", "ADDED", p)
    return cache, QuotaLedger(cache, catalogue)


REFUSALS = [
    ("gpu-full-by-server", "alice", ["gpu-users"], [pod("s", user="alice", gpus=2, server="big", node_name="n")], 1, 0,
     r"^GPU quota: you use 2 of 2 GPUs \(server 'big' with 2\); stop it to start server 'new'$", 429),
    ("gpu-full-by-job", "alice", ["gpu-users"], [pod("j0", user="alice", gpus=1, job="ddp"), pod("j1", user="alice", gpus=1, job="ddp")], 1, 0,
     r"you use 2 of 2 GPUs \(job 'ddp' with 1; job 'ddp' with 1\); stop one of them", 429),
    ("request-above-limit", "alice", ["gpu-users"], [], 4, 0, r"asks for 4 GPUs but the limit is 2", 403),
    ("group-limit-zero", "sam", ["students"], [], 1, 0, r"GPU quota of group 'students': server 'new' asks for 1 GPU but the limit is 0", 403),
    ("server-count", "alice", [], [pod(f"s{i}", user="alice", server=f"s{i}") for i in range(3)], 0, 1,
     r"server quota: you use 3 of 3 servers \(server 's0'; server 's1'; server 's2'\)", 429),
    ("group-total", "carol", ["gpu-users"], [pod(f"o{i}", user=f"u{i}", gpus=2, server="x", groups=("gpu-users",)) for i in range(3)], 1, 0,
     r"GPU quota of group 'gpu-users': group 'gpu-users' uses 6 of 6 GPUs", 429),
]


@pytest.mark.parametrize(("user", "groups", "pods", "gpus", "servers", "message", "status"),
                         [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
async def test_refusals(catalogue, user, groups, pods, gpus, servers, message, status):
    _, ledger = ledger_with(catalogue, pods)
    with pytest.raises(QuotaExceeded, match=message) as info:
        await ledger.reserve(user, groups, gpus=gpus, servers=servers, what="server 'new'")
    assert info.value.status == status


ADMITS = [
    ("finished-pods-free", "alice", [pod("s", user="alice", gpus=2, server="old", phase="Succeeded")], 2),
    ("other-users-dont-count", "alice", [pod("s", user="bob", gpus=2, server="x")], 2),
    ("user-override", "boss", [pod("s", user="boss", gpus=4, server="x")], 4),
]


@pytest.mark.parametrize(("user", "pods", "gpus"), [c[1:] for c in ADMITS], ids=[c[0] for c in ADMITS])
async def test_admits(catalogue, user, pods, gpus):
    _, ledger = ledger_with(catalogue, pods)
    r = await ledger.reserve(user, [], gpus=gpus, servers=1, what="server 'new'")
    assert ledger.user_usage(user).gpus >= gpus
    r.release()


async def test_concurrent_reservations_admit_exactly_one(catalogue):
    _, ledger = ledger_with(catalogue, [pod("s", user="alice", gpus=1, server="a", node_name="n")])

    async def one(i):
        try:
            await ledger.reserve("alice", ["gpu-users"], gpus=1, servers=1, what=f"server 's{i}'")
            return "ok"
        except QuotaExceeded as e:
            return e.message

    results = await asyncio.gather(*(one(i) for i in range(10)))
    assert results.count("ok") == 1
    assert all("GPU quota: you use 2 of 2 GPUs" in r for r in results if r != "ok")
    assert any("starting, with 1" in r for r in results if r != "ok")


async def test_reservation_hands_over_to_cached_pod(catalogue):
    cache, ledger = ledger_with(catalogue, [])
    async with ledger.reserve("alice", [], gpus=2, servers=1, what="server 'new'", match=SERVER):
        assert ledger.user_usage("alice").gpus == 2  # held by the reservation while the start runs
        cache.apply("pods", "ADDED", pod("p", user="alice", gpus=2, server="new"))
        usage = ledger.user_usage("alice")
        assert (usage.gpus, usage.gpu_holders) == (2, ["server 'new' with 2"])  # counted once, via the pod
    assert not ledger._live_reservations()
    assert ledger.user_usage("alice").gpus == 2  # the pod holds them now
    cache.apply("pods", "DELETED", pod("p", user="alice", gpus=2, server="new"))
    assert ledger.user_usage("alice").gpus == 0


async def test_failed_start_releases(catalogue):
    _, ledger = ledger_with(catalogue, [])
    with pytest.raises(RuntimeError, match="create failed"):
        async with ledger.reserve("alice", [], gpus=2, what="job 'x'"):
            raise RuntimeError("create failed")
    assert ledger.user_usage("alice").gpus == 0


async def test_a_reservation_ends_with_its_start_not_after_a_timer(catalogue):
    """Issue 9: a stopped server or a finished start never keeps holding quota for a while."""
    _, ledger = ledger_with(catalogue, [])
    async with ledger.reserve("alice", [], gpus=2, what="job 'x'", match={"kubelab.io/job": "x"}):
        assert ledger.user_usage("alice").gpus == 2
    usage = ledger.user_usage("alice")
    assert (usage.gpus, usage.gpu_holders) == (0, [])
    # ... so the next start is admitted at once
    async with ledger.reserve("alice", [], gpus=2, what="server 'again'"):
        pass


class QueuedJobs:
    """A holdings source as the jobs service is one: GPUs of jobs whose pods do not exist yet."""

    def __init__(self, *holdings: Holding) -> None:
        self.items = list(holdings)

    def holdings(self):
        return self.items


async def test_holdings_of_a_source_count_for_the_user_and_the_group(catalogue):
    _, ledger = ledger_with(catalogue, [pod("s", user="alice", gpus=1, server="a")])
    ledger.add_source(QueuedJobs(Holding("alice", ("gpu-users",), 1, "job 'ddp' (queued)")))
    usage = ledger.user_usage("alice")
    assert (usage.gpus, usage.gpu_holders) == (2, ["server 'a' with 1", "job 'ddp' (queued) with 1"])
    assert ledger.group_usage("gpu-users").gpu_holders == ["job 'ddp' (queued) with 1"]
    with pytest.raises(QuotaExceeded, match=r"you use 2 of 2 GPUs .*job 'ddp' \(queued\) with 1") as err:
        await ledger.reserve("alice", ["gpu-users"], gpus=1, what="job 'next'")
    assert (err.value.status, err.value.retry_after) == (429, 30)


def test_snapshot(catalogue):
    _, ledger = ledger_with(catalogue, [pod("s", user="alice", gpus=1, server="a")])
    snap = ledger.snapshot("alice", ["gpu-users"])
    assert (snap["gpus_used"], snap["max_gpus"], snap["gpus_remaining"], snap["servers_used"]) == (1, 2, 1, 1)
