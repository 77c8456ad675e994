"""Live curves in the launcher, on the real local backend: the shipped example DDP script logs its
loss every step, and the launcher's bqplot chart and the jobs table show it while it runs.

Also: the log pane's "your lines" filter, the early script check, the default image and the
quota line for a group without GPUs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.jobs import JobClient, JobSpecError
from kubelab.jobs.backends.local import LocalBackend
from kubelab.jobs.examples import FILES, copy_examples, example_path
from kubelab.widgets import JobLauncher
from kubelab.widgets.views import default_image_for, quota_text


@pytest.fixture
def home(tmp_path: Path) -> Path:
    copy_examples(tmp_path / "kubelab-examples")
    return tmp_path


@pytest.fixture
def backend(home: Path) -> Iterator[LocalBackend]:
    backend = LocalBackend(home / ".jobs", workdir=home, max_workers=2, rendezvous_timeout=30)
    yield backend
    for job in backend.list():
        backend.delete(job.name)


def test_the_chart_shows_each_ranks_loss_while_the_job_runs(backend: LocalBackend) -> None:
    launcher = JobLauncher(backend=backend, auto_refresh=False, script="kubelab-examples/ddp_train.py", workers=2,
                           args="--steps 150 --sleep 0.05")
    try:
        launcher.name.value = "watch"
        launcher.submit_button.click()
        assert launcher.error.value == ""
        client = JobClient(backend)
        deadline = time.monotonic() + 150
        # While it runs, both ranks' lines grow in the chart.
        while True:
            series = launcher.metric_series
            counts = [series.points("loss", r) for r in (0, 1)]
            if min(counts) >= 10:
                break
            assert not client.get("watch").done, f"job ended before 10 points per rank: {counts}"
            assert time.monotonic() < deadline, counts
            time.sleep(0.2)
        assert client.get("watch").phase == "Running"
        launcher.charts.draw(launcher.metric_series, force=True)
        lines = launcher.charts.lines["loss"]
        assert [list(lines[r].labels) for r in sorted(lines)] == [["rank 0"], ["rank 1"]]
        assert all(len(lines[r].y) >= 10 for r in lines)
        launcher.refresh()
        assert "loss " in launcher.table.value  # the latest loss in the jobs table

        client.wait("watch", timeout=150)
        launcher.wait_for_metrics(timeout=30)
        final = client.metrics("watch")
        by_rank = {s["rank"]: s for s in final["series"] if s["name"] == "loss"}
        assert sorted(by_rank) == [0, 1] and all(s["steps"] == list(range(150)) for s in by_rank.values())
        assert launcher.metric_series.done
        assert [len(m.y) for m in launcher.charts.lines["loss"].values()] == [150, 150]
        last = by_rank[0]["values"][-1]
        assert f"loss {last:.4g}" in launcher.table.value
    finally:
        launcher.close()


def test_a_job_without_metrics_says_so(backend: LocalBackend, home: Path) -> None:
    (home / "quiet.py").write_text("print('no curves here')\n")
    client = JobClient(backend)
    client.submit(name="quiet", framework="replicas", script="quiet.py")
    client.wait("quiet", timeout=60)
    answer = client.metrics("quiet")
    assert answer["series"] == [] and "has reported no metrics" in answer["message"]


def test_the_log_pane_hides_the_launchers_lines(backend: LocalBackend, home: Path) -> None:
    (home / "oops.py").write_text("import torch.distributed as d\nd.init_process_group('gloo')\n"
                                  "print('my own line', flush=True)\nraise ValueError('bad batch size')\n")
    launcher = JobLauncher(backend=backend, auto_refresh=False)
    try:
        launcher.name.value, launcher.script.value, launcher.workers.value = "oops", "oops.py", 1
        launcher.submit_button.click()
        JobClient(backend).wait("oops", timeout=120)
        launcher.wait_for_logs(timeout=60)
        launcher.refresh()
        own = launcher.logs_view.value
        assert "my own line" in own and "ValueError: bad batch size" in own
        assert "kubelab-entrypoint" not in own and "ChildFailedError" not in own and "[rank0]" not in own
        launcher.log_filter.value = "all"
        assert "kubelab-entrypoint" in launcher.logs_view.value and "ChildFailedError" in launcher.logs_view.value
        # The detail's sentence names the user's error, not torchrun's.
        assert "Rank 0 failed in your code: ValueError: bad batch size" in launcher.detail.value
    finally:
        launcher.close()


def test_a_missing_script_is_refused_before_anything_starts(backend: LocalBackend, home: Path) -> None:
    launcher = JobLauncher(backend=backend, auto_refresh=False)
    try:
        launcher.name.value, launcher.script.value = "nope", "no_such.py"
        launcher.submit_button.click()
        assert "script: no_such.py does not exist" in launcher.error.value
        assert backend.list() == []
    finally:
        launcher.close()
    with pytest.raises(JobSpecError, match="is a folder, not a script") as info:
        JobClient(backend).submit(name="dir", script="kubelab-examples")
    assert info.value.field == "script"


@pytest.mark.parametrize(
    ("framework", "images", "default", "expected"),
    [
        ("pytorch", [{"key": "scipy", "display_name": "SciPy"}], "scipy", ""),
        ("pytorch", [{"key": "scipy"}, {"key": "torch-gpu", "display_name": "PyTorch (GPU)"}], "scipy", "torch-gpu"),
        ("tensorflow", [{"key": "scipy"}, {"key": "tf"}], "tf", "tf"),
        ("mpi", [], None, ""),
    ],
    ids=["pytorch-notebook-image", "pytorch-image", "catalogue-default", "none"],
)
def test_default_image(framework: str, images: list[dict[str, Any]], default: str | None, expected: str) -> None:
    assert default_image_for(framework, {"images": images, "default_image": default}) == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"quota": {"max_gpus": 2, "used_gpus": 0, "remaining_gpus": 0}, "gpu_classes": []},
         "GPU quota: your group allows no GPUs; jobs run on CPU"),
        ({"quota": {"max_gpus": 0, "used_gpus": 0}, "gpu_classes": [{"key": "a100"}]},
         "GPU quota: your group allows no GPUs; jobs run on CPU"),
        ({"quota": {"max_gpus": 2, "used_gpus": 1, "remaining_gpus": 1, "used_by": ["job 'a' (1 GPU)"]},
          "gpu_classes": [{"key": "a100"}]}, "GPU quota: 1 of 2 in use (job 'a' (1 GPU)); 1 remaining"),
    ],
    ids=["no-gpu-class", "zero-limit", "limited"],
)
def test_the_quota_line_never_contradicts_itself(options: dict[str, Any], expected: str) -> None:
    assert quota_text(options) == expected


def test_examples_are_on_offer_and_never_overwrite_edits(tmp_path: Path) -> None:
    folder = copy_examples(tmp_path / "ex")
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    (folder / "ddp_train.py").write_text("# mine\n")
    copy_examples(folder)
    assert (folder / "ddp_train.py").read_text() == "# mine\n"
    assert "JobLauncher(" in example_path("distributed-job.ipynb").read_text()
    with pytest.raises(KeyError, match="no example 'x.py'"):
        example_path("x.py")
