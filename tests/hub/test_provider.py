"""The local OIDC provider: install location, secrets, accounts, and a scripted code flow."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from kubelab.hub_config import provider as prov
from tests.hub.hubtools import free_port, start_provider

REDIRECT = "http://127.0.0.1:9/hub/oauth_callback"  # never dialled: the test stops at the redirect


def test_node_prefix_matches_install_script(provider_installed: Path) -> None:
    out = subprocess.run(["bash", str(prov.INSTALL_SCRIPT)], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == prov.node_prefix() == provider_installed


def test_client_secret_file(tmp_path: Path) -> None:
    path = prov.ensure_client_secret(tmp_path / "d" / "secret")
    first = path.read_text()
    assert len(first.strip()) >= 40
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert prov.ensure_client_secret(path).read_text() == first  # kept, not rotated


def test_demo_accounts() -> None:
    users = {u.name: u.groups for u in prov.load_users()}
    assert users == {"alice": ("gpu-users",), "bob": ("students",), "admin": ("admins",)}


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1"], ids=["any", "private"])
def test_refuses_non_loopback(host: str, provider_installed: Path, client_secret_file: Path) -> None:
    out = subprocess.run(
        ["node", str(prov.PROVIDER_SCRIPT), f"--host={host}", "--users", str(prov.DEFAULT_USERS_FILE),
         f"--client-secret-file={client_secret_file}", f"--redirect-uri={REDIRECT}", f"--port={free_port()}"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "KUBELAB_OIDC_NODE_PREFIX": str(provider_installed)},
    )
    assert out.returncode == 2
    assert f"--host must be a loopback address, got {host}" in out.stderr


@pytest.fixture(scope="module")
def running(provider_installed: Path, client_secret_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[prov.OidcProvider]:
    p = prov.OidcProvider(
        port=free_port(), client_secret_file=client_secret_file, redirect_uris=[REDIRECT],
        log_path=tmp_path_factory.mktemp("prov") / "provider.log",
    )
    p.start()
    yield p
    p.stop()


def code_flow(p: prov.OidcProvider, user: str, password: str) -> tuple[requests.Response, requests.Session]:
    """Authorize → password form → back to the redirect URI; returns the last response."""
    s = requests.Session()
    params = {"client_id": p.client_id, "redirect_uri": REDIRECT, "response_type": "code",
              "scope": "openid profile groups", "state": "st4te"}
    r = s.get(f"{p.issuer}/auth", params=params, allow_redirects=False)
    while r.is_redirect and not r.headers["location"].startswith(REDIRECT):
        r = s.get(urllib.parse.urljoin(p.issuer, r.headers["location"]), allow_redirects=False)
        if r.status_code == 200 and 'name="password"' in r.text:
            action = re.search(r'action="([^"]+)"', r.text)[1]
            r = s.post(urllib.parse.urljoin(p.issuer, action), data={"username": user, "password": password},
                       allow_redirects=False)
    return r, s


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize(
    ("user", "groups"),
    [("alice", ["gpu-users"]), ("bob", ["students"]), ("admin", ["admins"])],
    ids=["alice", "bob", "admin"],
)
def test_groups_in_id_token_and_userinfo(running: prov.OidcProvider, client_secret_file: Path, user: str, groups: list[str]) -> None:
    password = {u.name: u.password for u in prov.load_users()}[user]
    r, _ = code_flow(running, user, password)
    assert r.is_redirect, r.text[:300]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)
    assert query["state"] == ["st4te"]
    secret = client_secret_file.read_text().strip()
    tokens = requests.post(f"{running.issuer}/token", auth=(running.client_id, secret),
                           data={"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT}).json()
    claims = jwt_claims(tokens["id_token"])
    assert (claims["sub"], claims["preferred_username"], claims["groups"]) == (user, user, groups)
    me = requests.get(f"{running.issuer}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert (me["preferred_username"], me["groups"]) == (user, groups)
    log = running.log_text()
    assert tokens["access_token"] not in log and query["code"][0] not in log and secret not in log


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong"), ("nobody", "alice-demo"), ("alice", ""), ("__proto__", "x")],
    ids=["wrong-password", "unknown-user", "empty-password", "prototype-name"],
)
def test_bad_credentials_get_no_code(running: prov.OidcProvider, user: str, password: str) -> None:
    r, _ = code_flow(running, user, password)
    assert r.status_code == 401
    assert "Invalid username or password." in r.text


def test_token_endpoint_needs_the_secret(running: prov.OidcProvider) -> None:
    r, _ = code_flow(running, "bob", "bob-demo")
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)["code"][0]
    bad = requests.post(f"{running.issuer}/token", auth=(running.client_id, "not-the-secret"),
                        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client"


def test_start_provider_helper(provider_installed: Path, client_secret_file: Path, tmp_path: Path) -> None:
    p = start_provider(tmp_path, client_secret_file, "http://127.0.0.1:9")
    try:
        doc = requests.get(f"{p.issuer}/.well-known/openid-configuration").json()
        assert doc["issuer"] == p.issuer and "groups" in doc["claims_supported"]
    finally:
        p.stop()
    assert p.proc is None
