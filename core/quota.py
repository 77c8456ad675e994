"""The GPU and server quota ledger, shared by the spawner and the jobs service.

Usage is counted from what exists:

* every active pod labelled ``kubelab.io/user`` in the cluster cache (servers and jobs alike;
  pods in a terminal phase count for nothing, a terminating pod still holds its GPUs);
* *holdings* from registered sources: the jobs service reports the GPUs of live jobs whose pods
  do not exist yet (queued in Kueue, waiting for the Job controller), and nothing for ended jobs;
* *reservations*: starts in flight. A reservation lasts exactly as long as its spawn or submit and
  never waits for a timer; while it runs, cached pods matching ``match`` replace it.

Checking and reserving happen under one asyncio lock with no await in between, so N concurrent
starts with room for one admit exactly one::

    async with ledger.reserve("alice", ["gpu-users"], gpus=2, what="job 'ddp'"):
        parent = await create_the_record()
        jobs_cache.apply("ADDED", parent)   # from here the job itself holds the GPUs
    # leaving the block, by success or by an exception, ends the reservation

A refusal raises :class:`QuotaExceeded` with a message such as
``GPU quota: you use 2 of 2 GPUs (server 'big' with 2); stop it to start job 'ddp'``.

Group limits (``quotas.groups``) count every pod whose ``kubelab.io/groups`` annotation names the
group: the groups its owner had at launch. Pods that kubelab creates carry that annotation
(:data:`kubelab.core.naming.ANNOTATION_GROUPS`) for group quotas to see them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from kubelab.core.catalogue import Catalogue, Limits
from kubelab.core.naming import LABEL_SERVER, user_label

from .cluster import ClusterCache
from .records import PodInfo

#: What a 429 quota refusal suggests as ``Retry-After``: servers and jobs end on their own scale.
RETRY_AFTER_SECONDS = 30
#: The limit a :class:`QuotaExceeded` names (its ``reason``): whose limit, and of what.
REFUSAL_REASONS = ("user_gpus", "user_servers", "group_gpus", "group_servers")


class QuotaExceeded(Exception):
    """A start would exceed a quota.

    Attributes:
        message: Plain words for the user.
        permanent: True when the request alone exceeds the limit (it can never fit: HTTP 403);
            False when stopping something would make room (HTTP 429).
        reason: Which limit refused it, for the refusal counters: one of :data:`REFUSAL_REASONS`.
    """

    def __init__(self, message: str, *, permanent: bool = False, reason: str = "user_gpus") -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.reason = reason

    @property
    def status(self) -> int:
        """HTTP status for this refusal."""
        return 403 if self.permanent else 429

    @property
    def retry_after(self) -> int | None:
        """Seconds for a ``Retry-After`` header: the quota is full now, not forever (None for 403)."""
        return None if self.permanent else RETRY_AFTER_SECONDS


@dataclass
class Usage:
    """What a user (or a group) holds now.

    Attributes:
        gpus: GPUs held by active pods and pending reservations.
        servers: Notebook servers (pods labelled ``kubelab.io/server``) and server reservations.
        gpu_holders: Descriptions of what holds the GPUs, e.g. ``["server 'big' (2)"]``.
        server_holders: Descriptions of the servers.
    """

    gpus: int = 0
    servers: int = 0
    gpu_holders: list[str] = field(default_factory=list)
    server_holders: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Holding:
    """GPUs held by something that has no (or not all of its) pods yet, e.g. a queued job.

    Attributes:
        user: The holder's ``kubelab.io/user`` label value.
        groups: The holder's groups at launch.
        gpus: GPUs held beyond those its active pods already request.
        what: Words for messages, e.g. ``job 'ddp' (queued)``.
    """

    user: str
    groups: tuple[str, ...]
    gpus: int
    what: str


class HoldingsSource(Protocol):
    """Something besides pods that holds quota (the jobs service: jobs whose pods do not exist yet)."""

    def holdings(self) -> Iterable[Holding]:
        """Every current holding."""


@dataclass
class Reservation:
    """Capacity held for a start in flight; it lasts exactly as long as the start.

    A reservation ends when its spawn or submit ends, whether it succeeded or failed: leaving the
    ``async with`` block releases it. From then on what the start created holds the quota (the
    server's pod, the job's record). While the start runs, cached pods that match ``match`` and
    cover the reservation replace it, so nothing is counted twice.
    """

    ledger: QuotaLedger
    id: int
    user: str
    groups: tuple[str, ...]
    gpus: int
    servers: int
    what: str
    match: Mapping[str, str]
    released: bool = False

    def release(self) -> None:
        """Stop counting now."""
        self.released = True
        self.ledger._reservations.pop(self.id, None)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class _PendingReserve:
    """Awaitable + async context manager returned by :meth:`QuotaLedger.reserve`."""

    def __init__(self, ledger: QuotaLedger, kwargs: dict[str, Any]) -> None:
        self._ledger = ledger
        self._kwargs = kwargs
        self._reservation: Reservation | None = None

    def __await__(self) -> Generator[Any, None, Reservation]:
        return self._ledger._reserve(**self._kwargs).__await__()

    async def __aenter__(self) -> Reservation:
        self._reservation = await self._ledger._reserve(**self._kwargs)
        return self._reservation

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reservation is not None:
            self._reservation.release()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class QuotaLedger:
    """Counts GPUs and servers per user and group; admits starts exactly under concurrency.

    Args:
        cache: The process's :class:`ClusterCache` (started before use).
        catalogue: Supplies per-user limits (``quotas.perUser``/``users``) and group limits.
    """

    def __init__(self, cache: ClusterCache, catalogue: Catalogue) -> None:
        self.cache = cache
        self.catalogue = catalogue
        self.lock = asyncio.Lock()
        self._reservations: dict[int, Reservation] = {}
        self._ids = itertools.count(1)
        self._sources: list[HoldingsSource] = []

    def add_source(self, source: HoldingsSource) -> None:
        """Count ``source``'s holdings too (the jobs service registers itself at start-up)."""
        self._sources.append(source)

    # -- counting ------------------------------------------------------------------------------

    def _pod_gpus(self, pod: PodInfo) -> int:
        resources = {c.resource for c in self.catalogue.gpu_classes.values()} or {"nvidia.com/gpu"}
        return sum(n for r, n in pod.requests.items() if r in resources)

    def _live_reservations(self) -> list[Reservation]:
        return list(self._reservations.values())

    def _holdings(self) -> list[Holding]:
        return [h for source in self._sources for h in source.holdings() if h.gpus > 0]

    @staticmethod
    def _add_holdings(usage: Usage, holdings: Iterable[Holding]) -> None:
        for h in holdings:
            usage.gpus += h.gpus
            usage.gpu_holders.append(f"{h.what} with {h.gpus}")

    def _covered(self, r: Reservation, pods: Iterable[PodInfo]) -> bool:
        """Whether cached pods matching ``r.match`` already account for the reservation."""
        if not r.match:
            return False
        gpus = servers = 0
        found = False
        for p in pods:
            if p.active and all(p.labels.get(k) == v for k, v in r.match.items()):
                found = True
                gpus += self._pod_gpus(p)
                servers += LABEL_SERVER in p.labels
        return found and gpus >= r.gpus and servers >= r.servers

    def _add_reservations(self, usage: Usage, reservations: Iterable[Reservation], pods: list[PodInfo]) -> None:
        for r in reservations:
            if self._covered(r, pods):
                continue  # its pods are in the cache and counted already
            usage.gpus += r.gpus
            usage.servers += r.servers
            if r.gpus:
                usage.gpu_holders.append(f"{r.what}, starting, with {r.gpus}")
            if r.servers:
                usage.server_holders.append(f"{r.what}, starting")

    def _add_pods(self, usage: Usage, pods: Iterable[PodInfo]) -> None:
        for p in sorted(pods, key=lambda p: p.key):  # stable order for messages
            if not p.active:
                continue
            gpus = self._pod_gpus(p)
            if gpus:
                usage.gpus += gpus
                usage.gpu_holders.append(f"{p.describe()} with {gpus}")
            if LABEL_SERVER in p.labels:
                usage.servers += 1
                usage.server_holders.append(p.describe())

    def user_usage(self, user: str) -> Usage:
        """What ``user`` holds now (pods in the cache plus reservations)."""
        label = user_label(user)
        pods = self.cache.pods_of_user(label)
        usage = Usage()
        self._add_pods(usage, pods)
        self._add_holdings(usage, [h for h in self._holdings() if h.user == label])
        self._add_reservations(usage, [r for r in self._live_reservations() if user_label(r.user) == label], pods)
        return usage

    def group_usage(self, group: str) -> Usage:
        """What members of ``group`` hold, counted over the pods' groups annotation."""
        pods = [p for p in self.cache.labelled_pods() if group in p.groups]
        usage = Usage()
        self._add_pods(usage, pods)
        self._add_holdings(usage, [h for h in self._holdings() if group in h.groups])
        self._add_reservations(usage, [r for r in self._live_reservations() if group in r.groups], pods)
        return usage

    def limits_for(self, user: str) -> Limits:
        """The user's own limits."""
        return self.catalogue.user_limits_for(user)

    # -- deciding ------------------------------------------------------------------------------

    def check(self, user: str, groups: Iterable[str], *, gpus: int, servers: int, what: str) -> None:
        """Raise :class:`QuotaExceeded` if starting ``gpus``/``servers`` more would exceed a limit.

        Synchronous on purpose: callers holding :attr:`lock` check and reserve without yielding.
        """
        limits = self.limits_for(user)
        usage = self.user_usage(user)
        self._check_one(limits, usage, gpus, servers, what, "you use", "GPU quota", "server quota", "user")
        for group in sorted(set(groups)):
            glimits = self.catalogue.group_limits.get(group)
            if glimits is None:
                continue
            gusage = self.group_usage(group)
            self._check_one(
                glimits, gusage, gpus, servers, what,
                f"group '{group}' uses", f"GPU quota of group '{group}'", f"server quota of group '{group}'",
                "group",
            )

    @staticmethod
    def _check_one(
        limits: Limits, usage: Usage, gpus: int, servers: int, what: str, subject: str, gpu_label: str, server_label: str,
        whose: str,
    ) -> None:
        if gpus and limits.max_gpus is not None and usage.gpus + gpus > limits.max_gpus:
            if gpus > limits.max_gpus:
                raise QuotaExceeded(
                    f"{gpu_label}: {what} asks for {_plural(gpus, 'GPU')} but the limit is {limits.max_gpus}",
                    permanent=True, reason=f"{whose}_gpus",
                )
            held = "; ".join(usage.gpu_holders) or "nothing visible yet"
            raise QuotaExceeded(
                f"{gpu_label}: {subject} {usage.gpus} of {_plural(limits.max_gpus, 'GPU')} ({held}); "
                f"stop {'it' if len(usage.gpu_holders) == 1 else 'one of them'} to start {what}",
                reason=f"{whose}_gpus",
            )
        if servers and limits.max_servers is not None and usage.servers + servers > limits.max_servers:
            if servers > limits.max_servers:
                raise QuotaExceeded(f"{server_label}: the limit is {limits.max_servers} servers", permanent=True,
                                    reason=f"{whose}_servers")
            held = "; ".join(usage.server_holders) or "nothing visible yet"
            raise QuotaExceeded(
                f"{server_label}: {subject} {usage.servers} of {_plural(limits.max_servers, 'server')} ({held}); "
                f"stop one to start {what}",
                reason=f"{whose}_servers",
            )

    def reserve(
        self,
        user: str,
        groups: Iterable[str],
        *,
        gpus: int = 0,
        servers: int = 0,
        what: str,
        match: Mapping[str, str] | None = None,
        check: Callable[[], None] | None = None,
    ) -> _PendingReserve:
        """Check the quotas and hold ``gpus``/``servers`` for ``user``; await it or use ``async with``.

        Args:
            user: JupyterHub user name.
            groups: The user's groups (group limits apply to each).
            gpus: GPUs the start needs in all.
            servers: Notebook servers it starts (0 for jobs).
            what: Words for messages, e.g. ``"server 'big'"`` or ``"job 'ddp'"``.
            match: Labels of the pods the start will create; once the cache sees them, they count
                instead of the reservation. Always include ``kubelab.io/user``.
            check: Another check to run under the same lock, before the quota's (the jobs
                service's per-user totals); what it raises propagates and nothing is held.

        Raises:
            QuotaExceeded: Refused; nothing is held.
        """
        return _PendingReserve(
            self,
            {"user": user, "groups": tuple(sorted(set(groups))), "gpus": gpus, "servers": servers,
             "what": what, "match": dict(match or {}), "check": check},
        )

    async def _reserve(
        self, *, user: str, groups: tuple[str, ...], gpus: int, servers: int, what: str,
        match: Mapping[str, str], check: Callable[[], None] | None,
    ) -> Reservation:
        async with self.lock:
            # no await between check and insert: the decision and the hold are atomic
            if check is not None:
                check()
            self.check(user, groups, gpus=gpus, servers=servers, what=what)
            r = Reservation(self, next(self._ids), user, groups, gpus, servers, what, match)
            self._reservations[r.id] = r
            return r

    def snapshot(self, user: str, groups: Iterable[str]) -> dict[str, object]:
        """JSON-ready remaining quota for ``user`` (the form and the jobs service publish it)."""
        limits = self.limits_for(user)
        usage = self.user_usage(user)
        out: dict[str, object] = {
            "gpus_used": usage.gpus,
            "max_gpus": limits.max_gpus,
            "servers_used": usage.servers,
            "max_servers": limits.max_servers,
            "gpu_holders": usage.gpu_holders,
        }
        remaining = None if limits.max_gpus is None else max(0, limits.max_gpus - usage.gpus)
        for group in sorted(set(groups)):
            glimits = self.catalogue.group_limits.get(group)
            if glimits is not None and glimits.max_gpus is not None:
                left = max(0, glimits.max_gpus - self.group_usage(group).gpus)
                remaining = left if remaining is None else min(remaining, left)
        out["gpus_remaining"] = remaining
        return out
