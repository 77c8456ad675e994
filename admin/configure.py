"""One call that wires the admin side into a JupyterHub config (the composition root calls it).

:func:`configure_admin` builds the GPU accounting component (registered with the platform, so it
starts with the hub), the admin console, the routes, the scope ``custom:kubelab:admin`` and its
role for the admin users and groups, the page template folder, the metrics collector and the cull
counter (a wrapper of JupyterHub's ``log_function``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from traitlets.config import Config

from kubelab.core.naming import ADMIN_ROLE, ADMIN_SCOPE
from kubelab.core.platform import Platform
from kubelab.jobs.service import JobsService

from .accountant import GpuAccountant
from .console import AdminConsole
from .handlers import admin_handlers
from .metrics import cull_logger, install

#: The admin page's template (added to ``c.JupyterHub.template_paths``).
TEMPLATES_DIR = Path(__file__).with_name("templates")
SCOPES = {ADMIN_SCOPE: {"description": "See every user's GPUs, GPU-hours and quotas, and stop idle GPU servers."}}


def _existing(c: Config, name: str) -> list[Any]:
    return list(c.JupyterHub[name]) if name in c.JupyterHub else []


def server_profile_of(handler: Any) -> str:
    """The profile of the server a ``UserServerAPIHandler`` request named (for the cull counter)."""
    args = list(handler.path_args or ())
    user = handler.find_user(args[0]) if args else None
    if user is None:
        return ""
    spawner = user.orm_user.orm_spawners.get(args[1] if len(args) > 1 and args[1] else "")
    options = (spawner.user_options if spawner is not None else None) or {}
    profile = options.get("profile") if isinstance(options, Mapping) else None
    return profile if isinstance(profile, str) else ""


def configure_admin(
    c: Config,
    platform: Platform,
    *,
    jobs: JobsService | None,
    timeout_for: Callable[[Mapping[str, Any]], int],
    culler_service: str,
    admin_users: Iterable[str] | None = None,
    admin_groups: Iterable[str] = (),
) -> AdminConsole:
    """Add the admin page, the GPU-hour API, GPU accounting and kubelab's metrics to the hub.

    Args:
        c: The hub's config.
        platform: The hub's platform; the accounting starts with it.
        jobs: The jobs service (its jobs show as waiting; its phases are counted), if any.
        timeout_for: The culler's idle timeout in seconds for a server model (shown as each idle
            server's deadline).
        culler_service: The culler's service name (its server stops count as culls).
        admin_users: Users given the admin scope; default ``c.Authenticator.admin_users``.
        admin_groups: Groups given the admin scope.

    Returns:
        The console (the page's and the metrics' source).
    """
    console = AdminConsole(platform, None, jobs, timeout_for, config=c)  # type: ignore[arg-type]
    console.accountant = GpuAccountant(platform, heartbeat_seconds=lambda: console.settings.heartbeat_seconds)
    platform.add(console.accountant)
    c.JupyterHub.extra_handlers = _existing(c, "extra_handlers") + admin_handlers(console)
    c.JupyterHub.template_paths = [*_existing(c, "template_paths"), str(TEMPLATES_DIR)]
    scopes = dict(c.JupyterHub.custom_scopes) if "custom_scopes" in c.JupyterHub else {}
    scopes.update(SCOPES)
    c.JupyterHub.custom_scopes = scopes
    if admin_users is None:
        admin_users = c.Authenticator.admin_users if "admin_users" in c.Authenticator else ()
    role = {"name": ADMIN_ROLE, "scopes": [ADMIN_SCOPE], "description": "kubelab administrators: GPUs, GPU-hours, quotas",
            "users": sorted(admin_users), "groups": sorted(admin_groups)}
    c.JupyterHub.load_roles = [r for r in _existing(c, "load_roles") if r.get("name") != ADMIN_ROLE] + [role]
    settings = dict(c.JupyterHub.tornado_settings) if "tornado_settings" in c.JupyterHub else {}
    settings.setdefault("log_function", cull_logger(culler_service, server_profile_of))
    c.JupyterHub.tornado_settings = settings
    install(console.samples)
    return console
