"""Custom scopes and roles for kubelab's jobs service.

The jobs service owns its scopes: when ``kubelab.jobs.service.configure_hub`` exists, it
defines them (and its handlers). Until then, :func:`define_jobs_scope` declares the one
scope the rest of the platform relies on, so that tokens issued today already carry it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from traitlets.config import Config

from kubelab.core.catalogue import Catalogue

log = logging.getLogger("JupyterHub")

#: Submit, list, watch and cancel one's own training jobs.
JOBS_SCOPE = "custom:kubelab:jobs"


def define_jobs_scope(c: Config) -> None:
    """Declare :data:`JOBS_SCOPE` and grant it to users and to their servers' tokens.

    The ``server`` role gets it so that a notebook's own ``JUPYTERHUB_API_TOKEN`` can call the
    jobs service (``JobClient``) without the user creating a token by hand.
    """
    scopes = dict(c.JupyterHub.custom_scopes) if "custom_scopes" in c.JupyterHub else {}
    scopes[JOBS_SCOPE] = {"description": "Submit, list, watch and cancel your own kubelab training jobs."}
    c.JupyterHub.custom_scopes = scopes
    roles = list(c.JupyterHub.load_roles) if "load_roles" in c.JupyterHub else []
    roles.append({"name": "user", "scopes": ["self", JOBS_SCOPE]})
    roles.append({"name": "server", "scopes": ["users:activity!user", "access:servers!server", JOBS_SCOPE]})
    c.JupyterHub.load_roles = roles


def jobs_configure_hub() -> Callable[..., Any] | None:
    """The jobs service's ``configure_hub``, or None while it is not installed."""
    try:
        module = importlib.import_module("kubelab.jobs.service")
    except ModuleNotFoundError as e:
        if e.name not in ("kubelab.jobs.service", "kubelab.jobs"):
            raise  # a missing dependency *inside* the service is a real error
        return None
    return getattr(module, "configure_hub", None)


def admin_groups_of(c: Config) -> list[str]:
    """The admin groups set on whichever authenticator section ``configure_auth`` filled in."""
    groups: set[str] = set()
    for section in c:
        if section.endswith("Authenticator") and "admin_groups" in c[section]:
            groups |= set(c[section].admin_groups)
    return sorted(groups)


def configure_jobs(c: Config, catalogue: Catalogue) -> str:
    """Let the jobs service configure the hub, or declare its scope when it is not there.

    Returns:
        A short description for the start-up log.
    """
    configure = jobs_configure_hub()
    if configure is not None:
        # Members of the admin groups from the provider see every user's jobs, as they see every server.
        configure(c, catalogue, admin_groups=admin_groups_of(c))
        return "jobs service: kubelab.jobs.service.configure_hub"
    define_jobs_scope(c)
    return f"jobs service not installed; scope {JOBS_SCOPE} declared"
