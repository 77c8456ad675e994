"""kubelab's JupyterHub configuration: ``jupyterhub -f hub_config/jupyterhub_config.py``.

All wiring lives in :mod:`kubelab.hub_config.wiring` so it can be tested; this file only runs
it and turns a configuration problem into one clear line and exit status 1, instead of a
traceback or, worse, a hub that starts and then fails every login.

The environment variables it reads are listed in ``docs/login.md``. Deployment-specific
settings (bind addresses, database URL, cookie secret) are given on the command line or by
the Helm chart, e.g. ``--JupyterHub.bind_url=http://127.0.0.1:8000``.
"""

import logging
import os
import sys

from kubelab.hub_config.wiring import CatalogueError, HubConfigError, configure

c = get_config()  # noqa: F821 (injected by traitlets when it loads this file)

try:
    _summary = configure(c, os.environ)
except (CatalogueError, HubConfigError) as _error:
    # One line, no traceback: the message already names the file, path or setting to fix.
    print(f"[C kubelab] hub start-up failed: {_error}", file=sys.stderr, flush=True)
    sys.exit(1)

for _line in _summary:
    logging.getLogger("JupyterHub").info("kubelab: %s", _line)
