"""One generic watch-backed cache for any Kubernetes kind: LIST, then WATCH, forever.

Every cache of cluster state in the hub (nodes, pods, the jobs' ConfigMaps, batch Jobs, events,
and each engine's custom resources) is an :class:`Informer`, the way client-go's shared
informers and dask-gateway's ``Informer`` work:

* the first LIST fills the store and gives a resourceVersion;
* a WATCH from that resourceVersion (with bookmarks) applies every ADDED/MODIFIED/DELETED;
* a watch the server ends is resumed from the last resourceVersion seen;
* only a 410 Gone (history compacted) causes a new LIST; any other failure is retried with
  exponential backoff and jitter, so a restarting API server is not hammered.

Objects are read raw (``_preload_content=False``) so that thousands of pods are not turned into
client models on every event, and a ``transform`` may turn each into a compact record. Indexes
(``index name → key function``) let readers find e.g. a user's pods without a scan.

The store is only ever changed on the event loop, by the watch task or by :meth:`Informer.apply`
(which a writer calls with the object the API server returned, so that its own next read is not
older than its write).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("kubelab.core.informer")

T = TypeVar("T")
#: ``callback(event_type, new, old)``; event_type is ADDED, MODIFIED, DELETED or RELIST
#: (after a LIST replaced the store: new and old are None).
Listener = Callable[[str, Any, Any], None]


async def raise_for_status(resp: Any) -> Any:
    """Return a raw (``_preload_content=False``) response, or raise :class:`ApiException` for non-2xx.

    kubernetes_asyncio raises for status codes only when it preloads the body; a raw 403 or 410
    would otherwise be read as an empty list, and a cache would look valid while it is not.
    """
    status = getattr(resp, "status", 200)
    if 200 <= status <= 299:
        return resp
    try:
        body = await resp.read()
    finally:
        resp.release()
    err = ApiException(status=status, reason=getattr(resp, "reason", "") or "")
    err.body = body.decode("utf-8", "replace")
    raise err


def api_message(e: ApiException) -> str:
    """The API server's own sentence for ``e`` (its Status ``message``), else the HTTP reason.

    The Status message names the resource and the verb ("... cannot get resource
    \"persistentvolumeclaims\" ..."), which is what an administrator needs to fix RBAC.
    """
    try:
        return json.loads(e.body or "{}").get("message") or str(e.reason)
    except (ValueError, AttributeError):
        return str(e.reason)


async def watch_events(resp: Any) -> AsyncIterator[Mapping[str, Any]]:
    """Yield the events of a raw watch response until the server ends it.

    Raises:
        ApiException: The server answered non-2xx, or sent an ERROR event (410 Gone among them).
    """
    await raise_for_status(resp)
    try:
        # Split lines ourselves: aiohttp's line iterator refuses lines over 128 KiB, and one object
        # with a large annotation or data (a job's files ConfigMap) would stall the watch forever.
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    obj = event.get("object") or {}
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message", "watch error"))
                yield event
    finally:
        resp.release()


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` of a namespaced object, ``name`` of a cluster-scoped one."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


class Informer(Generic[T]):
    """A watch-backed store of one kind.

    Args:
        name: For log lines and task names (``pods``, ``kubeflow.org/pytorchjobs``).
        list_call: A kubernetes_asyncio list method, e.g. ``CoreV1Api.list_pod_for_all_namespaces``
            or ``functools.partial(api.list_namespaced_pod, "ns")``; it must accept ``watch=True``.
        label_selector: Only objects matching it.
        field_selector: Only objects matching it.
        transform: Turns an object's JSON into what the store keeps (default: the JSON itself).
        key: The store key of an object's JSON (default ``namespace/name``).
        indexes: Index name → function from a stored item to the index values it files under.
        watch_timeout: Seconds the API server keeps one watch open before it is resumed.
        kind: ``kind`` to set on listed items (a LIST's items carry none; watch events do).

    Attributes:
        store: Key → item.
        stats: ``{"list": n, "watch": n, "relist": n}``: requests made (observability).
    """

    def __init__(
        self,
        name: str,
        list_call: Callable[..., Awaitable[Any]],
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Callable[[Mapping[str, Any]], T] | None = None,
        key: Callable[[Mapping[str, Any]], str] = object_key,
        indexes: Mapping[str, Callable[[T], Iterable[str]]] | None = None,
        watch_timeout: int = 290,
        kind: str | None = None,
    ) -> None:
        self.name = name
        self._list_call = list_call
        self._selectors = {"label_selector": label_selector, "field_selector": field_selector}
        self._transform: Callable[[Mapping[str, Any]], Any] = transform or dict
        self._key = key
        self._index_funcs = dict(indexes or {})
        self._indexes: dict[str, dict[str, set[str]]] = {n: {} for n in self._index_funcs}
        self.watch_timeout = watch_timeout
        self.kind = kind
        self.store: dict[str, T] = {}
        self.stats = {"list": 0, "watch": 0, "relist": 0}
        self._loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self._changed: asyncio.Future[None] | None = None
        # key → a future completed at the next change of that one object (or at a relist)
        self._key_changed: dict[str, asyncio.Future[None]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the first LIST completed."""
        return self._loaded.is_set()

    def start(self) -> None:
        """Start the LIST-then-WATCH task (once); :meth:`wait_ready` waits for the first LIST."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kubelab-informer-{self.name}")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait for the first LIST.

        Raises:
            TimeoutError: Not loaded within ``timeout`` seconds (the API server is unreachable).
        """
        if self._loaded.is_set():
            return
        try:
            await asyncio.wait_for(self._loaded.wait(), timeout)
        except TimeoutError as e:
            raise TimeoutError(f"informer {self.name}: first LIST not done in {timeout} s") from e

    async def stop(self) -> None:
        """Cancel the watch task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> T | None:
        """The item stored under ``key``, or None."""
        return self.store.get(key)

    def by_index(self, index: str, value: str) -> list[T]:
        """Items filed under ``value`` in ``index`` (no scan)."""
        keys = self._indexes[index].get(value, ())
        return [self.store[k] for k in list(keys) if k in self.store]

    def index_values(self, index: str) -> list[str]:
        """Every value that ``index`` files something under."""
        return [v for v, keys in self._indexes[index].items() if keys]

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(event_type, new, old)`` after every change."""
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
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"informer {self.name}: condition not met in {timeout} s")
            try:
                await asyncio.wait_for(asyncio.shield(self.changed()), remaining)
            except TimeoutError:
                continue  # re-check once more, then raise

    async def wait_for_key(self, key: str, predicate: Callable[[T | None], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate(store.get(key))`` is truthy, re-checking only when that object changes.

        A spawn waiting for its own pod is woken by its pod's events alone, not by every event of
        the cluster: with thousands of pods, :meth:`wait_for` would re-run every waiter's check
        on every change.

        Raises:
            TimeoutError: Not truthy within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            value = predicate(self.store.get(key))
            if value:
                return value
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"informer {self.name}: {key}: condition not met in {timeout} s")
            future = self._key_changed.get(key)
            if future is None or future.done():
                future = self._key_changed[key] = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(future), remaining)
            except TimeoutError:
                continue  # re-check once more, then raise

    def changed(self) -> asyncio.Future[None]:
        """A future that completes at the next change of the store."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    # -- writing -------------------------------------------------------------------------------

    def apply(self, event_type: str, raw: Mapping[str, Any]) -> T | None:
        """Apply one ADDED/MODIFIED/DELETED object; return the stored item (None on DELETED)."""
        key = self._key(raw)
        old = self.store.get(key)
        if old is not None:
            self._unindex(key, old)
        new: T | None = None
        if event_type == "DELETED":
            self.store.pop(key, None)
        else:
            if self.kind and not raw.get("kind"):
                raw = {**raw, "kind": self.kind}
            new = self.store[key] = self._transform(raw)
            self._index(key, new)
        self._notify(event_type, new, old)
        waiter = self._key_changed.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return new

    def _replace(self, items: Iterable[Mapping[str, Any]]) -> None:
        store: dict[str, T] = {}
        self._indexes = {n: {} for n in self._index_funcs}
        for raw in items:
            if self.kind and not raw.get("kind"):
                raw = {**raw, "kind": self.kind}
            key = self._key(raw)
            store[key] = self._transform(raw)
            self._index(key, store[key])
        self.store = store
        self._notify("RELIST", None, None)
        waiters, self._key_changed = self._key_changed, {}
        for waiter in waiters.values():  # any object may have changed: every waiter re-checks
            if not waiter.done():
                waiter.set_result(None)

    def _index(self, key: str, item: T) -> None:
        for name, func in self._index_funcs.items():
            for value in func(item):
                self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, item: T) -> None:
        for name, func in self._index_funcs.items():
            for value in func(item):
                keys = self._indexes[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indexes[name][value]

    def _notify(self, event_type: str, new: Any, old: Any) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        for callback in list(self._listeners):
            callback(event_type, new, old)

    # -- watching ------------------------------------------------------------------------------

    async def _list(self) -> str:
        self.stats["list"] += 1
        resp = await raise_for_status(
            await self._list_call(**self._selectors, _preload_content=False, _request_timeout=60)
        )
        body = json.loads(await resp.read())
        self._replace(body.get("items") or [])
        self._loaded.set()
        return body["metadata"]["resourceVersion"]

    async def _watch(self, resource_version: str) -> str:
        """Follow one watch until the server ends it; return the last resourceVersion seen."""
        self.stats["watch"] += 1
        resp = await self._list_call(
            **self._selectors,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            _preload_content=False,
            _request_timeout=self.watch_timeout + 30,
        )
        async for event in watch_events(resp):
            obj = event.get("object") or {}
            etype = event.get("type")
            if etype in ("ADDED", "MODIFIED", "DELETED"):
                self.apply(etype, obj)
            resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version)
        return resource_version

    async def _run(self) -> None:
        resource_version: str | None = None
        delay = 0.2
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._list()
                resource_version = await self._watch(resource_version)
                delay = 0.2
                continue
            except ApiException as e:
                if e.status == 410:
                    self.stats["relist"] += 1
                    resource_version = None
                    continue
                log.warning("watch %s failed (%s %s); retrying in %.1f s", self.name, e.status, e.reason, delay)
            except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as e:
                log.warning("watch %s interrupted (%s); retrying in %.1f s", self.name, e, delay)
            await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 10)
