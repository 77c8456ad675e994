"""The hub's shared platform state, built once at hub start-up and handed to every part.

:class:`Platform` owns what the spawner, the availability pages and the jobs service all read:
the catalogue, the API clients, the watch-backed cluster cache and the quota ledger. The hub's
composition root (:mod:`kubelab.hub_config.wiring`) builds one, gives it to ``LabSpawner`` (a
config value) and to the jobs service (its constructor), and launches it while the hub starts,
so that nothing is started lazily by the first request that happens to need it, and the jobs
reconciler runs from the moment the hub is up (dask-gateway's ``Backend`` is wired the same way).

Two API clients with separate connection pools:

* ``api``: short requests and the watches (spawns, submits, cancels, the informers);
* ``stream_api``: long-lived streams (followed logs). A user who opens many follows exhausts only
  this pool, never the one every other user's submit needs.

Parts that need start-up work of their own (the jobs service: engine discovery, its informers,
its reconciler) register as a :class:`Component`; each is started after the cluster cache is
loaded, and retried with backoff while the API server cannot be reached.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from .catalogue import Catalogue
from .cluster import ClusterCache
from .quota import QuotaLedger

log = logging.getLogger("kubelab.core.platform")

#: Connections for short requests and watches (the informers hold about ten).
API_POOL_SIZE = 64
#: Connections for long-lived streams; also the hard ceiling on concurrent log follows.
STREAM_POOL_SIZE = 64
#: Seconds a caller waits for the first LIST before it is told the cluster is unreachable.
READY_TIMEOUT = 30.0


class PlatformUnavailable(RuntimeError):
    """The cluster cannot be reached (yet): the platform has not completed its start-up."""


class Component(Protocol):
    """A part of the platform with start-up work of its own.

    A component may also define ``attach(cluster)``: it is called with the cluster cache before
    the cache's first LIST, so that a component following the cluster misses no change.
    """

    name: str

    async def start(self) -> None:
        """Do the start-up work; raise to be retried with backoff."""

    async def stop(self) -> None:
        """Release what :meth:`start` took."""


#: Errors that mean "the API server is not reachable or not ready": start-up is retried.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ApiException, TimeoutError, aiohttp.ClientError, OSError, RuntimeError,
)


def load_client_configuration() -> Configuration:
    """The Kubernetes client configuration KubeSpawner uses: in-cluster, else ``$KUBECONFIG``."""
    from kubespawner.clients import load_config

    load_config()
    return Configuration.get_default_copy()


class Platform:
    """Catalogue, API clients, cluster cache and quota ledger of one hub process.

    Args:
        catalogue: The platform catalogue.
        configuration: Kubernetes client configuration; default :func:`load_client_configuration`
            when the platform starts.

    Attributes:
        catalogue: The catalogue.
        api: Client for short requests and watches (set by :meth:`start`).
        stream_api: Client for long-lived streams (set by :meth:`start`).
        cluster: Nodes and pods (set by :meth:`start`).
        ledger: The GPU and server quota ledger over ``cluster`` (set by :meth:`start`).
    """

    def __init__(self, catalogue: Catalogue, *, configuration: Configuration | None = None) -> None:
        self.catalogue = catalogue
        self._configuration = configuration
        self.api: ApiClient | None = None
        self.stream_api: ApiClient | None = None
        self.cluster: ClusterCache | None = None
        self.ledger: QuotaLedger | None = None
        self._components: list[Component] = []
        self._task: asyncio.Task[None] | None = None
        # asyncio.Event binds to a loop only when first awaited, so it may be made without one
        self._ready = asyncio.Event()

    def __deepcopy__(self, memo: dict[int, Any]) -> Platform:
        # traitlets deep-copies config values; the platform is the one shared object by design,
        # so every copy of the config must keep pointing at it
        return self

    # -- composition ---------------------------------------------------------------------------

    def add(self, component: Component) -> None:
        """Register a component; it starts after the cluster cache is loaded."""
        self._components.append(component)

    # -- lifecycle -----------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the platform in the background on the running event loop (hub start-up).

        The hub loads its config file inside its running loop, so the composition root calls
        this from there. Without a running loop (a unit test building config) it does nothing.
        """
        if not _loop_running() or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self.start(), name="kubelab-platform-start")

    async def start(self) -> None:
        """Create the clients, load the cluster cache, then start every component (with retries)."""
        if self.api is None:
            configuration = self._configuration or load_client_configuration()
            self.api = _client(configuration, API_POOL_SIZE)
            self.stream_api = _client(configuration, STREAM_POOL_SIZE)
            self.cluster = ClusterCache(CoreV1Api(self.api))
            self.ledger = QuotaLedger(self.cluster, self.catalogue)
            for component in self._components:
                # before the first LIST: a component that follows the cluster (GPU accounting)
                # sees every change, even one that happens before its own start() runs
                attach = getattr(component, "attach", None)
                if attach is not None:
                    attach(self.cluster)
        await _until_done("cluster cache", lambda: self.cluster.start(READY_TIMEOUT))  # type: ignore[union-attr]
        for component in self._components:
            await _until_done(component.name, component.start)
        self._ready.set()
        log.info("kubelab platform ready: %d nodes, %d pods cached; components: %s", len(self.cluster.nodes),
                 len(self.cluster.pods), ", ".join(c.name for c in self._components) or "none")

    async def stop(self) -> None:
        """Stop the components, the watches and the clients."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for component in reversed(self._components):
            await component.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        for client in (self.api, self.stream_api):
            if client is not None:
                await client.close()

    # -- waiting -------------------------------------------------------------------------------

    async def ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the cluster cache is loaded and every component started.

        Raises:
            PlatformUnavailable: Not ready within ``timeout`` seconds.
        """
        if self._ready.is_set():
            return
        self.launch()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError as e:
            raise PlatformUnavailable(f"the Kubernetes API has not answered for {timeout:.0f} s") from e

    async def cluster_ready(self, timeout: float = READY_TIMEOUT) -> ClusterCache:
        """The cluster cache once loaded (components may still be starting).

        Raises:
            PlatformUnavailable: Not loaded within ``timeout`` seconds.
        """
        self.launch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.cluster is None:
            if loop.time() > deadline:
                raise PlatformUnavailable(f"the Kubernetes API has not answered for {timeout:.0f} s")
            await asyncio.sleep(0.05)
        try:
            await self.cluster.start(max(0.0, deadline - loop.time()))
        except TimeoutError as e:
            raise PlatformUnavailable(f"the Kubernetes API has not answered for {timeout:.0f} s") from e
        return self.cluster


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _client(configuration: Configuration, pool_size: int) -> ApiClient:
    """An ApiClient of its own pool size (a shallow copy: the credentials are shared, not copied)."""
    conf = copy.copy(configuration)
    conf.connection_pool_maxsize = pool_size
    return ApiClient(conf)


async def _until_done(what: str, step: Callable[[], Any]) -> None:
    """Run ``step`` until it succeeds, backing off (with jitter) while the cluster is unreachable."""
    delay = 0.5
    while True:
        try:
            await step()
            return
        except TRANSIENT_ERRORS as e:
            log.warning("kubelab platform: %s not started (%s); retrying in %.1f s", what, e, delay)
        await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not crypto
        delay = min(delay * 2, 15)
