"""The widget says where things are: where a job's outputs go, and links to them once it ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelab.jobs.backends.local import LocalBackend
from kubelab.jobs.spec import JobStatus
from kubelab.widgets.launcher import JobLauncher
from kubelab.widgets.views import lab_tree_url, outputs_html, where_outputs_text

RWO = {"storage": {"home": "/home/jovyan", "outputs": "/home/jovyan/kubelab-runs/<job>", "outputs_route": "collect"}}
RWX = {"storage": {"home": "/home/jovyan", "outputs": "/home/jovyan/kubelab-runs/<job>", "outputs_route": "direct"}}
SHARED = {"storage": {"home": "/home/jovyan", "outputs": "/shared/kubelab-runs/alice/<job>", "outputs_route": "direct"}}


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (RWX, "Outputs (KUBELAB_OUTPUT_DIR): ~/kubelab-runs/ddp — the ranks write there as they run"),
        (RWO, "Outputs (KUBELAB_OUTPUT_DIR): ~/kubelab-runs/ddp — job pods cannot mount your home, so they come "
              "back into it when each rank ends"),
        (SHARED, "Outputs (KUBELAB_OUTPUT_DIR): /shared/kubelab-runs/alice/ddp — the ranks write there as they run"),
        ({}, ""),
    ],
    ids=["rwx-home", "rwo-home", "shared-volume", "old-service"],
)
def test_the_form_says_where_outputs_go(options: dict, says: str) -> None:
    assert where_outputs_text(options, "ddp") == says


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("/home/jovyan/kubelab-runs/ddp", "/user/alice/lab/tree/kubelab-runs/ddp"),
        ("/home/jovyan/kubelab-runs/a b#1", "/user/alice/lab/tree/kubelab-runs/a%20b%231"),
        ("/shared/kubelab-runs/ddp", None),
        ("/home/jovyanx/ddp", None),
    ],
    ids=["under-home", "quoted", "outside-the-server-root", "a-sibling-is-not-under"],
)
def test_lab_tree_url(path: str, url: str | None) -> None:
    assert lab_tree_url(path, "/home/jovyan", "/user/alice/") == url


def job(phase: str, state: str) -> JobStatus:
    return JobStatus(name="ddp", user="alice", framework="pytorch", workers=2, phase=phase,
                     outputs={"dir": "/home/jovyan/kubelab-runs/ddp", "route": "collect", "state": state,
                              "message": "2 file(s) (1.2 MB) came back into your home at /home/jovyan/kubelab-runs/ddp."})


def test_links_appear_once_the_job_ended() -> None:
    files = ["checkpoints/last.pt", "results.json"]
    running = outputs_html(job("Running", "waiting"), files, root="/home/jovyan", base_url="/user/alice/")
    assert "kubelab-outputs" in running and "<a " not in running
    ended = outputs_html(job("Succeeded", "collected"), files, root="/home/jovyan", base_url="/user/alice/")
    assert "href='/user/alice/lab/tree/kubelab-runs/ddp' target='_blank'" in ended
    assert ">Open the folder in the file browser</a>" in ended
    assert "href='/user/alice/lab/tree/kubelab-runs/ddp/checkpoints/last.pt'" in ended
    assert "data-state='collected'" in ended and "came back into your home" in ended


def test_a_job_without_outputs_info_shows_nothing() -> None:
    assert outputs_html(JobStatus(name="x", user="a", framework="pytorch", workers=1), []) == ""


def test_the_launcher_lists_what_the_kernel_sees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    out = tmp_path / "kubelab-runs" / "ddp"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"x")
    (out / "results.json").write_text("{}")
    (out / ".hidden").write_text("")
    launcher = JobLauncher(backend=LocalBackend(root=tmp_path / "jobs", workdir=tmp_path), auto_refresh=False)
    try:
        done = JobStatus(name="ddp", user="alice", framework="pytorch", workers=2, phase="Succeeded",
                         outputs={"dir": str(out), "route": "direct", "state": "written", "message": "m"})
        html = launcher.outputs_view(done)
        assert "lab/tree/kubelab-runs/ddp/checkpoints/last.pt" in html and "results.json" in html
        assert ".hidden" not in html
    finally:
        launcher.close()
