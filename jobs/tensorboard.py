"""TensorBoard for a job, in the user's own server, behind the hub's login.

Where job pods write files the user's server also sees (an RWX home, or the shared volume), every
rank gets ``KUBELAB_LOG_DIR=<files root>/kubelab-runs/<job name>`` (``jobs/CONTRACT.md``); a script
writes its TensorBoard event files there (``SummaryWriter(os.environ["KUBELAB_LOG_DIR"])``).

In the notebook server, :func:`server_proxy` is a ``jupyter_serverproxy_servers`` entry point
(``setup.py``): jupyter-server-proxy starts ``tensorboard --logdir ~/kubelab-runs`` on first use and
serves it at ``/user/<name>/tensorboard/``. That URL is the user's server, so the hub's own
authentication guards it: another user opening it is refused (403 from the single-user server's
OAuth check), exactly like their notebooks. The job view links to it filtered to the job's runs
(:func:`tensorboard_link`).
"""

from __future__ import annotations

import os
import shutil
from typing import Any
from urllib.parse import quote

from kubelab.jobs.builders.common import FILES_HOME, FILES_SHARED, RUNS_FOLDER, files_mode, log_dir

__all__ = ["PROXY_NAME", "RUNS_FOLDER", "log_dir", "server_proxy", "tensorboard_link"]

#: Path of the proxied TensorBoard below a user's server.
PROXY_NAME = "tensorboard"


def tensorboard_link(hub_base_url: str, job: Any, catalogue: Any, *, viewer: str) -> str | None:
    """The "Open TensorBoard" URL of ``job`` for ``viewer``, or None when there is none to offer:
    job pods cannot write where the user's server reads (an RWO home and no shared volume), or
    the viewer is not the owner (an admin has no access to the owner's server)."""
    if catalogue is None or viewer != job.user:
        return None
    mode = files_mode(catalogue.home, catalogue.shared)
    if mode not in (FILES_HOME, FILES_SHARED):
        return None
    base = hub_base_url.rstrip("/").removesuffix("/hub")
    # TensorBoard filters runs by a regular expression in its URL fragment.
    return f"{base}/user/{quote(job.user, safe='')}/{PROXY_NAME}/#timeseries&runFilter={quote(job.name + '/')}"


def server_proxy() -> dict[str, Any]:
    """jupyter-server-proxy's definition of TensorBoard over ``$KUBELAB_RUNS_DIR`` (default
    ``~/kubelab-runs``; set it to ``/shared/kubelab-runs`` where the shared volume is used)."""
    logdir = os.path.expanduser(os.environ.get("KUBELAB_RUNS_DIR") or f"~/{RUNS_FOLDER}")
    os.makedirs(logdir, exist_ok=True)
    executable = shutil.which("tensorboard") or "tensorboard"
    return {
        "command": [executable, "--logdir", logdir, "--port", "{port}", "--host", "127.0.0.1",
                    "--reload_interval", "5"],
        "timeout": 120,
        "absolute_url": False,
        "launcher_entry": {"enabled": True, "title": "TensorBoard (kubelab runs)"},
        "new_browser_tab": True,
    }
