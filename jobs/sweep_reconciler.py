"""Sweeps in the hub: records in the cluster, trials driven from a work queue, Katib where it is installed.

A sweep is one ConfigMap, its *record* (``<sweep id>-sweep``): the sweep's spec (``sweep.json``,
the template's env names only: their values are in a Secret the record owns), who made it and with
which groups, and the results so far (``state.json``: each trial's phase, objective, a thinned
curve). Every trial is an ordinary kubelab job whose parent the record owns from its creation on
(ownerReference, label ``kubelab.io/sweep``), so deleting the record removes every trial.

:class:`SweepService` is a platform component started after the jobs service. Without Katib it
runs the sweep itself: a watch on the records and the jobs cache's changes queue a sweep's key on
a :class:`~kubelab.core.workqueue.WorkQueue`, and :meth:`SweepService.reconcile` converges it from
the caches: it records the trials that ended (their objective from the metrics they logged), stops
trials the median rule condemns, and launches the next trials while fewer than ``parallel`` run.
A trial the quota cannot take now (the ledger's 429, a per-user total) *waits* and is tried again
when a job of the user ends or after :data:`QUOTA_RETRY_SECONDS`; one that can never fit fails
with the reason. With Kueue each trial carries the queue and waits there instead. Every step is
read from the cluster, so a restarted hub carries on (the reconcile of every record runs at start).

With Katib installed (discovery finds ``experiments`` in ``kubeflow.org/v1beta1``), a sweep whose
trials are one-worker plain jobs is created as a Katib ``Experiment`` instead, owned by the record,
whose trial template is kubelab's own rank Job (:func:`kubelab.jobs.sweeps.make_experiment`); its
status is read from the Experiment and its Trials (:func:`kubelab.jobs.sweeps.katib_status`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from kubelab.core.informer import Informer, raise_for_status
from kubelab.core.naming import (
    ANNOTATION_GROUPS,
    ANNOTATION_USER,
    COMPONENT_SWEEP,
    COMPONENT_SWEEP_ENV,
    LABEL_COMPONENT,
    LABEL_JOB,
    LABEL_SWEEP,
    LABEL_USER,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    owner_of,
    sweep_record_name,
    user_label,
)
from kubelab.core.platform import Platform
from kubelab.core.quota import QuotaExceeded
from kubelab.core.workqueue import WorkQueue
from kubelab.jobs import policy, sweeps
from kubelab.jobs.builders import plain
from kubelab.jobs.builders.common import env_secret_name, job_id, make_env_secret
from kubelab.jobs.engines import serves
from kubelab.jobs.policy import JobLimitExceeded
from kubelab.jobs.service import JobExists, JobNotFound, JobsService
from kubelab.jobs.spec import JobSpecError

log = logging.getLogger("kubelab.jobs.sweeps")

SPEC_KEY = "sweep.json"
STATE_KEY = "state.json"
HUB_URL_KEY = "hub_api_url"
#: Seconds before a trial the quota had no room for is tried again (a job ending tries sooner).
QUOTA_RETRY_SECONDS = 10.0
#: Seconds between looks at running trials when early stopping is on (their metrics arrive without events).
EARLY_STOP_SECONDS = 5.0
#: What a reconcile retries on: the API server failing, unreachable or slow.
TRANSIENT = (RuntimeError, ApiException, TimeoutError, aiohttp.ClientError, OSError)
FINAL_TRIAL = ("Succeeded", "Failed", "Cancelled", "Stopped")


class SweepNotFound(KeyError):
    """No such sweep for this user (also for another user's: nothing leaks)."""


class SweepExists(RuntimeError):
    """A sweep of that name exists, or a job has a trial's name."""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def katib_eligible(sweep: sweeps.SweepSpec, engine: str) -> bool:
    """Whether Katib can run the sweep's trials: one object per trial, i.e. a one-worker plain job."""
    return engine == "plain" and int(sweep.job.get("workers", 1)) == 1


def spec_record(sweep: sweeps.SweepSpec) -> dict[str, Any]:
    """The sweep as its record keeps it: the template's env names only (values go to the Secret)."""
    data = sweep.to_dict()
    job = dict(data["job"])
    job["env_names"] = sorted(job.pop("env", None) or {})
    data["job"] = job
    return data


def make_record(sweep: sweeps.SweepSpec, user: str, groups: Iterable[str], namespace: str, hub_api_url: str,
                engine: str) -> dict[str, Any]:
    """The sweep's record ConfigMap (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": sweep_record_name(job_id(user, sweep.name)),
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGED_BY_VALUE, LABEL_USER: user_label(user), LABEL_SWEEP: sweep.name,
                       LABEL_COMPONENT: COMPONENT_SWEEP},
            "annotations": {ANNOTATION_USER: user, ANNOTATION_GROUPS: ",".join(sorted(set(groups)))},
        },
        "data": {SPEC_KEY: json.dumps(spec_record(sweep), sort_keys=True), HUB_URL_KEY: hub_api_url,
                 STATE_KEY: json.dumps({"phase": "Pending", "engine": engine, "trials": {}})},
    }


def make_env_record(sweep: sweeps.SweepSpec, user: str, namespace: str, owner: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Secret holding the template's env values, owned by the record (None without env)."""
    env = sweep.job.get("env") or {}
    if not env:
        return None
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": f"{sweep_record_name(job_id(user, sweep.name))}-env", "namespace": namespace,
                     "labels": {MANAGED_BY: MANAGED_BY_VALUE, LABEL_USER: user_label(user), LABEL_SWEEP: sweep.name,
                                LABEL_COMPONENT: COMPONENT_SWEEP_ENV},
                     "ownerReferences": [dict(owner)]},
        "data": {k: base64.b64encode(str(v).encode()).decode() for k, v in sorted(env.items())},
    }


