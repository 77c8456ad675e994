"""The kubelab jobs service: submit, list, read, follow and cancel jobs, inside the hub process.

One :class:`JobsService` per hub, built by the composition root with the hub's
:class:`~kubelab.core.platform.Platform` and started with it (it is a platform component): at
start-up it discovers the engines, fills its watch-backed cache of job objects, registers the
GPUs of jobs whose pods do not exist yet with the quota ledger it shares with the spawner, and
starts the reconciler (:mod:`kubelab.jobs.reconciler`), which drives every job to its end.

This module decides and calls the API (through :mod:`kubelab.jobs.kube`); what to create comes
from the pure builders (:mod:`kubelab.jobs.builders`), HTTP lives in :mod:`kubelab.jobs.handlers`,
scopes and roles in :mod:`kubelab.jobs.roles`. Why it runs inside the hub: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import functools
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from kubelab.core.availability import gpu_availability
from kubelab.core.home import find_home_claim
from kubelab.core.informer import api_message
from kubelab.core.naming import ANNOTATION_GROUPS, LABEL_JOB, LABEL_USER, owner_of, user_label
from kubelab.core.platform import STREAM_POOL_SIZE, Platform
from kubelab.core.quota import Holding
from kubelab.jobs import builders, policy, restarts, runtimes
from kubelab.jobs.builders.collector import home_node
from kubelab.jobs.builders.common import (
    FILES_HOME,
    BuildContext,
    files_mode,
    job_id,
    needs_collector,
    storage_options,
)
from kubelab.jobs.collect import is_collector
from kubelab.jobs.engines import Engines, discover
from kubelab.jobs.kube import CUSTOM_KINDS, WORKLOADS, AlreadyExists, JobCache, JobsApi, owner_names
from kubelab.jobs.metrics_service import MetricsConfigMaps, MetricsHub, ingest_url, new_token
from kubelab.jobs.reconciler import JobReconciler, now
from kubelab.jobs.spec import FRAMEWORKS, JobSpec, JobSpecError, JobStatus
from kubelab.jobs.sshkeys import new_ssh_auth
from kubelab.jobs.status import (
    DECLARES_GPUS,
    GPU_INDEX,
    STATUS_KEY,
    build_status,
    declared_gpus,
    gpu_index,
    is_job_record,
    job_spec,
    latest,
    pod_rank,
)

log = logging.getLogger("kubelab.jobs.service")

#: Followed log streams one user may hold open at once; past it a follow answers 429.
MAX_STREAMS_PER_USER = 8


class JobNotFound(KeyError):
    """No such job for this user (also the answer for another user's job: nothing leaks)."""


class JobExists(RuntimeError):
    """A job of that name exists already."""


class TooManyStreams(RuntimeError):
    """A long-lived request over the per-user or the global cap (HTTP 429)."""


class StreamSlots:
    """Per-user and global caps on long-lived requests (followed logs).

    The global cap equals the stream client's pool size, so streams can never queue for a
    connection: a request past either cap is refused at once with a clear message instead.
    """

    def __init__(self, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self.open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, user: str) -> Iterator[None]:
        """Hold one slot for ``user`` while the block runs.

        Raises:
            TooManyStreams: ``user`` already holds ``per_user`` streams, or all ``total`` are open.
        """
        if self.open.get(user, 0) >= self.per_user:
            raise TooManyStreams(f"you already follow {self.per_user} log streams; close one first")
        if sum(self.open.values()) >= self.total:
            raise TooManyStreams(f"the hub already serves {self.total} followed log streams; try again shortly")
        self.open[user] = self.open.get(user, 0) + 1
        try:
            yield
        finally:
            self.open[user] -= 1
            if not self.open[user]:
                del self.open[user]


class JobsService:
    """Jobs of every user, in one namespace, for one hub process.

    Args:
        platform: The hub's platform (catalogue, API clients, cluster cache, quota ledger).
        namespace: Namespace for job objects.
        rendezvous_timeout: Seconds ranks wait for their peers before failing.
        extra_env: Environment added to every rank (e.g. ``PYTHONUNBUFFERED``).
        streams_per_user: Followed log streams one user may hold open.
    """

    name = "jobs"

    def __init__(self, platform: Platform, namespace: str, *, rendezvous_timeout: int = 300,
                 extra_env: Mapping[str, str] | None = None, streams_per_user: int = MAX_STREAMS_PER_USER) -> None:
        self.platform = platform
        self.catalogue = platform.catalogue
        self.namespace = namespace
        self.rendezvous_timeout = rendezvous_timeout
        self.extra_env = dict(extra_env or {"PYTHONUNBUFFERED": "1"})
        self.streams = StreamSlots(streams_per_user, STREAM_POOL_SIZE)
        self.engines: Engines | None = None
        self.api: JobsApi | None = None
        self.cache: JobCache | None = None
        self.reconciler: JobReconciler | None = None
        #: The jobs' metrics (ingest, store, follow); routes get it before the service starts.
        self.metrics = MetricsHub()

    def __deepcopy__(self, memo: dict[int, Any]) -> JobsService:
        return self  # shared by every handler, like the platform (traitlets copies config values)

    # -- lifecycle (a platform component) ------------------------------------------------------

    async def start(self) -> None:
        """Discover engines, fill the jobs cache, join the quota ledger and start the reconciler.

        Raises:
            kubelab.jobs.engines.EngineConfigError: The catalogue pins an engine the cluster lacks.
            TimeoutError, ApiException, aiohttp.ClientError: The cluster is unreachable (retried
                by the platform).
        """
        platform = self.platform
        assert platform.api is not None and platform.ledger is not None
        jobs = self.catalogue.jobs
        self.engines = await discover(platform.api, jobs.engine, jobs.kueue.enabled)
        self.api = JobsApi(platform.api, self.namespace, platform.stream_api)
        cache = JobCache(platform.api, self.namespace, parent_indexes={GPU_INDEX: gpu_index})
        self._watch_engine_kinds(cache)
        await cache.start()
        self.cache = cache
        self.metrics.attach(cache.parents, MetricsConfigMaps(platform.api, self.namespace))
        platform.ledger.add_source(self)
        self.reconciler = JobReconciler(self)
        cache.add_listener(self.reconciler.on_change)
        self.reconciler.start()
        log.info("kubelab jobs: namespace %s, engines %s, kueue %s; reconciling %d jobs", self.namespace,
                 self.engines.available(), self.engines.kueue, len(cache.parents))

    def _watch_engine_kinds(self, cache: JobCache) -> None:
        """Watch each engine's objects, and Kueue's Workloads, only where discovery finds their API.

        Status then comes from the engine's own object (its conditions) and Kueue's verdict, not
        only from the pods: a job the operator failed at its deadline, with its pods deleted, still
        reads Failed with the reason.
        """
        assert self.engines is not None and self.platform.api is not None
        custom = CustomObjectsApi(self.platform.api)
        for kind, (group, version, plural) in CUSTOM_KINDS.items():
            if group in self.engines.groups:
                cache.add_kind(plural, functools.partial(custom.list_namespaced_custom_object, group, version,
                                                         self.namespace, plural), kind=kind)
        if self.engines.kueue and WORKLOADS[0] in self.engines.groups:
            group, version, plural = WORKLOADS
            cache.add_kind(plural, functools.partial(custom.list_namespaced_custom_object, group, version,
                                                     self.namespace, plural),
                           kind="Workload", label_selector=None, indexes={"owner": owner_names})

    def _engine_objects(self, jid: str, user: str, job: str,
                        rank_jobs: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The job's engine object (named like the job) and Kueue's Workload of it, from the cache."""
        assert self.cache is not None
        engine_object = next((o for kind, (_, _, plural) in CUSTOM_KINDS.items()
                              for o in self.cache.of_job(plural, user, job) if o["metadata"]["name"] == jid), None)
        workloads = self.cache.informers.get(WORKLOADS[2])
        workload = None
        if workloads is not None:
            owners = [jid] + [j["metadata"]["name"] for j in rank_jobs]
            workload = next((w for owner in owners for w in workloads.by_index("owner", owner)), None)
        return engine_object, workload

    async def stop(self) -> None:
        """Stop the reconciler and the watches."""
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self.cache is not None:
            await self.cache.stop()

    @property
    def ready(self) -> bool:
        """Whether :meth:`start` completed."""
        return self.reconciler is not None

    # -- quota: what jobs hold beyond their pods ------------------------------------------------

    def holdings(self) -> Iterable[Holding]:
        """GPUs of live jobs that their active pods do not (yet) request: queued or starting ranks.

        Ended jobs hold nothing, whether or not their record is written yet; pods are counted by
        the ledger itself, so a running job is counted once. The quota check calls this on every
        reservation, so it reads only the live jobs that ask for GPUs (the cache's
        :data:`~kubelab.jobs.status.GPU_INDEX`) and builds a job's status (the costly part) only
        when its pods do not cover its GPUs: queued, starting, or just ended.
        """
        cluster = self.platform.cluster
        if self.cache is None or cluster is None:
            return
        resources = {c.resource for c in self.catalogue.gpu_classes.values()} or {"nvidia.com/gpu"}
        for parent in self.cache.parents_by(GPU_INDEX, DECLARES_GPUS):
            spec = job_spec(parent)
            if spec is None:
                continue  # not filed by gpu_index; kept for the type checker
            declared = declared_gpus(spec)
            label = (parent["metadata"].get("labels") or {}).get(LABEL_USER, "")
            requested = sum(n for p in cluster.pods_of_user(label)
                            if p.active and p.labels.get(LABEL_JOB) == spec["name"]
                            for r, n in p.requests.items() if r in resources)
            if requested >= declared:
                continue  # its pods are counted by the ledger
            status = self.status(parent)
            if status.done:
                continue
            groups = tuple(g for g in ((parent["metadata"].get("annotations") or {})
                                       .get(ANNOTATION_GROUPS, "")).split(",") if g)
            yield Holding(label, groups, declared - requested, f"job '{status.name}' ({status.phase.lower()})")

    # -- options -------------------------------------------------------------------------------

    def options(self, user: str, groups: Iterable[str], admin: bool) -> dict[str, Any]:
        """What ``user`` may choose (``GET options``)."""
        assert self.engines is not None and self.platform.ledger is not None
        groups = list(groups)
        opts = policy.options_for(self.catalogue, groups)
        snap = self.platform.ledger.snapshot(user, groups)
        free = self._gpu_free()
        return {
            "user": user,
            "admin": admin,
            "engine": self.engines.engine_for("pytorch"),
            "engines": {f: self.engines.engine_for(f) for f in FRAMEWORKS},
            "frameworks": list(FRAMEWORKS),
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
            "storage": storage_options(BuildContext(
                user=user, namespace=self.namespace, image="", home=self.catalogue.home, shared=self.catalogue.shared,
                scratch=self.catalogue.scratch, transfer=self.catalogue.transfer)),
        }

    def _gpu_free(self) -> dict[str, dict[str, int]]:
        """Allocatable and free GPUs per class, from the cluster cache."""
        cache = self.platform.cluster
        assert cache is not None
        avail = gpu_availability(cache.nodes.values(), cache.pods.values(), self.catalogue.gpu_classes)
        return {key: {"allocatable": a.allocatable, "free": a.free} for key, a in avail.items()}

    # -- submit --------------------------------------------------------------------------------

    def prepare(self, user: str, groups: Iterable[str], body: Any) -> tuple[JobSpec, BuildContext, str, policy.Decision]:
        """Validate a submission without touching the cluster: the spec, the policy and the engine.

        Returns:
            (spec, build context, engine, the policy's decision).

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
            default_cpu_millis=decision.cpu_millis, default_memory_bytes=decision.memory_bytes,
            extra_env=self.extra_env, groups=groups, scratch=self.catalogue.scratch,
            transfer=self.catalogue.transfer,
        )
        builders.check(spec, ctx, engine)
        restarts.check(spec, ctx, engine, self.catalogue.jobs.max_restarts)
        return spec, ctx, engine, decision

    def _storage_context(self, spec: JobSpec, ctx: BuildContext) -> BuildContext:
        """A job with a collector (RWO home, docs/jobs.md): a fresh transfer token, and the node
        that holds the home now, where the collector must run (never a second node: Multi-Attach)."""
        if not needs_collector(spec, ctx):
            return ctx
        assert self.platform.cluster is not None
        pods = self.platform.cluster.pods_of_user(user_label(ctx.user))
        return dataclasses.replace(ctx, transfer_token=secrets.token_urlsafe(32),
                                   home_node=home_node(pods, ctx.home_claim_name, self.namespace))

    async def _engine_context(self, spec: JobSpec, ctx: BuildContext, engine: str) -> BuildContext:
        """What the builders need beyond the spec: the Trainer runtime's names (read from the
        cluster), and a fresh SSH key pair for MPI ranks (the MPI Operator's way)."""
        assert self.platform.api is not None
        if engine == "trainer-v2":
            name = self.catalogue.jobs.trainer_runtimes.get(spec.framework)
            ctx = dataclasses.replace(ctx, trainer_runtime=await runtimes.runtime_for(self.platform.api,
                                                                                       spec.framework, name))
        if spec.framework == "mpi":
            ctx = dataclasses.replace(ctx, ssh_auth=new_ssh_auth())
        return ctx

    async def submit(self, user: str, groups: Iterable[str], body: Any, *,
                     metrics_api_url: str | None = None, owner: Mapping[str, Any] | None = None,
                     owner_labels: Mapping[str, str] | None = None) -> JobStatus:
        """Check and create a job; on any failure, delete what was created.

        With ``metrics_api_url`` (the hub API URL job pods reach, as notebooks do) every rank
        gets the job's metrics ingest URL and a fresh per-job token (``docs/jobs.md``, Metrics).
        ``owner`` (an ownerReference) and ``owner_labels`` go on the job's parent: a sweep's
        trial is owned by the sweep's record from its creation on (:mod:`kubelab.jobs.sweep_reconciler`).

        The quota is reserved for exactly as long as it takes to create the job's record; from
        then on the record itself holds the GPUs (:meth:`holdings`) until the job ends.

        Raises:
            JobSpecError: 400.
            PermissionError: Policy refuses it (403).
            kubelab.core.quota.QuotaExceeded: Over a quota (429 now, or 403 never).
            JobExists: 409.
            RuntimeError: The cluster failed (nothing is left behind).
        """
        assert self.api is not None and self.cache is not None and self.platform.ledger is not None
        groups = tuple(groups)
        spec, ctx, engine, decision = self.prepare(user, groups, body)
        ctx = await self._engine_context(spec, ctx, engine)
        if metrics_api_url:
            ctx = dataclasses.replace(ctx, metrics_url=ingest_url(metrics_api_url, spec.name),
                                      metrics_token=new_token()[0])
        jid = job_id(user, spec.name)
        if jid in self.cache.parents:
            raise JobExists(f"job '{spec.name}' already exists; cancel it first or pick another name")
        mounts_home = files_mode(ctx.home, ctx.shared) == FILES_HOME or needs_collector(spec, ctx)
        if mounts_home:
            # The claim the spawner mounts (kept across the naming upgrade, never another user's).
            home = await find_home_claim(CoreV1Api(self.platform.api), self.namespace, user, self.cache.claim)
            ctx = dataclasses.replace(ctx, home_claim=home.claim)
            if not home.exists:
                # Without this, every rank (or the collector) would sit Pending on a missing claim; say so now.
                raise JobSpecError("script", f"job pods read your files from your home {home.claim}, which does "
                                   "not exist yet: start your notebook server once, then submit again")
        ctx = self._storage_context(spec, ctx)  # after the lookup: the collector mounts the claim it chose
        cluster = self.platform.cluster
        assert cluster is not None

        def within_totals() -> None:
            # Under the ledger's lock with the quota check: concurrent submits cannot together pass
            # the per-user totals (workers, CPU, memory) of the catalogue.
            policy.check_totals(spec, decision, policy.job_usage(cluster.pods_of_user(user_label(user))))

        async with self.platform.ledger.reserve(user, groups, gpus=spec.total_gpus, what=f"job '{spec.name}'",
                                                check=within_totals):
            try:
                record = builders.make_parent(spec, ctx, engine)
                if owner is not None:
                    record["metadata"]["ownerReferences"] = [dict(owner)]
                    record["metadata"]["labels"].update(owner_labels or {})
                parent = await self.api.create(record)
            except AlreadyExists as e:
                raise JobExists(f"job '{spec.name}' already exists; cancel it first or pick another name") from e
            # No await between this and the end of the reservation: the record takes over the hold.
            self.cache.apply("configmaps", "ADDED", parent)
        created: list[dict[str, Any]] = []
        try:
            for obj in builders.make_children(spec, ctx, engine, (jid, parent["metadata"]["uid"])):
                try:
                    created.append(await self.api.create(obj))
                except AlreadyExists:
                    # A leftover of a cancelled job that the garbage collector has not removed yet.
                    raise RuntimeError(f"{obj['kind']} {obj['metadata']['name']} still exists from an earlier "
                                       "job of that name; retry in a few seconds") from None
        except ApiException as e:
            await self._undo(jid, created)
            if e.status == 403:
                raise PermissionError(f"the cluster refused job '{spec.name}': {api_message(e)}") from e
            raise RuntimeError(f"creating job '{spec.name}' failed: {e.status} {api_message(e)}") from e
        except BaseException:
            await self._undo(jid, created)
            raise
        return self.status(self.cache.parents[jid])

    async def _undo(self, jid: str, created: list[dict[str, Any]]) -> None:
        """Delete a half-created job: the children explicitly (no waiting for the GC), then the parent."""
        assert self.api is not None and self.cache is not None
        for obj in reversed(created):
            try:
                await self.api.delete(obj["kind"], obj["metadata"]["name"])
            except RuntimeError as e:
                log.warning("cleanup of %s failed: %s (the garbage collector will remove it)", jid, e)
        try:
            await self.api.delete("ConfigMap", jid)
        except RuntimeError as e:
            log.error("cleanup of job parent %s failed: %s", jid, e)
        self.cache.apply("configmaps", "DELETED", {"metadata": {"name": jid}})

    # -- reading -------------------------------------------------------------------------------

    def status(self, parent: Mapping[str, Any]) -> JobStatus:
        """Status of the job whose parent is ``parent``, from the cache."""
        assert self.cache is not None
        labels = parent["metadata"].get("labels") or {}
        user, job = labels.get(LABEL_USER, ""), labels.get(LABEL_JOB, "")
        rank_jobs = self.cache.of_job("jobs", user, job)
        engine_object, workload = self._engine_objects(parent["metadata"]["name"], user, job, rank_jobs)
        status = build_status(parent, self.cache.of_job("pods", user, job), rank_jobs, self.cache.events,
                              engine_object=engine_object, workload=workload)
        status.latest = self.metrics.latest_values(parent["metadata"]["name"])
        restarts.apply_restarts(status, parent)  # "Restarted 1 of 3: ...", never Failed with restarts left
        return status

    def _parents(self) -> Iterable[Mapping[str, Any]]:
        assert self.cache is not None
        return (p for p in list(self.cache.parents.values()) if is_job_record(p))

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
        # The id is short (it names pods); only the record's exact owner makes it this user's job.
        if parent is None or not is_job_record(parent) or owner_of(parent["metadata"].get("annotations")) != user:
            raise JobNotFound(name)
        return parent

    def get(self, user: str, name: str) -> JobStatus:
        """Status of ``user``'s job ``name``.

        Raises:
            JobNotFound: No such job of this user.
        """
        return self.status(self.parent_of(user, name))

    async def wait(self, user: str, name: str, timeout: float) -> JobStatus:
        """Status of ``user``'s job ``name`` once it ended, or after ``timeout`` seconds (a long poll).

        Raises:
            JobNotFound: No such job of this user (or it was deleted while waiting).
        """
        assert self.cache is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        status = self.get(user, name)
        while not status.done and loop.time() < deadline:
            await self.cache.changed(deadline - loop.time())
            status = self.get(user, name)
        return status

    async def logs(self, user: str, name: str, rank: int, *, follow: bool = False,
                   tail: int | None = None) -> AsyncIterator[str]:
        """Log lines of one rank, streamed through the pods' log API.

        A caller that follows holds one of :attr:`streams` for as long as it reads (the HTTP
        handler does, before it sends any header).

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
            # close, not release: an unfinished follow must give its connection back now,
            # even when the container prints nothing more
            resp.close()

    def _rank_pod(self, user: str, name: str, rank: int) -> Mapping[str, Any] | None:
        assert self.cache is not None
        return latest(p for p in self.cache.of_job("pods", user_label(user), name) if pod_rank(p) == rank)

    # -- cancel --------------------------------------------------------------------------------

    async def cancel(self, user: str, name: str) -> JobStatus:
        """Stop the job and keep its record: ``Cancelled`` goes into the parent, then the ranks
        (rank Jobs and the Service, or the engine's object) are deleted, so their pods get
        SIGTERM. Status, the failed rank's lines and the metrics stay until :meth:`delete`.

        Raises:
            JobNotFound: No such job of this user.
            RuntimeError: The API server kept failing.
        """
        assert self.api is not None and self.cache is not None
        status = self.get(user, name)
        jid = job_id(user, name)
        if not status.done:
            record = {"phase": "Cancelled", "finished": now(), "message": "cancelled; the ranks were stopped",
                      "ranks": [{**r.__dict__, "phase": "Cancelled" if r.phase not in ("Succeeded", "Failed")
                                 else r.phase} for r in status.ranks]}
            try:
                await self.api.patch_configmap_data(jid, {STATUS_KEY: json.dumps(record)})
            except KeyError as e:
                raise JobNotFound(name) from e
            parent = self.cache.parents.get(jid) or {}
            self.cache.apply("configmaps", "MODIFIED",
                             {**parent, "data": {**(parent.get("data") or {}), STATUS_KEY: json.dumps(record)}})
            # A job that ended keeps what it kept (the failed rank's Job and pod, for its log).
            await self._stop_ranks(jid, status)
        await self.metrics.job_ended(jid)
        return self.get(user, name)

    async def _stop_ranks(self, jid: str, status: JobStatus) -> None:
        """Delete what runs the ranks (idempotent): the rank Jobs and the Service, or the engine's object."""
        assert self.api is not None and self.cache is not None
        if status.engine == "plain":
            for job in self.cache.of_job("jobs", user_label(status.user), status.name):
                if is_collector(job):
                    continue  # the stopped ranks hand it their outputs; the reconciler closes it after
                await self.api.delete("Job", job["metadata"]["name"])
            await self.api.delete("Service", jid)
            return
        kind = {"kubeflow-v1": builders.kubeflow.KINDS.get(status.framework, "PyTorchJob"),
                "jobset": "JobSet", "trainer-v2": "TrainJob"}.get(status.engine)
        if kind is not None:
            await self.api.delete(kind, jid)

    async def delete(self, user: str, name: str) -> JobStatus:
        """Delete the job's parent; ownerReferences cascade to every other object (metrics too).

        Raises:
            JobNotFound: No such job of this user.
            RuntimeError: The API server kept failing.
        """
        assert self.api is not None and self.cache is not None
        status = self.get(user, name)
        jid = job_id(user, name)
        await self.api.delete("ConfigMap", jid)
        self.cache.apply("configmaps", "DELETED", {"metadata": {"name": jid}})
        self.metrics.forget(jid)
        if not status.done:
            status.phase = "Cancelled"
            status.finished = now()
        return status


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

