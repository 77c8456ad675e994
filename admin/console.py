"""The admin side of one hub: its settings, and the overview built from the platform's state.

:class:`AdminConsole` reads what the platform already holds (the cluster cache, the quota
ledger, the jobs service, the GPU accounting) and hands it to the pure builders of
:mod:`kubelab.admin.overview`; the page, the usage API and the metrics all go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from traitlets import Bool, Integer
from traitlets.config import Config, LoggingConfigurable

from kubelab.core.naming import ANNOTATION_USER
from kubelab.core.platform import Platform
from kubelab.jobs.service import JobsService
from kubelab.jobs.spec import PHASES

from .accountant import GpuAccountant, utcnow
from .overview import Overview, ServerActivity, build_overview, metric_samples, quota_row


class KubelabAdmin(LoggingConfigurable):
    """Settings of kubelab's admin page, GPU accounting and metrics (``c.KubelabAdmin.*``)."""

    per_user_metrics = Bool(
        False,
        config=True,
        help="""Export ``kubelab_user_gpus{user=...}``: one time series per user on ``/hub/metrics``.

        Default: False, because a label per user multiplies the series Prometheus stores by the
        number of users; the per-class, per-kind and per-group series are always exported.
        Example: ``c.KubelabAdmin.per_user_metrics = True``.

        .. versionadded:: 0.3
        """,
    )

    idle_minutes = Integer(
        30,
        min=0,
        max=7 * 24 * 60,
        config=True,
        help="""Minutes without activity after which the admin page lists a GPU server as idle.

        Default: 30. The page's ``?idle_minutes=`` overrides it for one view (0 to 10080).
        Example: ``c.KubelabAdmin.idle_minutes = 60``.

        .. versionadded:: 0.3
        """,
    )

    heartbeat_seconds = Integer(
        5,
        min=1,
        max=300,
        config=True,
        help="""Seconds between writes of "still held" for every open GPU interval.

        Default: 5. An interval whose pod was deleted while the hub was down ends at its last
        heartbeat, so this is the most GPU-time such an end can miss.
        Example: ``c.KubelabAdmin.heartbeat_seconds = 15``.

        .. versionadded:: 0.3
        """,
    )


class AdminConsole:
    """The admin's view of one hub.

    Args:
        platform: The hub's platform.
        accountant: The GPU accounting component.
        jobs: The jobs service, if the hub runs one.
        timeout_for: The culler's idle timeout (seconds) for a server model.
        config: The hub's config; ``c.KubelabAdmin`` is read from it when first needed, so settings
            made after the wiring in ``jupyterhub_config.py`` count too.
    """

    def __init__(self, platform: Platform, accountant: GpuAccountant, jobs: JobsService | None,
                 timeout_for: Callable[[Mapping[str, Any]], int], config: Config | None = None) -> None:
        self.platform = platform
        self.catalogue = platform.catalogue
        self.accountant = accountant
        self.jobs = jobs
        self.timeout_for = timeout_for
        self._config = config
        self._settings: KubelabAdmin | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> AdminConsole:
        return self  # one per hub, shared by handlers (traitlets copies config values)

    @property
    def settings(self) -> KubelabAdmin:
        """``c.KubelabAdmin``, read once."""
        if self._settings is None:
            self._settings = KubelabAdmin(config=self._config) if self._config is not None else KubelabAdmin()
        return self._settings

    @property
    def ready(self) -> bool:
        """Whether the cluster cache is loaded (an overview can be built)."""
        return self.platform.cluster is not None and self.platform.cluster.started and self.platform.ledger is not None

    def job_statuses(self) -> list[Any]:
        """Every job's status (none without a started jobs service)."""
        if self.jobs is None or not self.jobs.ready:
            return []
        return self.jobs.list("", all_users=True)

    def overview(self, servers: Iterable[ServerActivity], users: Iterable[str], *, idle_minutes: int | None = None,
                 now: datetime | None = None) -> Overview:
        """The overview at ``now`` for the hub's active ``servers`` and its ``users``.

        Raises:
            RuntimeError: The cluster cache is not loaded yet.
        """
        if not self.ready:
            raise RuntimeError("the cluster cache is not loaded yet")
        cluster, ledger = self.platform.cluster, self.platform.ledger
        assert cluster is not None and ledger is not None
        now = now or utcnow()
        names = set(users)
        pods = list(cluster.pods.values())
        names |= {(p.raw or {}).get("metadata", {}).get("annotations", {}).get(ANNOTATION_USER) or p.user
                  for p in cluster.labelled_pods() if p.active and p.user}
        user_rows = []
        for name in sorted(n for n in names if n):
            limits = ledger.limits_for(name)
            user_rows.append(quota_row(name, ledger.user_usage(name), limits.max_gpus, limits.max_servers))
        group_names = set(self.catalogue.group_limits) | {g for p in cluster.labelled_pods() if p.active for g in p.groups}
        group_rows = []
        for group in sorted(group_names):
            limits = self.catalogue.group_limits.get(group)
            group_rows.append(quota_row(group, ledger.group_usage(group), limits.max_gpus if limits else None,
                                        limits.max_servers if limits else None))
        starts = {uid: iv.start for uid, iv in self.accountant.open.items()}
        return build_overview(
            catalogue=self.catalogue, nodes=cluster.nodes, pods=pods, starts=starts, servers=servers,
            jobs=self.job_statuses(), users=user_rows, groups=group_rows, now=now,
            idle_minutes=self.settings.idle_minutes if idle_minutes is None else idle_minutes,
            timeout_for=self.timeout_for, phases=PHASES,
        )

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """The gauges for ``/hub/metrics`` (none while the cluster cache loads)."""
        if not self.ready:
            return []
        return metric_samples(self.overview([], []), per_user=self.settings.per_user_metrics)
