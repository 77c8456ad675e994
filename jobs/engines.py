"""Which engine runs jobs: API discovery (``/apis``) plus the catalogue's ``jobs.engine`` pin.

``auto`` prefers the most capable engine installed (Trainer v2, then Kubeflow training v1, then
JobSet), per framework (Trainer v2 has no TensorFlow runtime), and falls back to plain
Kubernetes, which works everywhere from 1.20 up. A pinned engine that is not installed is a
configuration error, raised at start-up naming ``jobs.engine``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubernetes_asyncio.client import ApiClient, ApisApi, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

# API group that each engine needs.
ENGINE_GROUPS = {
    "trainer-v2": "trainer.kubeflow.org",
    "kubeflow-v1": "kubeflow.org",
    "jobset": "jobset.x-k8s.io",
}
KUEUE_GROUP = "kueue.x-k8s.io"
ENGINES = ("plain", "jobset", "kubeflow-v1", "trainer-v2")
AUTO_ORDER = {
    "pytorch": ("trainer-v2", "kubeflow-v1", "jobset", "plain"),
    "replicas": ("trainer-v2", "kubeflow-v1", "jobset", "plain"),
    "mpi": ("kubeflow-v1", "trainer-v2", "jobset", "plain"),
    "tensorflow": ("kubeflow-v1", "jobset", "plain"),
}


class EngineConfigError(ValueError):
    """``jobs.engine`` or ``jobs.kueue.enabled`` asks for an API the cluster does not serve."""


@dataclass(frozen=True)
class Engines:
    """What the cluster offers, and what the catalogue pins.

    Attributes:
        groups: API groups the cluster serves.
        pin: The catalogue's ``jobs.engine`` (``auto`` or an engine name).
        kueue: Whether jobs go through Kueue.
    """

    groups: frozenset[str]
    pin: str = "auto"
    kueue: bool = False

    def available(self) -> list[str]:
        """Engines the cluster can run, ``plain`` always included."""
        return [e for e in ENGINES if e == "plain" or ENGINE_GROUPS[e] in self.groups]

    def engine_for(self, framework: str) -> str:
        """The engine that runs a job of ``framework``."""
        if self.pin != "auto":
            return self.pin
        for engine in AUTO_ORDER[framework]:
            if engine == "plain" or ENGINE_GROUPS[engine] in self.groups:
                return engine
        return "plain"


def select(groups: Iterable[str], pin: str = "auto", kueue_enabled: str | bool = "auto") -> Engines:
    """Decide engines from the served API groups and the catalogue's settings (pure).

    Raises:
        EngineConfigError: A pinned engine, or ``kueue.enabled: true``, whose API is not served.
    """
    served = frozenset(groups)
    if pin != "auto":
        if pin not in ENGINES:
            raise EngineConfigError(f"jobs.engine: {pin!r} is not allowed; allowed: auto, {', '.join(ENGINES)}")
        if pin != "plain" and ENGINE_GROUPS[pin] not in served:
            raise EngineConfigError(f"jobs.engine: {pin!r} needs the API group {ENGINE_GROUPS[pin]}, "
                                    f"which the cluster does not serve; install it or use auto")
    if kueue_enabled is True and KUEUE_GROUP not in served:
        raise EngineConfigError(f"jobs.kueue.enabled: true, but the cluster does not serve {KUEUE_GROUP}")
    kueue = KUEUE_GROUP in served if kueue_enabled == "auto" else bool(kueue_enabled)
    return Engines(groups=served, pin=pin, kueue=kueue)


async def served_groups(api_client: ApiClient) -> set[str]:
    """API groups the cluster serves (one ``GET /apis``)."""
    resp = await ApisApi(api_client).get_api_versions()
    return {g.name for g in resp.groups or []}


async def serves(api_client: ApiClient, group: str, version: str, plural: str) -> bool:
    """Whether ``group/version`` serves the resource ``plural`` (one ``GET /apis/<group>/<version>``).

    Raises:
        ApiException: The API server failed (not 404).
    """
    try:
        resources = await CustomObjectsApi(api_client).get_api_resources(group, version)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return any(r.name == plural for r in resources.resources or [])


async def discover(api_client: ApiClient, pin: str = "auto", kueue_enabled: str | bool = "auto") -> Engines:
    """:func:`select` over what ``GET /apis`` reports.

    ``kubeflow.org`` counts as the training operator's only when it serves ``v1`` PyTorchJobs: Katib's
    Experiments (``kubeflow.org/v1beta1``) share the group, and a cluster with Katib alone must not
    get jobs built for an operator it does not run.

    Raises:
        EngineConfigError: See :func:`select`.
    """
    groups = await served_groups(api_client)
    kubeflow = ENGINE_GROUPS["kubeflow-v1"]
    if kubeflow in groups and not await serves(api_client, kubeflow, "v1", "pytorchjobs"):
        groups.discard(kubeflow)
    return select(groups, pin, kueue_enabled)
