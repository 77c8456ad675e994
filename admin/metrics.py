"""kubelab's gauges and the cull counter on the hub's ``/hub/metrics``.

JupyterHub serves ``prometheus_client``'s default ``REGISTRY``; :func:`install` registers one
:class:`AdminCollector` there, whose gauges are computed at scrape time from the admin console's
overview (the same object the admin page renders), so nothing is refreshed on a timer and a scrape
never disagrees with the page. The refusal and early-end counters are
:mod:`kubelab.core.metrics`'s (the spawner and the jobs handlers count them).

**Culls.** The idle culler is a separate process that stops servers through the hub's REST API.
The hub counts each stop that the culler's service asks for, in a wrapper of JupyterHub's
``log_function`` (which JupyterHub's own request metrics use, :func:`jupyterhub.metrics.prometheus_log_method`):
a successful ``DELETE`` of a server by the culler's service is one cull, labelled with the
server's profile (a closed set: the catalogue's slugs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from jupyterhub.log import log_request
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubelab.core.metrics import PREFIX

from .overview import GAUGES

CULLS = Counter("culls", "Idle servers stopped by the idle culler, per profile.", ["profile"], namespace=PREFIX)
#: The handler JupyterHub answers ``DELETE /hub/api/users/<user>/server[s/<name>]`` with.
SERVER_HANDLER = "jupyterhub.apihandlers.users.UserServerAPIHandler"
#: The profile label of a server started without one.
NO_PROFILE = "-"

Samples = Callable[[], list[tuple[str, dict[str, str], float]]]


class AdminCollector(Collector):
    """Yields the gauges of :data:`~kubelab.admin.overview.GAUGES` from a samples function."""

    def __init__(self) -> None:
        self.source: Samples | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        samples = self.source() if self.source is not None else []
        families: dict[str, GaugeMetricFamily] = {}
        for name, labels, value in samples:
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, GAUGES[name], labels=sorted(labels))
            family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()

    def describe(self) -> list[Any]:
        # no up-front description: the registry then calls collect() only when scraped
        return []


#: The one collector of this process (a second registration would be refused by the registry).
COLLECTOR = AdminCollector()
_registered = False


def install(samples: Samples) -> AdminCollector:
    """Serve ``samples`` on ``/hub/metrics`` (the last installed wins: one hub per process)."""
    global _registered  # noqa: PLW0603 - the registry itself is process-global
    COLLECTOR.source = samples
    if not _registered:
        REGISTRY.register(COLLECTOR)
        _registered = True
    return COLLECTOR


def is_cull(handler: Any, culler_service: str) -> bool:
    """Whether the request ``handler`` answered was the culler stopping a server, successfully."""
    if handler.request.method != "DELETE" or handler.get_status() not in (202, 204):
        return False
    if f"{type(handler).__module__}.{type(handler).__name__}" != SERVER_HANDLER:
        return False
    try:
        who = handler.current_user
    except RuntimeError:  # the request ended before JupyterHub resolved its user
        return False
    return getattr(who, "kind", None) == "service" and getattr(who, "name", None) == culler_service


def cull_logger(culler_service: str, profile_of: Callable[[Any], str]) -> Callable[[Any], None]:
    """JupyterHub's ``log_function``, plus counting culls (module docstring).

    Args:
        culler_service: The culler's service name.
        profile_of: The profile slug of the server a handler stopped.
    """

    def log_function(handler: Any) -> None:
        log_request(handler)
        if is_cull(handler, culler_service):
            CULLS.labels(profile=profile_of(handler) or NO_PROFILE).inc()

    return log_function
