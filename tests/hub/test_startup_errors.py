"""A misconfigured hub refuses to start, with one error line that names the problem.

Each case runs the real ``jupyterhub -f hub_config/jupyterhub_config.py`` with everything
valid (a running local OIDC provider, a secret, the example catalogue) except one thing.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from kubelab.core.catalogue import EXAMPLE_PATH
from kubelab.hub_config.provider import OidcProvider
from tests.hub.hubtools import run_hub_until_exit

BAD_GPU_CLASS = EXAMPLE_PATH.read_text().replace("gpu: {class: a100,", "gpu: {class: h100,")
UNKNOWN_KEY = EXAMPLE_PATH.read_text().replace("  maxNamedServers: 3", "  maxNamedServers: 3\n  colour: blue")


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


Case = Callable[[Path, OidcProvider, Path], dict[str, str]]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


CASES: list[tuple[str, Case, str]] = [
    (
        "catalogue-unknown-gpu-class",
        lambda tmp, p, s: {"KUBELAB_CONFIG": write(tmp / "platform.yaml", BAD_GPU_CLASS)},
        r"platform\.yaml: profiles\[2\]\.gpu\.class: unknown GPU class 'h100'; allowed: a100",
    ),
    (
        "catalogue-unknown-key",
        lambda tmp, p, s: {"KUBELAB_CONFIG": write(tmp / "platform.yaml", UNKNOWN_KEY)},
        r"platform\.yaml: defaults\.colour: unknown key 'colour'; allowed keys: idleTimeout, maxNamedServers",
    ),
    (
        "catalogue-not-yaml",
        lambda tmp, p, s: {"KUBELAB_CONFIG": write(tmp / "platform.yaml", "profiles: [\n")},
        r"platform\.yaml: not valid YAML",
    ),
    (
        "catalogue-missing-file",
        lambda tmp, p, s: {"KUBELAB_CONFIG": str(tmp / "nope.yaml")},
        r"nope\.yaml: cannot read the file: No such file or directory",
    ),
    (
        "missing-client-secret",
        lambda tmp, p, s: {"KUBELAB_OIDC_CLIENT_SECRET_FILE": ""},
        r"no OAuth client secret: set KUBELAB_OIDC_CLIENT_SECRET_FILE to a file holding it",
    ),
    (
        "unreadable-client-secret-file",
        lambda tmp, p, s: {"KUBELAB_OIDC_CLIENT_SECRET_FILE": str(tmp / "absent-secret")},
        r"KUBELAB_OIDC_CLIENT_SECRET_FILE=.*absent-secret: cannot read the client secret file",
    ),
    (
        "unreachable-issuer",
        lambda tmp, p, s: {"KUBELAB_OIDC_ISSUER": closed_port_url(), "KUBELAB_OIDC_DISCOVERY_TIMEOUT": "2"},
        r"KUBELAB_OIDC_ISSUER=http://127\.0\.0\.1:\d+: cannot reach the OIDC issuer \(.*Connection refused\)",
    ),
    (
        "issuer-mismatch",
        lambda tmp, p, s: {"KUBELAB_OIDC_ISSUER": p.issuer.replace("127.0.0.1", "localhost")},
        r"the discovery document names issuer 'http://127\.0\.0\.1:\d+'",
    ),
    (
        "unknown-auth-mode",
        lambda tmp, p, s: {"KUBELAB_AUTH": "ldap"},
        r"KUBELAB_AUTH=ldap: unknown mode; allowed: oidc, github",
    ),
]


@pytest.mark.parametrize(("change", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hub_refuses_to_start(
    change: Case, match: str, idle_provider: OidcProvider, client_secret_file: Path, tmp_path: Path
) -> None:
    env = {
        "KUBELAB_CONFIG": str(EXAMPLE_PATH),
        "KUBELAB_OIDC_ISSUER": idle_provider.issuer,
        "KUBELAB_OIDC_CLIENT_SECRET_FILE": str(client_secret_file),
        "KUBELAB_OIDC_CLIENT_SECRET": "",
    }
    env.update(change(tmp_path, idle_provider, client_secret_file))
    result = run_hub_until_exit(env, tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "hub start-up failed" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert re.search(match, errors[0]), errors[0]
    # It stopped before creating anything: no database, no proxy started.
    assert not (tmp_path / "jupyterhub.sqlite").exists()
    assert client_secret_file.read_text().strip() not in result.stderr + result.stdout
