"""JobLauncher: set values, click, assert on the state and output (ipywidgets' own test style).

The launcher runs on the real local-process backend: a click starts real processes through the
real entrypoint, and the table, the detail view and the logs come from them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.jobs import JobClient, JobSpec
from kubelab.jobs.backends.local import LocalBackend
from kubelab.widgets import JobLauncher

SCRIPTS = Path(__file__).parents[1] / "jobs" / "notebook"  # ddp_steps.py lives there


class CatalogueBackend(LocalBackend):
    """Local processes, with the options a hub with an A100 class and a GPU quota publishes.

    Stands in for the service's catalogue only, to render GPU choices on a machine without GPUs;
    jobs still run as real local processes.
    """

    def options(self) -> dict[str, Any]:
        options = super().options()
        options["gpu_classes"] = [{"key": "a100", "display_name": "NVIDIA A100 80GB", "counts": [1, 2],
                                   "allocatable": 8, "free": 3}]
        options["images"] = [{"key": "pytorch-cpu", "display_name": "PyTorch (CPU)"}]
        options["default_image"] = "pytorch-cpu"
        options["quota"] = {"max_gpus": 2, "used_gpus": 1, "remaining_gpus": 1, "used_by": ["server 'gpu' (1 GPU)"]}
        return options


class CountingBackend(LocalBackend):
    """Local processes, counting how often the launcher polls the job list."""

    calls = 0

    def list(self, all_users: bool = False) -> list:
        type(self).calls += 1
        return super().list(all_users)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    backend = LocalBackend(tmp_path / "jobs", workdir=SCRIPTS, max_workers=4, rendezvous_timeout=30)
    yield backend
    for job in backend.list():
        backend.cancel(job.name)


@pytest.fixture
def launcher(backend: LocalBackend) -> Iterator[JobLauncher]:
    launcher = JobLauncher(backend=backend, auto_refresh=False)
    yield launcher
    launcher.close()


def fill(launcher: JobLauncher, **values: Any) -> None:
    for name, value in values.items():
        getattr(launcher, name).value = value


def test_form_is_built_from_the_options(launcher: JobLauncher) -> None:
    assert list(launcher.framework.options) == ["pytorch", "tensorflow", "mpi", "replicas"]
    assert launcher.workers.max == 4
    assert list(launcher.gpu_class.options) == [("CPU only", "")]
    assert launcher.gpu_class.label == "CPU only" and launcher.image.label == "the notebook's image"
    assert launcher.gpus.disabled and launcher.gpus.value == 0
    assert launcher.name.value.startswith("pytorch-")
    assert "GPU quota: unlimited" in launcher.header.value
    assert "No jobs yet." in launcher.table.value
    assert launcher.cancel_button.disabled  # nothing to cancel yet


def test_gpu_choices_show_availability_and_quota(tmp_path: Path) -> None:
    launcher = JobLauncher(backend=CatalogueBackend(tmp_path), auto_refresh=False)
    try:
        assert launcher.gpu_class.options[1] == ("NVIDIA A100 80GB (3 of 8 free)", "a100")
        assert "GPU quota: 1 of 2 in use (server &#x27;gpu&#x27; (1 GPU)); 1 remaining" in launcher.header.value
        assert launcher.image.value == "pytorch-cpu"
        fill(launcher, gpu_class="a100")
        assert not launcher.gpus.disabled
        assert [v for _, v in launcher.gpus.options] == [1, 2]
        fill(launcher, workers=2, gpus=2)
        assert "This job takes 4 GPU(s); 1 left in your quota; 3 free now (it will wait for GPUs)" \
            in launcher.gpu_note.value
        assert "#b00020" in launcher.gpu_note.value  # over the quota: shown as a warning
        fill(launcher, gpu_class="")
        assert launcher.gpus.disabled and launcher.gpu_note.value == ""
        fill(launcher, gpu_class="a100", script="-m pkg.train", args="--lr 0.1 --name 'a b'", env="A=1\n# c\nB = x=y")
        spec = launcher.spec_from_form()
        assert (spec.module, spec.script, spec.args) == ("pkg.train", None, ["--lr", "0.1", "--name", "a b"])
        assert (spec.gpu_class, spec.gpus_per_worker, spec.image) == ("a100", 1, "pytorch-cpu")
        assert spec.env == {"A": "1", "B": "x=y"}
    finally:
        launcher.close()


def test_submit_runs_the_job_and_shows_status_and_logs(launcher: JobLauncher, backend: LocalBackend) -> None:
    states: list[bool] = []
    launcher.submit_button.observe(lambda change: states.append(change["new"]), names="disabled")
    fill(launcher, name="ddp", script="ddp_steps.py", args="--steps 20", workers=2)

    launcher.submit_button.click()

    assert launcher.error.value == "" and launcher.last_error == ""
    assert states == [True, False]  # disabled while in flight, enabled again after
    assert launcher.job_select.value == "ddp"
    assert "<b>ddp</b>" in launcher.table.value and "ddp" in launcher.detail.value
    assert launcher.name.value != "ddp"  # a fresh name for the next submission
    assert list(launcher.rank_select.options) == [0, 1]

    JobClient(backend).wait("ddp", timeout=180)
    launcher.wait_for_logs(timeout=60)  # the rank-0 stream ends when rank 0 ends
    assert "rank=0 world_size=2 final_loss=" in launcher.log_text
    assert "rank=0 world_size=2 final_loss=" in launcher.logs_view.value

    launcher.refresh()
    assert "0 Succeeded" in launcher.table.value and "1 Succeeded" in launcher.table.value
    assert "Succeeded" in launcher.detail.value

    launcher.rank_select.value = 1
    launcher.wait_for_logs(timeout=60)
    assert "rank=1 world_size=2 final_loss=" in launcher.log_text
    assert "rank=0 " not in launcher.log_text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"name": "Bad_Name"}, "name: &#x27;Bad_Name&#x27; is not allowed"),
        ({"script": ""}, "script: set exactly one of &#x27;script&#x27; and &#x27;module&#x27;"),
        ({"env": "NOEQUALS"}, "env: line 1 &#x27;NOEQUALS&#x27;: expected KEY=VALUE"),
        ({"args": "--name 'open"}, "args: No closing quotation"),
        ({"workers": 4, "name": "ok-name"}, None),
    ],
    ids=["bad-name", "no-script", "bad-env", "bad-args", "valid-control"],
)
def test_bad_input_is_shown_in_the_widget(launcher: JobLauncher, backend: LocalBackend, values: dict,
                                          message: str | None) -> None:
    fill(launcher, script="ddp_steps.py", args="--steps 1", workers=1)
    fill(launcher, **values)
    launcher.submit_button.click()
    assert not launcher.submit_button.disabled
    if message is None:  # the control case: the same form with valid values does submit
        assert launcher.error.value == ""
        assert [j.name for j in backend.list()] == ["ok-name"]
    else:
        assert message in launcher.error.value
        assert backend.list() == []


def test_service_errors_are_shown_in_the_widget(launcher: JobLauncher, backend: LocalBackend) -> None:
    backend.submit(JobSpec(name="taken", script="ddp_steps.py", args=["--steps", "1"]))
    fill(launcher, name="taken", script="ddp_steps.py", workers=1)
    launcher.submit_button.click()
    assert "name: job &#x27;taken&#x27; already exists; delete it first" in launcher.error.value
    fill(launcher, name="other")
    launcher.submit_button.click()
    assert launcher.error.value == ""  # cleared by the next action


def test_cancel_from_the_detail_view(launcher: JobLauncher, backend: LocalBackend) -> None:
    fill(launcher, name="long", script="ddp_steps.py", args="--steps 100000000", workers=2)
    launcher.submit_button.click()
    assert launcher.job_select.value == "long" and not launcher.cancel_button.disabled
    pids = [int(r.pod.removeprefix("pid:")) for r in backend.get("long").ranks]

    launcher.cancel_button.click()

    assert launcher.error.value == ""
    # Cancel stops the ranks; the job stays listed, Cancelled, until it is deleted.
    assert [j.phase for j in backend.list()] == ["Cancelled"]
    assert "long" in launcher.table.value and launcher.job_select.value == "long"
    assert launcher.cancel_button.disabled and not launcher.delete_button.disabled
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    launcher.delete_button.click()
    assert backend.list() == [] and launcher.error.value == ""
    assert "long" not in launcher.table.value and launcher.job_select.value is None
    assert launcher.delete_button.disabled
    launcher.cancel_button.disabled = False
    launcher.cancel_button.click()  # nothing selected: says so instead of failing silently
    assert "no job selected" in launcher.error.value


def test_unreachable_service_is_reported_in_the_widget(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    launcher = JobLauncher(backend="hub", api_url=f"http://127.0.0.1:{port}/hub/api", token="t", retries=0,
                           auto_refresh=False)
    try:
        assert "cannot list jobs" in launcher.error.value and "cannot reach the kubelab jobs service" \
            in launcher.error.value
        assert launcher.framework.options  # the form still renders, from defaults
        launcher.refresh_button.click()
        assert "cannot reach the kubelab jobs service" in launcher.error.value
        assert not launcher.refresh_button.disabled
    finally:
        launcher.close()


def test_polling_backs_off_while_idle(tmp_path: Path) -> None:
    CountingBackend.calls = 0
    launcher = JobLauncher(backend=CountingBackend(tmp_path), refresh_interval=0.05, max_refresh_interval=0.4)
    try:
        time.sleep(2.0)
        idle_calls = CountingBackend.calls
        # Without backoff 2 s at 0.05 s would be ~40 polls; growing by 1.5x to 0.4 s it is ~10.
        assert 3 <= idle_calls <= 15, idle_calls
        assert "next refresh in" in launcher.refresh_note.value
    finally:
        launcher.close()
    time.sleep(0.5)
    assert CountingBackend.calls <= idle_calls + 1  # close() stops the poller


def test_html_fallback_without_ipywidgets(tmp_path: Path) -> None:
    code = f"""
import sys, json
sys.modules["ipywidgets"] = None  # makes "import ipywidgets" fail, as in a kernel without it
from kubelab.jobs.backends.local import LocalBackend
from kubelab.widgets import JobLauncher
backend = LocalBackend({str(tmp_path)!r})
launcher = JobLauncher(backend=backend)
bundle = launcher._repr_mimebundle_()
print(json.dumps(bundle))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    bundle = json.loads(out.stdout)
    assert set(bundle) == {"text/plain", "text/html"}
    html = bundle["text/html"]
    assert "Frameworks: pytorch, tensorflow, mpi, replicas" in html
    assert "No jobs yet." in html and "Install ipywidgets" in html


def test_widget_bundle_is_the_ipywidgets_view(launcher: JobLauncher) -> None:
    bundle = launcher._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == launcher.widget.model_id
