"""jupyterhub-fancy-profiles as kubelab's picker, in Chromium: it shows kubelab's profiles with
availability in the descriptions and unfit choices marked; its POST spawns the chosen GPU server
(validated on the server like any other), and JupyterLab opens."""

from __future__ import annotations

import re

import kubernetes
import pytest
from labhub import GPU_CLASS, gpu_free_from_api, make_namespace, start_hub, uname
from test_browser import CHROMIUM_ARGS, SCREENSHOTS

pytestmark = [pytest.mark.integration, pytest.mark.browser]

FELIX = uname("felix")
#: fancy-profiles' set-up, as its docs/install.md gives it (z2jh runs it as extraConfig
#: "01-enable-fancy-profiles", before kubelab's "10-kubelab")
SETUP = "from jupyterhub_fancy_profiles import setup_ui\nsetup_ui(c)\n"


@pytest.fixture(scope="module")
def core(cluster):
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def hub(cluster, core, tmp_path_factory):
    ns = make_namespace(core, "kl-fancy")
    h = start_hub(cluster, ns, tmp_path_factory.mktemp("fancyhub"), before=SETUP)
    h.ensure_user(FELIX, ["gpu-users"])
    yield h, ns
    h.stop_server(FELIX)
    h.stop()
    core.delete_namespace(ns)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_menu(page, profile: str, field: int):
    """Open the ``field``-th react-select of fancy-profiles' ``profile`` card; return its menu."""
    page.locator(f"#profile-{profile} .select__control").nth(field).click()
    menu = page.locator(".select__menu")
    menu.wait_for(timeout=10000)
    return menu


def pick(page, profile: str, field: int, label: str) -> None:
    """Choose ``label`` in the ``field``-th react-select of fancy-profiles' ``profile`` card."""
    open_menu(page, profile, field).locator(".react-select-item-title", has_text=re.compile(f"^{re.escape(label)}$")).click()


def test_pick_gpu_profile_and_image_spawn_and_reach_jupyterlab(hub, browser, core):
    h, ns = hub
    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    page.goto(f"{h.url}/hub/login")
    page.fill("input[name=username]", FELIX)
    page.fill("input[name=password]", "pw")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(r"/(hub/(spawn|home)|user/)"), timeout=30000)
    page.goto(f"{h.url}/hub/spawn")
    card = page.locator("#profile-a100")
    card.wait_for(timeout=30000)  # rendered by fancy-profiles' React code from kubelab's profile list
    free, total = gpu_free_from_api(core)
    assert f"{free} of {total} {GPU_CLASS} free" in card.inner_text()
    card.locator("h2").click()  # the heading: a click on the card's middle could land in a select
    pick(page, "a100", 0, "PyTorch (CUDA)")
    # the GPU counts: the one the cluster cannot hold is marked, with the reason
    menu = open_menu(page, "a100", 1).inner_text()
    assert "8 GPUs (unavailable)" in menu and f"Unavailable: the cluster has {total} {GPU_CLASS} in all" in menu
    page.locator(".select__menu .react-select-item-title", has_text=re.compile("^1 GPU$")).click()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "fancy-profiles-gpu.png"), full_page=True)
    page.click("button:has-text('Start')")
    page.wait_for_url(re.compile(rf"/user/{re.escape(FELIX)}/lab"), timeout=150000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=120000)  # JupyterLab's main area
    (pod,) = core.list_namespaced_pod(ns, label_selector=f"kubelab.io/user={FELIX}").items
    (container,) = pod.spec.containers
    assert container.image == "ghcr.io/kubelab/notebook-gpu:0.1.0"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.metadata.labels["kubelab.io/profile"] == "a100"
    context.close()


def test_fancy_profiles_post_gets_the_same_validation(hub):
    h, _ = hub
    import requests

    s = requests.Session()
    s.get(f"{h.url}/hub/login", timeout=30)
    s.post(f"{h.url}/hub/login", data={"username": FELIX, "password": "pw", "_xsrf": s.cookies.get("_xsrf")}, timeout=30)
    # exactly the fields fancy-profiles posts, with a count the profile does not offer
    page = s.get(f"{h.url}/hub/spawn/{FELIX}/bad", timeout=30).text
    xsrf = re.search(r'xsrf_token: "([^"]+)"', page).group(1)  # the token the page itself posts with
    form = {"_xsrf": xsrf, "profile": "a100", "select-profile": "a100",
            "profile-option-a100--image": "torch-gpu", "profile-option-a100--gpus": "3",
            "profile-option-cpu-small--image": "scipy"}
    r = s.post(f"{h.url}/hub/spawn/{FELIX}/bad", data=form, timeout=60)
    assert "gpus &#39;3&#39; is not allowed with profile &#39;a100&#39;; allowed: 1, 2, 4, 8" in r.text, r.text[-1500:]
