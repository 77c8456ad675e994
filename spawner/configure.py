"""One call that wires LabSpawner into a JupyterHub config."""

from __future__ import annotations

from typing import Any

from kubelab.core.platform import Platform

from .handlers import availability_handlers
from .offers import check_profile_sources
from .spawner import LabSpawner


def configure_spawner(c: Any, platform: Platform) -> None:
    """Set what the spawner needs in a ``jupyterhub_config.py``.

    Sets ``JupyterHub.spawner_class``, ``LabSpawner.platform``, the availability handlers
    (appended to ``JupyterHub.extra_handlers``) and a start timeout that leaves room for image
    pulls. The composition root (:mod:`kubelab.hub_config.wiring`) calls it.

    Args:
        c: The traitlets config object (``c`` in ``jupyterhub_config.py``).
        platform: The hub's platform (not yet started: the hub starts it).
    """
    c.JupyterHub.spawner_class = LabSpawner
    c.LabSpawner.platform = platform
    # a profile_list set so far (z2jh's is): one start-up line on how it combines with the
    # catalogue, and a CatalogueError naming any key kubelab cannot honour (kubelab.spawner.offers)
    check_profile_sources(c, platform.catalogue, set(LabSpawner.class_trait_names(config=True)).__contains__)
    existing = list(c.JupyterHub.extra_handlers) if "extra_handlers" in c.JupyterHub else []
    c.JupyterHub.extra_handlers = existing + availability_handlers(platform)
    # fail-fast ends refused spawns in seconds; this bound is only for slow image pulls
    c.LabSpawner.start_timeout = 600
