"""``LabSpawner``: KubeSpawner driven by the platform catalogue.

What it adds to KubeSpawner, and where the logic lives:

* per-user profiles and ``user_options`` validation, identical for form and REST (:mod:`.options`);
* settings applied on a clean base at every spawn, so nothing leaks between spawns (:mod:`.objects`);
* a home PVC per user that is never deleted, with a wait for the previous pod on RWO homes;
* live GPU availability in the form (:mod:`.availability`, :mod:`.form`) from one watch-backed cache
  (:mod:`.cluster`), which also replaces KubeSpawner's per-namespace pod reflector;
* an exact GPU/server quota (:mod:`.quota`);
* fail fast: Unschedulable for lack of GPUs, or a ResourceQuota refusal, ends the spawn in seconds
  with a message naming the GPU class; the pod is deleted and the PVC kept (:mod:`.messages`).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Bool, Instance, Integer, default

from kubelab.core.availability import ClassAvailability, gpu_availability
from kubelab.core.catalogue import Catalogue
from kubelab.core.cluster import ClusterCache, ManagedPodsView
from kubelab.core.home import HomeClaimError, find_home_claim
from kubelab.core.metrics import count_early_end, count_quota_refusal
from kubelab.core.naming import (
    HOSTNAME_LABEL,
    LABEL_SERVER,
    LABEL_USER,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    user_label,
)
from kubelab.core.platform import Platform, PlatformUnavailable
from kubelab.core.quota import QuotaExceeded, QuotaLedger
from kubelab.core.records import PodInfo

from .form import catalogue_entry, listed_entry, profile_views, render_form, render_profile_template, with_default
from .messages import event_message, is_hopeless, quota_refusal_message, unschedulable_message
from .objects import MANAGED_TRAITS, identity_settings, server_label, spawn_settings
from .offers import listed_for, load_profile_list, validate_offer
from .options import OptionsError, SpawnChoice, offered_profiles, options_from_form
from .profile_list import (
    ListSelection,
    ProfileListError,
    apply_overrides,
    override_names,
    profile_overrides,
    static_gpu_requests,
    with_gpus,
)


@dataclass(frozen=True)
class SpawnPlan:
    """One spawn, decided once: the validated choice and every setting it sets.

    Attributes:
        choice: The validated choice (catalogue :class:`~kubelab.spawner.options.Selection` or
            ``profile_list`` :class:`~kubelab.spawner.profile_list.ListSelection`).
        settings: Setting name → value, set whole on the spawner.
        home_exists: Whether the home claim was found when planning (None: not looked up, as
            for a ``profile_list`` choice); KubeSpawner then skips re-creating it.
    """

    choice: SpawnChoice
    settings: Mapping[str, Any]
    home_exists: bool | None = None


class _CacheReflector:
    """Stands in for KubeSpawner's pod reflector: its ``pods`` read the shared cluster cache."""

    def __init__(self, cache: ClusterCache) -> None:
        self.pods: ManagedPodsView = cache.managed_pods()
        self.first_load_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.first_load_future.set_result(None)


def home_blockers(pods: list[PodInfo], claim: str, namespace: str) -> tuple[list[PodInfo], list[PodInfo]]:
    """Pods holding the home ``claim``: (terminating ones, live ones).

    With a ReadWriteOnce home a new pod must wait for terminating holders to be gone, and must
    share the node of live holders (RWO is per node), else Multi-Attach fails it.
    """
    holders = [p for p in pods if p.namespace == namespace and claim in p.claims and p.active]
    return [p for p in holders if p.deleting], [p for p in holders if not p.deleting]


