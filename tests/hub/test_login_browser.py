"""Browser login on the real path: Chromium → hub → local OIDC provider → hub → LabSpawner → JupyterLab.

One platform (devcluster, provider, hub running ``hub_config/jupyterhub_config.py``) serves the
whole module; the last test checks that nothing secret seen along the way reached a log.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from playwright.sync_api import BrowserContext, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from kubelab.hub_config.provider import load_users
from tests.harness import SCREENSHOTS
from tests.hub.platform import Platform, delete_namespace, start_platform

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {u.name: u.password for u in load_users()}


@pytest.fixture(scope="module")
def core(cluster: Any) -> Iterator[kubernetes.client.CoreV1Api]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def seen() -> dict[str, str]:
    """Every secret value the tests see (cookies, OAuth codes, tokens) → what it is; none may be in a log."""
    return {}


@pytest.fixture(scope="module")
def platform(
    cluster: Any, core: kubernetes.client.CoreV1Api, client_secret_file: Path, provider_installed: Path,
    tmp_path_factory: pytest.TempPathFactory, seen: dict[str, str],
) -> Iterator[Platform]:
    workdir = tmp_path_factory.mktemp("login")
    p = start_platform(
        cluster, core, workdir, client_secret_file,
        # auth_state is kept (encrypted) only so the secrets test can read the OAuth tokens it looks for.
        env={"JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)},
        extra_config="c.Authenticator.enable_auth_state = True\n",
    )
    print(f"\nlogin page usable {p.login_page_seconds:.1f} s after starting the hub")
    seen[client_secret_file.read_text().strip()] = "client secret"
    yield p
    p.stop()
    delete_namespace(core, p.namespace)


def collect(context: BrowserContext, seen: dict[str, str]) -> None:
    """Remember every cookie value long enough to be a secret."""
    seen.update({c["value"].strip('"'): f"cookie {c['name']}" for c in context.cookies() if len(c["value"]) >= 16})


def watch_codes(page: Page, seen: dict[str, str]) -> None:
    """Remember every OAuth authorization code that passes through the browser."""

    def on_request(request: Any) -> None:
        for code in re.findall(r"[?&]code=([^&]+)", request.url):
            seen[code] = "OAuth code"

    page.on("request", on_request)


def sign_in(page: Page, platform: Platform, user: str, password: str) -> None:
    """Open the hub, click the sign-in button, fill the provider's form."""
    page.goto(f"{platform.url}/hub/login")
    page.get_by_role("button", name=re.compile(r"^Sign in with ")).click()
    page.wait_for_url(re.compile(rf"^{re.escape(platform.provider.issuer)}/interaction/"))
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_login_page(platform: Platform, browser_context: BrowserContext, core: kubernetes.client.CoreV1Api) -> None:
    page = browser_context.new_page()
    page.goto(f"{platform.url}/hub/login")
    expect(page).to_have_title("kubelab")
    button = page.locator("a[role=button]#kubelab-sign-in")
    expect(button).to_have_text("Sign in with Lab SSO")
    status = page.locator("#kubelab-gpu-status")
    expect(status).to_have_attribute("data-state", "ready")
    # The numbers come from the spawner's cache; check them against the API server directly.
    nodes = [n for n in core.list_node().items if (n.metadata.labels or {}).get("nvidia.com/gpu.product") == "NVIDIA-A100-SXM4-80GB"]
    total = sum(int(n.status.allocatable.get("nvidia.com/gpu", "0")) for n in nodes)
    expect(status.locator("li")).to_contain_text([re.compile(rf"NVIDIA A100 80GB\s*\d+ of {total} free")])
    shot(page, "login.png")


def test_alice_lands_on_picker_with_gpu_profiles(platform: Platform, browser_context: BrowserContext, seen: dict[str, str]) -> None:
    page = browser_context.new_page()
    watch_codes(page, seen)
    sign_in(page, platform, "alice", PASSWORDS["alice"])
    page.wait_for_url(f"{platform.url}/hub/spawn")
    expect(page.locator("#kl-group-gpu")).to_be_visible()
    expect(page.locator("#kl-radio-a100")).to_be_enabled()
    expect(page.locator("#kl-radio-cpu-small")).to_be_visible()
    shot(page, "login-picker-alice.png")
    collect(browser_context, seen)
    page.goto(f"{platform.url}/hub/home")
    expect(page.locator("#kubelab-gpu-status")).to_have_attribute("data-state", "ready")
    expect(page.locator("#kubelab-gpu-status li")).to_contain_text([re.compile(r"NVIDIA A100 80GB\s*\d+ of \d+ free")])
    shot(page, "login-home.png")
    user = platform.hub.api("GET", "/users/alice").json()
    assert user["groups"] == ["gpu-users"]
    assert user["admin"] is False


