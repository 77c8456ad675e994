"""The launcher says where things are, in JupyterLab, on an RWO-only platform.

alice's LabSpawner server runs JupyterLab on the process node; her home is ReadWriteOnce and
there is no shared volume, so job pods cannot mount it. The form says where the outputs will go
and how they come back; after the 2-worker job has ended, the job view links to its files, and
the folder link opens JupyterLab's file browser on them (the collector brought them into her
home). Writes ``docs/screenshots/launcher-outputs.png`` and ``docs/screenshots/outputs-file-browser.png``.
"""

from __future__ import annotations

import copy
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

from kubelab.hub_config.demo import demo_catalogue
from tests.widgets.test_launcher_browser import browser, contents, dismiss_dialogs  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "jobs" / "scripts" / "save_outputs.py"
JOB = "train-outputs"
NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
               "source": 'from kubelab.widgets import JobLauncher\n'
                         'JobLauncher(script="proj/save_outputs.py", workers=2, args="shot")'}],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def rwo_hub(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
    namespace = f"kl-outputs-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubelab.io/test": "true"}}})
    workdir = tmp_path_factory.mktemp("outputs-hub")
    doc = copy.deepcopy(demo_catalogue())
    doc["storage"]["home"]["accessMode"] = "ReadWriteOnce"
    doc["storage"]["shared"] = None
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(doc))
    config = textwrap.dedent(f"""
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        c.KubeSpawner.namespace = {namespace!r}
        configure_platform(c, load_catalogue({str(workdir / "catalogue.yaml")!r}), jobs_namespace={namespace!r},
                           rendezvous_timeout=120)
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
        hub.ensure_user("alice")
        r = hub.api("POST", "/users/alice/server", json={"profile": "cpu-small"}, timeout=180)
        assert r.status_code in (201, 202), r.text
        hub.wait_server("alice", timeout=240)
        yield hub
    finally:
        hub.stop()
        core.delete_namespace(namespace)


def run_first_cell(page: Any) -> list[str]:
    """Run the notebook's first cell once the kernel is idle; again if the run was dropped (DESIGN.md)."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120000)
    dialogs: list[str] = []
    for _attempt in range(4):
        dialogs += dismiss_dialogs(page)
        page.click(".jp-Cell .jp-InputArea-editor >> nth=0")
        page.keyboard.press("Control+Enter")
        try:
            page.wait_for_function(
                "() => /\\[[0-9*]+\\]/.test(document.querySelector('.jp-Cell .jp-InputPrompt').textContent)",
                timeout=20000)
            return dialogs
        except Exception:  # noqa: BLE001, S112 - playwright's TimeoutError: not run yet, try again
            continue
    return dialogs


def test_the_launcher_says_where_outputs_go_and_links_them(rwo_hub: HubProcess, browser: Any) -> None:  # noqa: F811
    hub = rwo_hub
    token = hub.user_token("alice")
    contents(hub, token, "proj", {"type": "directory"})
    contents(hub, token, "proj/save_outputs.py", {"type": "file", "format": "text", "content": SCRIPT.read_text()})
    contents(hub, token, "outputs.ipynb", {"type": "notebook", "content": NOTEBOOK})
    requests.put(f"{hub.url}/user/alice/lab/api/settings/@jupyterlab/apputils-extension:notification",
                 json={"raw": json.dumps({"fetchNews": "false", "checkForUpdates": False})},
                 headers={"Authorization": f"token {token}"}, timeout=30)

    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "pw")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(r"/(hub/(spawn|home)|user/alice/)"), timeout=60000)
    page.goto(f"{hub.url}/user/alice/lab/tree/outputs.ipynb", timeout=120000)
    dialogs = run_first_cell(page)
    try:
        page.wait_for_selector(".kubelab-launcher button:has-text('Submit')", timeout=180000)
    except Exception as e:  # noqa: BLE001 - re-raised with what the notebook shows
        raise AssertionError(f"no launcher; output: {page.locator('.jp-OutputArea').all_inner_texts()!r}; "
                             f"dialogs: {dialogs}") from e

    name = page.locator(".kubelab-launcher .widget-inline-hbox:has(label:text-is('Name')) input").first
    name.fill(JOB)
    name.press("Enter")
    where = page.wait_for_selector(f".kubelab-where:has-text('~/kubelab-runs/{JOB}')", timeout=30000)
    assert "job pods cannot mount your home, so they come back into it when each rank ends" in where.inner_text()
    page.click(".kubelab-launcher button:has-text('Submit')")
    row = page.locator(f".kubelab-jobs tr[data-job='{JOB}']")
    row.wait_for(timeout=60000)
    error = page.locator(".kubelab-launcher .kubelab-error")
    deadline = time.monotonic() + 420
    while "0 Succeeded" not in row.inner_text() or "1 Succeeded" not in row.inner_text():
        assert time.monotonic() < deadline, f"row: {row.inner_text()!r}; error: {error.all_inner_texts()}"
        assert "Failed" not in row.inner_text(), page.locator(".kubelab-job-detail").inner_text()
        time.sleep(2)

    # Once the collector has brought them back, the job view links to the files.
    deadline = time.monotonic() + 120
    while not page.locator(".kubelab-outputs[data-state='collected'] a.kubelab-output").count():
        assert time.monotonic() < deadline, page.locator(".kubelab-launcher").inner_text()[-2000:]
        page.click(".kubelab-launcher button:has-text('Refresh')")
        time.sleep(2)
    outputs = page.locator(".kubelab-outputs")
    assert f"came back into your home at /home/jovyan/kubelab-runs/{JOB}" in outputs.inner_text()
    links = outputs.locator("a.kubelab-output").all_inner_texts()
    assert {"checkpoints/last.pt", "results.json", "rank-0.txt", "rank-1.txt"} <= set(links), links
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".kubelab-launcher").scroll_into_view_if_needed()
    page.locator(".kubelab-launcher").screenshot(path=str(SCREENSHOTS / "launcher-outputs.png"))

    # The folder link opens JupyterLab's file browser on the job's folder in alice's home.
    with context.expect_page() as opened:
        outputs.locator("a.kubelab-outputs-folder").click()
    lab = opened.value
    lab.wait_for_selector(".jp-DirListing-item:has-text('results.json')", timeout=120000)
    lab.wait_for_selector(".jp-DirListing-item:has-text('checkpoints')", timeout=30000)
    crumbs = lab.locator(".jp-BreadCrumbs").inner_text()
    assert "kubelab-runs" in crumbs and JOB in crumbs, crumbs
    dismiss_dialogs(lab)
    lab.set_viewport_size({"width": 1280, "height": 720})
    lab.dblclick(".jp-DirListing-item:has-text('results.json')")
    lab.wait_for_selector(".lm-TabBar-tab:has-text('results.json')", timeout=60000)
    lab.wait_for_timeout(1500)
    lab.screenshot(path=str(SCREENSHOTS / "outputs-file-browser.png"))
    r = requests.get(f"{hub.url}/user/alice/api/contents/kubelab-runs/{JOB}/results.json",
                     headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.ok and json.loads(r.json()["content"])["world"] == 2
    context.close()