def owner_reference(record: Mapping[str, Any]) -> dict[str, Any]:
    meta = record["metadata"]
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"], "uid": meta["uid"]}


def is_sweep_record(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return (labels.get(MANAGED_BY) == MANAGED_BY_VALUE and labels.get(LABEL_COMPONENT) == COMPONENT_SWEEP
            and SPEC_KEY in (obj.get("data") or {}))


def _state(record: Mapping[str, Any]) -> dict[str, Any]:
    try:
        state = json.loads((record.get("data") or {}).get(STATE_KEY) or "{}")
    except ValueError:
        state = {}
    if not isinstance(state, dict):
        state = {}
    state.setdefault("trials", {})
    return state


class SweepService:
    """The sweeps of every user of one hub, in the jobs service's namespace (a platform component).

    Args:
        platform: The hub's platform.
        jobs: The jobs service (started before this component: it is registered first).
    """

    name = "sweeps"

    def __init__(self, platform: Platform, jobs: JobsService) -> None:
        self.platform = platform
        self.jobs = jobs
        self.records: Informer[Any] | None = None
        self.experiments: Informer[Any] | None = None
        self.katib_trials: Informer[Any] | None = None
        self.queue = WorkQueue("sweeps", self.reconcile, retry_on=TRANSIENT, workers=2)
        self._env: dict[str, dict[str, str]] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> SweepService:
        return self  # shared by every handler, like the jobs service

    @property
    def namespace(self) -> str:
        return self.jobs.namespace

    @property
    def ready(self) -> bool:
        return self.records is not None and self.records.ready

    @property
    def katib(self) -> bool:
        """Whether sweeps are handed to Katib (its Experiments were discovered)."""
        return self.experiments is not None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Watch the records (and Katib's objects where installed), then reconcile every sweep."""
        assert self.platform.api is not None and self.jobs.cache is not None
        core = CoreV1Api(self.platform.api)
        if self.records is None:
            self.records = Informer(
                "sweeps", functools.partial(core.list_namespaced_config_map, self.namespace),
                label_selector=f"{MANAGED_BY}={MANAGED_BY_VALUE},{LABEL_COMPONENT}={COMPONENT_SWEEP}",
                key=lambda o: str(o["metadata"]["name"]), kind="ConfigMap")
            self.records.add_listener(lambda _t, new, old: self._queue_record(new or old))
            if await katib_served(self.platform.api):
                custom = CustomObjectsApi(self.platform.api)
                self.experiments = Informer(
                    "katib-experiments", functools.partial(custom.list_namespaced_custom_object, sweeps.KATIB_GROUP,
                                                           sweeps.KATIB_VERSION, self.namespace, "experiments"),
                    label_selector=f"{MANAGED_BY}={MANAGED_BY_VALUE},{LABEL_SWEEP}",
                    key=lambda o: str(o["metadata"]["name"]), kind="Experiment")
                self.katib_trials = Informer(
                    "katib-trials", functools.partial(custom.list_namespaced_custom_object, sweeps.KATIB_GROUP,
                                                      sweeps.KATIB_VERSION, self.namespace, "trials"),
                    key=lambda o: str(o["metadata"]["name"]), kind="Trial",
                    indexes={"experiment": lambda o: tuple(r.get("name", "") for r in
                                                           (o.get("metadata") or {}).get("ownerReferences") or [])})
            self.jobs.cache.add_listener(self._on_job_change)
        informers = [i for i in (self.records, self.experiments, self.katib_trials) if i is not None]
        for informer in informers:
            informer.start()
        await asyncio.gather(*(i.wait_ready(30) for i in informers))
        self.queue.start()
        for name, record in list(self.records.store.items()):
            if is_sweep_record(record):
                self.queue.add(name)
        log.info("kubelab sweeps: %d sweeps; Katib %s", len(self.records.store), "found" if self.katib else "absent")

    async def stop(self) -> None:
        await self.queue.stop()
        for informer in (self.records, self.experiments, self.katib_trials):
            if informer is not None:
                await informer.stop()

    def _queue_record(self, record: Mapping[str, Any] | None) -> None:
        if record and is_sweep_record(record):
            self.queue.add(record["metadata"]["name"])

    def _on_job_change(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """A job object changed: queue the sweep that owns the job, if any (nothing else here)."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if LABEL_JOB not in labels or self.jobs.cache is None:
            return
        for parent in self.jobs.cache.of_job("configmaps", labels.get(LABEL_USER, ""), labels[LABEL_JOB]):
            sweep = (parent["metadata"].get("labels") or {}).get(LABEL_SWEEP)
            for ref in parent["metadata"].get("ownerReferences") or []:
                if sweep and ref.get("kind") == "ConfigMap":
                    self.queue.add(ref["name"])
        if kind == "pods" and event_type == "DELETED":
            # A trial's pod ending frees quota that another sweep of the same user may be waiting for.
            for name, record in list((self.records.store if self.records else {}).items()):
                if (record["metadata"].get("labels") or {}).get(LABEL_USER) == labels.get(LABEL_USER):
                    self.queue.add(name)

    # -- reading -------------------------------------------------------------------------------

    def record_of(self, user: str, name: str) -> Mapping[str, Any]:
        """``user``'s sweep record ``name``.

        Raises:
            SweepNotFound: No such sweep of this user.
        """
        assert self.records is not None
        record = self.records.get(sweep_record_name(job_id(user, name)))
        if record is None or not is_sweep_record(record) or owner_of(record["metadata"].get("annotations")) != user:
            raise SweepNotFound(name)
        return record

    def sweep_of(self, record: Mapping[str, Any]) -> sweeps.SweepSpec:
        """The record's sweep (the template's env values as names only; see :meth:`_template_env`)."""
        data = json.loads(record["data"][SPEC_KEY])
        job = dict(data["job"])
        job["env"] = {n: "" for n in job.pop("env_names", [])}
        data["job"] = job
        return sweeps.SweepSpec.from_dict(data)

    def status(self, record: Mapping[str, Any]) -> sweeps.SweepStatus:
        """A sweep's status from its record, with the live phase and objective of running trials."""
        sweep = self.sweep_of(record)
        user = owner_of(record["metadata"].get("annotations")) or ""
        state = _state(record)
        if state.get("engine") == "katib":
            exp = self.experiments.get(job_id(user, sweep.name)) if self.experiments is not None else None
            trials = self.katib_trials.by_index("experiment", job_id(user, sweep.name)) if self.katib_trials else []
            if exp is None and state.get("snapshot"):
                out = sweeps.SweepStatus.from_dict(state["snapshot"])  # what the Experiment said before it went
            else:
                out = sweeps.katib_status(sweep, user, exp or {}, trials)
            out.created = record["metadata"].get("creationTimestamp")
            if exp is None:
                out.message = "Katib's Experiment is not there (yet)"
            if state.get("phase") == "Cancelled":
                out.phase, out.finished, out.message = "Cancelled", state.get("finished"), state.get("message", "")
            return out
        out = sweeps.SweepStatus(
            name=sweep.name, user=user, objective=dict(sweep.objective), algorithm=sweep.algorithm or "",
            trials_total=sweep.trials or 0, parallel=sweep.parallel, space=dict(sweep.space),
            phase=state.get("phase", "Pending"), created=record["metadata"].get("creationTimestamp"),
            finished=state.get("finished"), message=state.get("message", ""), warnings=list(state.get("warnings") or []),
            engine=state.get("engine", "kubelab"))
        for i, params in enumerate(sweep.plan()):
            entry = state["trials"].get(str(i)) or {}
            trial = sweeps.TrialStatus(index=i, name=sweep.trial_name(i), params=params,
                                       phase=entry.get("phase", "Waiting"), objective=entry.get("objective"),
                                       message=entry.get("message", ""), early_stopped=bool(entry.get("early_stopped")),
                                       curve=entry.get("curve") or [])
            if trial.phase not in FINAL_TRIAL:
                self._live(trial, user, sweep)
            out.trials.append(trial)
        out.best = sweeps.best_index(out.trials, sweep.objective["goal"])
        return out

    def _live(self, trial: sweeps.TrialStatus, user: str, sweep: sweeps.SweepSpec) -> None:
        """A running trial's phase (jobs cache) and objective so far (the metrics in memory)."""
        assert self.jobs.cache is not None
        parent = self.jobs.cache.parents.get(job_id(user, trial.name))
        if parent is None:
            return
        trial.phase = self.jobs.status(parent).phase
        job = self.jobs.metrics.store.job(job_id(user, trial.name))
        points = sweeps.curve(job.to_json().get("series") or [], sweep.objective["metric"]) if job else []
        trial.objective = sweeps.objective_value(points, sweep.objective["strategy"])
        trial.curve = sweeps.thin(points)

    def list(self, user: str, all_users: bool = False) -> list[sweeps.SweepStatus]:
        """Sweeps of ``user`` (everyone's with ``all_users``), newest first."""
        assert self.records is not None
        label = user_label(user)
        out = [self.status(r) for r in list(self.records.store.values())
               if is_sweep_record(r) and (all_users or (r["metadata"].get("labels") or {}).get(LABEL_USER) == label)]
        out.sort(key=lambda s: (s.created or "", s.name), reverse=True)
        return out

    def get(self, user: str, name: str) -> sweeps.SweepStatus:
        """Raises: SweepNotFound."""
        return self.status(self.record_of(user, name))

    # -- create, cancel, delete ----------------------------------------------------------------

    async def create(self, user: str, groups: Iterable[str], body: Any, *, hub_api_url: str) -> sweeps.SweepStatus:
        """Check a sweep completely, then create its record (and, with Katib, its Experiment).

        Nothing is created for a refused sweep: the spec, the first trial's job (policy, files,
        engine), the quota a single trial needs at least, and every trial's name are checked first.

        Raises:
            JobSpecError: 400, naming the field (``space.lr.min``, ``job.workers``, ``objective.metric``).
            PermissionError, QuotaExceeded: One trial could never run (403).
            SweepExists: The sweep, or a job with a trial's name, exists (409).
            RuntimeError: The cluster failed (nothing is left behind).
        """
        assert self.records is not None and self.jobs.cache is not None and self.platform.ledger is not None
        groups = tuple(sorted(set(groups)))
        sweep = sweeps.SweepSpec.from_dict(body)
        plan = sweep.plan()
        first = sweep.trial_spec(0, plan[0]).to_dict()
        try:
            spec, ctx, engine, decision = self.jobs.prepare(user, groups, first)
        except JobSpecError as e:
            raise JobSpecError(f"job.{e.field}", e.problem) from None
        # Trials wait while the quota is full, but one that could never fit is refused now.
        policy.check_totals(spec, decision, policy.JobUsage())
        limits = self.platform.ledger.limits_for(user)
        if spec.total_gpus and limits.max_gpus is not None and spec.total_gpus > limits.max_gpus:
            raise QuotaExceeded(f"GPU quota: each trial asks for {spec.total_gpus} GPUs but the limit is "
                                f"{limits.max_gpus}", permanent=True)
        record_name = sweep_record_name(job_id(user, sweep.name))
        if record_name in self.records.store:
            raise SweepExists(f"sweep '{sweep.name}' already exists; delete it first or pick another name")
        taken = [sweep.trial_name(i) for i in range(len(plan)) if job_id(user, sweep.trial_name(i)) in self.jobs.cache.parents]
        if taken:
            raise SweepExists(f"job '{taken[0]}' exists and has the name of trial {taken[0].rsplit('-', 1)[1]} of "
                              f"sweep '{sweep.name}'; delete it or pick another sweep name")
        use_katib = self.katib and katib_eligible(sweep, engine)
        core = CoreV1Api(self.platform.api)
        body_ = make_record(sweep, user, groups, self.namespace, hub_api_url, "katib" if use_katib else "kubelab")
        try:
            record = json.loads(await (await raise_for_status(await core.create_namespaced_config_map(
                self.namespace, body_, _preload_content=False))).read())
        except ApiException as e:
            if e.status == 409:
                raise SweepExists(f"sweep '{sweep.name}' already exists") from e
            raise RuntimeError(f"creating sweep '{sweep.name}' failed: {e.status} {e.reason}") from e
        self.records.apply("ADDED", record)
        try:
            secret = make_env_record(sweep, user, self.namespace, owner_reference(record))
            if secret is not None:
                await core.create_namespaced_secret(self.namespace, secret)
                self._env[record_name] = dict(sweep.job.get("env") or {})
            if use_katib:
                await self._create_experiment(sweep, user, groups, record)
        except (ApiException, aiohttp.ClientError, TimeoutError) as e:
            await self._delete_record(record_name)
            raise RuntimeError(f"creating sweep '{sweep.name}' failed: {e}") from e
        self.queue.add(record_name)
        return self.status(self.records.get(record_name) or record)

    async def _create_experiment(self, sweep: sweeps.SweepSpec, user: str, groups: tuple[str, ...],
                                 record: Mapping[str, Any]) -> None:
        """The Katib Experiment of the sweep, owned by its record, and its template's env Secret."""
        template = sweeps.trial_template_spec(sweep).to_dict()
        spec, ctx, _engine, _decision = self.jobs.prepare(user, groups, template)
        # Katib's StdOut collector reads "name=value" lines: kubelab.jobs.metrics prints them so.
        ctx = dataclasses.replace(ctx, extra_env={**ctx.extra_env, "KUBELAB_METRICS_STDOUT": "1"})
        trial_job = plain.make_rank_job(spec, ctx, 0)
        owner = owner_reference(record)
        labels = {MANAGED_BY: MANAGED_BY_VALUE, LABEL_USER: user_label(user), LABEL_SWEEP: sweep.name}
        experiment = sweeps.make_experiment(sweep, trial_job, name=job_id(user, sweep.name), namespace=self.namespace,
                                            labels=labels, owner=owner)
        secret = make_env_secret(spec, ctx)
        assert self.platform.api is not None
        if secret is not None:  # the template's own env values, read by every trial through secretKeyRef
            secret["metadata"]["ownerReferences"] = [owner]
            secret["metadata"]["name"] = env_secret_name(ctx, spec)
            secret["data"] = {k: v for k, v in secret["data"].items() if k not in sweep.space}
            await CoreV1Api(self.platform.api).create_namespaced_secret(self.namespace, secret)
        created = await CustomObjectsApi(self.platform.api).create_namespaced_custom_object(
            sweeps.KATIB_GROUP, sweeps.KATIB_VERSION, self.namespace, "experiments", experiment)
        if self.experiments is not None:
            self.experiments.apply("ADDED", created)  # the sweep's status reads it at once

    async def cancel(self, user: str, name: str) -> sweeps.SweepStatus:
        """Stop the sweep: every trial's objects are removed; the record keeps the results so far.

        Raises:
            SweepNotFound: No such sweep of this user.
            RuntimeError: The API server kept failing.
        """
        record = self.record_of(user, name)
        status = self.status(record)
        state = _state(record)
        if state.get("engine") == "katib" and self.experiments is not None \
                and self.experiments.get(job_id(user, name)) is not None:
            # The Experiment and its Trials go: the record keeps what they said.
            state["snapshot"] = status.to_dict()
            await self._write_state(record, state)
            record = self.record_of(user, name)
        if not status.done:
            for trial in status.trials:
                entry = state["trials"].setdefault(str(trial.index), {})
                if trial.phase not in FINAL_TRIAL:
                    entry.update(phase="Cancelled" if trial.phase != "Waiting" else "Waiting", objective=trial.objective,
                                 curve=trial.curve, message="the sweep was cancelled")
            state.update(phase="Cancelled", finished=now(), message="cancelled; every trial was stopped and removed")
            await self._write_state(record, state)
        await self._remove_trials(user, name, record)
        return self.get(user, name)

    async def _remove_trials(self, user: str, name: str, record: Mapping[str, Any]) -> None:
        """Delete every trial's parent (the garbage collector removes the rest) and a Katib Experiment."""
        assert self.jobs.cache is not None and self.jobs.api is not None
        sweep = self.sweep_of(record)
        for i in range(sweep.trials or 0):
            trial = sweep.trial_name(i)
            parent = self.jobs.cache.parents.get(job_id(user, trial))
            if parent is not None and (parent["metadata"].get("labels") or {}).get(LABEL_SWEEP) == name:
                try:
                    await self.jobs.delete(user, trial)
                except JobNotFound:
                    pass
        if self.experiments is not None and self.experiments.get(job_id(user, name)) is not None:
            assert self.platform.api is not None
            try:
                await CustomObjectsApi(self.platform.api).delete_namespaced_custom_object(
                    sweeps.KATIB_GROUP, sweeps.KATIB_VERSION, self.namespace, "experiments", job_id(user, name),
                    body={"propagationPolicy": "Foreground"})
            except ApiException as e:
                if e.status != 404:
                    raise RuntimeError(f"delete Experiment {job_id(user, name)}: {e.status} {e.reason}") from e

    async def delete(self, user: str, name: str) -> sweeps.SweepStatus:
        """Remove the sweep: its record, and through ownerReferences every trial left.

        Raises:
            SweepNotFound: No such sweep of this user.
        """
        record = self.record_of(user, name)
        status = self.status(record)
        await self._remove_trials(user, name, record)
        await self._delete_record(record["metadata"]["name"])
        return status

    async def _delete_record(self, record_name: str) -> None:
        assert self.platform.api is not None and self.records is not None
        try:
            await CoreV1Api(self.platform.api).delete_namespaced_config_map(
                record_name, self.namespace, body={"propagationPolicy": "Background"})
        except ApiException as e:
            if e.status != 404:
                raise RuntimeError(f"delete sweep record {record_name}: {e.status} {e.reason}") from e
        self.records.apply("DELETED", {"metadata": {"name": record_name}})
        self._env.pop(record_name, None)

    async def _write_state(self, record: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        assert self.platform.api is not None and self.records is not None
        text = json.dumps(state, sort_keys=True)
        name = record["metadata"]["name"]
        try:
            await CoreV1Api(self.platform.api).patch_namespaced_config_map(name, self.namespace,
                                                                          {"data": {STATE_KEY: text}})
        except ApiException as e:
            if e.status == 404:
                return  # deleted meanwhile
            raise RuntimeError(f"patch sweep record {name}: {e.status} {e.reason}") from e
        current = self.records.get(name) or record
        self.records.apply("MODIFIED", {**current, "data": {**(current.get("data") or {}), STATE_KEY: text}})

    async def _template_env(self, record: Mapping[str, Any], names: Iterable[str]) -> dict[str, str]:
        """The template's env values, from the record's Secret (read once per hub process)."""
        name = record["metadata"]["name"]
        names = list(names)
        if not names:
            return {}
        if name not in self._env:
            assert self.platform.api is not None
            try:
                secret = await CoreV1Api(self.platform.api).read_namespaced_secret(f"{name}-env", self.namespace)
            except ApiException as e:
                # Just created: the record is seen before create() has made its Secret (retried).
                raise RuntimeError(f"sweep {name}: its env Secret cannot be read yet ({e.status})") from e
            self._env[name] = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        return {n: self._env[name].get(n, "") for n in names}

    # -- the driver ----------------------------------------------------------------------------

    async def reconcile(self, name: str) -> None:
        """Converge one sweep: record ended trials, stop condemned ones, launch the next.

        Raises:
            RuntimeError, ApiException: Transient; retried with backoff.
        """
        assert self.records is not None and self.jobs.cache is not None
        record = self.records.get(name)
        if record is None or not is_sweep_record(record):
            self._env.pop(name, None)
            return
        user = owner_of(record["metadata"].get("annotations")) or ""
        sweep = self.sweep_of(record)
        state = _state(record)
        if state.get("engine") == "katib":
            return  # Katib's controllers drive it; status is read from its objects
        if state.get("phase") == "Cancelled":
            await self._remove_trials(user, sweep.name, record)  # e.g. cancelled by a hub that died meanwhile
            return
        if state.get("phase") in ("Succeeded", "Failed"):
            return
        before = json.dumps(state, sort_keys=True)
        groups = tuple(g for g in (record["metadata"].get("annotations") or {}).get(ANNOTATION_GROUPS, "").split(",") if g)
        plan = sweep.plan()
        metric, goal, strategy = sweep.objective["metric"], sweep.objective["goal"], sweep.objective["strategy"]
        active: list[tuple[int, str]] = []
        waiting: list[int] = []
        for i in range(len(plan)):
            entry = state["trials"].setdefault(str(i), {"phase": "Waiting"})
            if entry.get("phase") in FINAL_TRIAL:
                continue
            trial = sweep.trial_name(i)
            jid = job_id(user, trial)
            parent = self.jobs.cache.parents.get(jid)
            if parent is None:
                if entry.get("phase") not in (None, "Waiting"):
                    entry.update(phase="Cancelled", message="its job was deleted")
                else:
                    waiting.append(i)
                continue
            if (parent["metadata"].get("labels") or {}).get(LABEL_SWEEP) != sweep.name:
                entry.update(phase="Failed", message=f"a job named {trial} that is not this sweep's exists")
                continue
            job = self.jobs.status(parent)
            if not job.done:
                entry["phase"] = job.phase
                active.append((i, jid))
                continue
            snapshot = await self.jobs.metrics.snapshot(jid, user) or {}
            series = snapshot.get("series") or []
            points = sweeps.curve(series, metric)
            entry.update(phase="Stopped" if entry.get("early_stopped") else job.phase,
                         objective=sweeps.objective_value(points, strategy), curve=sweeps.thin(points),
                         message=job.message)
            if not points and not state.get("warnings"):
                logged = sorted({s.get("name") for s in series}) or ["nothing"]
                state["warnings"] = [f"objective metric '{metric}' was not logged by trial {trial} (it logged: "
                                     f"{', '.join(map(str, logged))}); call kubelab.jobs.metrics.log(step, "
                                     f"{metric}=...) in the script, or fix the objective"]
        if sweep.early_stopping is not None and active:
            await self._early_stop(user, sweep, state, active)
            self.queue.add_after(name, EARLY_STOP_SECONDS)
        running = len([1 for i, _ in active if state["trials"][str(i)].get("phase") not in FINAL_TRIAL])
        if state.get("message", "").startswith("waiting for quota"):
            state["message"] = ""
        for i in waiting:
            if running >= sweep.parallel:
                break
            launched = await self._launch(record, user, groups, sweep, i, plan[i], state)
            if launched is None:
                self.queue.add_after(name, QUOTA_RETRY_SECONDS)
                break
            running += launched
        entries = [state["trials"][str(i)] for i in range(len(plan))]
        if all(e.get("phase") in FINAL_TRIAL for e in entries):
            scored = [e for e in entries if e.get("objective") is not None]
            state["phase"] = "Succeeded" if scored else "Failed"
            state["finished"] = now()
            state["message"] = "" if scored else f"no trial logged the objective metric '{metric}'"
            best = sweeps.best_index([sweeps.TrialStatus(int(k), "", {}, objective=e.get("objective"))
                                      for k, e in state["trials"].items()], goal)
            state["best"] = best
        elif any(e.get("phase") != "Waiting" for e in entries):
            state["phase"] = "Running"
        if json.dumps(state, sort_keys=True) != before:
            await self._write_state(record, state)

    async def _launch(self, record: Mapping[str, Any], user: str, groups: tuple[str, ...], sweep: sweeps.SweepSpec,
                      index: int, params: Mapping[str, Any], state: dict[str, Any]) -> int | None:
        """Submit trial ``index``; 1 when it started, 0 when it cannot ever run (it failed), None
        when the quota has no room now (it waits: the caller looks again later)."""
        entry = state["trials"][str(index)]
        spec = sweep.trial_spec(index, params)
        body = spec.to_dict()
        own_env = [n for n in (sweep.job.get("env") or {}) if n not in params]
        body["env"] = {**body["env"], **await self._template_env(record, own_env)}
        try:
            await self.jobs.submit(user, groups, body, metrics_api_url=record["data"].get(HUB_URL_KEY) or None,
                                   owner=owner_reference(record), owner_labels={LABEL_SWEEP: sweep.name})
        except QuotaExceeded as e:
            if not e.permanent:
                entry.update(phase="Waiting", message=f"waiting for quota: {e.message}")
                state["message"] = f"waiting for quota: {e.message}"
                return None
            entry.update(phase="Failed", message=e.message)
            return 0
        except JobLimitExceeded as e:
            entry.update(phase="Waiting", message=f"waiting for quota: {e}")
            state["message"] = f"waiting for quota: {e}"
            return None
        except (JobSpecError, PermissionError) as e:
            entry.update(phase="Failed", message=str(e))
            return 0
        except JobExists as e:
            entry.update(phase="Failed", message=str(e))
            return 0
        entry.update(phase="Pending", message="")
        log.info("sweep %s: trial %d started (%s)", sweep.name, index, spec.args[-len(params):] if params else "")
        return 1

    async def _early_stop(self, user: str, sweep: sweeps.SweepSpec, state: dict[str, Any],
                          active: list[tuple[int, str]]) -> None:
        """Stop running trials that the median rule condemns (Katib's medianstop)."""
        assert sweep.early_stopping is not None
        metric, goal = sweep.objective["metric"], sweep.objective["goal"]
        completed = [[tuple(p) for p in e.get("curve") or []] for e in state["trials"].values()
                     if e.get("phase") == "Succeeded" and e.get("curve")]
        for i, jid in active:
            job = self.jobs.metrics.store.job(jid)
            points = sweeps.curve(job.to_json().get("series") or [], metric) if job else []
            if sweeps.median_stop(points, completed, goal, min_trials=sweep.early_stopping["min_trials"],
                                  start_step=sweep.early_stopping["start_step"]):
                entry = state["trials"][str(i)]
                entry.update(early_stopped=True, message=f"stopped early at step {points[-1][0]}: worse than the "
                             "median of the completed trials")
                log.info("sweep %s: trial %d stopped early (median rule)", sweep.name, i)
                try:
                    await self.jobs.cancel(user, sweep.trial_name(i))
                except JobNotFound:
                    pass


async def katib_served(api_client: Any) -> bool:
    """Whether the cluster serves Katib's Experiments (``kubeflow.org/v1beta1``, resource ``experiments``).

    Raises:
        ApiException: The API server failed (not 404); the platform retries the start.
    """
    return await serves(api_client, sweeps.KATIB_GROUP, sweeps.KATIB_VERSION, "experiments")
