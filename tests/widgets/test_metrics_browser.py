"""Training you can watch (issue 13), in Chromium against a real hub on the devcluster.

alice's LabSpawner server runs JupyterLab on the process node; homes are ReadWriteMany, so the
job pods mount her home, run the shipped example ``ddp_train.py`` from it and write TensorBoard
files where her server sees them. Metrics travel as in production: each rank POSTs to the hub's
ingest URL with the job's token from its Secret.

1. JupyterLab: the "Distributed job" tile is in the launcher; the ``JobLauncher`` cell submits a
   2-worker DDP job that logs its loss every step; the bqplot chart shows >= 10 points of ``loss``
   for each rank *before the job ends*, and the jobs table shows the last loss. Screenshot:
   ``docs/screenshots/launcher-metrics.png``.
2. The hub's jobs page for the same job: status per rank, timeline, followed log, chart, Cancel;
   bob gets 404 for its page; admin sees it. Screenshots: ``docs/screenshots/hub-job-page.png``
   and ``hub-job-page-phone.png`` (a phone-sized viewport).
3. TensorBoard: a job run with ``--tensorboard`` shows its ``loss`` scalars in TensorBoard opened
   from the job's page; bob opening the same URL is refused.
"""

from __future__ import annotations

import json
import re
import secrets
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests
import yaml
from harness import SCREENSHOTS, HubProcess  # tests/ is on sys.path: its conftest.py puts it there

from kubelab.jobs import JobClient
from kubelab.jobs.examples import example_path

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
CATALOGUE: dict[str, Any] = {
    "platform": {"name": "kubelab-metrics-test"},
    "images": {"scipy": {"displayName": "SciPy", "image": "quay.io/jupyter/scipy-notebook:2025-10-20"}},
    "profiles": [
        {"slug": "cpu", "name": "CPU", "cpu": {"guarantee": 0.1, "limit": 2},
         "memory": {"guarantee": "256Mi", "limit": "4Gi"}, "images": ["scipy"], "default": True},
    ],
    "storage": {"home": {"size": "1Gi", "accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"}},
    "quotas": {"perUser": {"maxGpus": 2, "maxServers": 5}},
    "jobs": {"engine": "plain", "maxWorkers": 4, "maxRuntimeSeconds": 900},
}


def notebook(source: str) -> dict[str, Any]:
    return {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def lab_hub(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
    namespace = f"kl-metrics-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubelab.io/test": "true"}}})
    workdir = tmp_path_factory.mktemp("metrics-hub")
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(CATALOGUE))
    config = textwrap.dedent(f"""
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform, configure_templates
        c.KubeSpawner.namespace = {namespace!r}
        c.Authenticator.admin_users = {{"admin"}}
        catalogue = load_catalogue({str(workdir / "catalogue.yaml")!r})
        configure_platform(c, catalogue, jobs_namespace={namespace!r}, rendezvous_timeout=120)
        configure_templates(c, catalogue)  # kubelab's home page, with its link to the jobs pages
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = "pw"
        c.Authenticator.allow_all = True
        c.LabSpawner.start_timeout = 180
        c.LabSpawner.http_timeout = 150
        c.LabSpawner.delete_grace_period = 1
    """)
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=workdir, env={"KUBECONFIG": str(cluster.kubeconfig)})
    try:
        hub.start(timeout=90)
        for user in ("alice", "bob", "admin"):
            hub.ensure_user(user)
        r = hub.api("POST", "/users/alice/server", json={"profile": "cpu"}, timeout=180)
        assert r.status_code in (201, 202), r.text
        hub.wait_server("alice", timeout=240)
        token = hub.user_token("alice")
        put(hub, token, "kubelab-examples", {"type": "directory"})
        put(hub, token, "kubelab-examples/ddp_train.py",
            {"type": "file", "format": "text", "content": example_path("ddp_train.py").read_text()})
        requests.put(f"{hub.url}/user/alice/lab/api/settings/@jupyterlab/apputils-extension:notification",
                     json={"raw": json.dumps({"fetchNews": "false", "checkForUpdates": False})},
                     headers={"Authorization": f"token {token}"}, timeout=30)
        yield hub
    finally:
        hub.stop()
        core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def put(hub: HubProcess, token: str, path: str, model: dict[str, Any]) -> None:
    r = requests.put(f"{hub.url}/user/alice/api/contents/{path}", json=model, timeout=60,
                     headers={"Authorization": f"token {token}"})
    assert r.status_code in (200, 201), r.text


def login(browser: Any, hub: HubProcess, user: str, **context: Any) -> tuple[Any, Any]:
    ctx = browser.new_context(**({"viewport": {"width": 1280, "height": 1400}} | context))
    page = ctx.new_page()
    page.goto(f"{hub.url}/hub/login")
    # kubelab's sign-in page shows one "Sign in with <provider>" button (for OIDC); the test hub's
    # DummyAuthenticator takes the same form POST the stock page would send.
    xsrf = next(c["value"] for c in ctx.cookies() if c["name"] == "_xsrf")
    r = ctx.request.post(f"{hub.url}/hub/login", form={"username": user, "password": "pw", "_xsrf": xsrf})
    assert r.ok, (r.status, r.text()[:300])
    page.goto(f"{hub.url}/hub/home")
    return ctx, page


