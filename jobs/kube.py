"""Thin async I/O for the jobs service (kubernetes_asyncio), and its watch-backed cache.

Everything here only calls the API: what to create comes from :mod:`kubelab.jobs.builders`, what
to decide from :mod:`kubelab.jobs.service`. Create treats 409 as "already exists" and delete
treats 404 as "already gone"; both retry transient failures (429, 5xx, dropped connections) with
exponential backoff and jitter.

:class:`JobCache` keeps the kubelab jobs of one namespace current (parent ConfigMaps, rank Jobs,
their pods and the pods' events) by LIST-then-WATCH, resuming from the last resourceVersion and
re-LISTing only on 410 Gone, so status reads never LIST per request. The jobs service holds one.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from kubelab.core.informer import Informer, raise_for_status
from kubelab.core.naming import LABEL_JOB, LABEL_USER, MANAGED_BY, MANAGED_BY_VALUE

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
#: Kueue's Workloads (one per job it queues; Kueue's own API group and version in v0.19).
WORKLOADS = ("kueue.x-k8s.io", "v1beta1", "workloads")


def owner_names(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of an object's owners (Kueue's Workloads are found by what they queue)."""
    return tuple(ref.get("name", "") for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


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
        api_client: A kubernetes_asyncio ``ApiClient`` for short requests.
        namespace: The namespace jobs live in.
        stream_client: The client for followed logs (its own connection pool, so that streams
            never hold the connections that submits and cancels need); default ``api_client``.
    """

    def __init__(self, api_client: ApiClient, namespace: str, stream_client: ApiClient | None = None) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.core = CoreV1Api(api_client)
        self.batch = BatchV1Api(api_client)
        self.custom = CustomObjectsApi(api_client)
        self.streams = CoreV1Api(stream_client or api_client)

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

    async def patch_configmap_data(self, name: str, data: Mapping[str, str]) -> None:
        """Merge ``data`` into ConfigMap ``name`` (the job's record).

        Raises:
            KeyError: The ConfigMap is gone (404: the job was cancelled meanwhile).
            RuntimeError: Any other failure.
        """
        async def call() -> Any:
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
        api = self.core
        if follow:
            kwargs["_request_timeout"] = aiohttp.ClientTimeout(total=None, sock_read=None)
            api = self.streams
        try:
            return await checked(await api.read_namespaced_pod_log(pod, self.namespace, **kwargs))
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


def job_key(labels: Mapping[str, str]) -> str:
    """``<user label>/<job name>``: the key of a job in the jobs cache's ``job`` index."""
    return f"{labels.get(LABEL_USER, '')}/{labels.get(LABEL_JOB, '')}"


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _by_name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _job_index(obj: Mapping[str, Any]) -> tuple[str]:
    return (job_key(_labels(obj)),)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One pod event, compact: which pod, when, and ``Reason: message``."""

    pod: str
    time: str
    text: str


def event_record(raw: Mapping[str, Any]) -> EventRecord:
    """Build an :class:`EventRecord` from an Event's JSON."""
    involved = raw.get("involvedObject") or {}
    when = raw.get("lastTimestamp") or raw.get("eventTime") or (raw.get("metadata") or {}).get("creationTimestamp") or ""
    return EventRecord(pod=str(involved.get("name", "")), time=str(when),
                       text=f"{raw.get('reason', '')}: {raw.get('message', '')}".strip())


def claim_annotations(raw: Mapping[str, Any]) -> dict[str, str]:
    """What the cache keeps of a PVC: its annotations (who owns it); the store's key is its name."""
    return dict((raw.get("metadata") or {}).get("annotations") or {})


class PodEvents(Mapping[str, list[str]]):
    """Pod name → its last few events' texts, oldest first (what status shows)."""

    def __init__(self, informer: Informer[EventRecord], per_pod: int) -> None:
        self._informer = informer
        self._per_pod = per_pod

    def __getitem__(self, pod: str) -> list[str]:
        records = sorted(self._informer.by_index("pod", pod), key=lambda e: e.time)
        texts: list[str] = []
        for r in records:
            if r.text not in texts:
                texts.append(r.text)
        if not texts:
            raise KeyError(pod)
        return texts[-self._per_pod:]

    def __iter__(self) -> Iterator[str]:
        return iter(self._informer.index_values("pod"))

    def __len__(self) -> int:
        return len(self._informer.index_values("pod"))


#: The informer of the namespace's claims: no job's status reads them.
CLAIMS = "claims"
#: Kinds :class:`JobCache` watches that are not a job's objects: no job listener hears them.
NOT_JOB_OBJECTS = ("events", CLAIMS)


class JobCache:
    r"""The jobs of one namespace, kept current by :class:`~kubelab.core.informer.Informer`\ s.

    Kinds: the jobs' ConfigMaps (parents and files), batch Jobs (plain engine ranks), job pods and
    the pods' events, the namespace's claims (homes, by name: :meth:`claim`), plus each engine's
    custom resources that :meth:`add_kind` registers (only those that discovery finds). Every kind but events is indexed by job (:func:`job_key`).

    Attributes:
        informers: Kind name → informer.
        events: Pod name → last few ``"Reason: message"`` of its events.
    """

    EVENTS_PER_POD = 5

    def __init__(self, api_client: ApiClient, namespace: str, *, watch_timeout: int = 290,
                 parent_indexes: Mapping[str, Callable[[Any], Iterable[str]]] | None = None) -> None:
        """Args beyond the client and namespace: ``parent_indexes``, more indexes of the
        ConfigMaps beside the one by job (the service's parents that may hold GPUs)."""
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        core, batch = CoreV1Api(api_client), BatchV1Api(api_client)
        self.informers: dict[str, Informer[Any]] = {}
        for name, call, kind in (("configmaps", core.list_namespaced_config_map, "ConfigMap"),
                                 ("jobs", batch.list_namespaced_job, "Job"),
                                 ("pods", core.list_namespaced_pod, "Pod")):
            indexes = {"job": _job_index, **(parent_indexes or {})} if name == "configmaps" else None
            self.add_kind(name, functools.partial(call, namespace), kind=kind, indexes=indexes)
        self.informers["events"] = Informer(
            "events", functools.partial(core.list_namespaced_event, namespace), field_selector="involvedObject.kind=Pod",
            transform=event_record, indexes={"pod": lambda e: (e.pod,)}, watch_timeout=watch_timeout, kind="Event",
        )
        self.events = PodEvents(self.informers["events"], self.EVENTS_PER_POD)
        # The namespace's claims, so that a submit finds the user's home without a GET (issue 10:
        # a submit sent 5 requests against the floor's 4). Unlabelled on purpose: a home an
        # administrator made by hand carries no label. Only names and annotations are kept.
        self.informers[CLAIMS] = Informer(
            CLAIMS, functools.partial(core.list_namespaced_persistent_volume_claim, namespace), key=_by_name,
            transform=claim_annotations, watch_timeout=watch_timeout, kind="PersistentVolumeClaim",
        )

    def add_kind(self, name: str, list_call: Callable[..., Awaitable[Any]], *, kind: str,
                 label_selector: str | None = JOB_SELECTOR,
                 indexes: Mapping[str, Callable[[Any], Iterable[str]]] | None = None) -> Informer[Any]:
        """Watch one more kind of job object (an engine's custom resource, Kueue's Workloads).

        Args:
            name: The kind's name in :attr:`informers` (its plural).
            list_call: The namespaced list method.
            kind: The objects' ``kind``.
            label_selector: Default: every job object's labels. Kueue's Workloads carry none of
                kubelab's, so they are watched whole and indexed by owner instead.
            indexes: Default: by job (:func:`job_key`).
        """
        informer: Informer[Any] = Informer(
            name, list_call, label_selector=label_selector, key=_by_name,
            indexes=indexes or {"job": _job_index}, watch_timeout=self.watch_timeout, kind=kind,
        )
        self.informers[name] = informer
        return informer

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, timeout: float = 30) -> None:
        """Start the watches (once) and wait for the first LIST of every kind.

        Raises:
            TimeoutError: The first LISTs did not complete in ``timeout`` seconds.
        """
        for informer in self.informers.values():
            informer.start()
        try:
            await asyncio.gather(*(i.wait_ready(timeout) for i in self.informers.values()))
        except TimeoutError as e:
            raise TimeoutError(f"jobs cache: first LIST in {self.namespace} not done in {timeout} s") from e

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self.informers.values()))

    # -- reading -------------------------------------------------------------------------------

    @property
    def parents(self) -> dict[str, dict[str, Any]]:
        """ConfigMap name → JSON of every job's parent (and files) ConfigMap."""
        return self.informers["configmaps"].store

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        """batch Job name → JSON (rank Jobs of the plain engine)."""
        return self.informers["jobs"].store

    @property
    def pods(self) -> dict[str, dict[str, Any]]:
        """Pod name → JSON of job pods."""
        return self.informers["pods"].store

    def claim(self, name: str) -> dict[str, str] | None:
        """The annotations of the cached PVC ``name``; None when the cache has not seen it (yet)."""
        return self.informers[CLAIMS].store.get(name)

    def parents_by(self, index: str, value: str) -> list[dict[str, Any]]:
        """The ConfigMaps filed under ``value`` in one of the ``parent_indexes`` (no scan)."""
        return self.informers["configmaps"].by_index(index, value)

    def of_job(self, kind: str, user_label: str, job: str) -> list[dict[str, Any]]:
        """The cached objects of ``kind`` belonging to one job (indexed, no scan)."""
        informer = self.informers.get(kind)
        return informer.by_index("job", f"{user_label}/{job}") if informer is not None else []

    @property
    def stats(self) -> dict[str, int]:
        """Requests made per kind: ``{"list_configmaps": n, "watch_configmaps": n, ...}`` (observability)."""
        return {f"{verb}_{name}": n for name, i in self.informers.items() for verb, n in i.stats.items()}

    def add_listener(self, callback: Callable[[str, str, Mapping[str, Any]], None]) -> None:
        """Call ``callback(kind, event_type, object)`` after each change of a job object (not events)."""
        for name, informer in self.informers.items():
            if name not in NOT_JOB_OBJECTS:
                informer.add_listener(lambda etype, new, old, name=name: callback(name, etype, new or old or {}))

    async def changed(self, timeout: float) -> None:
        """Wait for the next change of any kind, or ``timeout`` seconds."""
        changes = [asyncio.shield(i.changed()) for n, i in self.informers.items() if n != CLAIMS]
        await asyncio.wait(changes, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    def apply(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """Apply an object the API server returned to a write (so the writer's next read sees it)."""
        self.informers[kind].apply(event_type, obj)
