"""The jobs service's place in the hub's config: its routes, its custom scopes and its roles.

:func:`configure_jobs` is what the composition root calls. Requests are authenticated by
JupyterHub itself (API tokens with scopes, the way dask-gateway authenticates with the hub):

* ``custom:kubelab:jobs``: submit, list, watch and cancel one's own jobs. The ``user`` role gets
  it, and so does the ``server`` role, so a notebook's own ``JUPYTERHUB_API_TOKEN`` reaches the
  service (``JobClient``) without the user creating a token by hand;
* ``custom:kubelab:jobs-admin``: every user's jobs, for the admin users and the admin groups.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from traitlets.config import Config

from kubelab.core.naming import JOBS_ADMIN_ROLE, JOBS_ADMIN_SCOPE, JOBS_SCOPE
from kubelab.core.platform import Platform
from kubelab.jobs.handlers import handlers
from kubelab.jobs.metrics_handlers import metrics_handlers
from kubelab.jobs.pages import page_handlers, template_paths
from kubelab.jobs.service import JobsService
from kubelab.jobs.sweep_handlers import sweep_handlers
from kubelab.jobs.sweep_pages import sweep_page_handlers
from kubelab.jobs.sweep_reconciler import SweepService

SCOPES = {
    JOBS_SCOPE: {"description": "Submit, list, watch and cancel your own kubelab training jobs."},
    JOBS_ADMIN_SCOPE: {"description": "See, read the logs of and cancel every user's kubelab training jobs."},
}


def merge_role(roles: list[dict[str, Any]], name: str, default_scopes: list[str], add: list[str]) -> None:
    """Add ``add`` to the role ``name`` in ``roles``, creating it with ``default_scopes`` if absent."""
    for role in roles:
        if role.get("name") == name:
            scopes = list(role.get("scopes") or default_scopes)
            role["scopes"] = scopes + [s for s in add if s not in scopes]
            return
    roles.append({"name": name, "scopes": default_scopes + add})


def jobs_namespace(c: Config, platform: Platform) -> str:
    """The catalogue's ``jobs.namespace``, else ``c.KubeSpawner.namespace``, else ``$POD_NAMESPACE``, else ``default``."""
    spawner_ns = c.KubeSpawner.namespace if "namespace" in c.KubeSpawner else None
    return platform.catalogue.jobs.namespace or spawner_ns or os.environ.get("POD_NAMESPACE") or "default"


def configure_jobs(c: Config, platform: Platform, *, namespace: str | None = None,
                   admin_users: Iterable[str] | None = None, admin_groups: Iterable[str] = (),
                   **service_kwargs: Any) -> JobsService:
    """Run the jobs service in this hub: build it, register it with the platform, add routes, scopes and roles.

    Args:
        c: The hub's config object.
        platform: The hub's platform; the service starts with it.
        namespace: Namespace for jobs; default :func:`jobs_namespace`.
        admin_users: Users who may see every job; default ``c.Authenticator.admin_users``.
        admin_groups: Groups whose members may see every job.
        service_kwargs: Passed to :class:`~kubelab.jobs.service.JobsService`.

    Returns:
        The service.
    """
    service = JobsService(platform, namespace or jobs_namespace(c, platform), **service_kwargs)
    platform.add(service)
    sweeps = SweepService(platform, service)  # after the jobs service: it starts once that one has
    platform.add(sweeps)
    existing = list(c.JupyterHub.extra_handlers) if "extra_handlers" in c.JupyterHub else []
    c.JupyterHub.extra_handlers = (existing + handlers(service) + metrics_handlers(service) + page_handlers(service)
                                   + sweep_handlers(service, sweeps) + sweep_page_handlers(service, sweeps))
    # The jobs pages (/hub/kubelab/jobs) are rendered from the hub's own templates.
    c.JupyterHub.template_paths = template_paths(c.JupyterHub.template_paths if "template_paths" in c.JupyterHub
                                                 else [])

    scopes = dict(c.JupyterHub.custom_scopes) if "custom_scopes" in c.JupyterHub else {}
    scopes.update(SCOPES)
    c.JupyterHub.custom_scopes = scopes

    roles = [dict(r) for r in (c.JupyterHub.load_roles if "load_roles" in c.JupyterHub else [])]
    merge_role(roles, "user", ["self"], [JOBS_SCOPE])
    merge_role(roles, "server", ["users:activity!user", "access:servers!server"], [JOBS_SCOPE])
    if admin_users is None:
        admin_users = c.Authenticator.admin_users if "admin_users" in c.Authenticator else ()
    admin_role = {"name": JOBS_ADMIN_ROLE, "scopes": [JOBS_SCOPE, JOBS_ADMIN_SCOPE],
                  "description": "kubelab jobs administrators", "users": sorted(admin_users),
                  "groups": sorted(admin_groups)}
    c.JupyterHub.load_roles = [r for r in roles if r.get("name") != JOBS_ADMIN_ROLE] + [admin_role]
    return service
