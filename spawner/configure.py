"""One call that wires LabSpawner into a JupyterHub config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from kubelab.core.catalogue import Catalogue, CatalogueError, load_catalogue

from .handlers import availability_handlers
from .offers import check_profile_sources


def configure_hub(c: Any, catalogue: Catalogue) -> None:
    """Set what the spawner needs in a ``jupyterhub_config.py``.

    Sets ``JupyterHub.spawner_class``, ``LabSpawner.catalogue``, the availability handlers
    (appended to ``JupyterHub.extra_handlers``), named servers up to the catalogue's
    ``defaults.maxNamedServers`` (0 turns them off), and a start timeout that leaves room for image pulls.
    Call it after loading the catalogue, so a bad catalogue stops the hub before anything starts::

        from kubelab.core.catalogue import load_catalogue
        from kubelab.spawner import configure_hub
        configure_hub(c, load_catalogue(os.environ["KUBELAB_CONFIG"]))

    Args:
        c: The traitlets config object (``c`` in ``jupyterhub_config.py``).
        catalogue: The loaded catalogue.
    """
    from .spawner import LabSpawner

    c.JupyterHub.spawner_class = LabSpawner
    c.LabSpawner.catalogue = catalogue
    # a profile_list set so far (z2jh's is): one start-up line on how it combines with the
    # catalogue, and a CatalogueError naming any key kubelab cannot honour (kubelab.spawner.offers)
    check_profile_sources(c, catalogue, set(LabSpawner.class_trait_names(config=True)).__contains__)
    c.JupyterHub.extra_handlers.extend(availability_handlers(catalogue))
    # JupyterHub reads a limit of 0 as "unlimited", so 0 in the catalogue turns named servers off
    c.JupyterHub.allow_named_servers = catalogue.max_named_servers > 0
    c.JupyterHub.named_server_limit_per_user = catalogue.max_named_servers
    # fail-fast ends refused spawns in seconds; this bound is only for slow image pulls
    c.LabSpawner.start_timeout = 600


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
