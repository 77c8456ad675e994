"""The job list/detail HTML and the form labels, as pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from kubelab.jobs import JobStatus, RankStatus
from kubelab.widgets.views import age, gpu_class_label, job_detail_html, jobs_table_html, quota_text

NOW = dt.datetime(2026, 11, 22, 20, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("created", "expected"),
    [("2026-11-22T19:59:18Z", "42s"), ("2026-11-22T19:55:00Z", "5m"), ("2026-11-22T17:00:00Z", "3h"),
     ("2026-11-20T20:00:00Z", "2d"), (None, "-"), ("yesterday", "-")],
    ids=["seconds", "minutes", "hours", "days", "missing", "garbage"],
)
def test_age(created: str | None, expected: str) -> None:
    assert age(created, NOW) == expected


def test_table_row_has_every_column_and_escapes_names() -> None:
    job = JobStatus(name="ddp", user="alice", framework="pytorch", workers=2, gpus_per_worker=1, gpu_class="a100",
                    phase="Running", created="2026-11-22T19:59:00Z",
                    ranks=[RankStatus(0, "Running"), RankStatus(1, "Pending")])
    html = jobs_table_html([job], NOW)
    for text in ("<b>ddp</b>", "pytorch", "<td style='padding:2px 8px'>2</td>", "0 Running", "1 Pending", "1m",
                 "2 x 1 a100"):
        assert text in html
    evil = JobStatus(name="<script>", user="u", framework="pytorch", workers=1)
    assert "<script>" not in jobs_table_html([evil]) and "&lt;script&gt;" in jobs_table_html([evil])


def test_detail_shows_the_failed_rank_and_its_last_lines() -> None:
    job = JobStatus(name="broken", user="alice", framework="pytorch", workers=2, phase="Failed", failed_rank=1,
                    last_logs=["Traceback", "ValueError: <boom>"], events=["rank 1: BackOff"],
                    ranks=[RankStatus(0, "Cancelled"), RankStatus(1, "Failed", exit_code=1)])
    html = job_detail_html(job)
    assert "Rank 1 failed; its last lines:" in html
    assert "ValueError: &lt;boom&gt;" in html and "rank 1: BackOff" in html


@pytest.mark.parametrize(
    ("quota", "expected"),
    [({"max_gpus": None, "used_gpus": 0}, "GPU quota: unlimited; 0 in use"),
     ({"max_gpus": 4, "used_gpus": 1, "remaining_gpus": 3, "used_by": ["job 'a' (1 GPU)"]},
      "GPU quota: 1 of 4 in use (job 'a' (1 GPU)); 3 remaining")],
    ids=["unlimited", "limited"],
)
def test_quota_text(quota: dict, expected: str) -> None:
    assert quota_text({"quota": quota}) == expected


def test_gpu_label_shows_free_of_allocatable() -> None:
    assert gpu_class_label({"key": "v100", "display_name": "V100", "free": 0, "allocatable": 4}) == "V100 (0 of 4 free)"
    assert gpu_class_label({"key": "v100"}) == "v100"
