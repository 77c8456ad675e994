"""The launcher's Sweep tab in JupyterLab (issue 14), in Chromium against a real hub on the devcluster.

alice's LabSpawner server runs JupyterLab; the notebook's ``JobLauncher`` describes a one-worker
job of ``tests/jobs/scripts/sweep_trial.py`` (in her RWX home) on the Jobs tab, and its Sweep tab a
log-uniform and an integer range. A click on "Start sweep" runs 4 trials, 2 at a time, as jobs on
the devcluster; the tab's bqplot chart shows a dot per trial and the best-so-far line, and the
table's best trial is the one the service says. Screenshot: ``docs/screenshots/launcher-sweep.png``.

The hub, the browser and the helpers are those of ``test_metrics_browser.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from kubelab.jobs import JobClient
from tests.jobs.helpers import SCRIPTS
from tests.widgets.test_metrics_browser import SCREENSHOTS, browser, lab_hub, login, notebook, put, run_first_cell

pytestmark = [pytest.mark.integration, pytest.mark.browser]
__all__ = ["browser", "lab_hub"]  # module fixtures, shared by import

CELL = """from kubelab.widgets import JobLauncher
launcher = JobLauncher(script="sweep_trial.py", workers=1)
launcher.framework.value = "replicas"
launcher.env.value = "STEPS=8\\nSLEEP=0.2"
panel = launcher.sweep_panel
panel.name.value = "tab-sweep"
panel.space.value = "lr loguniform 1e-4 1e-1\\nwidth uniform 8 32 int"
panel.trials.value = 4
panel.parallel.value = 2
launcher.widget.selected_index = 1
launcher"""

DOTS = """() => {
  const fig = document.querySelector('.kubelab-sweep-chart');
  if (!fig) return [-1, -1];
  const dots = fig.querySelectorAll('.scatter .dot, path.dot').length;
  const best = Array.from(fig.querySelectorAll('path.line')).filter(p => !p.closest('.legend'))
    .map(p => ((p.getAttribute('d') || '').match(/[ML]/g) || []).length);
  return [dots, Math.max(0, ...best)];
}"""


def test_the_sweep_tab_runs_a_sweep_and_charts_each_trial_and_the_best(lab_hub: Any, browser: Any) -> None:
    hub = lab_hub
    token = hub.user_token("alice")
    put(hub, token, "sweep_trial.py", {"type": "file", "format": "text",
                                       "content": (SCRIPTS / "sweep_trial.py").read_text()})
    put(hub, token, "sweep.ipynb", {"type": "notebook", "content": notebook(CELL)})
    ctx, page = login(browser, hub, "alice")
    client = JobClient("hub", api_url=hub.api_url, token=token)
    try:
        page.goto(f"{hub.url}/user/alice/lab/tree/sweep.ipynb", timeout=120000)
        run_first_cell(page)
        page.wait_for_selector(".kubelab-launcher .kubelab-sweep-tab button:has-text('Start sweep')", timeout=180000)
        page.click(".kubelab-sweep-tab button:has-text('Start sweep')")
        try:
            page.wait_for_selector(".kubelab-sweep-tab .kubelab-sweep-summary:has-text('tab-sweep')", timeout=60000)
        except Exception as e:  # noqa: BLE001 - re-raised with what the widget says
            raise AssertionError(f"no sweep shown; widget errors: "
                                 f"{page.locator('.kubelab-launcher .kubelab-error').all_inner_texts()}; output: "
                                 f"{page.locator('.jp-OutputArea').all_inner_texts()}") from e
        status = client.wait_sweep("tab-sweep", timeout=600)
        assert status.phase == "Succeeded", status
        # The tab polls every 2 s: wait until it shows the end, not a trial's intermediate value (seen
        # in CI: the chart had its 4 dots while trial 3's row still read Running at an earlier value).
        page.wait_for_selector(".kubelab-sweep-tab .kubelab-sweep-summary:has-text('Succeeded')", timeout=60000)
        deadline = time.monotonic() + 60
        # Four dots, and the best-so-far step line through four trials (2 x 4 - 1 segments' ends).
        while (seen := page.evaluate(DOTS)) != [4, 7]:
            assert time.monotonic() < deadline, f"chart shows {seen} (dots, best-line points); want [4, 7]"
            time.sleep(1)
        best = status.best_trial
        assert best is not None
        row = page.locator(f".kubelab-sweep-trials tr[data-trial='{best.index}']")
        assert "(best)" in row.inner_text() and f"{best.objective:.6g}" in row.inner_text()
        first = page.locator(".kubelab-sweep-trials tbody tr").first
        assert first.get_attribute("data-trial") == str(best.index), "the table is sorted best first"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.locator(".kubelab-launcher").screenshot(path=str(SCREENSHOTS / "launcher-sweep.png"))
        # The hub's sweep page shows the same sweep, best first.
        page.goto(f"{hub.url}/hub/kubelab/sweeps/alice/tab-sweep")
        assert page.locator("#kubelab-trials tbody tr").first.get_attribute("data-trial") == str(best.index)
        assert page.locator("svg.kubelab-sweep-chart circle.kubelab-trial").count() == 4
        page.screenshot(path=str(SCREENSHOTS / "hub-sweep-page.png"), full_page=True)
    finally:
        ctx.close()
        try:
            client.delete_sweep("tab-sweep")
        except KeyError:
            pass
