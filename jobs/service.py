"""The kubelab jobs service: tornado handlers that run inside the hub process.

``configure_hub(c, catalogue)`` registers the handlers under ``/hub/api/kubelab/`` (as
``c.JupyterHub.extra_handlers``), defines the custom scopes and grants them. Requests are
authenticated by JupyterHub itself (API tokens, with scopes); the REST API is in ``docs/jobs.md``
and the reasons it lives in the hub in ``docs/architecture.md``.

One :class:`JobsService` per hub process holds the jobs cache (watch-backed), the engines found
by API discovery and the quota ledger it shares with the spawner, so a GPU budget check covers
notebooks and jobs exactly, even under concurrent requests. It also drives each job to its end:
when a rank fails for good it records the rank and its last log lines in the job's parent
ConfigMap, then tears the other ranks down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from tornado import web
from tornado.iostream import StreamClosedError
from traitlets.config import Config

from kubelab.core.availability import gpu_availability
from kubelab.core.catalogue import Catalogue
from kubelab.core.naming import LABEL_JOB, LABEL_USER, home_claim_name, user_label
from kubelab.jobs import builders, policy
from kubelab.jobs.builders.common import FILES_HOME, BuildContext, files_mode, job_id
from kubelab.jobs.engines import Engines, discover
from kubelab.jobs.kube import AlreadyExists, JobCache, JobsApi, shared_job_cache
from kubelab.jobs.spec import JobSpec, JobSpecError, JobStatus
from kubelab.jobs.status import STATUS_KEY, build_status, failure_time, final_record, latest, pod_rank

log = logging.getLogger("kubelab.jobs.service")

JOBS_SCOPE = "custom:kubelab:jobs"
ADMIN_SCOPE = "custom:kubelab:jobs-admin"
ADMIN_ROLE = "kubelab-jobs-admin"
API_PREFIX = "/api/kubelab"
LAST_LOG_LINES = 20


class JobNotFound(KeyError):
    """No such job for this user (also the answer for another user's job: nothing leaks)."""


class JobExists(RuntimeError):
    """A job of that name exists already."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class JobsService:
    """Jobs of every user, in one namespace, for one hub process.

    Args:
        catalogue: The platform catalogue (policy, limits, storage, engine pin).
        namespace: Namespace for job objects.
        rendezvous_timeout: Seconds ranks wait for their peers before failing.
        extra_env: Environment added to every rank (e.g. ``PYTHONUNBUFFERED``).
        simulate: Create pods the process node marks Running without running them (benchmarks).
    """

    def __init__(self, catalogue: Catalogue, namespace: str, *, rendezvous_timeout: int = 300,
                 extra_env: Mapping[str, str] | None = None, simulate: bool = False) -> None:
        self.catalogue = catalogue
        self.namespace = namespace
        self.rendezvous_timeout = rendezvous_timeout
        self.extra_env = dict(extra_env or {"PYTHONUNBUFFERED": "1"})
        self.simulate = simulate
        self.engines: Engines | None = None
        self.api: JobsApi | None = None
        self.cache: JobCache | None = None
        self.ledger: Any = None
        self._start_lock: asyncio.Lock | None = None
        self._job_locks: dict[str, asyncio.Lock] = {}
        self._reconciling: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (KubeSpawner's client config), discover engines and fill the caches, once.

        Raises:
            kubelab.jobs.engines.EngineConfigError: The catalogue pins an engine the cluster lacks.
            TimeoutError: The caches could not be filled.
        """
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.cache is not None:
                return
            from kubespawner.clients import load_config, shared_client

            from kubelab.core.cluster import shared_cache
            from kubelab.core.quota import shared_ledger

            load_config()
            api_client = shared_client("CoreV1Api").api_client
            jobs = self.catalogue.jobs
            self.engines = await discover(api_client, jobs.engine, jobs.kueue.enabled)
            self.api = JobsApi(api_client, self.namespace)
            cluster = shared_cache()
            self.ledger = shared_ledger(cluster, self.catalogue)
            cache = shared_job_cache(api_client, self.namespace)
            cache.add_listener(self._on_change)
            await asyncio.gather(cluster.start(), cache.start())
            self.cache = cache
            log.info("kubelab jobs: namespace %s, engines %s, kueue %s", self.namespace,
                     self.engines.available(), self.engines.kueue)
            for parent in list(cache.parents):
                self._schedule(parent)

    # -- options -------------------------------------------------------------------------------

    def options(self, user: str, groups: Iterable[str], admin: bool) -> dict[str, Any]:
        """What ``user`` may choose (``GET options``)."""
        assert self.engines is not None
        groups = list(groups)
        opts = policy.options_for(self.catalogue, groups)
        snap = self.ledger.snapshot(user, groups)
        free = self._gpu_free()
        return {
            "user": user,
            "admin": admin,
            "engine": self.engines.engine_for("pytorch"),
            "engines": {f: self.engines.engine_for(f) for f in ("pytorch", "tensorflow", "mpi", "replicas")},
            "frameworks": ["pytorch", "tensorflow", "mpi", "replicas"],
            "images": [{"key": i.key, "display_name": i.display_name, "image": i.image, "variant": i.variant}
                       for i in opts.images],
            "default_image": opts.default_image,
            "gpu_classes": [
                {"key": k, "display_name": self.catalogue.gpu_classes[k].display_name, "counts": list(v),
                 **free.get(k, {"allocatable": 0, "free": 0})}
                for k, v in opts.gpu_counts.items() if k in self.catalogue.gpu_classes
            ],
            "max_workers": opts.max_workers,
            "max_runtime_seconds": opts.max_runtime_seconds,
            "queues": list(opts.queues) if self.engines.kueue else [],
            "default_queue": opts.default_queue if self.engines.kueue else None,
            "quota": {"max_gpus": snap["max_gpus"], "used_gpus": snap["gpus_used"],
                      "remaining_gpus": snap["gpus_remaining"], "used_by": snap["gpu_holders"]},
            "files": files_mode(self.catalogue.home, self.catalogue.shared),
        }

    def _gpu_free(self) -> dict[str, dict[str, int]]:
        """Allocatable and free GPUs per class, from the spawner's availability (cache-only)."""
        cache = self.ledger.cache
        avail = gpu_availability(cache.nodes.values(), cache.pods.values(), self.catalogue.gpu_classes)
        return {key: {"allocatable": a.allocatable, "free": a.free} for key, a in avail.items()}

    # -- submit --------------------------------------------------------------------------------

    def prepare(self, user: str, groups: Iterable[str], body: Any) -> tuple[JobSpec, BuildContext, str]:
        """Validate a submission without touching the cluster.

        Returns:
            (spec, build context, engine).

        Raises:
            JobSpecError: Invalid or not allowed (names the field).
            PermissionError: Policy refuses it.
        """
        assert self.engines is not None
        if not isinstance(body, dict):
            raise JobSpecError("(body)", "must be a JSON object")
        body = dict(body)
        files = _decode_files(body.pop("files", None))
        spec = JobSpec.from_dict(body)
        groups = tuple(sorted(set(groups)))
        decision = policy.check_spec(spec, self.catalogue, groups, kueue=self.engines.kueue)
        engine = self.engines.engine_for(spec.framework)
        ctx = BuildContext(
            user=user, namespace=self.namespace, image=decision.image, home=self.catalogue.home,
            shared=self.catalogue.shared, gpu_class=decision.gpu_class, queue=decision.queue, files=files,
            max_runtime_seconds=decision.max_runtime_seconds, rendezvous_timeout=self.rendezvous_timeout,
            simulate=self.simulate, extra_env=self.extra_env, groups=groups,
        )
        builders.check_files(spec, ctx)
        builders.make_children(spec, ctx, engine, ("x", "x"))  # engine-specific refusals, before any create
        return spec, ctx, engine

    async def submit(self, user: str, groups: Iterable[str], body: Any) -> JobStatus:
        """Check and create a job; on any failure, delete what was created.

        Raises:
            JobSpecError: 400.
            PermissionError: Policy or quota (403).
            JobExists: 409.
            RuntimeError: The cluster failed (nothing is left behind).
        """
        from kubelab.core.quota import QuotaExceeded

        assert self.api is not None and self.cache is not None
        groups = tuple(groups)
        spec, ctx, engine = self.prepare(user, groups, body)
        jid = job_id(user, spec.name)
        if jid in self.cache.parents:
            raise JobExists(f"job '{spec.name}' already exists; cancel it first or pick another name")
        if files_mode(ctx.home, ctx.shared) == FILES_HOME and not await self.api.claim_exists(home_claim_name(user)):
            # Without this, every rank would sit Pending on a missing claim; say so now instead.
            raise JobSpecError("script", f"job pods read your files from your home {home_claim_name(user)}, "
                               "which does not exist yet: start your notebook server once, then submit again")
        try:
            reservation = await self.ledger.reserve(
                user, groups, gpus=spec.total_gpus, what=f"job '{spec.name}'",
                match={LABEL_USER: user_label(user), LABEL_JOB: spec.name},
            )
        except QuotaExceeded as e:
            raise PermissionError(e.message) from e
        try:
            parent = await self.api.create(builders.make_parent(spec, ctx, engine))
        except AlreadyExists as e:
            reservation.release()
            raise JobExists(f"job '{spec.name}' already exists; cancel it first or pick another name") from e
        except (ApiException, RuntimeError):
            reservation.release()
            raise
        self.cache.apply("configmaps", "ADDED", {**parent, "kind": "ConfigMap"})
        created: list[dict[str, Any]] = []
        try:
            for obj in builders.make_children(spec, ctx, engine, (jid, parent["metadata"]["uid"])):
                try:
                    await self.api.create(obj)
                except AlreadyExists:
                    # A leftover of a cancelled job that the garbage collector has not removed yet.
                    raise RuntimeError(f"{obj['kind']} {obj['metadata']['name']} still exists from an earlier "
                                       "job of that name; retry in a few seconds") from None
                created.append(obj)
        except (ApiException, RuntimeError) as e:
            reservation.release()
            await self._undo(jid, created)
            if isinstance(e, ApiException) and e.status == 403:
                raise PermissionError(f"the cluster refused job '{spec.name}': {_api_message(e)}") from e
            if isinstance(e, ApiException):
                raise RuntimeError(f"creating job '{spec.name}' failed: {e.status} {_api_message(e)}") from e
            raise
        except BaseException:
            reservation.release()
            await self._undo(jid, created)
            raise
        reservation.commit()
        return self.status(self.cache.parents[jid])

    async def _undo(self, jid: str, created: list[dict[str, Any]]) -> None:
        """Delete a half-created job: the children explicitly (no waiting for the GC), then the parent."""
        assert self.api is not None
        for obj in reversed(created):
            try:
                await self.api.delete(obj["kind"], obj["metadata"]["name"])
            except RuntimeError as e:
                log.warning("cleanup of %s failed: %s (the garbage collector will remove it)", jid, e)
        try:
            await self.api.delete("ConfigMap", jid)
        except RuntimeError as e:
            log.error("cleanup of job parent %s failed: %s", jid, e)

    # -- reading -------------------------------------------------------------------------------

    def status(self, parent: Mapping[str, Any]) -> JobStatus:
        """Status of the job whose parent is ``parent``, from the cache."""
        assert self.cache is not None
        meta = parent["metadata"]
        labels = meta.get("labels") or {}
        key = (labels.get(LABEL_USER, ""), labels.get(LABEL_JOB, ""))
        pods = [self.cache.pods[n] for n in self.cache.pods_by_job.get(key, ()) if n in self.cache.pods]
        jobs = [self.cache.jobs[n] for n in self.cache.jobs_by_job.get(key, ()) if n in self.cache.jobs]
        return build_status(parent, pods, jobs, self.cache.events)

    def _parents(self) -> Iterable[Mapping[str, Any]]:
        assert self.cache is not None
        return (p for p in list(self.cache.parents.values()) if "spec.json" in (p.get("data") or {}))

    def list(self, user: str, all_users: bool = False) -> list[JobStatus]:
        """Jobs of ``user`` (of everyone with ``all_users``), newest first."""
        label = user_label(user)
        out = [self.status(p) for p in self._parents()
               if all_users or (p["metadata"].get("labels") or {}).get(LABEL_USER) == label]
        out.sort(key=lambda s: (s.created or "", s.name), reverse=True)
        return out

    def parent_of(self, user: str, name: str) -> Mapping[str, Any]:
        """The parent of ``user``'s job ``name``.

        Raises:
            JobNotFound: No such job of this user.
        """
        assert self.cache is not None
        parent = self.cache.parents.get(job_id(user, name))
        if parent is None or "spec.json" not in (parent.get("data") or {}):
            raise JobNotFound(name)
        return parent

    def get(self, user: str, name: str) -> JobStatus:
        """Status of ``user``'s job ``name``.

        Raises:
            JobNotFound: No such job of this user.
        """
        return self.status(self.parent_of(user, name))

    async def logs(self, user: str, name: str, rank: int, *, follow: bool = False,
                   tail: int | None = None) -> AsyncIterator[str]:
        """Log lines of one rank, streamed through the pods' log API.

        Raises:
            JobNotFound: No such job, or the rank has no pod and no captured lines.
            JobSpecError: ``rank`` outside ``0..workers-1``.
        """
        assert self.cache is not None and self.api is not None
        status = self.get(user, name)
        if not 0 <= rank < status.workers:
            raise JobSpecError("rank", f"{rank} is not allowed; allowed: 0..{status.workers - 1}")
        pod = self._rank_pod(user, name, rank)
        if follow:
            # The log API refuses a container that has not started; wait for it to start (or end).
            deadline = asyncio.get_running_loop().time() + self.rendezvous_timeout
            while pod is None or (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                if self.get(user, name).done or asyncio.get_running_loop().time() > deadline:
                    break
                await self.cache.changed(2.0)
                pod = self._rank_pod(user, name, rank)
        if pod is None or (pod.get("status") or {}).get("phase", "Pending") == "Pending":
            final = self.get(user, name)
            if final.failed_rank == rank and final.last_logs:
                for line in final.last_logs[-tail if tail else None:]:
                    yield line
                return
            if pod is None:
                raise JobNotFound(f"rank {rank} of job '{name}' has no pod")
            return
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name")
        try:
            resp = await self.api.pod_log(pod["metadata"]["name"], container=container, tail=tail, follow=follow)
        except KeyError as e:
            raise JobNotFound(f"rank {rank} of job '{name}' has no pod") from e
        try:
            async for raw in resp.content:
                yield raw.decode("utf-8", "replace").rstrip("\n")
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            return  # the pod went away mid-stream (cancel): the stream simply ends
        finally:
            resp.release()

    def _rank_pod(self, user: str, name: str, rank: int) -> Mapping[str, Any] | None:
        assert self.cache is not None
        key = (user_label(user), name)
        pods = [self.cache.pods[n] for n in self.cache.pods_by_job.get(key, ()) if n in self.cache.pods]
        return latest(p for p in pods if pod_rank(p) == rank)

    # -- cancel --------------------------------------------------------------------------------

    async def cancel(self, user: str, name: str) -> JobStatus:
        """Delete the job's parent; ownerReferences cascade to every other object.

        Raises:
            JobNotFound: No such job of this user.
            RuntimeError: The API server kept failing.
        """
        assert self.api is not None and self.cache is not None
        status = self.get(user, name)
        jid = job_id(user, name)
        await self.api.delete("ConfigMap", jid)
        self.cache.apply("configmaps", "DELETED", {"metadata": {"name": jid}})
        if not status.done:
            status.phase = "Cancelled"
            status.finished = _now()
        return status

    # -- driving jobs to their end ---------------------------------------------------------------

    def _on_change(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        if kind not in ("jobs", "pods", "configmaps") or event_type == "DELETED":
            return
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if LABEL_JOB not in labels or self.cache is None:
            return
        key = (labels.get(LABEL_USER, ""), labels[LABEL_JOB])
        for name in self.cache.configmaps_by_job.get(key, ()):
            if "spec.json" in (self.cache.parents.get(name, {}).get("data") or {}):
                self._schedule(name)

    def _schedule(self, jid: str) -> None:
        if jid in self._reconciling:
            return
        self._reconciling.add(jid)
        task = asyncio.get_running_loop().create_task(self._reconcile(jid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile(self, jid: str) -> None:
        """Record a job's end in its parent; when a rank failed for good, capture it and tear down the rest."""
        assert self.cache is not None and self.api is not None
        try:
            await asyncio.sleep(0)  # let the rest of this watch batch land first
            self._reconciling.discard(jid)
            lock = self._job_locks.setdefault(jid, asyncio.Lock())
            async with lock:
                parent = self.cache.parents.get(jid)
                if parent is None or final_record(parent) is not None:
                    return
                status = self.status(parent)
                if status.phase == "Succeeded":
                    await self._finish(jid, {"phase": "Succeeded", "finished": _now(), "message": "",
                                             "ranks": [r.__dict__ for r in status.ranks]})
                elif status.phase == "Failed":
                    await self._fail(jid, parent, status)
        except (RuntimeError, KeyError) as e:
            log.warning("reconciling job %s: %s", jid, e)

    async def _finish(self, jid: str, record: dict[str, Any]) -> None:
        assert self.api is not None and self.cache is not None
        await self.api.patch_configmap_data(jid, {STATUS_KEY: json.dumps(record)})
        parent = self.cache.parents.get(jid)
        if parent is not None:  # the watch will confirm; update now so readers never see a stale phase
            self.cache.parents[jid] = {**parent, "data": {**(parent.get("data") or {}), STATUS_KEY: json.dumps(record)}}

    async def _fail(self, jid: str, parent: Mapping[str, Any], status: JobStatus) -> None:
        assert self.api is not None and self.cache is not None
        failed = [r for r in status.ranks if r.phase == "Failed"]
        user, name = status.user, status.name
        pods = {r.rank: self._rank_pod(user, name, r.rank) for r in failed}
        first = min(failed, key=lambda r: (failure_time(pods[r.rank]), r.rank))
        last_logs = await self.api.tail_lines(first.pod, LAST_LOG_LINES) if first.pod else []
        reason = first.message or f"exit code {first.exit_code}"
        record = {
            "phase": "Failed", "finished": _now(), "failed_rank": first.rank, "last_logs": last_logs,
            "message": f"rank {first.rank} failed ({reason}); the other ranks were stopped",
            "ranks": [r.__dict__ for r in status.ranks],
        }
        await self._finish(jid, record)
        if status.engine != "plain":
            return  # Kubeflow (cleanPodPolicy), JobSet and Trainer tear their own ranks down on failure
        # Tear down the other ranks; the failed rank's Job (and pod) stay for post-mortem logs.
        key = (user_label(user), name)
        for job_name in sorted(self.cache.jobs_by_job.get(key, ())):
            rank = (self.cache.jobs.get(job_name, {}).get("metadata", {}).get("labels") or {}).get("kubelab.io/rank")
            if rank != str(first.rank):
                await self.api.delete("Job", job_name)
        await self.api.delete("Service", jid)


def _decode_files(raw: Any) -> dict[str, bytes] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise JobSpecError("files", "must map relative paths to base64 contents")
    out = {}
    for path, b64 in raw.items():
        if not isinstance(path, str) or not isinstance(b64, str):
            raise JobSpecError("files", "must map relative paths to base64 contents")
        try:
            out[path] = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise JobSpecError("files", f"{path!r} is not valid base64") from e
    return out


def _api_message(e: ApiException) -> str:
    try:
        return json.loads(e.body or "{}").get("message") or str(e.reason)
    except (ValueError, AttributeError):
        return str(e.reason)


# -- tornado handlers ----------------------------------------------------------------------------

try:
    from jupyterhub.apihandlers.base import APIHandler
except ImportError:  # pragma: no cover - the service only runs inside a hub
    APIHandler = web.RequestHandler  # type: ignore[misc,assignment]


class JobsHandlerBase(APIHandler):
    """Authenticates with JupyterHub (tokens and scopes) and answers errors as JSON."""

    service: JobsService

    def initialize(self, service: JobsService) -> None:
        self.service = service

    def fail(self, status: int, message: str, field: str | None = None) -> None:
        """Finish with a JSON error body naming ``field`` (400s)."""
        body: dict[str, Any] = {"status": status, "message": message}
        if field is not None:
            body["field"] = field
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def who(self, *, admin_param: str | None = None) -> tuple[str, list[str], bool] | None:
        """(user name, groups, is jobs-admin) of the caller; answers 403 and returns None without the scope.

        Args:
            admin_param: ``?user=`` value: an admin acts on that user's jobs.
        """
        user = self.current_user
        scopes = getattr(self, "parsed_scopes", {}) or {}
        if user is None:
            self.fail(403, "Missing or invalid credentials.")
            return None
        if JOBS_SCOPE not in scopes:
            self.fail(403, f"this token lacks the scope {JOBS_SCOPE}")
            return None
        is_admin = ADMIN_SCOPE in scopes
        name = user.name
        groups = [g.name for g in getattr(user, "groups", []) or []]
        if admin_param:
            if not is_admin:
                self.fail(403, f"?user= needs the scope {ADMIN_SCOPE}")
                return None
            name, groups = admin_param, []
        try:
            await self.service.start()
        except (TimeoutError, RuntimeError, ApiException, aiohttp.ClientError) as e:
            log.error("jobs service cannot start: %s", e)
            self.fail(503, f"the jobs service cannot reach the cluster: {e}")
            return None
        return name, groups, is_admin


class OptionsHandler(JobsHandlerBase):
    async def get(self) -> None:
        who = await self.who()
        if who:
            self.finish(self.service.options(*who))


class JobsHandler(JobsHandlerBase):
    async def get(self) -> None:
        all_users = self.get_argument("all", "0") in ("1", "true")
        who = await self.who()
        if not who:
            return
        if all_users and not who[2]:
            self.fail(403, f"?all=1 needs the scope {ADMIN_SCOPE}")
            return
        self.finish({"jobs": [s.to_dict() for s in self.service.list(who[0], all_users)]})

    async def post(self) -> None:
        who = await self.who()
        if not who:
            return
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            self.fail(400, "the body is not valid JSON", field="(body)")
            return
        try:
            status = await self.service.submit(who[0], who[1], body)
        except JobSpecError as e:
            self.fail(400, str(e), field=e.field)
            return
        except PermissionError as e:
            self.fail(403, str(e))
            return
        except JobExists as e:
            self.fail(409, str(e))
            return
        except RuntimeError as e:
            log.error("submit by %s failed: %s", who[0], e)
            self.fail(503, str(e))
            return
        self.set_status(201)
        self.set_header("Location", f"{self.hub.base_url}api/kubelab/jobs/{status.name}"
                        if hasattr(self, "hub") else f"{API_PREFIX}/jobs/{status.name}")
        self.finish(status.to_dict())


class JobHandler(JobsHandlerBase):
    async def get(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            self.finish(self.service.get(who[0], name).to_dict())
        except JobNotFound:
            self.fail(404, f"no job '{name}'")

    async def delete(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            status = await self.service.cancel(who[0], name)
        except JobNotFound:
            self.fail(404, f"no job '{name}'")
            return
        except RuntimeError as e:
            self.fail(503, str(e))
            return
        self.finish(status.to_dict())


class LogsHandler(JobsHandlerBase):
    async def get(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            rank = int(self.get_argument("rank", "0"))
            tail_arg = self.get_argument("tail", None)
            tail = int(tail_arg) if tail_arg not in (None, "") else None
        except ValueError:
            self.fail(400, "rank and tail must be integers", field="rank")
            return
        follow = self.get_argument("follow", "0") in ("1", "true")
        try:
            status = self.service.get(who[0], name)
        except JobNotFound:
            self.fail(404, f"no job '{name}'")
            return
        if not 0 <= rank < status.workers:
            self.fail(400, f"rank: {rank} is not allowed; allowed: 0..{status.workers - 1}", field="rank")
            return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if follow:
            # Send the headers now: proxies in between give up on a response that has not started,
            # and a followed rank may print nothing for a long time.
            await self.flush()
        lines = self.service.logs(who[0], name, rank, follow=follow, tail=tail)
        try:
            async for line in lines:
                self.write(line + "\n")
                if follow:
                    await self.flush()
        except JobNotFound as e:
            if not follow:
                self.fail(404, str(e.args[0]) if e.args else f"no job '{name}'")
                return
        except StreamClosedError:
            return  # the client went away
        finally:
            await lines.aclose()
        self.finish()


def handlers(service: JobsService) -> list[tuple[str, type, dict[str, Any]]]:
    """The jobs service's routes (JupyterHub adds the hub prefix)."""
    kwargs = {"service": service}
    return [
        (rf"{API_PREFIX}/options", OptionsHandler, kwargs),
        (rf"{API_PREFIX}/jobs", JobsHandler, kwargs),
        (rf"{API_PREFIX}/jobs/([a-z0-9-]+)", JobHandler, kwargs),
        (rf"{API_PREFIX}/jobs/([a-z0-9-]+)/logs", LogsHandler, kwargs),
    ]


def _merge_role(roles: list[dict[str, Any]], name: str, default_scopes: list[str], add: list[str]) -> None:
    for role in roles:
        if role.get("name") == name:
            scopes = list(role.get("scopes") or default_scopes)
            role["scopes"] = scopes + [s for s in add if s not in scopes]
            return
    roles.append({"name": name, "scopes": default_scopes + add})


def configure_hub(c: Config, catalogue: Catalogue, *, namespace: str | None = None,
                  admin_users: Iterable[str] | None = None, admin_groups: Iterable[str] = (),
                  **service_kwargs: Any) -> JobsService:
    """Run the jobs service inside this hub: handlers, custom scopes and roles.

    Args:
        c: The hub's config object.
        catalogue: The platform catalogue.
        namespace: Namespace for jobs; default the catalogue's ``jobs.namespace``, else
            ``c.KubeSpawner.namespace``, else ``$POD_NAMESPACE``, else ``default``.
        admin_users: Users who may see every job (scope ``custom:kubelab:jobs-admin``);
            default ``c.Authenticator.admin_users``.
        admin_groups: Groups whose members may see every job.
        service_kwargs: Passed to :class:`JobsService`.

    Returns:
        The service (tests and benchmarks may inspect it).
    """
    if namespace is None:
        spawner_ns = c.KubeSpawner.namespace if "namespace" in c.KubeSpawner else None
        namespace = catalogue.jobs.namespace or spawner_ns or os.environ.get("POD_NAMESPACE") or "default"
    service = JobsService(catalogue, namespace, **service_kwargs)
    existing = list(c.JupyterHub.extra_handlers) if "extra_handlers" in c.JupyterHub else []
    c.JupyterHub.extra_handlers = existing + handlers(service)

    scopes = dict(c.JupyterHub.custom_scopes) if "custom_scopes" in c.JupyterHub else {}
    scopes[JOBS_SCOPE] = {"description": "Submit, list, watch and cancel your own kubelab training jobs."}
    scopes[ADMIN_SCOPE] = {"description": "See, read the logs of and cancel every user's kubelab training jobs."}
    c.JupyterHub.custom_scopes = scopes

    roles = [dict(r) for r in (c.JupyterHub.load_roles if "load_roles" in c.JupyterHub else [])]
    _merge_role(roles, "user", ["self"], [JOBS_SCOPE])
    # A notebook's own JUPYTERHUB_API_TOKEN carries the server role: JobClient works without a new token.
    _merge_role(roles, "server", ["users:activity!user", "access:servers!server"], [JOBS_SCOPE])
    if admin_users is None:
        admin_users = c.Authenticator.admin_users if "admin_users" in c.Authenticator else ()
    admin_role = {"name": ADMIN_ROLE, "scopes": [JOBS_SCOPE, ADMIN_SCOPE],
                  "description": "kubelab jobs administrators", "users": sorted(admin_users),
                  "groups": sorted(admin_groups)}
    roles = [r for r in roles if r.get("name") != ADMIN_ROLE] + [admin_role]
    c.JupyterHub.load_roles = roles
    return service
