r"""The watch-backed cache of Nodes and Pods (all namespaces); the platform holds one per hub.

The spawner (form, availability, quota, fail-fast), the availability handlers and the jobs
service all read this cache; none of them LISTs per request. Both kinds are
:class:`~kubelab.core.informer.Informer`\ s: LISTed once, then WATCHed, resumed from the last
resourceVersion, relisted only on 410 Gone.

Pods are stored as compact :class:`~kubelab.core.records.PodInfo` records; the full JSON is
kept only for pods labelled ``app.kubernetes.io/managed-by=kubelab`` (the spawner needs their
status). :meth:`ClusterCache.managed_pods` exposes those in the shape KubeSpawner's pod reflector
has, so KubeSpawner's own ``poll``/``stop``/``_start`` read this cache too.

Needs RBAC: ``list`` and ``watch`` on ``pods`` and ``nodes`` cluster-wide.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes_asyncio.client import CoreV1Api

from .informer import Informer
from .records import NodeInfo, PodInfo, node_info, pod_info

log = logging.getLogger("kubelab.core.cluster")


class ManagedPodsView(Mapping[str, dict[str, Any]]):
    """``namespace/name`` → pod JSON, for kubelab-managed pods (KubeSpawner's ``reflector.pods``)."""

    def __init__(self, cache: ClusterCache) -> None:
        self._cache = cache

    def __getitem__(self, key: str) -> dict[str, Any]:
        info = self._cache.pods[key]
        if info.raw is None:
            raise KeyError(key)
        return info.raw  # type: ignore[return-value]

    def __iter__(self) -> Iterator[str]:
        return (k for k, v in list(self._cache.pods.items()) if v.raw is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ClusterCache:
    """Nodes and pods of the whole cluster, kept current by two :class:`~kubelab.core.informer.Informer`.

    Args:
        api: A ``CoreV1Api`` (kubernetes_asyncio); None for a cache filled only through
            :meth:`apply` (benchmarks and unit tests of what reads it).
        watch_timeout: Seconds the API server keeps one watch open before we resume it.

    Attributes:
        node_informer: Node name → :class:`NodeInfo`.
        pod_informer: ``namespace/name`` → :class:`PodInfo`, indexed by the ``kubelab.io/user`` label.
    """

    def __init__(self, api: CoreV1Api | None, *, watch_timeout: int = 290) -> None:
        self.api = api
        self.node_informer: Informer[NodeInfo] = Informer(
            "nodes", api.list_node if api else _offline, transform=node_info, watch_timeout=watch_timeout, kind="Node",
        )
        self.pod_informer: Informer[PodInfo] = Informer(
            "pods", api.list_pod_for_all_namespaces if api else _offline, transform=pod_info, watch_timeout=watch_timeout,
            indexes={"user": lambda p: (p.user,) if p.user else ()}, kind="Pod",
        )

    @property
    def informers(self) -> tuple[Informer[Any], ...]:
        """Both informers (for start/stop and observability)."""
        return (self.node_informer, self.pod_informer)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether both kinds completed their first LIST."""
        return all(i.ready for i in self.informers)

    async def start(self, timeout: float | None = 30) -> None:
        """Start the watches (once) and wait for the first full LIST of both kinds.

        Raises:
            TimeoutError: Not done within ``timeout`` seconds.
        """
        if self.started:
            # no suspension point: callers (quota checks) then run to their decision in one go
            return
        for informer in self.informers:
            informer.start()
        await asyncio.gather(*(i.wait_ready(timeout) for i in self.informers))

    @property
    def stats(self) -> dict[str, int]:
        """Requests made: ``{"list_pods": n, "watch_pods": n, "relist_pods": n, ...}`` (observability)."""
        return {f"{verb}_{i.name}": n for i in self.informers for verb, n in i.stats.items()}

    async def stop(self) -> None:
        """Cancel the watches."""
        await asyncio.gather(*(i.stop() for i in self.informers))

    # -- reading -------------------------------------------------------------------------------

    @property
    def nodes(self) -> dict[str, NodeInfo]:
        """Node name → record."""
        return self.node_informer.store

    @property
    def pods(self) -> dict[str, PodInfo]:
        """``namespace/name`` → record."""
        return self.pod_informer.store

    def managed_pods(self) -> ManagedPodsView:
        """KubeSpawner-reflector-shaped view of kubelab-managed pods."""
        return ManagedPodsView(self)

    def pods_of_user(self, user_label: str) -> list[PodInfo]:
        """Pods labelled ``kubelab.io/user=<user_label>`` (indexed, no scan)."""
        return self.pod_informer.by_index("user", user_label)

    def labelled_pods(self) -> Iterator[PodInfo]:
        """All pods carrying a ``kubelab.io/user`` label."""
        for label in self.pod_informer.index_values("user"):
            yield from self.pod_informer.by_index("user", label)

    def add_listener(self, callback: Callable[[str, str, Any], None]) -> None:
        """Call ``callback(kind, event_type, record)`` after every change (kind: ``pods``/``nodes``)."""
        self.node_informer.add_listener(lambda etype, new, old: callback("nodes", etype, new or old))
        self.pod_informer.add_listener(lambda etype, new, old: callback("pods", etype, new or old))

    async def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is truthy, re-checking after every node or pod change.

        Raises:
            TimeoutError: Not truthy within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("condition not met in time")
            # asyncio.wait neither cancels nor consumes these futures: the informers complete them
            await asyncio.wait([i.changed() for i in self.informers], timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)

    async def wait_for_pod(self, key: str, predicate: Callable[[PodInfo | None], Any],
                           timeout: float | None = None) -> Any:
        """Wait until ``predicate(pod)`` is truthy for the pod ``namespace/name``, woken only by its changes.

        Raises:
            TimeoutError: Not truthy within ``timeout`` seconds.
        """
        return await self.pod_informer.wait_for_key(key, predicate, timeout)

    def apply(self, kind: str, event_type: str, raw: Mapping[str, Any]) -> None:
        """Apply one ADDED/MODIFIED/DELETED object of ``kind`` (``nodes``/``pods``)."""
        (self.node_informer if kind == "nodes" else self.pod_informer).apply(event_type, raw)


async def _offline(**_: Any) -> Any:
    raise RuntimeError("this cluster cache has no API client; it is filled through apply()")
