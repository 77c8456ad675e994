"""The service's bounded metrics store and its ConfigMap form (pure)."""

from __future__ import annotations

import json

import pytest

from kubelab.jobs.metricstore import (
    Batch,
    JobMetrics,
    MetricLimits,
    MetricsInputError,
    MetricStore,
    dump,
    load,
    parse_batch,
    points_of,
)


def body(**data: object) -> bytes:
    return json.dumps({"rank": 0, "points": [], "dropped": 0, **data}).encode()


@pytest.mark.parametrize(
    ("raw", "field", "match"),
    [
        (b"{", "(body)", "not valid JSON"),
        (b"[]", "(body)", "JSON object"),
        (body(extra=1), "extra", "unknown field"),
        (body(rank=-1), "rank", "0..4095"),
        (body(rank="0"), "rank", "integer"),
        (body(dropped=-2), "dropped", ">= 0"),
        (body(points={}), "points", "list"),
        (body(points=[["loss", 1]]), "points[0]", r"\[name, step, value\]"),
        (body(points=[["bad name", 1, 1.0]]), "points[0]", "not allowed"),
        (body(points=[["loss", -1, 1.0]]), "points[0]", "step"),
        (body(points=[["loss", 1, "1.0"]]), "points[0]", "finite number"),
        (body(points=[["loss", 1, True]]), "points[0]", "finite number"),
        (b'{"rank": 0, "points": [["loss", 1, NaN]]}', "points[0]", "finite number"),
        (b"x" * (256 * 1024 + 1), "(body)", "bytes; at most"),
    ],
    ids=["broken-json", "array", "unknown", "negative-rank", "str-rank", "negative-dropped", "points-not-list",
         "short-point", "bad-name", "negative-step", "str-value", "bool-value", "nan", "too-big"],
)
def test_parse_batch_names_what_is_wrong(raw: bytes, field: str, match: str) -> None:
    with pytest.raises(MetricsInputError, match=match) as info:
        parse_batch(raw)
    assert info.value.field == field


def test_parse_batch_accepts_a_good_batch() -> None:
    batch = parse_batch(body(rank=1, points=[["loss", 3, 0.5], ["acc", 3, 1]], dropped=4))
    assert batch == Batch(rank=1, points=[("loss", 3, 0.5), ("acc", 3, 1.0)], dropped=4)


def test_a_full_series_is_downsampled_keeping_the_start_and_the_latest() -> None:
    store = MetricStore(MetricLimits(points_per_series=100))
    for step in range(1000):
        store.ingest("j", "alice", Batch(0, [("loss", step, float(step))]))
    series = store.job("j").series[(0, "loss")]
    assert len(series) <= 100
    assert series.steps[0] == 0 and series.steps[-1] == 999 and series.steps == sorted(series.steps)
    assert store.user_points("alice") == len(series)
    assert store.job("j").latest() == {"loss": {0: 999.0}}


def test_series_beyond_the_job_limit_are_refused_and_counted() -> None:
    store = MetricStore(MetricLimits(series_per_job=2))
    accepted = store.ingest("j", "alice", Batch(0, [("a", 0, 1.0), ("b", 0, 1.0), ("c", 0, 1.0)]))
    assert accepted == 2 and store.job("j").refused == 1
    assert store.job("j").to_json()["dropped"] == 1


def test_the_user_bound_downsamples_their_largest_series() -> None:
    store = MetricStore(MetricLimits(points_per_user=300, points_per_series=10_000))
    for step in range(400):
        store.ingest("big", "alice", Batch(0, [("loss", step, 1.0)]))
    store.ingest("small", "alice", Batch(0, [("loss", s, 1.0) for s in range(10)]))
    store.ingest("other", "bob", Batch(0, [("loss", s, 1.0) for s in range(500)]))
    assert store.user_points("alice") <= 300
    assert len(store.job("small").series[(0, "loss")]) == 10  # the largest was thinned, not the small one
    assert store.job("big").series[(0, "loss")].steps[0] == 0
    store.drop("big")
    assert store.user_points("alice") == 10


def test_followers_get_what_came_after_their_seq() -> None:
    store = MetricStore(MetricLimits(recent_points=5))
    store.ingest("j", "alice", Batch(0, [("loss", 0, 1.0), ("loss", 1, 0.9)]))
    job = store.job("j")
    assert job.since(0) == [[0, "loss", 0, 1.0], [0, "loss", 1, 0.9]] and job.since(2) == []
    store.ingest("j", "alice", Batch(1, [("loss", s, 0.1) for s in range(2, 10)]))
    assert [p[2] for p in job.since(2)] == [5, 6, 7, 8, 9]  # only what the ring still holds
    assert job.seq == 10


def test_dump_and_load_round_trip_and_fit_the_configmap() -> None:
    job = JobMetrics("alice", MetricLimits())
    for step in range(2000):
        job.add(0, "loss", step, 1.0 / (step + 1))
        job.add(1, "loss", step, 1.0 / (step + 2))
    job.dropped_by_rank[1] = 3
    text = dump(job)
    again = load(text, "alice")
    assert again.to_json() == job.to_json()
    small = dump(job, max_bytes=20_000)
    assert len(small.encode()) <= 20_000
    thinned = load(small, "alice")
    steps = thinned.series[(0, "loss")].steps
    assert steps[0] == 0 and steps[-1] == 1999 and thinned.series[(0, "loss")].stride > 1
    assert len(job.series[(0, "loss")]) == 2000  # dumping did not change the job in memory


@pytest.mark.parametrize("text", ["{", '{"v": 99}', "[]"], ids=["broken", "other-version", "array"])
def test_load_refuses_what_is_not_a_dump(text: str) -> None:
    with pytest.raises(MetricsInputError, match="configmap"):
        load(text, "alice")


def test_points_of_reads_one_series_of_an_answer() -> None:
    store = MetricStore()
    store.ingest("j", "alice", Batch(1, [("loss", 0, 2.0), ("loss", 1, 1.0)]))
    answer = store.job("j").to_json()
    assert points_of(answer["series"], "loss", 1) == [(0, 2.0), (1, 1.0)]
    assert points_of(answer["series"], "loss", 0) == []
