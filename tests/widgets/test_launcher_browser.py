"""The launcher in JupyterLab, on a server the hub started on the process node.

alice logs in, her LabSpawner server runs JupyterLab on the devcluster's process node, and a
notebook cell shows ``JobLauncher()``. Its client finds the hub through the server's own
``JUPYTERHUB_API_URL``/``JUPYTERHUB_API_TOKEN``. The browser fills the form, submits a 2-worker
PyTorch DDP job, waits for the table to show it Succeeded and for the rank's log to show the
final loss, and saves ``docs/screenshots/launcher.png``. Homes are ReadWriteMany here, so the
job pods mount alice's home and run the script that the test put there.
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

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
DDP_SCRIPT = ROOT / "tests" / "jobs" / "scripts" / "ddp_linreg.py"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
JOB = "ddp-demo"

CATALOGUE: dict[str, Any] = {
    "platform": {"name": "kubelab-launcher-test"},
    "gpuClasses": {
        "a100": {"displayName": "NVIDIA A100 80GB",
                 "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    },
    "images": {"scipy": {"displayName": "SciPy", "image": "quay.io/jupyter/scipy-notebook:2025-10-20"}},
    "profiles": [
        {"slug": "cpu", "name": "CPU", "cpu": {"guarantee": 0.1, "limit": 2},
         "memory": {"guarantee": "256Mi", "limit": "4Gi"}, "images": ["scipy"], "default": True},
        {"slug": "a100", "name": "A100", "images": ["scipy"], "gpu": {"class": "a100", "counts": [1, 2]},
         "groups": ["gpu-users"]},
    ],
    "storage": {"home": {"size": "1Gi", "accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"}},
    "quotas": {"perUser": {"maxGpus": 2, "maxServers": 5}},
    "jobs": {"engine": "plain", "maxWorkers": 4, "maxRuntimeSeconds": 900},
}

NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
               "source": "from kubelab.widgets import JobLauncher\nJobLauncher()"}],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def lab_hub(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with LabSpawner and the jobs service in a fresh namespace, alice's server running."""
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
    namespace = f"kl-launcher-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubelab.io/test": "true"}}})
    workdir = tmp_path_factory.mktemp("launcher-hub")
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(CATALOGUE))
    config = textwrap.dedent(f"""
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        c.KubeSpawner.namespace = {namespace!r}
        configure_platform(c, load_catalogue({str(workdir / "catalogue.yaml")!r}),
                           jobs_namespace={namespace!r}, rendezvous_timeout=120)
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
        hub.ensure_user("alice", groups=["gpu-users"])
        r = hub.api("POST", "/users/alice/server", json={"profile": "cpu"}, timeout=180)
        assert r.status_code in (201, 202), r.text
        hub.wait_server("alice", timeout=240)
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


def contents(hub: HubProcess, token: str, path: str, model: dict[str, Any]) -> None:
    """PUT a file or folder into alice's home through her server's contents API."""
    r = requests.put(f"{hub.url}/user/alice/api/contents/{path}", json=model, timeout=60,
                     headers={"Authorization": f"token {token}"})
    assert r.status_code in (200, 201), r.text


def dismiss_dialogs(page: Any) -> list[str]:
    """Accept any JupyterLab dialog in the way (a kernel choice, a "kernel restarting" notice)
    and return their texts, so that a failure can say what JupyterLab showed."""
    texts = []
    for _ in range(3):
        dialog = page.locator(".jp-Dialog")
        if not dialog.count():
            break
        texts.append(dialog.first.inner_text())
        dialog.first.locator(".jp-Dialog-button.jp-mod-accept").first.click()
        page.wait_for_timeout(500)
    return texts


def test_launcher_runs_a_ddp_job_in_jupyterlab(lab_hub: HubProcess, browser: Any) -> None:
    hub = lab_hub
    token = hub.user_token("alice")
    contents(hub, token, "ddp", {"type": "directory"})
    contents(hub, token, "ddp/ddp_linreg.py", {"type": "file", "format": "text", "content": DDP_SCRIPT.read_text()})
    contents(hub, token, "launcher.ipynb", {"type": "notebook", "content": NOTEBOOK})
    # No "news" toast over the screenshot.
    requests.put(f"{hub.url}/user/alice/lab/api/settings/@jupyterlab/apputils-extension:notification",
                 json={"raw": json.dumps({"fetchNews": "false", "checkForUpdates": False})},
                 headers={"Authorization": f"token {token}"}, timeout=30)

    context = browser.new_context(viewport={"width": 1280, "height": 1500})
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "pw")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(r"/(hub/(spawn|home)|user/alice/)"), timeout=60000)

    page.goto(f"{hub.url}/user/alice/lab/tree/launcher.ipynb", timeout=120000)
    # Running cells before the kernel is idle races (DESIGN.md): wait for it.
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120000)
    # Even then, a run sent while the kernel connection settles can be dropped ("[ ]:" stays
    # empty); run the cell again in place until it has an execution count.
    dialogs: list[str] = []
    for _attempt in range(4):
        dialogs += dismiss_dialogs(page)
        page.click(".jp-Cell .jp-InputArea-editor >> nth=0")
        page.keyboard.press("Control+Enter")
        try:
            page.wait_for_function(
                "() => /\\[[0-9*]+\\]/.test(document.querySelector('.jp-Cell .jp-InputPrompt').textContent)",
                timeout=20000,
            )
            break
        except Exception:  # noqa: BLE001, S112 - playwright's TimeoutError: not run yet, try again
            continue
    if dialogs:
        print(f"JupyterLab dialogs accepted: {dialogs}")
    try:
        page.wait_for_selector(".kubelab-launcher button:has-text('Submit')", timeout=180000)
    except Exception as e:  # noqa: BLE001 - re-raised with what the notebook shows
        page.screenshot(path=str(hub.workdir / "launcher-failed.png"), full_page=True)
        raise AssertionError(f"no launcher; cell output: {page.locator('.jp-OutputArea').all_inner_texts()!r}; "
                             f"dialogs: {dialogs}; screenshot {hub.workdir / 'launcher-failed.png'}") from e

    def field(label: str) -> Any:
        return page.locator(f".kubelab-launcher .widget-inline-hbox:has(label:text-is('{label}')) input").first

    # A job over alice's GPU quota: the form warns before, the service's refusal shows after. The
    # quota counts every pod of a user named alice in the cluster (a shared devcluster may hold
    # another test's), so what is left is read from the quota line, which the note must agree with.
    quota = page.locator(".kubelab-launcher .kubelab-quota").inner_text()
    used_left = re.search(r"GPU quota: (\d+) of 2 in use.*; (\d+) remaining", quota)
    assert used_left is not None, quota
    used, left = map(int, used_left.groups())
    assert left == max(0, 2 - used), quota  # the line never contradicts itself
    field("Script").fill("ddp/ddp_linreg.py")
    page.locator(".kubelab-launcher .widget-dropdown:has(label:text-is('GPU class')) select").select_option(index=1)
    page.locator(".kubelab-launcher .widget-dropdown:has(label:text-is('GPUs / worker')) select").select_option("2")
    field("Workers").fill("2")
    field("Workers").press("Enter")
    page.wait_for_selector(f".kubelab-gpu-note:has-text('This job takes 4 GPU(s); {left} left in your quota')")
    page.click(".kubelab-launcher button:has-text('Submit')")
    refusal = page.wait_for_selector(".kubelab-launcher .kubelab-error", timeout=60000)
    assert "GPU quota" in refusal.inner_text(), refusal.inner_text()
    page.wait_for_selector(".kubelab-launcher button:has-text('Submit'):not([disabled])")  # re-enabled
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".kubelab-launcher").screenshot(path=str(SCREENSHOTS / "launcher-quota-refused.png"))
    page.locator(".kubelab-launcher .widget-dropdown:has(label:text-is('GPU class')) select").select_option(index=0)

    field("Name").fill(JOB)
    field("Script").fill("ddp/ddp_linreg.py")
    field("Workers").fill("2")
    field("Workers").press("Enter")  # BoundedIntText syncs its value on Enter/blur
    page.click(".kubelab-launcher button:has-text('Submit')")

    error = page.locator(".kubelab-launcher .kubelab-error")
    page.wait_for_selector(f".kubelab-jobs tr[data-job='{JOB}']", timeout=60000)
    assert error.count() == 0, error.all_inner_texts()  # the refusal above was cleared

    # The table refreshes by itself (the launcher polls the service): wait for both ranks Succeeded.
    row = page.locator(f".kubelab-jobs tr[data-job='{JOB}']")
    deadline = time.monotonic() + 420
    while "1 Succeeded" not in row.inner_text() or "0 Succeeded" not in row.inner_text():
        assert time.monotonic() < deadline, f"job row: {row.inner_text()!r}; error: {error.all_inner_texts()}"
        assert "Failed" not in row.inner_text(), page.locator(".kubelab-job-detail").inner_text()
        time.sleep(2)
    cells = row.locator("td").all_inner_texts()
    assert cells[0].startswith(JOB) and cells[1:3] == ["pytorch", "2"] and cells[5] == "-"

    # The job is selected after submit; its rank-0 log streams into the detail view.
    logs = page.locator(".kubelab-launcher .kubelab-logs")
    page.wait_for_function(
        "() => (document.querySelector('.kubelab-launcher .kubelab-logs') || {}).textContent"
        "?.includes('final_loss=')", timeout=120000,
    )
    assert re.search(r"rank=0 world_size=2 .*final_loss=[0-9.]+", logs.inner_text())
    assert "Succeeded" in page.locator(".kubelab-job-detail").inner_text()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".kubelab-launcher").scroll_into_view_if_needed()
    page.locator(".kubelab-launcher").screenshot(path=str(SCREENSHOTS / "launcher.png"))

    # What the widget showed is what the service says, asked independently with alice's token.
    client = JobClient("hub", api_url=hub.api_url, token=token)
    status = client.get(JOB)
    assert status.phase == "Succeeded" and [r.phase for r in status.ranks] == ["Succeeded", "Succeeded"]
    assert any("final_loss=" in line for line in client.logs(JOB, rank=1))

    # The job ended, so there is nothing to cancel; Delete from the widget removes it (history ends).
    assert page.locator(".kubelab-launcher button:has-text('Cancel job')").is_disabled()
    page.click(".kubelab-launcher button:has-text('Delete job')")
    page.wait_for_selector(f".kubelab-jobs tr[data-job='{JOB}']", state="detached", timeout=60000)
    with pytest.raises(KeyError, match=f"no job '{JOB}'"):
        client.get(JOB)
    context.close()
