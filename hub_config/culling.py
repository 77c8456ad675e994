"""Idle culling with per-profile timeouts, on the stock ``jupyterhub-idle-culler``.

One culler service runs with ``--timeout`` set to the *longest* timeout of the catalogue and
polls often enough for the *shortest*. Its ``cull_arbiter_hook`` (a documented hook of
jupyterhub-idle-culler 2.x) then applies each server's own timeout, found from the profile in
the server's ``user_options``. So a GPU server with ``idleTimeout: 1800`` goes after 30 minutes
while a CPU server with the default 3600 stays an hour, without one culler per timeout.

The culler only *stops* servers: it neither deletes users (``--cull-users=false``) nor removes
named servers (``--remove-named-servers=false``), so home PVCs are never deleted by culling.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from kubelab.core.catalogue import Catalogue

#: The service's name in JupyterHub (and in its role).
CULLER_SERVICE = "idle-culler"
#: The ``user_options`` key holding the profile slug (KubeSpawner's, kept by LabSpawner).
PROFILE_OPTION = "profile"
#: The culler's config file, which installs :func:`make_cull_arbiter` from the catalogue.
CULLER_CONFIG_FILE = Path(__file__).with_name("idle_culler_config.py")
#: Scopes the culler needs (from the jupyterhub-idle-culler README), nothing more.
CULLER_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")

CullArbiter = Callable[..., bool]


def server_profile(server: Mapping[str, Any]) -> str | None:
    """The profile slug a server was started with, from its model's ``user_options``."""
    options = server.get("user_options") or {}
    profile = options.get(PROFILE_OPTION) if isinstance(options, Mapping) else None
    return profile if isinstance(profile, str) and profile else None


def timeout_for_server(catalogue: Catalogue, server: Mapping[str, Any]) -> int:
    """Idle timeout in seconds for ``server``: its profile's, else the catalogue default.

    A server started without a profile gets the default profile's timeout, since that is the
    profile the spawner applied.
    """
    slug = server_profile(server)
    if slug is None:
        default = next((p for p in catalogue.profiles if p.default), catalogue.profiles[0])
        slug = default.slug
    return catalogue.idle_timeout_for(slug)


def make_cull_arbiter(catalogue: Catalogue) -> CullArbiter:
    """Build the culler's ``cull_arbiter_hook``: cull when idle longer than the profile's timeout.

    Args:
        catalogue: The platform catalogue.

    Returns:
        A callable ``(inactive, inactive_limit, server) -> bool`` as jupyterhub-idle-culler
        calls it; ``inactive_limit`` (the culler's global ``--timeout``) is ignored in favour
        of the per-profile timeout.
    """

    def cull_by_profile(*, inactive: timedelta, inactive_limit: int, server: Mapping[str, Any], **_: Any) -> bool:
        return inactive.total_seconds() >= timeout_for_server(catalogue, server)

    return cull_by_profile


def timeouts(catalogue: Catalogue) -> list[int]:
    """Every distinct idle timeout in use: each profile's, and the default."""
    return sorted({catalogue.idle_timeout_for(p.slug) for p in catalogue.profiles} | {catalogue.default_idle_timeout})


def cull_every(catalogue: Catalogue) -> int:
    """How often the culler checks, in seconds: a quarter of the shortest timeout, 10 s to 300 s.

    A server is then culled at most 25 % late, and a large hub is not polled needlessly often.
    """
    return max(10, min(300, timeouts(catalogue)[0] // 4))


def idle_culler_service(
    catalogue: Catalogue, catalogue_path: str | Path, *, every: int | None = None, python: str = sys.executable
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hub-managed culler service and its role.

    Args:
        catalogue: The loaded catalogue (for the timeouts).
        catalogue_path: The catalogue file; the culler loads it again for its arbiter.
        every: Check interval in seconds; default :func:`cull_every`.
        python: Interpreter running the culler.

    Returns:
        ``(service, role)``, for ``c.JupyterHub.services`` and ``c.JupyterHub.load_roles``.
    """
    longest = timeouts(catalogue)[-1]
    service = {
        "name": CULLER_SERVICE,
        "command": [
            python,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={longest}",
            f"--cull-every={every or cull_every(catalogue)}",
            "--cull-users=false",
            "--remove-named-servers=false",
            f"--config={CULLER_CONFIG_FILE}",
        ],
        # The culler loads the same catalogue file for the per-profile timeouts.
        "environment": {"KUBELAB_CONFIG": str(Path(catalogue_path).resolve())},
    }
    role = {"name": CULLER_SERVICE, "scopes": list(CULLER_SCOPES), "services": [CULLER_SERVICE]}
    return service, role
