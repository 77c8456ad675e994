"""Turn the platform catalogue and the environment into JupyterHub config.

``jupyterhub_config.py`` calls :func:`configure` and nothing else, so every piece is importable
and testable on its own. Deployment details that differ between the demo, the tests and a
cluster (bind addresses, database, cookie secret) are left to the command line or to the
Helm chart; this module wires the platform: authenticator, spawner, culler, named servers,
roles and scopes, and the page templates.

Environment:
    KUBELAB_CONFIG: The catalogue YAML (default: the shipped example).
    KUBELAB_AUTH: ``oidc`` (default) or ``github``; see :mod:`kubelab.hub_config.auth`.
    KUBELAB_CULL_EVERY: Seconds between idle checks (default: a quarter of the shortest timeout).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from traitlets.config import Config
from traitlets.config.loader import LazyConfigValue

from kubelab.admin.configure import configure_admin
from kubelab.core.catalogue import EXAMPLE_PATH, Catalogue, CatalogueError, load_catalogue
from kubelab.core.platform import Platform
from kubelab.hub_config import logredact
from kubelab.hub_config.auth import HubConfigError, configure_auth
from kubelab.hub_config.culling import CULLER_SERVICE, idle_culler_service, timeout_for_server
from kubelab.hub_config.proxy import ProxyNotInstalled, chp_command
from kubelab.jobs.roles import configure_jobs
from kubelab.spawner import configure_spawner
from kubelab.spawner.handlers import SUMMARY_PATH

log = logging.getLogger("JupyterHub")

#: kubelab's page templates; JupyterHub's own stay reachable as ``templates/<name>``.
TEMPLATES_DIR = Path(__file__).with_name("templates")

__all__ = ["HubConfigError", "CatalogueError", "configure", "configure_platform", "configure_named_servers",
           "load_catalogue_or_exit"]


def catalogue_path(environ: Mapping[str, str]) -> Path:
    """The catalogue file named by ``KUBELAB_CONFIG``, or the shipped example."""
    return Path(environ.get("KUBELAB_CONFIG") or EXAMPLE_PATH)


def load_catalogue_or_exit(path: str | Path) -> Catalogue:
    """Load the catalogue for a ``jupyterhub_config.py``; on any error stop the hub with one line.

    The line names the file, the path in it and what is allowed, e.g.
    ``kubelab: invalid catalogue: /etc/kubelab/catalogue.yaml: profiles[2].gpu.class: unknown GPU class 'h100'; allowed: a100``.

    Raises:
        SystemExit: With status 1 when the catalogue is invalid (traitlets lets it through the
            config loader, so JupyterHub exits before binding any port).
    """
    try:
        return load_catalogue(path)
    except CatalogueError as e:
        # one line on stderr: logging is not configured yet while the config file runs
        print(f"kubelab: invalid catalogue: {e}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def admin_groups_of(c: Config) -> list[str]:
    """The admin groups set on whichever authenticator section ``configure_auth`` filled in."""
    groups: set[str] = set()
    for section in c:
        if section.endswith("Authenticator") and "admin_groups" in c[section]:
            groups |= set(c[section].admin_groups)
    return sorted(groups)


def configure_platform(
    c: Config,
    catalogue: Catalogue,
    *,
    jobs: bool = True,
    jobs_namespace: str | None = None,
    admin_groups: Iterable[str] = (),
    **jobs_options: Any,
) -> Platform:
    """Build the hub's one :class:`Platform` and hand it to the spawner and the jobs service.

    The platform starts while the hub starts (JupyterHub runs its config file inside its
    running event loop), so the cluster cache is loading and the jobs reconciler running before
    any request arrives; nothing is started lazily by a request.

    Args:
        c: The hub's config.
        catalogue: The loaded catalogue.
        jobs: Also run the jobs service (tests of the spawner alone turn it off).
        jobs_namespace: Namespace for jobs (default: see :func:`kubelab.jobs.roles.jobs_namespace`).
        admin_groups: Groups whose members see every job.
        jobs_options: Passed to :class:`kubelab.jobs.service.JobsService`.

    Returns:
        The platform (launched when a loop runs).
    """
    init_shared_lists(c)
    platform = Platform(catalogue)
    configure_spawner(c, platform)
    configure_named_servers(c, catalogue)
    service = None
    if jobs:
        service = configure_jobs(c, platform, namespace=jobs_namespace, admin_groups=admin_groups, **jobs_options)
    # the admin page, GPU accounting and metrics (issue 15); deadlines are the culler's own rule
    configure_admin(c, platform, jobs=service, timeout_for=lambda server: timeout_for_server(catalogue, server),
                    culler_service=CULLER_SERVICE, admin_groups=admin_groups)
    platform.launch()
    return platform


def configure_named_servers(c: Config, catalogue: Catalogue) -> None:
    """Named servers, limited per user by ``defaults.maxNamedServers``."""
    # JupyterHub reads a limit of 0 as "unlimited", so 0 in the catalogue turns them off instead.
    c.JupyterHub.allow_named_servers = catalogue.max_named_servers > 0
    if catalogue.max_named_servers > 0:
        c.JupyterHub.named_server_limit_per_user = catalogue.max_named_servers


def configure_culler(c: Config, catalogue: Catalogue, path: Path, environ: Mapping[str, str]) -> str:
    """Add the idle culler service and its role."""
    every = int(environ["KUBELAB_CULL_EVERY"]) if environ.get("KUBELAB_CULL_EVERY") else None
    service, role = idle_culler_service(catalogue, path, every=every)
    c.JupyterHub.services = [*_existing(c, "services"), service]
    c.JupyterHub.load_roles = [*_existing(c, "load_roles"), role]
    return f"idle culler: {' '.join(service['command'][3:6])}"


def configure_templates(c: Config, catalogue: Catalogue) -> None:
    """Use kubelab's login and home pages, with the platform's name and the GPU status."""
    c.JupyterHub.template_paths = [str(TEMPLATES_DIR), *_existing(c, "template_paths")]
    variables = dict(c.JupyterHub.template_vars) if "template_vars" in c.JupyterHub else {}
    variables.update(
        kubelab_platform_name=catalogue.platform_name,
        kubelab_login_service=catalogue.login_service,
        kubelab_availability_path=SUMMARY_PATH.lstrip("/"),
        kubelab_gpu_classes={key: g.display_name for key, g in catalogue.gpu_classes.items()},
    )
    c.JupyterHub.template_vars = variables


def configure_proxy(c: Config) -> None:
    """Run the npm configurable-http-proxy that ``make proxy`` installs, the one z2jh runs.

    It streams event streams (spawn progress) as they happen, where the Python port buffers them.
    Left alone: a proxy command set already (the test harness, a z2jh config) and a proxy the hub
    does not start (the chart's own proxy). Without the install JupyterHub's default stays:
    ``configurable-http-proxy`` from ``PATH``, as in a hub image with the npm package.
    """
    if "command" in c.ConfigurableHTTPProxy or c.ConfigurableHTTPProxy.get("should_start", True) is False:
        return
    try:
        c.ConfigurableHTTPProxy.command = chp_command()
    except ProxyNotInstalled as e:
        log.info("%s; using configurable-http-proxy from PATH", e)


#: ``c.JupyterHub`` list settings that several parts of the platform add to.
SHARED_LISTS = ("extra_handlers", "services", "load_roles", "template_paths")


def init_shared_lists(c: Config) -> None:
    """Make each shared list setting a real list before any part adds to it.

    ``c.JupyterHub.extra_handlers.extend(...)`` on an unset setting creates a traitlets
    ``LazyConfigValue``, which ``list(...)`` in the next part cannot read; a plain list set
    up front works with both ``extend``/``append`` and ``list``, in any order of the parts.
    """
    for name in SHARED_LISTS:
        c.JupyterHub[name] = _existing(c, name)


def _existing(c: Config, name: str) -> list:
    """A list setting of ``c.JupyterHub`` set earlier (e.g. by a harness), or []."""
    if name not in c.JupyterHub:
        return []
    value = c.JupyterHub[name]
    # A LazyConfigValue (from .append/.extend on an unset setting) holds its items until merged.
    return value.get_value([]) if isinstance(value, LazyConfigValue) else list(value)


def configure(c: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """Wire the whole platform into ``c``.

    Args:
        c: The hub's traitlets config (``get_config()`` in ``jupyterhub_config.py``).
        environ: The environment to read; default ``os.environ``.

    Returns:
        One line per part, for the start-up log (no secrets).

    Raises:
        CatalogueError: The catalogue is invalid (the message names the file and the path).
        HubConfigError: A setting is missing or wrong, or the OIDC issuer is unreachable.
    """
    environ = os.environ if environ is None else environ
    path = catalogue_path(environ)
    catalogue = load_catalogue(path)
    init_shared_lists(c)
    summary = [f"catalogue {path}: {len(catalogue.profiles)} profiles, {len(catalogue.gpu_classes)} GPU classes"]
    summary.append(configure_auth(c, environ, catalogue))
    configure_platform(c, catalogue, admin_groups=admin_groups_of(c))
    summary.append("spawner: kubelab.spawner.LabSpawner; jobs service in the hub; platform starts with the hub")
    summary.append(configure_culler(c, catalogue, path, environ))
    configure_templates(c, catalogue)
    configure_proxy(c)
    logredact.install()
    return summary
