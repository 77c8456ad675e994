"""Helpers shared by the hub tests: ports, the provider, running the hub as an admin would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from kubelab.hub_config.provider import OidcProvider

REPO = Path(__file__).resolve().parents[2]
HUB_CONFIG = REPO / "hub_config" / "jupyterhub_config.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_provider(
    workdir: Path, secret_file: Path, hub_url: str, port: int | None = None
) -> OidcProvider:
    """Start the local provider for a hub at ``hub_url``."""
    provider = OidcProvider(
        port=port or free_port(),
        client_secret_file=secret_file,
        redirect_uris=[f"{hub_url}/hub/oauth_callback"],
        post_logout_redirect_uris=[f"{hub_url}/hub/login"],
        log_path=workdir / "provider.log",
    )
    return provider.start()


def run_hub_until_exit(env: dict[str, str], workdir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``jupyterhub -f hub_config/jupyterhub_config.py`` as an admin would, until it exits.

    Raises:
        AssertionError: It is still running after ``timeout`` (it started instead of refusing).
    """
    bin_dir = Path(sys.executable).parent
    port = free_port()
    cmd = [
        str(bin_dir / "jupyterhub"),
        "-f",
        str(HUB_CONFIG),
        f"--JupyterHub.bind_url=http://127.0.0.1:{port}",
        f"--JupyterHub.hub_bind_url=http://127.0.0.1:{free_port()}",
        f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{free_port()}",
    ]
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
        raise AssertionError(f"the hub kept running for {timeout} s instead of refusing to start:\n{err[-3000:]}") from None
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    result.elapsed = time.monotonic() - start  # type: ignore[attr-defined]
    return result
