"""The picker in Chromium: GPU users see live numbers that follow the cluster; others see no GPU profile."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import requests
from labhub import GPU_CLASS, gpu_free_from_api, make_namespace, start_hub, uname

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ALICE, BOB, HENRY = uname("alice"), uname("bob"), uname("henry")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def core(cluster) -> Iterator[kubernetes.client.CoreV1Api]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def hub(cluster, core, tmp_path_factory):
    ns = make_namespace(core, "kl-picker")
    h = start_hub(cluster, ns, tmp_path_factory.mktemp("pickerhub"))
    for user, groups in {ALICE: ["gpu-users"], BOB: ["students"], HENRY: ["gpu-users"]}.items():
        h.ensure_user(user, groups)
    yield h
    h.stop()
    core.delete_namespace(ns)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def login(browser, hub, user: str):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", "pw")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(r"/(hub/(spawn|home)|user/)"), timeout=30000)
    return context, page


def expected_text(core) -> str:
    free, total = gpu_free_from_api(core)
    return f"{free} of {total} {GPU_CLASS} free"


def wait_for_text(page, selector: str, core, timeout: float = 25, reload: bool = False) -> str:
    """Wait until the element shows what an independent LIST of nodes and pods says."""
    deadline = time.monotonic() + timeout
    while True:
        want = expected_text(core)
        got = page.inner_text(selector)
        if got == want or time.monotonic() > deadline:
            return got if got == want else f"{got!r} != API {want!r}"
        if reload:
            page.reload()
        time.sleep(0.5)


def test_picker_for_gpu_user_follows_the_cluster(hub, browser, core):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context, page = login(browser, hub, ALICE)
    page.goto(f"{hub.url}/hub/spawn")
    assert page.inner_text("#kl-group-cpu legend") == "CPU servers"
    assert page.inner_text("#kl-group-gpu legend") == "GPU servers"
    assert page.is_visible("#kl-profile-cpu-small") and page.is_visible("#kl-profile-a100")
    avail = "#kl-profile-a100 .kl-avail"
    before = wait_for_text(page, avail, core, reload=True)
    assert before == expected_text(core), before
    free_before = int(before.split()[0])
    # choices that cannot fit are greyed out with the reason
    eight = page.locator("#kl-gpus-a100 option[data-count='8']")
    assert eight.is_disabled() and eight.get_attribute("title") == f"the cluster has 4 {GPU_CLASS} in all"
    assert f"8 GPUs: the cluster has 4 {GPU_CLASS} in all" in page.inner_text("#kl-profile-a100 .kl-note")
    # keyboard: the profile radios are reachable and selectable without a mouse
    page.focus("#kl-radio-cpu-small")
    page.keyboard.press("ArrowDown")
    assert page.is_checked("#kl-radio-a100")
    page.screenshot(path=str(SCREENSHOTS / "picker-gpu-user.png"), full_page=True)

    # another user's GPU server starts: the open page updates itself (JSON endpoint, no reload)
    r = hub.api("POST", f"/users/{HENRY}/server", json={"profile": "a100", "gpus": 1}, timeout=120)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(HENRY)
    after = wait_for_text(page, avail, core, timeout=25)
    assert after == expected_text(core), after
    assert int(after.split()[0]) == free_before - 1 or int(after.split()[0]) == gpu_free_from_api(core)[0]
    page.screenshot(path=str(SCREENSHOTS / "picker-after-gpu-start.png"), full_page=True)
    context.close()

    # henry's last choice (a100) is pre-selected when he opens the picker for another server
    context, page = login(browser, hub, HENRY)
    page.goto(f"{hub.url}/hub/spawn/{HENRY}/second")
    if page.is_enabled("#kl-radio-a100"):
        assert page.is_checked("#kl-radio-a100")
        assert page.locator("#kl-gpus-a100 option[selected]").inner_text().startswith("1 GPU")
    else:  # the cluster filled up meanwhile (other suites share it): the picker must say why
        assert page.inner_text("#kl-profile-a100 .kl-reason").startswith("Unavailable: ")
    context.close()
    hub.stop_server(HENRY)


def test_picker_for_user_outside_gpu_group(hub, browser):
    context, page = login(browser, hub, BOB)
    page.goto(f"{hub.url}/hub/spawn")
    assert page.is_visible("#kl-profile-cpu-small")
    assert page.locator("#kl-group-gpu").count() == 0
    assert page.locator("#kl-profile-a100").count() == 0
    assert "A100" not in page.inner_text("form")
    page.screenshot(path=str(SCREENSHOTS / "picker-cpu-user.png"), full_page=True)
    context.close()


def test_public_summary_and_private_detail(hub, core):
    r = requests.get(f"{hub.url}/hub/api/kubelab/availability/summary", timeout=10)
    assert r.status_code == 200
    (cls,) = r.json()["classes"]
    free, total = gpu_free_from_api(core)
    assert (cls["display_name"], cls["free"], cls["total"]) == (GPU_CLASS, free, total)
    assert set(cls) == {"class", "display_name", "free", "total"}
    assert "Failed to get current user" not in hub.log_text(), "the public endpoint must not try to log in"
    assert requests.get(f"{hub.url}/hub/api/kubelab/availability", timeout=10).status_code in (401, 403)
    detail = hub.api("GET", "/kubelab/availability", token=hub.user_token(BOB)).json()
    assert [p["slug"] for p in detail["profiles"]] == ["cpu-small"]
    assert detail["quota"]["max_gpus"] == 2
