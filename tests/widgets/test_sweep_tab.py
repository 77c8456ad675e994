"""The launcher's Sweep tab without a browser: the space box, the trials table, the chart's points,
and a click that starts a sweep of the Jobs tab's job (ipywidgets' own test style).

The sweep itself runs in the hub (``tests/jobs/test_sweeps_integration.py``; in JupyterLab:
``tests/widgets/test_sweep_browser.py``). Here the backend is the local one, which runs no sweeps,
extended with a record of what the tab asked for, so the test sees exactly the request it made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelab.jobs import JobClient
from kubelab.jobs.backends.local import LocalBackend
from kubelab.jobs.spec import JobSpecError
from kubelab.jobs.sweeps import SweepSpec, SweepStatus, TrialStatus
from kubelab.widgets import JobLauncher
from kubelab.widgets.sweeps import chart_points, parse_space, trials_table_html


@pytest.mark.parametrize(("text", "space"), [
    ("lr loguniform 1e-4 1e-1", {"lr": {"type": "loguniform", "in": "args", "min": 1e-4, "max": 0.1}}),
    ("batch grid 16 32 64\n# a comment\n\n", {"batch": {"type": "grid", "in": "args", "values": [16, 32, 64]}}),
    ("WARMUP env uniform 0 10 int", {"WARMUP": {"type": "uniform", "in": "env", "min": 0, "max": 10, "int": True}}),
    ("opt choice sgd adam", {"opt": {"type": "choice", "in": "args", "values": ["sgd", "adam"]}}),
], ids=["loguniform", "grid", "env-int", "choice"])
def test_the_space_box(text: str, space: dict[str, Any]) -> None:
    assert parse_space(text) == space


@pytest.mark.parametrize(("text", "match"), [
    ("lr normal 0 1", "line 1 'lr normal 0 1': expected 'name \\[env\\] type values'"),
    ("lr uniform 0", "line 1 'lr uniform 0': uniform needs min and max"),
    ("a grid 1\na grid 2", "line 2: a is given twice"),
], ids=["unknown-type", "one-bound", "twice"])
def test_the_space_box_refuses_naming_the_line(text: str, match: str) -> None:
    with pytest.raises(JobSpecError, match=match) as e:
        parse_space(text)
    assert e.value.field == "space"


def status(values: list[float | None], phase: str = "Running") -> SweepStatus:
    trials = [TrialStatus(i, f"s-{i}", {"lr": 10 ** -(i + 1)}, "Succeeded" if v is not None else "Running", v)
              for i, v in enumerate(values)]
    out = SweepStatus("s", "alice", {"metric": "loss", "goal": "minimize", "strategy": "min"}, "random",
                      len(values), 2, phase=phase, trials=trials)
    out.best = min((t for t in trials if t.objective is not None), key=lambda t: t.objective).index
    return out


def test_the_table_is_sorted_by_objective_best_first() -> None:
    text = trials_table_html(status([0.4, 0.1, None, 0.3]))
    order = [text.index(f"data-trial='{i}'") for i in (1, 3, 0, 2)]
    assert order == sorted(order)
    assert "s-1 <b>(best)</b>" in text and "lr=0.01" in text


def test_the_chart_points_are_each_trial_and_the_best_so_far() -> None:
    assert chart_points(status([0.4, 0.1, None, 0.3])) == ([0, 1, 3], [0.4, 0.1, 0.3], [0, 1, 3], [0.4, 0.1, 0.1])


class SweepRecordingBackend(LocalBackend):
    """The local backend, plus a record of the sweeps the tab starts (the local backend runs none)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: list[dict[str, Any]] = []

    def sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        self.started.append(body)
        return self._status(body)

    @staticmethod
    def _status(body: dict[str, Any]) -> dict[str, Any]:
        spec = SweepSpec.from_dict(body)
        trials = [TrialStatus(i, spec.trial_name(i), p, "Succeeded", 1.0 / (i + 1)) for i, p in enumerate(spec.plan())]
        return SweepStatus(spec.name, "alice", spec.objective, spec.algorithm or "", spec.trials or 0, spec.parallel,
                           phase="Succeeded", trials=trials, best=len(trials) - 1).to_dict()

    def sweeps(self, all_users: bool = False) -> list[dict[str, Any]]:
        return [self._status(b) for b in self.started[-1:]]

    def get_sweep(self, name: str, wait: float = 0) -> dict[str, Any]:
        return self._status(self.started[-1])


def test_start_sweep_sends_the_jobs_tab_job_with_the_space(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print(1)\n")
    backend = SweepRecordingBackend(tmp_path / "jobs", workdir=tmp_path)
    launcher = JobLauncher(JobClient(backend), auto_refresh=False, script="train.py")
    try:
        assert launcher.widget.titles == ("Jobs", "Sweep")
        panel = launcher.sweep_panel
        panel.name.value = "lr"
        panel.space.value = "lr loguniform 1e-4 1e-1\nwidth grid 8 16"
        panel.trials.value = 4
        panel.start_button.click()
        assert launcher.last_error == ""
        (body,) = backend.started
        assert body["job"]["script"] == "train.py" and body["name"] == "lr" and body["trials"] == 4
        assert body["space"]["width"] == {"type": "grid", "in": "args", "values": [8, 16]}
        assert body["objective"] == {"metric": "loss", "goal": "minimize"}
        assert panel.sweep_select.value == "lr"
        assert "lr-3 <b>(best)</b>" in panel.table.value
        assert panel.chart is not None and list(panel.chart.trials.x) == [0, 1, 2, 3]
        assert panel.cancel_button.disabled, "an ended sweep cannot be cancelled"
        panel.space.value = "lr uniform 1"
        panel.start_button.click()
        assert launcher.last_error == "space: line 1 'lr uniform 1': uniform needs min and max"
    finally:
        launcher.close()


def test_a_backend_without_sweeps_says_so_on_the_error_line(tmp_path: Path) -> None:
    launcher = JobLauncher(JobClient(LocalBackend(tmp_path / "jobs", workdir=tmp_path)), auto_refresh=False)
    try:
        launcher.widget.selected_index = 1
        assert launcher.last_error.startswith("LocalBackend runs no sweeps"), launcher.last_error
    finally:
        launcher.close()
