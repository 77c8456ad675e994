"""Thin async I/O for the jobs service (kubernetes_asyncio), and its watch-backed cache.

Everything here only calls the API: what to create comes from :mod:`kubelab.jobs.builders`, what
to decide from :mod:`kubelab.jobs.service`. Create treats 409 as "already exists" and delete
treats 404 as "already gone"; both retry transient failures (429, 5xx, dropped connections) with
exponential backoff and jitter.

:class:`JobCache` keeps the kubelab jobs of one namespace current (parent ConfigMaps, rank Jobs,
their pods and the pods' events) by LIST-then-WATCH, resuming from the last resourceVersion and
re-LISTing only on 410 Gone, so status reads never LIST per request. One per process and
namespace (:func:`shared_job_cache`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from kubelab.core.naming import LABEL_JOB, LABEL_USER, MANAGED_BY, MANAGED_BY_VALUE
from kubelab.core.watch import keep_watching, raise_for_status, watch_events

log = logging.getLogger("kubelab.jobs.kube")
T = TypeVar("T")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# Custom resources the builders emit: kind → (group, version, plural).
CUSTOM_KINDS = {
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
    "TFJob": ("kubeflow.org", "v1", "tfjobs"),
    "MPIJob": ("kubeflow.org", "v1", "mpijobs"),
    "JobSet": ("jobset.x-k8s.io", "v1alpha2", "jobsets"),
    "TrainJob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
}
JOB_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_VALUE},{LABEL_JOB}"


class AlreadyExists(RuntimeError):
    """A create answered 409: an object of that name exists."""


async def with_retries(call: Callable[[], Awaitable[T]], what: str, attempts: int = 5, base: float = 0.1) -> T:
    """Run ``call`` and retry transient failures with exponential backoff and jitter.

    Args:
        what: ``kind namespace/name``, for messages.

    Raises:
        ApiException: A non-transient status (the caller handles 404/409/403 per code).
        RuntimeError: Still failing after ``attempts`` tries (``from`` the last error).
    """
    delay = base
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ApiException as e:
            if e.status not in RETRY_STATUS or attempt == attempts:
                if e.status in RETRY_STATUS:
                    raise RuntimeError(f"{what}: API server answered {e.status} {e.reason} {attempts} times") from e
                raise
            err: Exception = e
        except (TimeoutError, aiohttp.ClientConnectionError) as e:
            if attempt == attempts:
                raise RuntimeError(f"{what}: cannot reach the API server: {e}") from e
            err = e
        log.info("%s: %s; retry %d in %.2f s", what, err, attempt, delay)
        await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not crypto
        delay *= 2
    raise AssertionError("unreachable")


# A raw (``_preload_content=False``) call does not raise for non-2xx; every raw call goes through this.
checked = raise_for_status


def describe(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"


class JobsApi:
    """Create, delete, patch and read logs of job objects in one namespace.

    Args:
        api_client: A kubernetes_asyncio ``ApiClient``.
        namespace: The namespace jobs live in.
    """

    def __init__(self, api_client: ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.core = CoreV1Api(api_client)
        self.batch = BatchV1Api(api_client)
        self.custom = CustomObjectsApi(api_client)
        self.requests = 0

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (a dict from a builder) and return the server's copy.

        Raises:
            AlreadyExists: 409, the name is taken.
            ApiException: Any other refusal (e.g. 403 from a ResourceQuota, 422 invalid).
            RuntimeError: The API server kept failing or could not be reached.
        """
        kind, ns = obj["kind"], self.namespace
        what = describe(obj)

        async def call() -> Any:
            self.requests += 1
            if kind == "ConfigMap":
                return await checked(await self.core.create_namespaced_config_map(ns, obj, _preload_content=False))
            if kind == "Service":
                return await checked(await self.core.create_namespaced_service(ns, obj, _preload_content=False))
            if kind == "Secret":  # a job's env values (issue 9: kept out of ConfigMaps and pod specs)
                return await checked(await self.core.create_namespaced_secret(ns, obj, _preload_content=False))
            if kind == "Job":
                return await checked(await self.batch.create_namespaced_job(ns, obj, _preload_content=False))
            group, version, plural = CUSTOM_KINDS[kind]
            return await checked(await self.custom.create_namespaced_custom_object(
                group, version, ns, plural, obj, _preload_content=False))

        try:
            resp = await with_retries(call, f"create {what}")
        except ApiException as e:
            if e.status == 409:
                raise AlreadyExists(f"{what} already exists") from e
            raise
        return json.loads(await resp.read())

    async def delete(self, kind: str, name: str) -> bool:
        """Delete one object with background propagation (its dependents go too).

        Returns:
            False when it was already gone (404).

        Raises:
            RuntimeError: The API server kept failing.
        """
        ns = self.namespace
        what = f"{kind} {ns}/{name}"
        body = {"propagationPolicy": "Background"}

        async def call() -> Any:
            self.requests += 1
            if kind == "ConfigMap":
                return await self.core.delete_namespaced_config_map(name, ns, body=body)
            if kind == "Service":
                return await self.core.delete_namespaced_service(name, ns, body=body)
            if kind == "Secret":
                return await self.core.delete_namespaced_secret(name, ns, body=body)
            if kind == "Job":
                return await self.batch.delete_namespaced_job(name, ns, body=body)
            if kind == "Pod":
                return await self.core.delete_namespaced_pod(name, ns, body=body)
            group, version, plural = CUSTOM_KINDS[kind]
            return await self.custom.delete_namespaced_custom_object(group, version, ns, plural, name, body=body)

        try:
            await with_retries(call, f"delete {what}")
        except ApiException as e:
            if e.status == 404:
                return False
            raise RuntimeError(f"delete {what}: {e.status} {e.reason}") from e
        return True

    async def claim_exists(self, name: str) -> bool:
        """Whether the PVC ``name`` exists in the namespace.

        Raises:
            RuntimeError: The API server kept failing, or refused (not 404).
        """
        async def call() -> Any:
            self.requests += 1
            return await checked(await self.core.read_namespaced_persistent_volume_claim(
                name, self.namespace, _preload_content=False))

        try:
            resp = await with_retries(call, f"read PersistentVolumeClaim {self.namespace}/{name}")
        except ApiException as e:
            if e.status == 404:
                return False
            raise RuntimeError(f"read PersistentVolumeClaim {self.namespace}/{name}: {e.status} {e.reason}") from e
        resp.release()
        return True

    async def patch_configmap_data(self, name: str, data: Mapping[str, str]) -> None:
        """Merge ``data`` into ConfigMap ``name`` (the job's record).

        Raises:
            KeyError: The ConfigMap is gone (404: the job was cancelled meanwhile).
            RuntimeError: Any other failure.
        """
        async def call() -> Any:
            self.requests += 1
            return await self.core.patch_namespaced_config_map(name, self.namespace, {"data": dict(data)})

        try:
            await with_retries(call, f"patch ConfigMap {self.namespace}/{name}")
        except ApiException as e:
            if e.status == 404:
                raise KeyError(name) from e
            raise RuntimeError(f"patch ConfigMap {self.namespace}/{name}: {e.status} {e.reason}") from e

    async def pod_log(self, pod: str, *, container: str | None = None, tail: int | None = None,
                      follow: bool = False) -> aiohttp.ClientResponse:
        """Open a pod's log (through the API server's pods/log). The caller reads and releases it.

        Raises:
            KeyError: No such pod (404).
            RuntimeError: The log could not be read (e.g. 400 while the container is still creating).
        """
        kwargs: dict[str, Any] = {"follow": follow, "_preload_content": False}
        if container:
            kwargs["container"] = container
        if tail is not None:
            kwargs["tail_lines"] = tail
        if follow:
            kwargs["_request_timeout"] = aiohttp.ClientTimeout(total=None, sock_read=None)
        self.requests += 1
        try:
            return await checked(await self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs))
        except ApiException as e:
            if e.status == 404:
                raise KeyError(pod) from e
            raise RuntimeError(f"logs of Pod {self.namespace}/{pod}: {e.status} {e.reason}") from e

    async def tail_lines(self, pod: str, lines: int = 20) -> list[str]:
        """The last ``lines`` log lines of ``pod`` (empty when the pod or its log is gone)."""
        try:
            resp = await self.pod_log(pod, tail=lines)
        except (KeyError, RuntimeError) as e:
            log.info("no log for %s: %s", pod, e)
            return []
        try:
            text = (await resp.read()).decode("utf-8", "replace")
        finally:
            resp.release()
        return text.splitlines()[-lines:]


