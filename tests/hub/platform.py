"""The whole login path for tests: devcluster + local OIDC provider + the real hub config.

:func:`start_platform` runs ``hub_config/jupyterhub_config.py`` unchanged inside the shared
``HubProcess`` harness (which adds free ports, a temp database and an admin token), with the
provider's issuer and a fresh client secret in the environment.
"""

from __future__ import annotations

import secrets
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from kubelab.hub_config.provider import OidcProvider
from tests.harness import HubProcess
from tests.hub.hubtools import HUB_CONFIG, start_provider


@dataclass
class Platform:
    """A running hub and provider, and what the tests need to reach them."""

    hub: HubProcess
    provider: OidcProvider
    namespace: str
    secret_file: Path
    login_page_seconds: float

    @property
    def url(self) -> str:
        """The hub's public URL (what the browser opens)."""
        return self.hub.url

    def stop(self) -> None:
        """Stop the hub (and every server), then the provider."""
        self.hub.stop()
        self.provider.stop()


def make_namespace(core: kubernetes.client.CoreV1Api, prefix: str) -> str:
    """Create a test namespace and wait for its default ServiceAccount token (v1.20 needs it for pods)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"kubelab.io/test": "true"}}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if core.read_namespaced_service_account("default", name).secrets:
                return name
        except ApiException as e:
            if e.status != 404:
                raise
        time.sleep(0.2)
    raise TimeoutError(f"ServiceAccount {name}/default has no token after 30 s")


def delete_namespace(core: kubernetes.client.CoreV1Api, name: str) -> None:
    """Delete a test namespace (already gone is fine)."""
    try:
        core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise


def hub_config_text(namespace: str, extra: str = "") -> str:
    """The harness config: kubelab's own config file, run as is, plus test-only placement."""
    return textwrap.dedent(
        f"""
        exec(compile(open({str(HUB_CONFIG)!r}).read(), {str(HUB_CONFIG)!r}, "exec"))
        # test placement: a namespace of our own, quick deletes
        c.KubeSpawner.namespace = {namespace!r}
        c.LabSpawner.start_timeout = 180
        c.LabSpawner.delete_grace_period = 1
        """
    ) + textwrap.dedent(extra)


def start_platform(
    cluster: Any,
    core: kubernetes.client.CoreV1Api,
    workdir: Path,
    secret_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    extra_config: str = "",
    namespace_prefix: str = "kl-hub",
) -> Platform:
    """Start provider and hub; return once the login page answers.

    Args:
        cluster: The ``cluster`` fixture's value.
        core: A CoreV1Api for the cluster.
        workdir: Folder for logs, database and the catalogue.
        secret_file: The client secret shared by provider and hub.
        env: Extra hub environment (e.g. ``KUBELAB_CONFIG``).
        extra_config: Config text appended after kubelab's config.
        namespace_prefix: Prefix of the namespace created for the servers.
    """
    import requests

    namespace = make_namespace(core, namespace_prefix)
    hub = HubProcess(hub_config_text(namespace, extra_config), connect_ip=cluster.host_ip, workdir=workdir / "hub")
    provider = start_provider(workdir, secret_file, hub.url)
    hub.env.update(
        {
            "KUBECONFIG": str(cluster.kubeconfig),
            "KUBELAB_OIDC_ISSUER": provider.issuer,
            "KUBELAB_OIDC_CLIENT_SECRET_FILE": str(secret_file),
            "KUBELAB_PUBLIC_URL": hub.url,
            **(env or {}),
        }
    )
    started = time.monotonic()
    try:
        hub.start(timeout=120)
        deadline = time.monotonic() + 30
        while not requests.get(f"{hub.url}/hub/login", timeout=5).ok:
            if time.monotonic() > deadline:
                raise TimeoutError("login page did not answer")
            time.sleep(0.2)
    except BaseException:
        provider.stop()
        delete_namespace(core, namespace)
        raise
    return Platform(hub, provider, namespace, secret_file, time.monotonic() - started)
