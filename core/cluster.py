"""One watch-backed cache of Nodes and Pods (all namespaces) per process.

The spawner (form, availability, quota, fail-fast), the availability handlers and the jobs
service all read this cache; none of them LISTs per request. Each kind is LISTed once, then
WATCHed from that resourceVersion (with bookmarks); a watch that ends is resumed from the last
resourceVersion, and only a 410 Gone (history compacted) causes a new LIST, the way client-go's
informers work.

Pods are stored as compact :class:`~kubelab.core.records.PodInfo` records; the full JSON is
kept only for pods labelled ``app.kubernetes.io/managed-by=kubelab`` (the spawner needs their
status). :meth:`ClusterCache.managed_pods` exposes those in the shape KubeSpawner's pod reflector
has, so KubeSpawner's own ``poll``/``stop``/``_start`` read this cache too.

Needs RBAC: ``list`` and ``watch`` on ``pods`` and ``nodes`` cluster-wide.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes_asyncio.client import CoreV1Api

from .records import NodeInfo, PodInfo, node_info, pod_info
from .watch import keep_watching, raise_for_status, watch_events

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
    """Nodes and pods of the whole cluster, kept current by watches.

    Args:
        api: A ``CoreV1Api`` (kubernetes_asyncio).
        watch_timeout: Seconds the API server keeps one watch open before we resume it.

    Attributes:
        nodes: Node name → :class:`NodeInfo`.
        pods: ``namespace/name`` → :class:`PodInfo`.
        stats: Requests made: ``{"list_pods": n, "list_nodes": n, "watch_pods": n, "watch_nodes": n}``.
    """

    def __init__(self, api: CoreV1Api, *, watch_timeout: int = 290) -> None:
        self.api = api
        self.watch_timeout = watch_timeout
        self.nodes: dict[str, NodeInfo] = {}
        self.pods: dict[str, PodInfo] = {}
        self._by_user: dict[str, set[str]] = {}
        self.stats: dict[str, int] = {"list_pods": 0, "list_nodes": 0, "watch_pods": 0, "watch_nodes": 0}
        self._loaded = {"pods": asyncio.Event(), "nodes": asyncio.Event()}
        self._tasks: list[asyncio.Task[None]] = []
        self._changed: asyncio.Future[None] | None = None
        self._listeners: list[Callable[[str, str, Any], None]] = []
        self._start_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the watch tasks run."""
        return bool(self._tasks)

    async def start(self, timeout: float = 30) -> None:
        """Start the watches (once) and wait for the first full load of both kinds.

        Raises:
            TimeoutError: The first LIST did not complete in ``timeout`` seconds.
        """
        if self._tasks and all(e.is_set() for e in self._loaded.values()):
            # fast path without a suspension point: callers (quota checks) then run to their
            # decision in one go instead of queueing behind every other request on the loop
            return
        async with self._start_lock:
            if not self._tasks:
                self._tasks = [
                    asyncio.create_task(self._run("nodes"), name="kubelab-watch-nodes"),
                    asyncio.create_task(self._run("pods"), name="kubelab-watch-pods"),
                ]
        try:
            await asyncio.wait_for(
                asyncio.gather(self._loaded["nodes"].wait(), self._loaded["pods"].wait()), timeout
            )
        except TimeoutError as e:
            raise TimeoutError(f"cluster cache: first LIST of nodes/pods not done in {timeout} s") from e

    async def stop(self) -> None:
        """Cancel the watches."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- reading -------------------------------------------------------------------------------

    def managed_pods(self) -> ManagedPodsView:
        """KubeSpawner-reflector-shaped view of kubelab-managed pods."""
        return ManagedPodsView(self)

    def pods_of_user(self, user_label: str) -> list[PodInfo]:
        """Pods labelled ``kubelab.io/user=<user_label>`` (indexed, no scan)."""
        return [self.pods[k] for k in self._by_user.get(user_label, ()) if k in self.pods]

    def labelled_pods(self) -> Iterator[PodInfo]:
        """All pods carrying a ``kubelab.io/user`` label."""
        for keys in list(self._by_user.values()):
            for k in keys:
                if k in self.pods:
                    yield self.pods[k]

    def add_listener(self, callback: Callable[[str, str, Any], None]) -> None:
        """Call ``callback(kind, event_type, record)`` after every change (kind: ``pods``/``nodes``)."""
        self._listeners.append(callback)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is truthy, re-checking after every change; return its value.

        Raises:
            TimeoutError: Not truthy within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self._changed is None or self._changed.done():
                self._changed = loop.create_future()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("condition not met in time")
            try:
                await asyncio.wait_for(asyncio.shield(self._changed), remaining)
            except TimeoutError:
                continue  # loop once more: re-check, then raise

    # -- updating (also used by benchmarks to fill the cache offline) -------------------------

    def apply(self, kind: str, event_type: str, raw: Mapping[str, Any]) -> None:
        """Apply one ADDED/MODIFIED/DELETED object to the cache."""
        if kind == "nodes":
            name = raw["metadata"]["name"]
            record: Any
            if event_type == "DELETED":
                record = self.nodes.pop(name, None)
            else:
                record = self.nodes[name] = node_info(raw)
        else:
            meta = raw["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            old = self.pods.get(key)
            if old is not None and old.user:
                self._by_user.get(old.user, set()).discard(key)
            if event_type == "DELETED":
                record = self.pods.pop(key, None)
            else:
                record = self.pods[key] = pod_info(raw)
                if record.user:
                    self._by_user.setdefault(record.user, set()).add(key)
        self._notify(kind, event_type, record)

    def _replace(self, kind: str, items: list[dict[str, Any]]) -> None:
        if kind == "nodes":
            self.nodes = {i["metadata"]["name"]: node_info(i) for i in items}
        else:
            pods = {}
            by_user: dict[str, set[str]] = {}
            for i in items:
                info = pod_info(i)
                pods[info.key] = info
                if info.user:
                    by_user.setdefault(info.user, set()).add(info.key)
            self.pods, self._by_user = pods, by_user
        self._notify(kind, "RELIST", None)

    def _notify(self, kind: str, event_type: str, record: Any) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        for cb in list(self._listeners):
            cb(kind, event_type, record)

    # -- watching ------------------------------------------------------------------------------

    def _method(self, kind: str) -> Callable[..., Any]:
        return self.api.list_node if kind == "nodes" else self.api.list_pod_for_all_namespaces

    async def _list(self, kind: str) -> str:
        self.stats[f"list_{kind}"] += 1
        resp = await raise_for_status(await self._method(kind)(_preload_content=False, _request_timeout=60))
        body = json.loads(await resp.read())
        self._replace(kind, body.get("items") or [])
        self._loaded[kind].set()
        return body["metadata"]["resourceVersion"]

    async def _watch(self, kind: str, resource_version: str) -> str:
        """Follow one watch until the server ends it; return the last resourceVersion seen."""
        self.stats[f"watch_{kind}"] += 1
        resp = await self._method(kind)(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            _preload_content=False,
            _request_timeout=self.watch_timeout + 30,
        )
        async for event in watch_events(resp):
            resource_version = self._on_event(kind, event, resource_version)
        return resource_version

    def _on_event(self, kind: str, event: Mapping[str, Any], resource_version: str) -> str:
        obj = event.get("object") or {}
        etype = event.get("type")
        if etype in ("ADDED", "MODIFIED", "DELETED"):
            self.apply(kind, etype, obj)
        return (obj.get("metadata") or {}).get("resourceVersion", resource_version)

    async def _run(self, kind: str) -> None:
        await keep_watching(kind, lambda: self._list(kind), lambda rv: self._watch(kind, rv))


_shared: dict[int, ClusterCache] = {}


def shared_cache() -> ClusterCache:
    """The process-wide cache for the running event loop (created on first use, not yet started).

    Uses KubeSpawner's client configuration: in-cluster, else ``$KUBECONFIG``/``~/.kube/config``.
    Call ``await cache.start()`` before reading.
    """
    from kubespawner.clients import load_config, shared_client

    loop = asyncio.get_running_loop()
    cache = _shared.get(id(loop))
    if cache is None:
        load_config()
        cache = _shared[id(loop)] = ClusterCache(shared_client("CoreV1Api"))
    return cache
