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
from collections.abc import Mapping
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import LazyConfigValue

from kubelab.core.catalogue import EXAMPLE_PATH, Catalogue, CatalogueError, load_catalogue
from kubelab.hub_config import logredact
from kubelab.hub_config.auth import HubConfigError, configure_auth
from kubelab.hub_config.culling import idle_culler_service
from kubelab.hub_config.proxy import ProxyNotInstalled, chp_command
from kubelab.hub_config.scopes import configure_jobs

log = logging.getLogger("JupyterHub")

#: kubelab's page templates; JupyterHub's own stay reachable as ``templates/<name>``.
TEMPLATES_DIR = Path(__file__).with_name("templates")
#: Where the login and home pages fetch the free-GPU summary (the spawner's public endpoint).
DEFAULT_AVAILABILITY_PATH = "api/kubelab/availability/summary"

__all__ = ["HubConfigError", "CatalogueError", "configure", "configure_spawner", "configure_named_servers"]


def catalogue_path(environ: Mapping[str, str]) -> Path:
    """The catalogue file named by ``KUBELAB_CONFIG``, or the shipped example."""
    return Path(environ.get("KUBELAB_CONFIG") or EXAMPLE_PATH)


def configure_spawner(c: Config, catalogue: Catalogue) -> str:
    """Let ``kubelab.spawner`` set the spawner class and its handlers.

    Raises:
        HubConfigError: The spawner package lacks ``configure_hub``.
    """
    try:
        from kubelab.spawner import configure_hub
    except ImportError as e:
        raise HubConfigError(f"kubelab.spawner.configure_hub cannot be imported: {e}") from e
    configure_hub(c, catalogue)
    return "spawner: kubelab.spawner.LabSpawner"


def availability_path() -> str:
    """Path below the hub's base URL of the spawner's public GPU availability endpoint."""
    try:
        from kubelab.spawner.handlers import SUMMARY_PATH
    except ImportError:
        return DEFAULT_AVAILABILITY_PATH
    return str(SUMMARY_PATH).lstrip("/")


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
        kubelab_availability_path=availability_path(),
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
    summary.append(configure_spawner(c, catalogue))
    configure_named_servers(c, catalogue)
    summary.append(configure_culler(c, catalogue, path, environ))
    summary.append(configure_jobs(c, catalogue))
    configure_templates(c, catalogue)
    configure_proxy(c)
    logredact.install()
    return summary