@dataclass
class _Kind:
    name: str
    list_call: Callable[..., Awaitable[Any]]
    selector: str | None = None
    field_selector: str | None = None


class JobCache:
    """The jobs of one namespace, kept current by watches.

    Attributes:
        parents: ConfigMap name → JSON of every job's parent (and files) ConfigMap.
        jobs: batch Job name → JSON (rank Jobs of the plain engine).
        pods: Pod name → JSON of job pods.
        events: Pod name → last few ``"Reason: message"`` of its events.
        stats: LIST and WATCH requests made per kind.
    """

    EVENTS_PER_POD = 5

    def __init__(self, api_client: ApiClient, namespace: str, *, watch_timeout: int = 290) -> None:
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        core, batch = CoreV1Api(api_client), BatchV1Api(api_client)
        self._kinds = {
            "configmaps": _Kind("configmaps", core.list_namespaced_config_map, JOB_SELECTOR),
            "jobs": _Kind("jobs", batch.list_namespaced_job, JOB_SELECTOR),
            "pods": _Kind("pods", core.list_namespaced_pod, JOB_SELECTOR),
            "events": _Kind("events", core.list_namespaced_event, None, "involvedObject.kind=Pod"),
        }
        self.parents: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[str]] = {}
        # (user label, job name) → names of that job's pods / batch Jobs, so a status read never scans.
        self.pods_by_job: dict[tuple[str, str], set[str]] = {}
        self.jobs_by_job: dict[tuple[str, str], set[str]] = {}
        self.configmaps_by_job: dict[tuple[str, str], set[str]] = {}
        self.stats = {f"{verb}_{k}": 0 for k in self._kinds for verb in ("list", "watch")}
        self._loaded = {k: asyncio.Event() for k in self._kinds}
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[Callable[[str, str, Mapping[str, Any]], None]] = []
        self._changed: asyncio.Event = asyncio.Event()

    async def start(self, timeout: float = 30) -> None:
        """Start the watches (once) and wait for the first LIST of every kind.

        Raises:
            TimeoutError: The first LISTs did not complete in ``timeout`` seconds.
        """
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(k), name=f"kubelab-jobs-watch-{k}") for k in self._kinds]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._loaded.values())), timeout)
        except TimeoutError as e:
            raise TimeoutError(f"jobs cache: first LIST in {self.namespace} not done in {timeout} s") from e

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def add_listener(self, callback: Callable[[str, str, Mapping[str, Any]], None]) -> None:
        """Call ``callback(kind, event_type, object)`` after each change."""
        self._listeners.append(callback)

    async def changed(self, timeout: float) -> None:
        """Wait for the next change, or ``timeout`` seconds."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def _store(self, kind: str) -> dict[str, Any]:
        return {"configmaps": self.parents, "jobs": self.jobs, "pods": self.pods, "events": self.events}[kind]

    def apply(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """Apply one watch event (also used by the benchmark to fill the cache offline)."""
        if kind == "events":
            involved = obj.get("involvedObject") or {}
            pod = involved.get("name")
            if pod and event_type != "DELETED":
                text = f"{obj.get('reason', '')}: {obj.get('message', '')}".strip()
                lst = self.events.setdefault(pod, [])
                if text not in lst:
                    lst.append(text)
                    del lst[: -self.EVENTS_PER_POD]
        else:
            store = self._store(kind)
            name = obj["metadata"]["name"]
            labels = obj["metadata"].get("labels") or {}
            index = {"pods": self.pods_by_job, "jobs": self.jobs_by_job, "configmaps": self.configmaps_by_job}.get(kind)
            key = (labels.get(LABEL_USER, ""), labels.get(LABEL_JOB, ""))
            if event_type == "DELETED":
                store.pop(name, None)
                if index is not None:
                    index.get(key, set()).discard(name)
                    if not index.get(key, True):
                        index.pop(key, None)
                if kind == "pods":
                    self.events.pop(name, None)
            else:
                store[name] = dict(obj)
                if index is not None:
                    index.setdefault(key, set()).add(name)
        self._changed.set()
        for cb in list(self._listeners):
            cb(kind, event_type, obj)

    async def _list(self, kind: str) -> str:
        k = self._kinds[kind]
        self.stats[f"list_{kind}"] += 1
        resp = await checked(await k.list_call(self.namespace, label_selector=k.selector,
                                               field_selector=k.field_selector, _preload_content=False,
                                               _request_timeout=60))
        body = json.loads(await resp.read())
        store = self._store(kind)
        store.clear()
        if kind == "pods":
            self.pods_by_job.clear()
        elif kind == "jobs":
            self.jobs_by_job.clear()
        elif kind == "configmaps":
            self.configmaps_by_job.clear()
        for item in body.get("items") or []:
            item.setdefault("kind", {"configmaps": "ConfigMap", "jobs": "Job", "pods": "Pod", "events": "Event"}[kind])
            self.apply(kind, "ADDED", item)
        self._loaded[kind].set()
        return body["metadata"]["resourceVersion"]

    async def _watch(self, kind: str, resource_version: str) -> str:
        k = self._kinds[kind]
        self.stats[f"watch_{kind}"] += 1
        resp = await k.list_call(
            self.namespace, label_selector=k.selector, field_selector=k.field_selector, watch=True,
            resource_version=resource_version, allow_watch_bookmarks=True, timeout_seconds=self.watch_timeout,
            _preload_content=False, _request_timeout=self.watch_timeout + 30,
        )
        async for event in watch_events(resp):
            obj = event.get("object") or {}
            resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version)
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                self.apply(kind, event["type"], obj)
        return resource_version

    async def _run(self, kind: str) -> None:
        await keep_watching(kind, lambda: self._list(kind), lambda rv: self._watch(kind, rv))


_shared: dict[tuple[int, str], JobCache] = {}


def shared_job_cache(api_client: ApiClient, namespace: str) -> JobCache:
    """The process-wide :class:`JobCache` of ``namespace`` for the running loop (not yet started)."""
    key = (id(asyncio.get_running_loop()), namespace)
    if key not in _shared:
        _shared[key] = JobCache(api_client, namespace)
    return _shared[key]
