"""Find the npm ``configurable-http-proxy`` that ``hub_config/chp/install.sh`` installed.

It is the proxy z2jh runs, and the one that streams event streams (spawn progress) as they
happen; the demo and the tests use it. ``install.sh`` (``make proxy``) puts it in
``$KUBELAB_CACHE/chp-node/<hash of package-lock.json>``; this module only looks there.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from kubelab.hub_config.provider import cache_dir

CHP_DIR = Path(__file__).with_name("chp")
INSTALL_SCRIPT = CHP_DIR / "install.sh"


class ProxyNotInstalled(RuntimeError):
    """``install.sh`` has not run for the current lock file, or Node is missing."""


def chp_prefix(cache: Path | None = None) -> Path:
    """Where ``install.sh`` installs the proxy: keyed by the lock file's hash, as the script computes it."""
    key = hashlib.sha256((CHP_DIR / "package-lock.json").read_bytes()).hexdigest()[:12]
    return (cache or cache_dir()) / "chp-node" / key


def chp_command(cache: Path | None = None) -> list[str]:
    """The proxy's command line (for ``c.ConfigurableHTTPProxy.command``).

    Raises:
        ProxyNotInstalled: Naming the command that installs it.
    """
    prefix = chp_prefix(cache)
    binary = prefix / "node_modules" / ".bin" / "configurable-http-proxy"
    if not (prefix / ".installed").exists() or not binary.exists():
        raise ProxyNotInstalled(
            f"the npm configurable-http-proxy is not installed in {prefix}; run `make proxy` (or {INSTALL_SCRIPT})"
        )
    if shutil.which("node") is None:
        raise ProxyNotInstalled("node (>= 20) is not on PATH; install nodejs")
    return [str(binary)]
