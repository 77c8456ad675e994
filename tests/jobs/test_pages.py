"""The hub's jobs pages: the pure renderers (ranks in words, timeline, SVG charts, TensorBoard link)."""

from __future__ import annotations

import re

import pytest
from helpers import catalogue  # tests/jobs is on sys.path for its helpers

from kubelab.jobs.pages import charts_html, rank_sentence, status_html, svg_chart, timeline
from kubelab.jobs.spec import JobStatus, RankStatus
from kubelab.jobs.tensorboard import log_dir, tensorboard_link


@pytest.mark.parametrize(
    ("rank", "words"),
    [
        (RankStatus(0, "Running", pod="p", node="cpu-0"), "Rank 0 is running on cpu-0."),
        (RankStatus(1, "Succeeded", pod="p", node="cpu-0"), "Rank 1 finished successfully on cpu-0."),
        (RankStatus(1, "Failed", pod="p", exit_code=1, message="Error"), "Rank 1 failed with exit code 1: Error."),
        (RankStatus(0, "Pending", message="Unschedulable: 0/2 nodes are available"),
         "Rank 0 is waiting for a node: Unschedulable: 0/2 nodes are available."),
        (RankStatus(0, "Pending", pod="p", message="ContainerCreating"), "Rank 0 is starting: ContainerCreating."),
        (RankStatus(0, "Queued"), "Rank 0 is queued, waiting for the cluster's queue to admit the job."),
        (RankStatus(0, "Cancelled", message="stopped: cancelled"), "Rank 0 was stopped: stopped: cancelled."),
    ],
    ids=["running", "succeeded", "failed", "unscheduled", "starting", "queued", "cancelled"],
)
def test_each_rank_in_words(rank: RankStatus, words: str) -> None:
    assert rank_sentence(rank) == words


def job(**kw: object) -> JobStatus:
    values = {"name": "ddp", "user": "alice", "framework": "pytorch", "workers": 2, "phase": "Running",
              "created": "2026-12-01T10:00:00Z", "ranks": [RankStatus(0, "Running"), RankStatus(1, "Running")]}
    values.update(kw)
    return JobStatus(**values)  # type: ignore[arg-type]


def test_timeline_runs_from_submit_to_the_end() -> None:
    events = timeline(job(events=["rank 0: Scheduled: assigned to cpu-0"], phase="Succeeded",
                          finished="2026-12-01T10:05:00Z"))
    assert events[0][1].startswith("Submitted: 2 worker(s), pytorch")
    assert events[1] == ("", "rank 0: Scheduled: assigned to cpu-0")
    assert events[-1] == ("2026-12-01T10:05:00Z", "Ended: Succeeded.")


def test_a_failed_job_says_why_in_plain_words() -> None:
    text = status_html(job(phase="Failed", failed_rank=1, last_logs=["Traceback (most recent call last):",
                                                                      "  File 'x'", "ValueError: <nan loss>"],
                           ranks=[RankStatus(0, "Cancelled"), RankStatus(1, "Failed", exit_code=1)]))
    assert "Rank 1 failed in your code: ValueError: &lt;nan loss&gt;" in text and "<nan" not in text


def test_svg_chart_has_a_line_per_rank_and_says_its_last_values() -> None:
    series = [{"rank": 1, "name": "loss", "steps": [0, 1, 2], "values": [1.0, 0.5, 0.25]},
              {"rank": 0, "name": "loss", "steps": [0, 1, 2, 3], "values": [1.0, 0.6, 0.3, 0.2]}]
    svg = svg_chart("loss", series)
    assert re.findall(r"data-rank='(\d)' data-points='(\d)'", svg) == [("0", "4"), ("1", "3")]
    assert "rank 0: 4 points, last 0.2 at step 3" in svg and "role='img'" in svg
    assert svg_chart("loss", []) == ""


def test_charts_say_when_a_job_logged_nothing() -> None:
    assert "reported no metrics" in charts_html(None)
    assert "<svg" in charts_html({"series": [{"rank": 0, "name": "x<y", "steps": [1], "values": [2.0]}]})
    assert "x&lt;y" in charts_html({"series": [{"rank": 0, "name": "x<y", "steps": [1], "values": [2.0]}]})


@pytest.mark.parametrize(
    ("storage", "viewer", "offered"),
    [
        ({"home": {"accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"}}, "alice", True),
        ({"home": {"accessMode": "ReadWriteOnce", "mountPath": "/home/jovyan"}}, "alice", False),
        ({"home": {"accessMode": "ReadWriteOnce", "mountPath": "/home/jovyan"},
          "shared": {"claimName": "lab-shared", "mountPath": "/shared"}}, "alice", True),
        ({"home": {"accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"}}, "admin", False),
    ],
    ids=["rwx-home", "rwo-home", "shared-volume", "admin-viewer"],
)
def test_tensorboard_is_offered_only_where_the_server_sees_the_files(storage: dict, viewer: str,
                                                                     offered: bool) -> None:
    link = tensorboard_link("/hub/", job(), catalogue(storage=storage), viewer=viewer)
    assert (link is not None) == offered
    if link:
        assert link.startswith("/user/alice/tensorboard/")
    assert log_dir("/home/jovyan/", "ddp") == "/home/jovyan/kubelab-runs/ddp"
