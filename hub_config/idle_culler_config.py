"""Config file for ``jupyterhub-idle-culler`` (``--config=``): per-profile idle timeouts.

The hub starts the culler with this file and ``KUBELAB_CONFIG`` in its environment; see
:mod:`kubelab.hub_config.culling` for why one culler with an arbiter hook is enough.
"""

import os

from kubelab.core.catalogue import EXAMPLE_PATH, load_catalogue
from kubelab.hub_config.culling import make_cull_arbiter

c = get_config()  # noqa: F821 (injected by traitlets when it loads this file)
c.IdleCuller.cull_arbiter_hook = make_cull_arbiter(load_catalogue(os.environ.get("KUBELAB_CONFIG") or EXAMPLE_PATH))
