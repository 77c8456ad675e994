"""The jobs service's metrics side: ingest from rank pods, the bounded store, persistence, follow.

How metrics travel (``docs/jobs.md``, "Metrics"): every rank pod gets
``KUBELAB_METRICS_URL`` (this job's ingest URL on the hub's API) and ``KUBELAB_METRICS_TOKEN`` (a
random per-job token from a Secret owned by the job's parent, by ``secretKeyRef``). The parent
carries only the token's sha256 (``kubelab.io/metrics-token-sha256``). :mod:`kubelab.jobs.metrics`
in the pod POSTs batches; :class:`IngestHandler` checks the token against the parent's hash
(constant-time), the body (:func:`~kubelab.jobs.metricstore.parse_batch`) and stores the points.
Ingest takes no user token: a job's pods can write its metrics and nothing else.

:class:`MetricsHub` holds the :class:`~kubelab.jobs.metricstore.MetricStore` of one hub, wakes
the followers of a job when its points arrive, and keeps every job's series in a ConfigMap
``<job id>-metrics`` owned by the job's parent (written at most every ``persist_seconds`` while
points arrive, and once more when the job ends), so metrics survive a hub restart and vanish with
the job. A job's ConfigMap is read once, the first time the hub needs that job's metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client import CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from tornado import web

from kubelab.core.naming import (
    ANNOTATION_METRICS_TOKEN_SHA,
    ANNOTATION_USER,
    COMPONENT_METRICS,
    LABEL_COMPONENT,
    LABEL_JOB,
    LABEL_USER,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    metrics_configmap_name,
    user_label,
)
from kubelab.jobs.metricstore import (
    CONFIGMAP_KEY,
    MetricLimits,
    MetricsInputError,
    MetricStore,
    dump,
    load,
    parse_batch,
)

log = logging.getLogger("kubelab.jobs.metrics")

#: Path of the ingest endpoint below the hub's API prefix (``/hub/api``).
INGEST_PATH = "/api/kubelab/jobs/{name}/metrics/ingest"
#: Bytes of randomness in an ingest token.
TOKEN_BYTES = 32


def new_token() -> tuple[str, str]:
    """A fresh ingest token and its sha256 (hex), for a new job."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_sha(token)


def token_sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ingest_url(hub_api_url: str, name: str) -> str:
    """The URL rank pods POST to: ``<hub api url>/kubelab/jobs/<name>/metrics/ingest``."""
    return hub_api_url.rstrip("/") + "/kubelab/jobs/" + name + "/metrics/ingest"