def test_bob_lands_on_picker_with_cpu_only(platform: Platform, browser_context: BrowserContext, seen: dict[str, str]) -> None:
    page = browser_context.new_page()
    watch_codes(page, seen)
    sign_in(page, platform, "bob", PASSWORDS["bob"])
    page.wait_for_url(f"{platform.url}/hub/spawn")
    expect(page.locator("#kl-group-cpu")).to_be_visible()
    expect(page.locator("#kl-radio-cpu-small")).to_be_visible()
    expect(page.locator("#kl-group-gpu")).to_have_count(0)
    expect(page.locator("input[name=profile][value=a100]")).to_have_count(0)
    shot(page, "login-picker-bob.png")
    collect(browser_context, seen)
    assert platform.hub.api("GET", "/users/bob").json()["groups"] == ["students"]


def test_admin_group_makes_admin(platform: Platform, browser_context: BrowserContext, seen: dict[str, str]) -> None:
    page = browser_context.new_page()
    watch_codes(page, seen)
    sign_in(page, platform, "admin", PASSWORDS["admin"])
    page.wait_for_url(f"{platform.url}/hub/spawn")
    collect(browser_context, seen)
    assert platform.hub.api("GET", "/users/admin").json()["admin"] is True


def test_wrong_password_leaves_no_session(platform: Platform, browser_context: BrowserContext) -> None:
    page = browser_context.new_page()
    sign_in(page, platform, "alice", "not-the-password")
    expect(page.locator("[role=alert]")).to_have_text("Invalid username or password.")
    assert page.url.startswith(platform.provider.issuer)
    shot(page, "login-wrong-password.png")
    hub_cookies = [c["name"] for c in browser_context.cookies(platform.url) if c["name"].startswith("jupyterhub-hub-login")]
    assert hub_cookies == []
    page.goto(f"{platform.url}/hub/home")
    page.wait_for_url(re.compile(rf"^{re.escape(platform.url)}/hub/login"))
    expect(page.locator("#kubelab-sign-in")).to_be_visible()


def test_logout_ends_the_session(platform: Platform, browser_context: BrowserContext, seen: dict[str, str]) -> None:
    page = browser_context.new_page()
    watch_codes(page, seen)
    sign_in(page, platform, "bob", PASSWORDS["bob"])
    page.wait_for_url(f"{platform.url}/hub/spawn")
    collect(browser_context, seen)
    page.goto(f"{platform.url}/hub/home")
    page.locator("#logout").click()
    # The hub's logout sends the browser through the provider's end_session and back to the login page.
    page.wait_for_url(f"{platform.url}/hub/login", timeout=30_000)
    assert [c for c in browser_context.cookies(platform.url) if c["name"] == "jupyterhub-hub-login"] == []
    page.goto(f"{platform.url}/hub/home")
    page.wait_for_url(re.compile(rf"^{re.escape(platform.url)}/hub/login"))
    # The provider's session ended too: signing in again asks for the password.
    page.get_by_role("button", name=re.compile(r"^Sign in with ")).click()
    page.wait_for_url(re.compile(rf"^{re.escape(platform.provider.issuer)}/interaction/"))
    expect(page.locator("#password")).to_be_visible()