def run_first_cell(page: Any) -> None:
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120000)
    for _attempt in range(4):
        for _ in range(3):
            dialog = page.locator(".jp-Dialog")
            if not dialog.count():
                break
            dialog.first.locator(".jp-Dialog-button.jp-mod-accept").first.click()
            page.wait_for_timeout(500)
        page.click(".jp-Cell .jp-InputArea-editor >> nth=0")
        page.keyboard.press("Control+Enter")
        try:
            page.wait_for_function(
                "() => /\\[[0-9*]+\\]/.test(document.querySelector('.jp-Cell .jp-InputPrompt').textContent)",
                timeout=20000)
            return
        except Exception:  # noqa: BLE001, S112 - playwright's TimeoutError: not run yet, try again
            continue


CHART_POINTS = """() => {
  const fig = document.querySelector('.kubelab-chart-loss');
  if (!fig) return [];
  // One data path per rank; the legend draws short sample lines too, which are not data.
  return Array.from(fig.querySelectorAll('.curve path.line'))
    .map(p => ((p.getAttribute('d') || '').match(/[ML]/g) || []).length);
}"""


def test_jupyterlab_chart_shows_each_ranks_loss_while_the_job_runs(lab_hub: HubProcess, browser: Any) -> None:
    hub = lab_hub
    token = hub.user_token("alice")
    put(hub, token, "watch.ipynb", {"type": "notebook", "content": notebook(
        "from kubelab.widgets import JobLauncher\n"
        "JobLauncher(script='kubelab-examples/ddp_train.py', workers=2, args='--steps 400 --sleep 0.15')")})
    ctx, page = login(browser, hub, "alice")
    try:
        page.goto(f"{hub.url}/user/alice/lab", timeout=120000)
        # The launcher tile that opens the example notebook.
        page.wait_for_selector(".jp-LauncherCard[title*='Distributed job'], .jp-LauncherCard:has-text('Distributed job')",
                               timeout=120000)
        page.goto(f"{hub.url}/user/alice/lab/tree/watch.ipynb", timeout=120000)
        run_first_cell(page)
        page.wait_for_selector(".kubelab-launcher button:has-text('Submit')", timeout=180000)
        name_field = page.locator(".kubelab-launcher .widget-inline-hbox:has(label:text-is('Name')) input").first
        name_field.fill("watch-ddp")
        page.click(".kubelab-launcher button:has-text('Submit')")
        try:
            page.wait_for_selector(".kubelab-jobs tr[data-job='watch-ddp']", timeout=60000)
        except Exception as e:  # noqa: BLE001 - re-raised with what the widget says
            raise AssertionError(f"no job row; widget errors: "
                                 f"{page.locator('.kubelab-launcher .kubelab-error').all_inner_texts()}; output: "
                                 f"{page.locator('.jp-OutputArea').all_inner_texts()}") from e
        client = JobClient("hub", api_url=hub.api_url, token=token)
        deadline = time.monotonic() + 420
        counts: list[int] = []
        while True:
            counts = page.evaluate(CHART_POINTS)
            status = client.get("watch-ddp")
            if len(counts) == 2 and min(counts) >= 10:
                break
            assert not status.done, f"job ended ({status.phase}: {status.message}) with chart points {counts}"
            assert time.monotonic() < deadline, f"chart points {counts}; job {status.phase}"
            time.sleep(1)
        assert not client.get("watch-ddp").done  # seen while it runs, not after
        page.wait_for_function("() => /loss [0-9.e-]+/.test((document.querySelector("
                               "\".kubelab-jobs tr[data-job='watch-ddp'] .kubelab-latest\") || {}).textContent || '')",
                               timeout=60000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.locator(".kubelab-launcher").screenshot(path=str(SCREENSHOTS / "launcher-metrics.png"))
        shown = page.locator(".kubelab-jobs tr[data-job='watch-ddp'] .kubelab-latest").inner_text()
        series = client.metrics("watch-ddp")["series"]
        assert sorted(s["rank"] for s in series if s["name"] == "loss") == [0, 1]
        # The table's value is one the service holds for rank 0 (the widget may lag by a second).
        value = float(shown.split()[1])
        assert any(abs(v - value) <= 1e-3 * max(1.0, abs(v)) for s in series if s["rank"] == 0 for v in s["values"])
    finally:
        ctx.close()


def test_the_hub_jobs_page_for_the_same_job(lab_hub: HubProcess, browser: Any) -> None:
    hub = lab_hub
    token = hub.user_token("alice")
    client = JobClient("hub", api_url=hub.api_url, token=token)
    if "watch-ddp" not in [j.name for j in client.list()] or client.get("watch-ddp").done:
        pytest.fail("the JupyterLab test's job must still run: run this module as a whole")
    ctx, page = login(browser, hub, "alice")
    try:
        page.goto(f"{hub.url}/hub/home")
        page.click("#kubelab-jobs-link")
        page.wait_for_selector("tr.kubelab-job-row[data-job='watch-ddp']")
        page.keyboard.press("Tab")  # keyboard: the job's link is reachable and opens its page
        page.locator("tr.kubelab-job-row[data-job='watch-ddp'] a").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/hub/kubelab/jobs/alice/watch-ddp"))
        url = page.url.split("?")[0]
        page.wait_for_selector("#kubelab-status li[data-rank='0']:has-text('Rank 0 is running')", timeout=60000)
        page.wait_for_selector("#kubelab-status li[data-rank='1']:has-text('Rank 1 is running')")
        assert page.locator("#kubelab-timeline li").count() >= 2
        assert "Submitted: 2 worker(s), pytorch" in page.locator("#kubelab-timeline").inner_text()
        page.wait_for_function("() => document.getElementById('kubelab-log').textContent.includes('rank=0 step=')",
                               timeout=120000)
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll(\"svg[data-metric='loss'] polyline\"))"
            ".filter(p => Number(p.dataset.points) >= 10).length == 2", timeout=120000)
        assert "kubelab-entrypoint" not in page.locator("#kubelab-log").inner_text()  # your lines by default
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "hub-job-page.png"), full_page=True)

        # Other users: bob gets 404, admin sees it.
        bob_ctx, bob = login(browser, hub, "bob")
        assert bob.goto(url).status == 404
        assert bob.goto(f"{hub.url}/hub/kubelab/jobs").ok and "watch-ddp" not in bob.content()
        bob_ctx.close()
        admin_ctx, admin = login(browser, hub, "admin")
        assert admin.goto(url).ok and "Rank 0 is" in admin.locator("#kubelab-status").inner_text()
        assert admin.goto(f"{hub.url}/hub/kubelab/jobs").ok
        assert admin.locator("tr.kubelab-job-row[data-job='watch-ddp'][data-user='alice']").count() == 1
        admin_ctx.close()

        # A phone-sized screen: one column, nothing wider than the viewport.
        phone_ctx, phone = login(browser, hub, "alice", viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.goto(url)
        phone.wait_for_selector("#kubelab-status li")
        assert phone.evaluate("() => document.documentElement.scrollWidth") <= 400
        phone.screenshot(path=str(SCREENSHOTS / "hub-job-page-phone.png"), full_page=True)
        phone_ctx.close()

        # Cancel, from the keyboard.
        page.locator("#kubelab-cancel").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#kubelab-status [data-phase='Cancelled']", timeout=60000)
        assert client.get("watch-ddp").phase == "Cancelled"  # still listed: history
        assert client.metrics("watch-ddp")["series"]  # with its curves
    finally:
        ctx.close()


def test_tensorboard_from_the_job_page(lab_hub: HubProcess, browser: Any) -> None:
    hub = lab_hub
    token = hub.user_token("alice")
    client = JobClient("hub", api_url=hub.api_url, token=token)
    client.submit(name="tb-ddp", script="kubelab-examples/ddp_train.py", workers=2,
                  args=["--steps", "60", "--sleep", "0", "--tensorboard"])
    status = client.wait("tb-ddp", timeout=420)
    assert status.phase == "Succeeded", (status.message, status.last_logs)
    ctx, page = login(browser, hub, "alice")
    try:
        page.goto(f"{hub.url}/hub/kubelab/jobs/alice/tb-ddp")
        link = page.locator("#kubelab-tensorboard")
        href = link.get_attribute("href")
        assert href and href.startswith("/user/alice/tensorboard/")
        page.goto(f"{hub.url}{href}", timeout=180000)
        base = f"{hub.url}/user/alice/tensorboard"
        deadline = time.monotonic() + 180
        tags: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = page.request.get(f"{base}/data/plugin/scalars/tags")
            tags = r.json() if r.ok else {}
            if any(run.startswith("tb-ddp/rank-") and "loss" in t for run, t in tags.items()):
                break
            time.sleep(3)
        runs = sorted(run for run, t in tags.items() if run.startswith("tb-ddp/") and "loss" in t)
        assert runs == ["tb-ddp/rank-0", "tb-ddp/rank-1"], tags
        scalars = page.request.get(f"{base}/data/plugin/scalars/scalars?run=tb-ddp/rank-0&tag=loss").json()
        assert len(scalars) == 60
        page.wait_for_selector("text=loss", timeout=60000)
        page.wait_for_timeout(3000)  # TensorBoard draws its lines after the card appears
        page.screenshot(path=str(SCREENSHOTS / "tensorboard.png"))

        bob_ctx, bob = login(browser, hub, "bob")
        answer = bob.goto(f"{hub.url}{href}")
        # The hub refuses bob alice's server: 403 from her server's OAuth check, or the hub's own page.
        assert answer.status in (403, 404) or "/user/alice/tensorboard" not in bob.url, (answer.status, bob.url)
        r = bob.request.get(f"{base}/data/plugin/scalars/tags", max_redirects=0)
        assert r.status in (302, 403, 404) and "tb-ddp" not in r.text()
        bob_ctx.close()
    finally:
        ctx.close()
