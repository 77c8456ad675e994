"""Authenticator wiring: settings from the environment, discovery, secrets kept out of config."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from kubelab.core.catalogue import EXAMPLE_PATH, load_catalogue
from kubelab.hub_config import auth

CATALOGUE = load_catalogue(EXAMPLE_PATH)
SECRET = "not-a-real-secret-4711"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, []),
        ("", []),
        ("a", ["a"]),
        ("a,b", ["a", "b"]),
        (" a , b  c ", ["a", "b", "c"]),
        (",,", []),
    ],
    ids=["none", "empty", "one", "comma", "mixed-separators", "only-commas"],
)
def test_split_list(raw: str | None, expected: list[str]) -> None:
    assert auth.split_list(raw) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FILE": "{file}"}, auth.SecretSource(file="{file}", env_var="VALUE")),
        ({"VALUE": "s3cret"}, auth.SecretSource(file=None, env_var="VALUE")),
        ({"FILE": "{file}", "VALUE": "other"}, auth.SecretSource(file="{file}", env_var="VALUE")),
    ],
    ids=["file", "value", "file-wins"],
)
def test_find_secret(env: dict[str, str], expected: auth.SecretSource, secret_file: Path) -> None:
    env = {k: v.format(file=secret_file) for k, v in env.items()}
    want = auth.SecretSource(file=expected.file and expected.file.format(file=secret_file), env_var=expected.env_var)
    assert auth.find_secret(env, "VALUE", "FILE") == want


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, r"no OAuth client secret: set FILE to a file holding it \(or VALUE\)"),
        ({"VALUE": "   "}, r"no OAuth client secret"),
        ({"FILE": "{missing}"}, r"FILE=.*missing: cannot read the client secret file: No such file"),
        ({"FILE": "{empty}"}, r"FILE=.*empty: the client secret file is empty"),
    ],
    ids=["nothing", "blank-value", "missing-file", "empty-file"],
)
def test_find_secret_errors(env: dict[str, str], match: str, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    env = {k: v.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for k, v in env.items()}
    with pytest.raises(auth.HubConfigError, match=match):
        auth.find_secret(env, "VALUE", "FILE")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"gpu-users", "admins", "students"}),
        ({"KUBELAB_ALLOWED_GROUPS": "lab"}, {"lab", "admins"}),
        ({"KUBELAB_ALLOWED_GROUPS": "lab", "KUBELAB_ADMIN_GROUPS": "ops"}, {"lab", "ops"}),
        ({"KUBELAB_ALLOWED_GROUPS": "*"}, None),
        ({"KUBELAB_ALLOWED_GROUPS": ""}, {"admins"}),
    ],
    ids=["catalogue-groups", "explicit", "explicit-admins", "everyone", "admins-only"],
)
def test_allowed_groups(env: dict[str, str], expected: set[str] | None, secret_file: Path) -> None:
    env = {"KUBELAB_OIDC_ISSUER": "http://127.0.0.1:1", "KUBELAB_OIDC_CLIENT_SECRET_FILE": str(secret_file), **env}
    settings = auth.OidcSettings.from_env(env, CATALOGUE)
    assert settings.allowed_groups == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, r"KUBELAB_OIDC_ISSUER is not set"),
        ({"KUBELAB_OIDC_ISSUER": "ftp://sso"}, r"KUBELAB_OIDC_ISSUER=ftp://sso: must be an http\(s\) URL"),
        ({"KUBELAB_OIDC_ISSUER": "http://sso", "KUBELAB_PUBLIC_URL": "hub"}, r"KUBELAB_PUBLIC_URL=hub: must be"),
        ({"KUBELAB_OIDC_ISSUER": "http://sso", "KUBELAB_OIDC_CLIENT_SECRET_FILE": ""}, r"no OAuth client secret"),
    ],
    ids=["no-issuer", "bad-scheme", "bad-public-url", "no-secret"],
)
def test_oidc_settings_errors(env: dict[str, str], match: str, secret_file: Path) -> None:
    env = {"KUBELAB_OIDC_CLIENT_SECRET_FILE": str(secret_file), **env}
    with pytest.raises(auth.HubConfigError, match=match):
        auth.OidcSettings.from_env(env, CATALOGUE)


def test_settings_repr_has_no_secret(secret_file: Path) -> None:
    env = {"KUBELAB_OIDC_ISSUER": "http://127.0.0.1:1", "KUBELAB_OIDC_CLIENT_SECRET": SECRET}
    assert SECRET not in repr(auth.OidcSettings.from_env(env, CATALOGUE))


DISCOVERY = {
    "issuer": "{issuer}",
    "authorization_endpoint": "{issuer}/auth",
    "token_endpoint": "{issuer}/token",
    "userinfo_endpoint": "{issuer}/me",
    "end_session_endpoint": "{issuer}/session/end",
}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"issuer": "http://elsewhere"}, r"discovery document names issuer 'http://elsewhere'"),
        ({"token_endpoint": None}, r"lacks token_endpoint"),
        ({"userinfo_endpoint": "", "authorization_endpoint": None}, r"lacks authorization_endpoint, userinfo_endpoint"),
    ],
    ids=["other-issuer", "no-token-endpoint", "two-missing"],
)
def test_parse_discovery_errors(change: dict[str, Any], match: str) -> None:
    doc = {k: v.format(issuer="http://sso") for k, v in DISCOVERY.items()} | change
    with pytest.raises(auth.HubConfigError, match=match):
        auth.parse_discovery("http://sso", doc)


class _Discovery(http.server.BaseHTTPRequestHandler):
    """A real HTTP server answering the discovery path (and 404 elsewhere)."""

    body: bytes = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/ok/.well-known/openid-configuration":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.body)
        elif self.path == "/text/.well-known/openid-configuration":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>")
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass  # keep test output quiet


@pytest.fixture
def discovery_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Discovery.body = json.dumps({k: v.format(issuer=f"{base}/ok") for k, v in DISCOVERY.items()}).encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


def test_discover_oidc(discovery_server: str) -> None:
    issuer = f"{discovery_server}/ok"
    assert auth.discover_oidc(issuer) == auth.OidcEndpoints(
        authorization=f"{issuer}/auth", token=f"{issuer}/token", userinfo=f"{issuer}/me", end_session=f"{issuer}/session/end"
    )


@pytest.mark.parametrize(
    ("suffix", "match"),
    [("/missing", r"answered HTTP 404"), ("/text", r"is not JSON")],
    ids=["http-404", "not-json"],
)
def test_discover_oidc_bad_answers(discovery_server: str, suffix: str, match: str) -> None:
    with pytest.raises(auth.HubConfigError, match=match):
        auth.discover_oidc(discovery_server + suffix, attempts=1)


def test_discover_oidc_unreachable() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound but never listening
        s.bind(("127.0.0.1", 0))
        issuer = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(auth.HubConfigError, match=rf"KUBELAB_OIDC_ISSUER={issuer}: cannot reach the OIDC issuer .* after 2 attempts"):
            auth.discover_oidc(issuer, timeout=1, attempts=2)


def _oidc_config(secret_file: Path, **env: str) -> Config:
    environ = {
        "KUBELAB_OIDC_ISSUER": "http://sso",
        "KUBELAB_OIDC_CLIENT_SECRET_FILE": str(secret_file),
        "KUBELAB_PUBLIC_URL": "http://127.0.0.1:8000/",
        **env,
    }
    settings = auth.OidcSettings.from_env(environ, CATALOGUE)
    endpoints = auth.parse_discovery("http://sso", {k: v.format(issuer="http://sso") for k, v in DISCOVERY.items()})
    c = Config()
    auth.configure_oidc(c, settings, endpoints, "Lab SSO")
    return c


def test_configure_oidc_traits(secret_file: Path) -> None:
    c = _oidc_config(secret_file)
    a = auth.KubelabOIDCAuthenticator(config=c)
    assert a.client_secret == SECRET
    assert a.client_id == "kubelab-hub"
    assert a.manage_groups is True
    assert a.auth_state_groups_key == "oauth_user.groups"
    assert a.oauth_callback_url == "http://127.0.0.1:8000/hub/oauth_callback"
    assert (a.authorize_url, a.token_url, a.userdata_url) == ("http://sso/auth", "http://sso/token", "http://sso/me")
    assert a.admin_groups == {"admins"}
    assert a.allowed_groups == {"gpu-users", "students", "admins"}
    assert a.login_service == "Lab SSO"
    assert a.logout_redirect_url == (
        "http://sso/session/end?client_id=kubelab-hub&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Fhub%2Flogin"
    )


def test_secret_never_in_config(secret_file: Path) -> None:
    """traitlets logs the whole config at DEBUG; the secret must not be in it."""
    c = _oidc_config(secret_file)
    assert SECRET not in repr(c)
    assert str(secret_file) in repr(c)


def test_secret_from_named_env(secret_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBELAB_OIDC_CLIENT_SECRET", "from-env-123")
    c = _oidc_config(secret_file, KUBELAB_OIDC_CLIENT_SECRET_FILE="", KUBELAB_OIDC_CLIENT_SECRET="from-env-123")
    assert "from-env-123" not in repr(c)
    assert auth.KubelabOIDCAuthenticator(config=c).client_secret == "from-env-123"


def test_allow_all(secret_file: Path) -> None:
    a = auth.KubelabOIDCAuthenticator(config=_oidc_config(secret_file, KUBELAB_ALLOWED_GROUPS="*"))
    assert a.allow_all is True
    assert a.allowed_groups == set()


@pytest.mark.parametrize(
    ("auth_state", "expected"),
    [
        ({}, []),
        ({"teams": []}, []),
        ({"teams": [{"slug": "gpu-users", "organization": {"login": "mylab"}}]}, ["mylab:gpu-users"]),
        (
            {"teams": [{"slug": "b", "organization": {"login": "o2"}}, {"slug": "a", "organization": {"login": "o1"}}]},
            ["o1:a", "o2:b"],
        ),
        ({"teams": [{"slug": "x"}, {"organization": {"login": "o"}}]}, []),
        ({"teams": [{"slug": "a", "organization": {"login": "o"}}] * 2}, ["o:a"]),
    ],
    ids=["no-teams-key", "no-teams", "one", "sorted", "incomplete-entries", "duplicates"],
)
def test_github_team_groups(auth_state: dict[str, Any], expected: list[str]) -> None:
    assert auth.github_team_groups(auth_state) == expected


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, r"KUBELAB_AUTH=github needs KUBELAB_GITHUB_CLIENT_ID"),
        ({"KUBELAB_GITHUB_CLIENT_ID": "id"}, r"needs KUBELAB_GITHUB_ORGS"),
        ({"KUBELAB_GITHUB_CLIENT_ID": "id", "KUBELAB_GITHUB_ORGS": "lab"}, r"no OAuth client secret: set KUBELAB_GITHUB_CLIENT_SECRET_FILE"),
    ],
    ids=["no-client-id", "no-orgs", "no-secret"],
)
def test_github_settings_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(auth.HubConfigError, match=match):
        auth.GitHubSettings.from_env(env)


def test_configure_github(secret_file: Path) -> None:
    env = {
        "KUBELAB_AUTH": "github",
        "KUBELAB_GITHUB_CLIENT_ID": "gh-id",
        "KUBELAB_GITHUB_CLIENT_SECRET_FILE": str(secret_file),
        "KUBELAB_GITHUB_ORGS": "mylab:gpu-users, mylab:students",
        "KUBELAB_ADMIN_GROUPS": "mylab:admins",
    }
    c = Config()
    assert auth.configure_auth(c, env, CATALOGUE) == "GitHub, organisations: mylab:gpu-users, mylab:students"
    a = auth.KubelabGitHubAuthenticator(config=c)
    assert a.client_secret == SECRET
    assert a.allowed_organizations == {"mylab:gpu-users", "mylab:students"}
    assert a.admin_groups == {"mylab:admins"}
    assert a.populate_teams_in_auth_state is True
    assert a.manage_groups is True
    assert a.auth_state_groups_key is auth.github_team_groups
    assert SECRET not in repr(c)


def test_unknown_auth_mode() -> None:
    with pytest.raises(auth.HubConfigError, match=r"KUBELAB_AUTH=saml: unknown mode; allowed: oidc, github"):
        auth.configure_auth(Config(), {"KUBELAB_AUTH": "saml"}, CATALOGUE)