class LabSpawner(KubeSpawner):
    """KubeSpawner with catalogue profiles, group rules, live GPU availability, quota and fail-fast.

    Configure it with :func:`kubelab.spawner.configure_hub`, which sets the catalogue and the
    availability handlers; every KubeSpawner setting still works as the base that profiles extend.
    """

    platform = Instance(
        Platform,
        allow_none=True,
        config=True,
        help="""The hub's platform (:class:`kubelab.core.platform.Platform`): the catalogue, the
        watch-backed cluster cache and the quota ledger that the jobs service shares.

        Set by the composition root at hub start-up (:func:`kubelab.spawner.configure_spawner`,
        called by ``kubelab.hub_config.wiring``); there is no default, because a second, private
        ledger would let servers and jobs together exceed a quota.
        Example: ``c.LabSpawner.platform = Platform(load_catalogue("/etc/kubelab/catalogue.yaml"))``.

        .. versionadded:: 0.2
        """,
    )

    fail_fast_unschedulable = Bool(
        True,
        config=True,
        help="""End a spawn at once when the scheduler reports the pod Unschedulable.

        Default: True. Turn it off on clusters with a node autoscaler, where Unschedulable is the
        signal that makes a node appear and the spawn should wait for it.
        Example: ``c.LabSpawner.fail_fast_unschedulable = False``.

        .. versionadded:: 0.1
        """,
    )

    home_release_timeout = Integer(
        120,
        config=True,
        help="""Seconds to wait for the user's previous pod to release a ReadWriteOnce home.

        Default: 120. The spawn fails with a message after that.
        Example: ``c.LabSpawner.home_release_timeout = 300``.

        .. versionadded:: 0.1
        """,
    )

    allow_root = Bool(
        None,
        allow_none=True,
        config=True,
        help="""Pass ``--allow-root`` to ``jupyterhub-singleuser``.

        Default: None (auto): on when ``uid`` is 0, or when ``uid`` is unset and the hub itself runs
        as root, because the devcluster's process node runs pods as the hub's user. The flag only
        stops the server from refusing to run as root; it grants nothing.
        Example: ``c.LabSpawner.allow_root = True``.

        .. versionadded:: 0.1
        """,
    )

    @default("pod_name_template")
    def _pod_name_template_default(self) -> str:
        # KubeSpawner's {user_server} keeps 32 bits of a hash for names it must shorten or escape,
        # and a start that finds a pod of its name deletes it: a user who picks a colliding name
        # could stop another user's server. The user's database id makes the name unique per user.
        return "jupyter-{user_server}-{userid}"

    @default("common_labels")
    def _common_labels_default(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "jupyterhub", MANAGED_BY: MANAGED_BY_VALUE, "app": "jupyterhub", "heritage": "jupyterhub"}

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return ["jupyterhub-singleuser"]

    @default("delete_pvc")
    def _delete_pvc_default(self) -> bool:
        return False  # homes outlive servers and users' deletions alike

    @default("remember_pvc_name")
    def _remember_pvc_name_default(self) -> bool:
        return False  # the claim name is derived from the user name every time

    @default("storage_pvc_ensure")
    def _storage_pvc_ensure_default(self) -> bool:
        return True

    @default("automount_service_account_token")
    def _automount_default(self) -> bool:
        return False  # notebook pods hold no Kubernetes credentials

    @default("options_form")
    def _lab_options_form_default(self) -> Any:
        return LabSpawner.render_options_form

    @default("options_from_form")
    def _lab_options_from_form_default(self) -> Any:
        return lambda formdata: options_from_form(formdata)

    @default("apply_user_options")
    def _lab_apply_user_options_default(self) -> Any:
        # JupyterHub runs this before start() and turns our HTTPError into the response status,
        # so a refused REST or form request never reaches Kubernetes
        async def apply(spawner: LabSpawner, user_options: dict[str, Any]) -> None:
            await spawner.load_user_options(fresh=True)

        return apply

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the configured values are the clean base every spawn starts from
        # (profile_list overrides add the settings they name at their first use, see _snapshot)
        self._base_settings: dict[str, Any] = {name: copy.deepcopy(getattr(self, name)) for name in MANAGED_TRAITS}
        self.selection: SpawnChoice | None = None
        # this spawn's plan: made once (apply_user_options, else the start) and carried through
        # KubeSpawner's own load_user_options call inside _start
        self._plan: SpawnPlan | None = None
        self._static_profiles: list[dict[str, Any]] | None = None
        self._progress_messages: list[str] = []

    # -- catalogue, groups, cache --------------------------------------------------------------

    def get_platform(self) -> Platform:
        """The platform the hub was configured with.

        Raises:
            RuntimeError: ``LabSpawner.platform`` is not set (the hub was configured by hand).
        """
        if self.platform is None:
            raise RuntimeError("LabSpawner.platform is not set; configure the hub with "
                               "kubelab.spawner.configure_spawner (kubelab.hub_config.wiring does)")
        return self.platform

    def get_catalogue(self) -> Catalogue:
        """The platform's catalogue."""
        return self.get_platform().catalogue

    @property
    def user_groups(self) -> list[str]:
        """The user's JupyterHub group names."""
        return sorted(g.name for g in getattr(self.user, "groups", None) or [])

    async def cluster(self) -> ClusterCache:
        """The platform's cluster cache, once loaded.

        Raises:
            tornado.web.HTTPError: 503 when the Kubernetes API has not answered (nothing is created).
        """
        try:
            return await self.get_platform().cluster_ready()
        except PlatformUnavailable as e:
            raise web.HTTPError(503, f"kubelab cannot reach the cluster: {e}") from e

    async def ledger(self) -> QuotaLedger:
        """The platform's quota ledger."""
        await self.cluster()
        ledger = self.get_platform().ledger
        assert ledger is not None
        return ledger

    @property
    def pod_reflector(self) -> Any:  # type: ignore[override]
        return getattr(self, "_cache_reflector", None)

    async def _start_watching_pods(self, replace: bool = False) -> Any:
        # one cluster-wide watch per process instead of one per namespace; it holds what
        # KubeSpawner reads (kubelab-managed pods' JSON) plus everything availability needs
        cache = await self.cluster()
        if getattr(self, "_cache_reflector", None) is None:
            self._cache_reflector = _CacheReflector(cache)
        return self._cache_reflector

    # -- options ------------------------------------------------------------------------------

    def _settable(self, name: str) -> bool:
        """Whether ``name`` is a configurable setting (what a ``kubespawner_override`` may name)."""
        return self.has_trait(name) and bool(self.trait_metadata(name, "config"))

    async def listed_profiles(self) -> list[dict[str, Any]]:
        """``profile_list``, evaluated (a callable gets this spawner, as in KubeSpawner), initialised, checked.

        Raises:
            tornado.web.HTTPError: 500 naming what kubelab cannot honour (a configuration error;
                a static list was already checked at hub start-up).
        """
        raw = self.profile_list
        if not callable(raw) and self._static_profiles is not None:
            return self._static_profiles
        if callable(raw):
            raw = raw(self)
            if inspect.isawaitable(raw):
                raw = await raw
        try:
            profiles = load_profile_list(raw, self.get_catalogue(), self._settable)
        except ProfileListError as e:
            raise web.HTTPError(500, f"the hub's KubeSpawner.profile_list is invalid: {e}") from e
        if not callable(self.profile_list):
            self._static_profiles = profiles
        return profiles

    def _snapshot(self, names: set[str]) -> None:
        """Record the configured value of settings before any spawn changes them."""
        for name in names - self._base_settings.keys():
            self._base_settings[name] = copy.deepcopy(getattr(self, name))

    def _base_value(self, name: str) -> Any:
        return self._base_settings[name] if name in self._base_settings else getattr(self, name)

    async def plan_spawn(self) -> SpawnPlan:
        """Validate ``user_options`` and compute every setting of the spawn; nothing is applied.

        Every setting any spawn has changed starts from its configured value, so nothing leaks
        from one spawn of this server into the next.

        Raises:
            tornado.web.HTTPError: 400/403 with the reason (see :mod:`kubelab.spawner.offers`).
        """
        catalogue = self.get_catalogue()
        listed = await self.listed_profiles()
        try:
            choice = validate_offer(self.user_options, catalogue, listed, self.user_groups)
        except OptionsError as e:
            raise web.HTTPError(e.status, e.message, reason=e.message) from e
        if isinstance(choice, ListSelection):
            self._snapshot(override_names(choice.profile))
            settings = {name: copy.deepcopy(value) for name, value in self._base_settings.items()}
            settings.update(await apply_overrides(self._base_settings, profile_overrides(choice.profile, choice.chosen), self))
            choice = with_gpus(choice, settings, catalogue.gpu_classes)
            home_exists: bool | None = None
        else:
            try:  # the home kept across the naming upgrade, never another user's (kubelab.core.home)
                home = await find_home_claim(self.api, self.namespace, self.user.name)
            except HomeClaimError as e:
                raise web.HTTPError(e.status, e.message, reason=e.message) from e
            settings = {name: copy.deepcopy(value) for name, value in self._base_settings.items()}
            settings.update(spawn_settings(
                choice, catalogue, username=self.user.name, server_name=self.name or "",
                groups=self.user_groups, base=self._base_settings, home_claim=home.claim,
            ))
            home_exists = home.exists
        settings.update(identity_settings(
            settings, username=self.user.name, server_name=self.name or "", groups=self.user_groups,
            profile_slug=choice.slug, pod_name=self.pod_name, pvc_name=settings.get("pvc_name") or self.pvc_name,
            component=self.component_label, gpus=choice.gpus,
            gpu_class=choice.gpu_class.key if choice.gpu_class else None,
        ))
        return SpawnPlan(choice, settings, home_exists)

    async def load_user_options(self, fresh: bool = False) -> SpawnChoice:  # type: ignore[override]
        """This spawn's validated choice, with its settings applied; validated once per spawn.

        ``apply_user_options`` (JupyterHub, before ``start``) plans with ``fresh=True``; the later
        calls (the start, KubeSpawner's ``_start``) reuse that plan, so the home pin that
        ``_wait_for_home`` adds in between stays.

        Args:
            fresh: Plan anew even when a plan exists (a new spawn begins).

        Raises:
            tornado.web.HTTPError: 400/403 with the reason (see :mod:`kubelab.spawner.offers`).
        """
        if fresh or self._plan is None:
            plan = await self.plan_spawn()
            for name, value in plan.settings.items():
                setattr(self, name, value)
            if plan.home_exists is not None:
                # KubeSpawner POSTs the claim on every start unless it knows the claim exists
                # (remember_pvc_name is off here): the read just made says so, saving a 409.
                # Set both ways, each spawn: a claim an admin deleted since is created again.
                self._pvc_exists = plan.home_exists
            self._plan = plan
            self.selection = plan.choice
        return self._plan.choice

    def get_args(self) -> list[str]:
        """Add ``--allow-root`` where the server runs as root (see ``allow_root``)."""
        args = list(super().get_args())  # a copy: self.args is the configured list
        allow = self.allow_root
        if allow is None:
            uid = self.uid if not callable(self.uid) else None
            allow = uid == 0 or (uid is None and hasattr(os, "geteuid") and os.geteuid() == 0)
        if allow and "--allow-root" not in args:
            args.append("--allow-root")
        return args

    # -- form ---------------------------------------------------------------------------------

    async def availability(self) -> dict[str, ClassAvailability]:
        """GPU availability per class, from the cache."""
        cache = await self.cluster()
        return gpu_availability(cache.nodes.values(), cache.pods.values(), self.get_catalogue().gpu_classes)

    def last_options(self) -> dict[str, Any]:
        """This server's last options, else the most recent ones of the user's other servers."""
        if self.user_options:
            return dict(self.user_options)
        best: tuple[Any, dict[str, Any]] | None = None
        for spawner in getattr(self.user, "spawners", {}).values():
            orm = getattr(spawner, "orm_spawner", None)
            opts = getattr(orm, "user_options", None)
            started = getattr(orm, "started", None)
            if opts and started and (best is None or started > best[0]):
                best = (started, dict(opts))
        return best[1] if best else {}

    async def render_options_form(self) -> str:
        """Render the picker for this user (JupyterHub calls it with the spawner).

        kubelab's own picker, unless a ``profile_list`` or a KubeSpawner form template
        (``profile_form_template``, ``additional_profile_form_template_paths``, which
        fancy-profiles' ``setup_ui`` sets) is configured: then that template, given every
        profile of the user in KubeSpawner's shape with availability in the descriptions.
        """
        catalogue = self.get_catalogue()
        groups = self.user_groups
        listed = listed_for(await self.listed_profiles(), groups)
        requests = {}
        classes = dict(catalogue.gpu_classes)
        for profile in listed:
            names = override_names(profile) | {"extra_resource_limits", "extra_resource_guarantees", "node_selector"}
            requests[profile["slug"]] = static_gpu_requests(profile, {n: self._base_value(n) for n in names}, catalogue.gpu_classes)
            classes.update({cls.key: cls for cls, _ in requests[profile["slug"]].values() if cls is not None})
        try:
            ledger = await self.ledger()
            remaining = ledger.snapshot(self.user.name, groups)["gpus_remaining"]
            cache = await self.cluster()
            availability = gpu_availability(cache.nodes.values(), cache.pods.values(), classes)
        except (TimeoutError, web.HTTPError) as e:
            # the API server is unreachable: still show the choices; the spawn itself will say why
            self.log.warning("picker without live availability: %s", e)
            remaining, availability = None, {}
        views = profile_views(
            offered_profiles(catalogue, groups), catalogue, availability,
            gpus_remaining=remaining,  # type: ignore[arg-type]
        )
        last = self.last_options()
        if not (listed or self.profile_form_template or self.additional_profile_form_template_paths):
            url = f"{self.hub.base_url}api/kubelab/availability" if self.hub else "/hub/api/kubelab/availability"
            return render_form(views, last, url)
        all_listed = await self.listed_profiles()
        try:
            default: str | None = validate_offer({}, catalogue, all_listed, groups).slug
        except OptionsError:
            default = None
        try:  # pre-select the last choice only while it is still valid (as KubeSpawner does)
            last = validate_offer(last, catalogue, all_listed, groups).as_options() if last else {}
        except OptionsError:
            last = {}
        entries = [listed_entry(p, requests[p["slug"]], availability, remaining) for p in listed]  # type: ignore[arg-type]
        entries += [catalogue_entry(v) for v in views]
        return render_profile_template(
            with_default(entries, default), last,
            template_paths=self.additional_profile_form_template_paths, template=self.profile_form_template,
        )

    # -- start --------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._progress_messages.append(message)

    async def _start(self) -> str:
        self._progress_messages = []
        try:
            return await self._start_planned(await self.load_user_options())
        finally:
            self._plan = None  # the next spawn plans anew, even one started without apply_user_options

    async def _start_planned(self, selection: SpawnChoice) -> str:
        cache = await self.cluster()
        ledger = await self.ledger()
        what = f"server '{self.name}'" if self.name else "your default server"
        self._say(f"Checking quota for {selection.describe()}")
        # The reservation lasts exactly as long as this start: by its end the pod is in the cache
        # (it counts from then on), or the start failed and holds nothing.
        try:
            reservation = ledger.reserve(
                self.user.name, self.user_groups, gpus=selection.gpus, servers=1, what=what,
                match={LABEL_USER: user_label(self.user.name), LABEL_SERVER: server_label(self.name or "")},
            )
            async with reservation:
                return await self._start_reserved(selection, cache)
        except QuotaExceeded as e:
            count_quota_refusal("server", e)
            count_early_end("quota")
            raise web.HTTPError(e.status, e.message, reason=e.message) from e

    async def _wait_for_home(self, selection: SpawnChoice, cache: ClusterCache) -> None:
        """RWO homes: wait for terminating holders, and follow live holders to their node.

        The home is the spawn's ``pvc_name`` (the catalogue's home, or a ``profile_list``
        site's own claim, e.g. z2jh's ``claim-<user>``), ReadWriteOnce by its ``storage_access_modes``.
        """
        if "ReadWriteOnce" not in (self.storage_access_modes or []):
            return
        claim = self.pvc_name  # the home this spawn's plan chose
        label = user_label(self.user.name)

        def terminating() -> list[PodInfo]:
            return home_blockers(cache.pods_of_user(label), claim, self.namespace)[0]

        if terminating():
            names = ", ".join(p.describe() for p in terminating())
            self._say(f"Waiting for {names} to stop and release your home volume")
            try:
                await cache.wait_for(lambda: not terminating(), timeout=self.home_release_timeout)
            except TimeoutError as e:
                count_early_end("home_busy")
                raise web.HTTPError(
                    409, f"Your home volume is still held by {names} after {self.home_release_timeout} s; try again shortly"
                ) from e
        live = [p for p in home_blockers(cache.pods_of_user(label), claim, self.namespace)[1] if p.name != self.pod_name]
        nodes = {p.node for p in live if p.node}
        if not nodes:
            return
        node = sorted(nodes)[0]
        info = cache.nodes.get(node)
        labels = dict(info.labels) if info else {}
        cls = selection.gpu_class
        if cls is not None and any(labels.get(k) != v for k, v in cls.node_selector.items()):
            holders = ", ".join(p.describe() for p in live)
            count_early_end("home_busy")
            raise web.HTTPError(
                409,
                f"Your home volume is ReadWriteOnce and in use by {holders} on node {node}, which has no "
                f"{cls.display_name}; stop it first",
            )
        # set on the spawner, after the plan: KubeSpawner's own load_user_options keeps the plan
        self.node_selector = {**self.node_selector, HOSTNAME_LABEL: labels.get(HOSTNAME_LABEL, node)}
        self._say(f"Your home volume is in use on node {node}; placing this server there too")

    async def _watch_unschedulable(self, cache: ClusterCache) -> str:
        key = f"{self.namespace}/{self.pod_name}"

        def doomed(pod: PodInfo | None) -> str | None:
            if pod is None or pod.deleting or not pod.unschedulable:
                return None
            # an unbound fresh PVC also reads Unschedulable for a moment; only a full cluster ends the spawn
            return pod.unschedulable if is_hopeless(pod.unschedulable) else None

        # woken by this pod's events only (a wait on every cluster change cost 20 % of the hub's CPU
        # with 2,000 servers: docs/performance.md)
        return await cache.wait_for_pod(key, doomed)

    async def _start_reserved(self, selection: SpawnChoice, cache: ClusterCache) -> str:
        await self._wait_for_home(selection, cache)
        gpu = f"{selection.gpus} × {selection.gpu_class.display_name}" if selection.gpu_class else "CPU only"
        self._say(f"Creating your server ({gpu}, home volume {self.pvc_name})")
        start = asyncio.ensure_future(super()._start())
        watchers = {start}
        doom: asyncio.Future[str] | None = None
        if self.fail_fast_unschedulable:
            doom = asyncio.ensure_future(self._watch_unschedulable(cache))
            watchers.add(doom)
        try:
            done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            start.cancel()
            if doom:
                doom.cancel()
            raise
        if doom is not None and doom in done and start not in done:
            start.cancel()
            av = None
            if selection.gpu_class is not None:
                av = gpu_availability(cache.nodes.values(), cache.pods.values(), {selection.gpu_class.key: selection.gpu_class})[
                    selection.gpu_class.key
                ]
            message = unschedulable_message(doom.result(), selection, av)
            count_early_end("unschedulable")
            self._say(message)
            await self._delete_failed_pod()
            raise web.HTTPError(409, message, reason=message)
        if doom is not None:
            doom.cancel()
        try:
            return start.result()
        except ApiException as e:
            if e.status == 403:
                body = e.body.decode() if isinstance(e.body, bytes) else str(e.body or e.reason)
                message = quota_refusal_message(body, selection)
                count_early_end("resourcequota")
                self._say(message)
                raise web.HTTPError(429, message, reason=message) from e
            raise

    async def _delete_failed_pod(self) -> None:
        """Delete the pod of a failed spawn now (the PVC stays)."""
        try:
            await self.stop(now=True)
        except (ApiException, TimeoutError) as e:
            self.log.warning("could not delete pod %s/%s after a failed spawn: %s", self.namespace, self.pod_name, e)

    # -- progress -----------------------------------------------------------------------------

    async def progress(self) -> AsyncIterator[dict[str, Any]]:  # type: ignore[override]
        """Spawn progress in plain words: our own steps plus the pod's events, translated."""
        if self.events_enabled:
            await self._start_watching_events()
        sent = events_seen = 0
        progress = 0.0
        while True:
            future = self._start_future
            finished = future is not None and future.done()
            while sent < len(self._progress_messages):
                progress += (90 - progress) / 4
                yield {"progress": int(progress), "message": self._progress_messages[sent]}
                sent += 1
            events = self.events if self.events_enabled and self.event_reflector else []
            for event in events[events_seen:]:
                text = event_message(event)
                if text:
                    progress += (90 - progress) / 4
                    yield {"progress": int(progress), "message": text, "raw_event": event}
            events_seen = len(events)
            if finished:
                break
            await asyncio.sleep(0.5)
