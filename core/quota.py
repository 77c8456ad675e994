"""The process-wide GPU and server quota ledger, shared by the spawner and the jobs service.

Usage is counted over every pod labelled ``kubelab.io/user`` in the cluster cache (servers and
jobs alike), plus *reservations*: starts that passed the check but whose pods the cache has not
seen yet. Checking and reserving happen under one asyncio lock with no await in between, so N
concurrent starts with room for one admit exactly one.

A reservation names the pods it will become with a label selector (``match``). It stops counting
once the cache holds matching pods covering it, or when released, or ``ttl`` seconds after commit
(a safety net for pods that never appear)::

    async with ledger.reserve("alice", ["gpu-users"], gpus=2, servers=0, what="job 'ddp'",
                              match={"kubelab.io/user": "alice", "kubelab.io/job": "ddp"}):
        await create_the_objects()      # an exception here releases the reservation
    # leaving the block commits it: it keeps counting until the pods show up in the cache

or, without a block: ``r = await ledger.reserve(...)`` then ``r.commit()`` / ``r.release()``.
A refusal raises :class:`QuotaExceeded` with a message such as
``GPU quota: you use 2 of 2 GPUs (server 'big'); stop it to start this one``.

Group limits (``quotas.groups``) count every pod whose ``kubelab.io/groups`` annotation names the
group: the groups its owner had at launch. Pods that kubelab creates must carry that annotation
(see :data:`kubelab.core.records.ANNOTATION_GROUPS`) for group quotas to see them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from kubelab.core.catalogue import Catalogue, Limits
from kubelab.core.naming import LABEL_SERVER, user_label

from .cluster import ClusterCache
from .records import PodInfo


class QuotaExceeded(Exception):
    """A start would exceed a quota.

    Attributes:
        message: Plain words for the user.
        permanent: True when the request alone exceeds the limit (it can never fit: HTTP 403);
            False when stopping something would make room (HTTP 429).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent

    @property
    def status(self) -> int:
        """HTTP status for this refusal."""
        return 403 if self.permanent else 429


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


@dataclass
class Reservation:
    """Capacity held for a start in flight; see the module docs."""

    ledger: QuotaLedger
    id: int
    user: str
    groups: tuple[str, ...]
    gpus: int
    servers: int
    what: str
    match: Mapping[str, str]
    committed_at: float | None = None
    ttl: float = 120.0
    released: bool = False

    def commit(self, ttl: float | None = None) -> None:
        """The objects were created: keep counting until the cache sees the pods (or ``ttl`` s)."""
        if ttl is not None:
            self.ttl = ttl
        self.committed_at = time.monotonic()

    def release(self) -> None:
        """Stop counting now (the start failed or was abandoned)."""
        self.released = True
        self.ledger._reservations.pop(self.id, None)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.release()



class _PendingReserve:
    """Awaitable + async context manager returned by :meth:`QuotaLedger.reserve`."""

    def __init__(self, ledger: QuotaLedger, kwargs: dict) -> None:
        self._ledger = ledger
        self._kwargs = kwargs
        self._reservation: Reservation | None = None

    def __await__(self):  # noqa: ANN204
        return self._ledger._reserve(**self._kwargs).__await__()

    async def __aenter__(self) -> Reservation:
        self._reservation = await self._ledger._reserve(**self._kwargs)
        return self._reservation

    async def __aexit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        assert self._reservation is not None
        await self._reservation.__aexit__(exc_type, exc, tb)


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

    # -- counting ------------------------------------------------------------------------------

    def _pod_gpus(self, pod: PodInfo) -> int:
        resources = {c.resource for c in self.catalogue.gpu_classes.values()} or {"nvidia.com/gpu"}
        return sum(n for r, n in pod.requests.items() if r in resources)

    def _live_reservations(self) -> list[Reservation]:
        now = time.monotonic()
        live = []
        for r in list(self._reservations.values()):
            if r.committed_at is not None and now - r.committed_at > r.ttl:
                self._reservations.pop(r.id, None)
                continue
            live.append(r)
        return live

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
                if r.committed_at is not None:  # its pods are counted now; drop it
                    self._reservations.pop(r.id, None)
                continue
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
        self._add_reservations(usage, [r for r in self._live_reservations() if user_label(r.user) == label], pods)
        return usage

    def group_usage(self, group: str) -> Usage:
        """What members of ``group`` hold, counted over the pods' groups annotation."""
        pods = [p for p in self.cache.labelled_pods() if group in p.groups]
        usage = Usage()
        self._add_pods(usage, pods)
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
        self._check_one(limits, usage, gpus, servers, what, "you use", "GPU quota", "server quota")
        for group in sorted(set(groups)):
            glimits = self.catalogue.group_limits.get(group)
            if glimits is None:
                continue
            gusage = self.group_usage(group)
            self._check_one(
                glimits, gusage, gpus, servers, what,
                f"group '{group}' uses", f"GPU quota of group '{group}'", f"server quota of group '{group}'",
            )

    @staticmethod
    def _check_one(
        limits: Limits, usage: Usage, gpus: int, servers: int, what: str, subject: str, gpu_label: str, server_label: str
    ) -> None:
        if gpus and limits.max_gpus is not None and usage.gpus + gpus > limits.max_gpus:
            if gpus > limits.max_gpus:
                raise QuotaExceeded(
                    f"{gpu_label}: {what} asks for {_plural(gpus, 'GPU')} but the limit is {limits.max_gpus}",
                    permanent=True,
                )
            held = "; ".join(usage.gpu_holders) or "nothing visible yet"
            raise QuotaExceeded(
                f"{gpu_label}: {subject} {usage.gpus} of {_plural(limits.max_gpus, 'GPU')} ({held}); "
                f"stop {'it' if len(usage.gpu_holders) == 1 else 'one of them'} to start {what}"
            )
        if servers and limits.max_servers is not None and usage.servers + servers > limits.max_servers:
            if servers > limits.max_servers:
                raise QuotaExceeded(f"{server_label}: the limit is {limits.max_servers} servers", permanent=True)
            held = "; ".join(usage.server_holders) or "nothing visible yet"
            raise QuotaExceeded(
                f"{server_label}: {subject} {usage.servers} of {_plural(limits.max_servers, 'server')} ({held}); "
                f"stop one to start {what}"
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
        ttl: float = 120.0,
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
            ttl: Seconds a committed reservation may wait for its pods before it lapses.

        Raises:
            QuotaExceeded: Refused; nothing is held.
        """
        return _PendingReserve(
            self,
            {"user": user, "groups": tuple(sorted(set(groups))), "gpus": gpus, "servers": servers,
             "what": what, "match": dict(match or {}), "ttl": ttl},
        )

    async def _reserve(
        self, *, user: str, groups: tuple[str, ...], gpus: int, servers: int, what: str,
        match: Mapping[str, str], ttl: float,
    ) -> Reservation:
        async with self.lock:
            # no await between check and insert: the decision and the hold are atomic
            self.check(user, groups, gpus=gpus, servers=servers, what=what)
            r = Reservation(self, next(self._ids), user, groups, gpus, servers, what, match, ttl=ttl)
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


_ledgers: dict[int, QuotaLedger] = {}


def shared_ledger(cache: ClusterCache, catalogue: Catalogue) -> QuotaLedger:
    """The process-wide ledger for ``cache`` (one per cache, so spawner and jobs share it)."""
    ledger = _ledgers.get(id(cache))
    if ledger is None:
        ledger = _ledgers[id(cache)] = QuotaLedger(cache, catalogue)
    return ledger