def test_alice_starts_gpu_server_in_jupyterlab(
    platform: Platform, browser_context: BrowserContext, core: kubernetes.client.CoreV1Api, seen: dict[str, str]
) -> None:
    page = browser_context.new_page()
    watch_codes(page, seen)
    sign_in(page, platform, "alice", PASSWORDS["alice"])
    page.wait_for_url(f"{platform.url}/hub/spawn")
    page.check("#kl-radio-a100")
    page.select_option("#kl-image-a100", "pytorch-gpu")
    page.select_option("#kl-gpus-a100", "1")
    shot(page, "lab-picker.png")
    page.locator("form#spawn_form [type=submit], form [type=submit]").first.click()
    try:
        page.wait_for_url(re.compile(rf"^{re.escape(platform.url)}/user/alice/lab"), timeout=180_000)
    except PlaywrightTimeoutError:
        pytest.fail(f"JupyterLab did not open; page {page.url}:\n{page.inner_text('body')[:2000]}\n"
                    f"hub log:\n{platform.hub.log_tail(40)}")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)

    pods = core.list_namespaced_pod(platform.namespace, label_selector="kubelab.io/user=alice").items
    assert len(pods) == 1
    limits = pods[0].spec.containers[0].resources.limits
    assert limits.get("nvidia.com/gpu") == "1"

    # Create the notebook through the contents API (clicking the launcher right after load races).
    notebook = {
        "type": "notebook",
        "content": {
            "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
            "cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None, "outputs": [],
                       "source": "import os\nprint('profile=' + os.environ['KUBELAB_PROFILE'])"}],
        },
    }
    status = page.evaluate(
        """async (body) => {
            const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf='))?.split('=')[1] || '';
            const r = await fetch('/user/alice/api/contents/kubelab-check.ipynb', {
                method: 'PUT', headers: {'Content-Type': 'application/json', 'X-XSRFToken': decodeURIComponent(xsrf)},
                body: JSON.stringify(body)});
            return r.status;
        }""",
        notebook,
    )
    assert status in (200, 201)
    page.goto(f"{platform.url}/user/alice/lab/tree/kubelab-check.ipynb")
    # Wait for the kernel to report Idle in the status bar: its websocket is then connected.
    expect(page.get_by_role("button", name=re.compile(r"Python 3 \(ipykernel\) \| Idle"))).to_be_visible(timeout=90_000)
    cell = page.locator(".jp-Notebook .jp-Cell").first
    expect(cell.locator(".jp-InputArea-editor")).to_contain_text("KUBELAB_PROFILE")
    output = cell.locator(".jp-OutputArea-output")
    for attempt in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.get_by_role("button", name="Run this cell and advance (Shift+Enter)").click()
        try:
            # A kernel that has just said Idle can still drop the very first request; ask again then.
            expect(output).to_have_count(1, timeout=20_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
            print(f"cell produced no output on attempt {attempt + 1}; running it again")
    expect(output).to_have_text("profile=a100")
    news = page.get_by_role("alert").get_by_role("button", name="No")
    if news.count():
        news.click()  # JupyterLab's "get notified about news?" toast; keep it out of the screenshot
    shot(page, "lab-notebook.png")
    collect(browser_context, seen)

    # The notebook's kernel runs with the pod's environment: the same value through the API.
    env = {e.name: e.value for e in pods[0].spec.containers[0].env or []}
    assert env.get("KUBELAB_PROFILE") == "a100"
    platform.hub.stop_server("alice", timeout=90)


def test_jobs_scope_is_prepared(platform: Platform, seen: dict[str, str]) -> None:
    """A signed-in user may hold the jobs service's scope; an undeclared custom scope is refused."""
    hub = platform.hub
    token = hub.user_token("alice", scopes=["custom:kubelab:jobs"])
    seen[token] = "alice's API token"
    me = hub.api("GET", "/user", token=token).json()
    assert me["name"] == "alice"
    assert "custom:kubelab:jobs" in me["scopes"]
    r = hub.api("POST", "/users/alice/tokens", json={"scopes": ["custom:kubelab:not-declared"]})
    assert r.status_code == 400, r.text


def test_logs_hold_no_secrets(platform: Platform, seen: dict[str, str]) -> None:
    """After the whole login test: neither log holds the client secret, a cookie, a code or a token."""
    users = [u["name"] for u in platform.hub.api("GET", "/users").json()]
    assert "alice" in users
    for user in users:  # every user here signed in through the browser
        state = platform.hub.api("GET", f"/users/{user}").json().get("auth_state") or {}
        for key in ("access_token", "id_token", "refresh_token"):
            if state.get(key):
                seen[state[key]] = f"{user}'s {key}"
        assert state.get("access_token"), f"no auth_state for {user}: the test could not check its tokens"
    # Users' passwords are no tokens, but must not be logged either.
    seen.update({pw: f"{name}'s password" for name, pw in PASSWORDS.items()})
    assert len(seen) >= 10, seen  # it really collected something
    time.sleep(1)  # let the last log lines flush
    logs = {"hub": platform.hub.log_text(), "provider": platform.provider.log_text()}
    assert "User logged in: alice" in logs["hub"]
    assert "POST /token 200" in logs["provider"]
    leaks = {name: sorted(what for value, what in seen.items() if value in text) for name, text in logs.items()}
    assert leaks == {"hub": [], "provider": []}, json.dumps(leaks)