def make_metrics_configmap(namespace: str, jid: str, user: str, owner: tuple[str, str], text: str) -> dict[str, Any]:
    """The ConfigMap keeping a job's series (pure). It has no ``kubelab.io/job`` label on purpose:
    the jobs cache watches those, and a watch event of up to 1 MiB per write would cost every hub
    process for nothing. Its ownerReference to the parent deletes it with the job."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": metrics_configmap_name(jid),
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGED_BY_VALUE, LABEL_USER: user_label(user), LABEL_COMPONENT: COMPONENT_METRICS},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner[0], "uid": owner[1]}],
        },
        "data": {CONFIGMAP_KEY: text},
    }


class MetricsConfigMaps:
    """Thin I/O: read and write the ``<job id>-metrics`` ConfigMaps of one namespace."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.core = CoreV1Api(api_client)
        self.namespace = namespace
        self.requests = 0

    async def read(self, jid: str) -> str | None:
        """The stored JSON, or None when the job has none yet.

        Raises:
            RuntimeError: The API server refused or failed.
        """
        self.requests += 1
        try:
            cm = await self.core.read_namespaced_config_map(metrics_configmap_name(jid), self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise RuntimeError(f"read ConfigMap {self.namespace}/{metrics_configmap_name(jid)}: "
                               f"{e.status} {e.reason}") from e
        return (cm.data or {}).get(CONFIGMAP_KEY)

    async def write(self, body: Mapping[str, Any]) -> None:
        """Replace the ConfigMap, creating it the first time.

        Raises:
            KeyError: The owner is gone (the job was deleted meanwhile; nothing to keep).
            RuntimeError: The API server refused or failed.
        """
        name = body["metadata"]["name"]
        self.requests += 1
        try:
            await self.core.patch_namespaced_config_map(name, self.namespace, {"data": body["data"]})
            return
        except ApiException as e:
            if e.status != 404:
                raise RuntimeError(f"patch ConfigMap {self.namespace}/{name}: {e.status} {e.reason}") from e
        self.requests += 1
        try:
            await self.core.create_namespaced_config_map(self.namespace, body)
        except ApiException as e:
            if e.status == 409:  # another writer created it just now; the next write patches it
                return
            raise RuntimeError(f"create ConfigMap {self.namespace}/{name}: {e.status} {e.reason}") from e


class MetricsHub:
    """Metrics of every job of one hub process.

    Args:
        parents: The jobs cache's parent ConfigMaps by job id (read only): who owns a job, its
            token hash and whether it still exists; :meth:`attach` sets it later when omitted.
        storage: Where series are kept between hub restarts; None keeps them in memory only.
        limits: Bounds of the store.
        persist_seconds: Most frequent write of one job's ConfigMap while points arrive.
        follow_interval: Least time between two lines sent to one follower (coalescing batches).
    """

    def __init__(self, parents: Mapping[str, Mapping[str, Any]] | None = None,
                 storage: MetricsConfigMaps | None = None, *,
                 limits: MetricLimits | None = None, persist_seconds: float = 10.0,
                 follow_interval: float = 0.5) -> None:
        self.parents: Mapping[str, Mapping[str, Any]] = parents if parents is not None else {}
        self.storage = storage
        self.store = MetricStore(limits)
        self.persist_seconds = persist_seconds
        self.follow_interval = follow_interval
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loaded: set[str] = set()
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._dirty: set[str] = set()
        self._by_sha: dict[str, str] = {}
        self._persister: asyncio.Task[None] | None = None
        #: Batches accepted, and refused by reason, since start (for the benchmark and the logs).
        self.stats = {"batches": 0, "points": 0, "unauthorized": 0, "invalid": 0}

    def attach(self, parents: Mapping[str, Mapping[str, Any]], storage: MetricsConfigMaps | None) -> None:
        """Give the hub its jobs cache's parents and its storage once the jobs service has started
        (the routes are registered, with this object, before that)."""
        self.parents = parents
        self.storage = storage

    # -- who may write ---------------------------------------------------------------------------

    def job_for_token(self, name: str, token: str) -> tuple[str, str] | None:
        """(job id, user) of job ``name`` whose ingest token is ``token``, else None."""
        sha = token_sha(token)
        jid = self._by_sha.get(sha)
        candidates = [jid] if jid in self.parents else [
            j for j, p in list(self.parents.items()) if ((p.get("metadata") or {}).get("labels") or {}).get(LABEL_JOB) == name
        ]
        for jid in candidates:
            meta = self.parents[jid].get("metadata") or {}
            expected = (meta.get("annotations") or {}).get(ANNOTATION_METRICS_TOKEN_SHA, "")
            if (meta.get("labels") or {}).get(LABEL_JOB) == name and expected and hmac.compare_digest(expected, sha):
                self._by_sha[sha] = jid
                return jid, (meta.get("annotations") or {}).get(ANNOTATION_USER, "")
        return None

    # -- ingest and read ----------------------------------------------------------------------

    async def ingest(self, jid: str, user: str, body: bytes) -> int:
        """Check and store one batch of job ``jid``; returns the points accepted.

        Raises:
            MetricsInputError: The body is malformed (names the field).
        """
        try:
            batch = parse_batch(body, self.store.limits)
        except MetricsInputError:
            self.stats["invalid"] += 1
            raise
        await self.ensure_loaded(jid, user)  # never overwrite what an earlier hub process kept
        accepted = self.store.ingest(jid, user, batch)
        self.stats["batches"] += 1
        self.stats["points"] += accepted
        if accepted:
            self._dirty.add(jid)
            self._start_persister()
            for event in self._waiters.get(jid, ()):
                event.set()
        return accepted

    async def ensure_loaded(self, jid: str, user: str) -> None:
        """Read the job's ConfigMap once per hub process (a restart finds the series again)."""
        if jid in self._loaded or self.storage is None:
            return
        lock = self._load_locks.setdefault(jid, asyncio.Lock())
        async with lock:
            if jid in self._loaded:
                return
            try:
                text = await self.storage.read(jid)
            except (RuntimeError, aiohttp.ClientError, TimeoutError) as e:
                log.warning("metrics of %s: cannot read the stored series (%s); will retry", jid, e)
                return
            if text and self.store.job(jid) is None:
                try:
                    self.store.put(jid, load(text, user, self.store.limits))
                except MetricsInputError as e:
                    log.warning("metrics of %s: stored series unreadable (%s); starting afresh", jid, e)
            self._loaded.add(jid)
            self._load_locks.pop(jid, None)

    async def snapshot(self, jid: str, user: str) -> dict[str, Any] | None:
        """Every series of the job (``GET .../metrics``), or None when it has reported none."""
        await self.ensure_loaded(jid, user)
        job = self.store.job(jid)
        return job.to_json() if job is not None and job.series else None

    def latest(self, jid: str) -> dict[str, dict[int, float]]:
        """The newest value of each scalar per rank (for job lists), from memory only."""
        job = self.store.job(jid)
        return job.latest() if job is not None else {}

    def latest_values(self, jid: str) -> dict[str, float]:
        """The newest value of each scalar on its lowest rank (a job list's column), from memory only."""
        return {name: by_rank[min(by_rank)] for name, by_rank in self.latest(jid).items()}

    async def follow(self, jid: str, user: str, seq: int, done: Callable[[], bool], *,
                     heartbeat: float = 15.0) -> AsyncIterator[dict[str, Any]]:
        """Points of job ``jid`` after ``seq``, one dict per wake-up, until ``done()``.

        Yields ``{"points": [[rank, name, step, value], ...], "seq": N}``; ``points`` is empty for
        a heartbeat (every ``heartbeat`` seconds without points, so proxies keep the stream); the
        last item is ``{"done": true, "seq": N}`` once the job ended and every point was sent.
        """
        await self.ensure_loaded(jid, user)
        event = asyncio.Event()
        self._waiters.setdefault(jid, set()).add(event)
        loop = asyncio.get_running_loop()
        try:
            while True:
                job = self.store.job(jid)
                points = job.since(seq) if job is not None else []
                if points:
                    assert job is not None
                    seq = job.seq
                    yield {"points": points, "seq": seq}
                elif done():
                    yield {"done": True, "seq": seq}
                    return
                event.clear()
                started = loop.time()
                try:
                    await asyncio.wait_for(event.wait(), heartbeat)
                except TimeoutError:
                    if not done():
                        yield {"points": [], "seq": seq}
                    continue
                # Coalesce: one line per follow_interval at most, however many ranks send.
                await asyncio.sleep(max(0.0, self.follow_interval - (loop.time() - started)))
        finally:
            waiters = self._waiters.get(jid)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    self._waiters.pop(jid, None)

    def followers(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    # -- the job's end and deletion ------------------------------------------------------------

    def wake(self, jid: str) -> None:
        """Wake the job's followers (its phase changed: they check ``done``)."""
        for event in self._waiters.get(jid, ()):
            event.set()

    async def job_ended(self, jid: str) -> None:
        """Write the job's series now and wake its followers, so they see the end."""
        self.wake(jid)
        if jid in self._dirty:
            await self._persist(jid)

    def forget(self, jid: str) -> None:
        """The job was deleted: drop its series (its ConfigMap goes with the parent)."""
        self.store.drop(jid)
        self._dirty.discard(jid)
        self._loaded.discard(jid)
        self.wake(jid)

    # -- persistence ---------------------------------------------------------------------------

    def _start_persister(self) -> None:
        if self.storage is None or (self._persister is not None and not self._persister.done()):
            return
        self._persister = asyncio.get_running_loop().create_task(self._persist_loop(), name="kubelab-metrics-persist")

    async def _persist_loop(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.persist_seconds)
            for jid in sorted(self._dirty):
                await self._persist(jid)

    async def _persist(self, jid: str) -> None:
        assert self.storage is not None
        self._dirty.discard(jid)
        job = self.store.job(jid)
        parent = self.parents.get(jid)
        if job is None:
            return
        if parent is None:
            self.forget(jid)  # deleted meanwhile
            return
        meta = parent["metadata"]
        body = make_metrics_configmap(self.storage.namespace, jid, job.user, (jid, meta.get("uid", "")), dump(job))
        try:
            await self.storage.write(body)
        except (RuntimeError, aiohttp.ClientError, TimeoutError) as e:
            log.warning("metrics of %s: cannot store the series (%s); will retry", jid, e)
            self._dirty.add(jid)

    async def flush(self) -> None:
        """Write every job with unsaved points now (hub shutdown, tests)."""
        for jid in sorted(self._dirty):
            await self._persist(jid)


class IngestHandler(web.RequestHandler):
    """``POST /hub/api/kubelab/jobs/<name>/metrics/ingest``: rank pods send their points.

    Authenticated by the job's ingest token only (``Authorization: Bearer <token>``), never a user
    token: a plain tornado handler, so JupyterHub's own token lookup is not involved. Answers 204,
    or 400 (bad body, naming the field), 401 (no or wrong token), 413 (body too large).
    """

    hub_metrics: MetricsHub

    def initialize(self, service: Any) -> None:
        """Args:
            service: The jobs service (any object whose ``metrics`` is the hub's :class:`MetricsHub`),
                like every route of the jobs API.
        """
        self.hub_metrics = service.metrics

    def check_xsrf_cookie(self) -> None:
        """No cookies are read here, so there is nothing to forge."""

    def fail(self, status: int, message: str, field: str | None = None) -> None:
        body: dict[str, Any] = {"status": status, "message": message}
        if field is not None:
            body["field"] = field
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    async def post(self, name: str) -> None:
        scheme, _, token = (self.request.headers.get("Authorization") or "").partition(" ")
        found = self.hub_metrics.job_for_token(name, token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            self.hub_metrics.stats["unauthorized"] += 1
            self.set_header("WWW-Authenticate", 'Bearer realm="kubelab metrics ingest"')
            self.fail(401, "the metrics token does not match this job")
            return
        if len(self.request.body) > self.hub_metrics.store.limits.body_bytes:
            self.fail(413, f"body of {len(self.request.body)} bytes; at most "
                      f"{self.hub_metrics.store.limits.body_bytes}", field="(body)")
            return
        try:
            await self.hub_metrics.ingest(*found, self.request.body)
        except MetricsInputError as e:
            self.fail(400, str(e), field=e.field)
            return
        self.set_status(204)
        self.finish()
