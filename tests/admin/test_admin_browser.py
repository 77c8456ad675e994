"""The admin page in Chromium, on a real hub and the devcluster, beside ``/hub/metrics``.

alice runs a 1-GPU server and bob a 1-GPU job; the admin sees both with their GPUs, stops alice's
server (idle for more than 0 minutes) with the keyboard alone, and the scrape of ``/hub/metrics``
(parsed with prometheus_client's own parser) holds the numbers the page shows. alice, who is no
admin, gets 403.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import requests
import yaml
from harness import SCREENSHOTS, HubProcess
from labhub import CATALOGUE, make_namespace, uname
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ALICE, BOB, ADMIN = uname("alice"), uname("bob"), uname("admin")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def core(cluster: Any) -> Iterator[kubernetes.client.CoreV1Api]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def hub(cluster: Any, core: kubernetes.client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    ns = make_namespace(core, "kl-adminpage")
    workdir = tmp_path_factory.mktemp("adminpage")
    raw = copy.deepcopy(CATALOGUE)
    raw["jobs"] = {"engine": "plain", "namespace": ns, "kueue": {"enabled": False}}
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(raw))
    config = f"""
from kubelab.core.catalogue import load_catalogue
from kubelab.hub_config.wiring import configure_platform
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "pw"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{{ADMIN!r}}}
c.JupyterHub.authenticate_prometheus = False
c.KubeSpawner.namespace = {ns!r}
c.LabSpawner.start_timeout = 120
c.LabSpawner.http_timeout = 90
c.LabSpawner.delete_grace_period = 1
configure_platform(c, load_catalogue({str(workdir / "catalogue.yaml")!r}), jobs_namespace={ns!r}, rendezvous_timeout=120)
"""
    h = HubProcess(config, connect_ip=cluster.host_ip, workdir=workdir, env={"KUBECONFIG": str(cluster.kubeconfig)})
    h.start(timeout=90)
    try:
        for user, groups in {ALICE: ["gpu-users"], BOB: ["gpu-users"], ADMIN: []}.items():
            h.ensure_user(user, groups)
        yield h
    finally:
        h.stop()
        core.delete_namespace(ns)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def login(browser: Any, hub: HubProcess, user: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", "pw")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(r"/(hub/(spawn|home)|user/)"), timeout=30000)
    return context, page


def scrape(hub: HubProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/hub/metrics`` parsed by prometheus_client: (sample name, sorted labels) → value."""
    r = requests.get(f"{hub.url}/hub/metrics", timeout=30)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def page_numbers(page: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What the admin page shows, as the metric samples that must carry the same numbers."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for row in page.locator("#kubelab-classes tbody tr[data-class]").all():
        cls = row.get_attribute("data-class")
        for metric, attr in (("allocatable", "data-allocatable"), ("in_use", "data-in-use"), ("free", "data-free")):
            out[(f"kubelab_gpus_{metric}", (("gpu_class", cls),))] = float(row.get_attribute(attr))
        for kind in ("server", "job"):
            gpus = sum(int(h.get_attribute("data-gpus")) for h in
                       page.locator(f"#kubelab-holders tr[data-class='{cls}'][data-kind='{kind}']").all())
            out[("kubelab_gpus_allocated", (("gpu_class", cls), ("kind", kind)))] = float(gpus)
    for row in page.locator("#kubelab-group-quotas tr.kubelab-quota").all():
        out[("kubelab_group_gpus", (("group", row.get_attribute("data-name")),))] = float(row.get_attribute("data-gpus"))
    return out


def test_the_admin_page_shows_who_holds_the_gpus_and_stops_an_idle_server(hub: HubProcess, browser: Any) -> None:
    r = hub.api("POST", f"/users/{ALICE}/server", json={"profile": "a100", "gpus": 1}, timeout=120)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(ALICE, timeout=120)
    bob = hub.user_token(BOB)
    r = hub.api("POST", "/kubelab/jobs", token=bob, json={
        "name": "train", "framework": "replicas", "module": "http.server", "args": ["0"], "workers": 1,
        "gpus_per_worker": 1, "gpu_class": "a100"})
    assert r.status_code == 201, r.text
    wait_until(lambda: hub.api("GET", "/kubelab/jobs/train", token=bob).json()["phase"] == "Running", 120, "bob's job running")

    context, page = login(browser, hub, ADMIN)
    response = page.goto(f"{hub.url}/hub/kubelab/admin?idle_minutes=0")
    assert response.status == 200
    server = page.locator(f"#kubelab-holders tr[data-user='{ALICE}'][data-kind='server']")
    job = page.locator(f"#kubelab-holders tr[data-user='{BOB}'][data-kind='job']")
    assert server.get_attribute("data-gpus") == "1" and server.get_attribute("data-class") == "a100"
    assert job.get_attribute("data-gpus") == "1" and job.get_attribute("data-name") == "train"
    assert page.locator(f"#kubelab-user-quotas tr[data-name='{ALICE}']").get_attribute("data-gpus") == "1"

    # the scrape holds what the page shows (other suites share the cluster: retry until both agree)
    deadline = time.monotonic() + 30
    while True:
        shown, scraped = page_numbers(page), scrape(hub)
        missing = {k: (v, scraped.get(k)) for k, v in shown.items() if scraped.get(k) != v}
        if not missing or time.monotonic() > deadline:
            break
        page.reload()
    assert not missing, missing
    assert scraped[("kubelab_jobs", (("phase", "Running"),))] >= 1
    assert ("kubelab_quota_refusals_total", (("reason", "user_gpus"), ("source", "server"), ("status", "429"))) in scraped
    assert not [k for k in scraped if k[0] == "kubelab_user_gpus"], "per-user series are off by default"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "admin-page.png"), full_page=True)

    # alice's server is idle for more than 0 minutes: its culling deadline is shown; Stop, by keyboard
    idle = page.locator(f"#kubelab-idle tr[data-user='{ALICE}']")
    assert idle.get_attribute("data-timeout") == "3600"  # the a100 profile's timeout: the catalogue default
    stop = idle.locator("button.kubelab-stop")
    stop.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#kubelab-stopped", timeout=60000)
    assert ALICE in page.inner_text("#kubelab-stopped")
    servers = hub.api("GET", f"/users/{ALICE}").json()["servers"]
    assert not servers.get("", {}).get("ready"), servers
    wait_until(lambda: page.reload() or not page.locator(f"#kubelab-holders tr[data-user='{ALICE}']").count(), 60,
               "alice's GPU to be given back")
    context.close()

    context, page = login(browser, hub, ALICE)
    response = page.goto(f"{hub.url}/hub/kubelab/admin")
    assert response.status == 403
    assert "custom:kubelab:admin" in page.content()
    context.close()
    hub.api("DELETE", "/kubelab/jobs/train", token=bob)
