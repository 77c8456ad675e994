"""kubelab.devcluster: a local Kubernetes v1.20 control plane plus a process node.

Python API (what tests, benchmarks and ``make demo`` use)::

    from kubelab.devcluster import ensure_cluster
    info = ensure_cluster()        # ClusterInfo(kubeconfig, host_ip, external, state, started)
    info.host_ip                   # where pods reach servers on this host (the bridge gateway)

``HOST_GATEWAY`` is that address for the default instance, ``SIMULATE_LABEL`` the
namespace label whose pods all run simulated (Running, no process), ``SIMULATE_ANNOTATION``
the pod annotation that simulates one pod, ``STORAGE_CLASS`` the default StorageClass. Attributes load lazily: the pod launcher imports this package for
every pod start and must not pay for the Kubernetes client.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ensure_cluster": "kubelab.devcluster.cluster",
    "ClusterInfo": "kubelab.devcluster.cluster",
    "DevclusterError": "kubelab.devcluster.cluster",
    "up": "kubelab.devcluster.cluster",
    "down": "kubelab.devcluster.cluster",
    "status": "kubelab.devcluster.cluster",
    "HOST_GATEWAY": "kubelab.devcluster.settings",
    "SIMULATE_ANNOTATION": "kubelab.devcluster.runtime",
    "SIMULATE_LABEL": "kubelab.devcluster.runtime",
    "STORAGE_CLASS": "kubelab.devcluster.provisioner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kubelab.devcluster' has no attribute {name!r}")
