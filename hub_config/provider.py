"""Run the local OIDC provider (``hub_config/oidc/provider.mjs``) as a child process.

Used by ``make demo`` and by the login tests. The Node packages are installed by
``hub_config/oidc/install.sh`` (``make oidc``) into ``$KUBELAB_CACHE/oidc-node/<lock hash>``;
this module finds them there and never installs anything itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

OIDC_DIR = Path(__file__).with_name("oidc")
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
DEFAULT_USERS_FILE = OIDC_DIR / "users.yaml"
INSTALL_SCRIPT = OIDC_DIR / "install.sh"


class ProviderError(RuntimeError):
    """The provider is not installed, or did not start."""


def cache_dir() -> Path:
    """``$KUBELAB_CACHE`` (default ``~/.cache/kubelab``), shared with the devcluster's binaries."""
    return Path(os.environ.get("KUBELAB_CACHE") or Path.home() / ".cache" / "kubelab")


def node_prefix(cache: Path | None = None) -> Path:
    """Where ``install.sh`` puts the provider's ``node_modules``: keyed by the lock file's hash.

    Mirrors ``install.sh`` (``sha256sum package-lock.json | cut -c1-12``), so a changed pin
    never reuses a stale install.
    """
    key = hashlib.sha256((OIDC_DIR / "package-lock.json").read_bytes()).hexdigest()[:12]
    return (cache or cache_dir()) / "oidc-node" / key


def installed_prefix(cache: Path | None = None) -> Path:
    """The installed prefix.

    Raises:
        ProviderError: ``install.sh`` has not run for the current lock file, or Node is missing.
    """
    prefix = node_prefix(cache)
    if not (prefix / ".installed").exists():
        raise ProviderError(f"the OIDC provider is not installed in {prefix}; run `make oidc` (or {INSTALL_SCRIPT})")
    if shutil.which("node") is None:
        raise ProviderError("node (>= 20) is not on PATH; install nodejs")
    return prefix


def ensure_client_secret(path: Path) -> Path:
    """Create a random client secret file (mode 0600) at ``path`` unless one exists.

    Returns:
        ``path``.
    """
    if not path.exists() or not path.read_text().strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


@dataclass(frozen=True)
class DemoUser:
    """One account of the provider's users file."""

    name: str
    password: str
    groups: tuple[str, ...]


def load_users(path: Path = DEFAULT_USERS_FILE) -> list[DemoUser]:
    """The accounts in a users file, for printing by ``make demo`` and for tests."""
    raw = yaml.safe_load(path.read_text()) or {}
    return [
        DemoUser(name, str(entry.get("password", "")), tuple(entry.get("groups") or ()))
        for name, entry in (raw.get("users") or {}).items()
    ]


class OidcProvider:
    """The local OIDC provider as a child process.

    Args:
        port: Port on 127.0.0.1.
        client_secret_file: File with the hub's client secret (see :func:`ensure_client_secret`).
        redirect_uris: The hub's ``.../hub/oauth_callback`` URL(s).
        post_logout_redirect_uris: Where the provider may send the browser after sign-out.
        log_path: File receiving the provider's output.
        users_file: The accounts; default ``hub_config/oidc/users.yaml``.
        client_id: The hub's client id.

    Attributes:
        issuer: ``http://127.0.0.1:<port>``.
    """

    def __init__(
        self,
        *,
        port: int,
        client_secret_file: Path,
        redirect_uris: Sequence[str],
        post_logout_redirect_uris: Sequence[str] = (),
        log_path: Path,
        users_file: Path = DEFAULT_USERS_FILE,
        client_id: str = "kubelab-hub",
    ) -> None:
        self.port = port
        self.client_secret_file = client_secret_file
        self.redirect_uris = list(redirect_uris)
        self.post_logout_redirect_uris = list(post_logout_redirect_uris)
        self.log_path = log_path
        self.users_file = users_file
        self.client_id = client_id
        self.issuer = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        """The ``node`` command line (it holds the secret's *file*, never the secret)."""
        cmd = [
            "node",
            str(PROVIDER_SCRIPT),
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--users={self.users_file}",
            f"--client-id={self.client_id}",
            f"--client-secret-file={self.client_secret_file}",
        ]
        cmd += [f"--redirect-uri={uri}" for uri in self.redirect_uris]
        cmd += [f"--post-logout-redirect-uri={uri}" for uri in self.post_logout_redirect_uris]
        return cmd

    def start(self, timeout: float = 30, env: Mapping[str, str] | None = None) -> OidcProvider:
        """Start the provider and wait until its discovery document answers.

        Raises:
            ProviderError: Not installed, exited early, or not answering within ``timeout``.
        """
        prefix = installed_prefix()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            self.command(),
            env={**os.environ, **(env or {}), "KUBELAB_OIDC_NODE_PREFIX": str(prefix)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches the demo runner, which stops us in order
        )
        deadline = time.monotonic() + timeout
        url = f"{self.issuer}/.well-known/openid-configuration"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProviderError(f"the OIDC provider exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback http URL built above)
                    if json.loads(r.read()).get("issuer") == self.issuer:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass  # not listening yet
            time.sleep(0.1)
        self.stop()
        raise ProviderError(f"the OIDC provider did not answer within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        """The provider's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
