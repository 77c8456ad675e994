"""Availability endpoints, served by the hub itself (``c.JupyterHub.extra_handlers``).

* ``GET /hub/api/kubelab/availability`` (signed-in users; cookie or token): the caller's profiles
  with per-choice availability and reasons, per-class numbers, and the caller's quota. The picker
  polls it to refresh without a reload.
* ``GET /hub/api/kubelab/availability/summary`` (public): per GPU class only
  ``{"display_name", "free", "total"}``, for the login and home pages. It reveals no user data.

Both read the process's watch-backed cluster cache; neither calls the Kubernetes API.
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from kubelab.core.availability import ClassAvailability, gpu_availability
from kubelab.core.cluster import ClusterCache
from kubelab.core.platform import Platform, PlatformUnavailable

from .form import profile_views
from .options import offered_profiles

AVAILABILITY_PATH = r"/api/kubelab/availability"
SUMMARY_PATH = r"/api/kubelab/availability/summary"


class _Base(APIHandler):
    def initialize(self, platform: Platform) -> None:
        self.platform = platform
        self.catalogue = platform.catalogue

    async def _availability(self) -> tuple[ClusterCache, dict[str, ClassAvailability]]:
        try:
            cache = await self.platform.cluster_ready()
        except PlatformUnavailable as e:
            raise web.HTTPError(503, f"kubelab cannot reach the cluster: {e}") from e
        return cache, gpu_availability(cache.nodes.values(), cache.pods.values(), self.catalogue.gpu_classes)

    def check_xsrf_cookie(self) -> None:
        # read-only GET endpoints; nothing to protect
        return None


class AvailabilityHandler(_Base):
    """Per-user detail: ``{"classes": {...}, "profiles": [...], "quota": {...}}``."""

    async def get(self) -> None:
        user = self.current_user
        if user is None or not hasattr(user, "groups") or not hasattr(user, "spawners"):
            raise web.HTTPError(403, "sign in to see your profiles")
        groups = sorted(g.name for g in user.groups)
        cache, availability = await self._availability()
        assert self.platform.ledger is not None
        quota = self.platform.ledger.snapshot(user.name, groups)
        views = profile_views(
            offered_profiles(self.catalogue, groups), self.catalogue, availability,
            gpus_remaining=quota["gpus_remaining"],  # type: ignore[arg-type]
        )
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({
            "classes": {k: v.as_dict() for k, v in availability.items()},
            "profiles": [v.as_dict() for v in views],
            "quota": quota,
        }))


class SummaryHandler(_Base):
    """Public aggregate: ``{"classes": [{"class", "display_name", "free", "total"}]}``."""

    async def get_current_user(self) -> None:  # type: ignore[override]
        # Public: never resolve (or require) a login. JupyterHub's prepare() awaits this and
        # current_user reads _jupyterhub_user afterwards.
        self._jupyterhub_user = None
        return None

    async def get(self) -> None:
        _, availability = await self._availability()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({
            "classes": [
                {"class": a.key, "display_name": a.display_name, "free": a.free, "total": a.allocatable}
                for a in availability.values()
            ]
        }))


def availability_handlers(platform: Platform) -> list[tuple[str, type, dict[str, Any]]]:
    """``(pattern, handler, kwargs)`` tuples for ``c.JupyterHub.extra_handlers`` (paths below ``/hub``)."""
    return [
        (SUMMARY_PATH, SummaryHandler, {"platform": platform}),
        (AVAILABILITY_PATH, AvailabilityHandler, {"platform": platform}),
    ]
