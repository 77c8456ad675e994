"""Sweeps, the pure part (``kubelab.jobs.sweeps``): the space, the plan, trials' jobs, objectives,
the median rule, the ranking; every refusal names its field."""

from __future__ import annotations

import base64
import json
import math
import statistics
from typing import Any

import pytest

from kubelab.jobs import sweeps
from kubelab.jobs.spec import JobSpecError
from kubelab.jobs.sweep_pages import best_so_far, sweep_chart_svg
from kubelab.jobs.sweep_reconciler import is_sweep_record, make_env_record, make_record

JOB = {"framework": "replicas", "script": "train.py", "args": ["--epochs", "3"]}


def sweep(**kw: Any) -> sweeps.SweepSpec:
    return sweeps.SweepSpec.from_dict({"name": "lr", "job": JOB, "objective": "loss",
                                       "space": {"lr": sweeps.loguniform(1e-4, 1e-1)}, **kw})


@pytest.mark.parametrize(("kw", "field", "match"), [
    ({"space": {}}, "space", "is empty; give at least one parameter"),
    ({"space": {"lr": {"type": "uniform", "min": 0.1, "max": 0.01}}}, "space.lr.min",
     "the range is inverted or empty: min 0.1 must be below max 0.01"),
    ({"space": {"lr": {"type": "uniform", "min": 1, "max": 1}}}, "space.lr.min", "inverted or empty"),
    ({"space": {"lr": {"type": "loguniform", "min": 0, "max": 1}}}, "space.lr.min", "needs min > 0"),
    ({"space": {"lr": {"type": "normal", "min": 0, "max": 1}}}, "space.lr.type",
     "'normal' is not allowed; allowed: grid, choice, uniform, loguniform"),
    ({"space": {"lr": {"type": "uniform", "min": "a", "max": 1}}}, "space.lr.min", "a finite number"),
    ({"space": {"lr": {"type": "uniform", "min": 0, "max": float("inf")}}}, "space.lr.max", "a finite number"),
    ({"space": {"lr": {"type": "grid", "values": []}}}, "space.lr.values", "non-empty list"),
    ({"space": {"lr": {"type": "grid", "values": [1, 1]}}}, "space.lr.values", "holds a value twice"),
    ({"space": {"lr": {"type": "grid", "values": [1], "low": 3}}}, "space.lr.low", "unknown key"),
    ({"space": {"lr": {"type": "grid", "values": [1], "in": "file"}}}, "space.lr.in", "allowed: args, env"),
    ({"space": {"KUBELAB_RANK": sweeps.env(sweeps.grid(1))}}, "space.KUBELAB_RANK", "not KUBELAB_"),
    ({"space": {"--lr": sweeps.grid(1)}}, "space.--lr", "is not an argument name"),
    ({"space": {"x": sweeps.uniform(0, 1)}, "algorithm": "grid"}, "space.x", "a grid search needs every parameter"),
    ({"space": {"x": sweeps.grid(1, 2)}, "trials": 3}, "trials", r"the grid holds 2 points; allowed: 1\.\.2"),
    ({"trials": 0}, "trials", r"0 is not allowed; an integer in 1\.\.200"),
    ({"parallel": 51}, "parallel", r"allowed; an integer in 1\.\.50"),
    ({"algorithm": "bayes"}, "algorithm", "allowed: grid, random"),
    ({"objective": "val loss"}, "objective.metric", "is not a metric name kubelab.jobs.metrics.log accepts"),
    ({"objective": {"metric": "acc", "goal": "up"}}, "objective.goal", "allowed: minimize, maximize"),
    ({"objective": {"metric": "acc", "strategy": "mean"}}, "objective.strategy", "allowed: min, max, latest"),
    ({"early_stopping": {"rule": "curve"}}, "early_stopping.rule", "allowed: median"),
    ({"job": {**JOB, "workers": 0}}, "job.workers", r"an integer in 1\.\.1000"),
    ({"job": {**JOB, "gpu": 1}}, "job.gpu", "unknown field"),
    ({"name": "a" * 34}, "name", "at most 33 characters"),
    ({"bogus": 1}, "bogus", "unknown field; allowed fields: name, job, space"),
], ids=["empty-space", "inverted-range", "empty-range", "log-of-zero", "unknown-type", "min-not-a-number",
        "max-infinite", "no-values", "value-twice", "unknown-key", "bad-target", "reserved-env", "bad-arg-name",
        "grid-of-a-range", "more-trials-than-points", "no-trials", "too-parallel", "unknown-algorithm",
        "bad-metric-name", "bad-goal", "bad-strategy", "bad-rule", "bad-template", "unknown-template-key",
        "long-name", "unknown-field"])
def test_bad_sweeps_are_refused_naming_the_field(kw: dict[str, Any], field: str, match: str) -> None:
    with pytest.raises(JobSpecError, match=match) as e:
        sweep(**kw)
    assert e.value.field == field


def test_a_random_plan_is_the_same_each_time_and_its_seeds_own() -> None:
    space = {"lr": sweeps.loguniform(1e-4, 1e-1), "layers": sweeps.uniform(1, 4, integer=True),
             "opt": sweeps.choice("sgd", "adam"), "WARMUP": sweeps.env(sweeps.uniform(0.0, 1.0))}
    first = sweep(space=space, trials=50, seed=3).plan()
    assert first == sweep(space=space, trials=50, seed=3).plan()
    assert first != sweep(space=space, trials=50, seed=4).plan()
    assert all(1e-4 <= p["lr"] <= 0.1 and p["layers"] in (1, 2, 3, 4) and p["opt"] in ("sgd", "adam")
               and 0 <= p["WARMUP"] <= 1 for p in first)
    assert {type(p["layers"]) for p in first} == {int}


def test_log_uniform_spreads_over_the_decades() -> None:
    lrs = [p["lr"] for p in sweep(trials=200, seed=1).plan()]
    decades = [sum(10 ** -(k + 1) <= v < 10 ** -k for v in lrs) for k in (1, 2, 3)]
    assert all(40 <= d <= 95 for d in decades), decades  # about a third each; uniform would put 90% in one
    assert abs(statistics.median(math.log10(v) for v in lrs) + 2.5) < 0.3


def test_a_grid_runs_every_point_in_order() -> None:
    s = sweep(space={"lr": sweeps.grid(0.1, 0.01), "batch": sweeps.uniform(16, 48, integer=True, step=16)}, trials=6)
    assert s.algorithm == "grid"
    assert s.plan() == [{"batch": b, "lr": lr} for b in (16, 32, 48) for lr in (0.1, 0.01)]


def test_a_trial_is_the_template_with_its_parameters() -> None:
    s = sweep(space={"lr": sweeps.grid(0.003), "WARMUP": sweeps.env(sweeps.grid(5))},
              job={**JOB, "env": {"SEED": "1"}})
    spec = s.trial_spec(4, s.plan()[0])
    assert spec.name == "lr-4"
    assert spec.args == ["--epochs", "3", "--lr=0.003"]
    assert spec.env == {"SEED": "1", "WARMUP": "5"}


@pytest.mark.parametrize(("points", "strategy", "value"), [
    ([(0, 3.0), (1, 1.0), (2, 2.0)], "min", 1.0), ([(0, 3.0), (1, 1.0), (2, 2.0)], "max", 3.0),
    ([(0, 3.0), (1, 1.0), (2, 2.0)], "latest", 2.0), ([], "min", None),
], ids=["min", "max", "latest", "nothing-logged"])
def test_objective_value(points: list[tuple[int, float]], strategy: str, value: float | None) -> None:
    assert sweeps.objective_value(points, strategy) == value


def test_the_curve_is_the_lowest_ranks() -> None:
    series = [{"rank": 1, "name": "loss", "steps": [0], "values": [9.0]},
              {"rank": 0, "name": "loss", "steps": [0, 1], "values": [2.0, 1.0]},
              {"rank": 0, "name": "acc", "steps": [0], "values": [0.5]}]
    assert sweeps.curve(series, "loss") == [(0, 2.0), (1, 1.0)]
    assert sweeps.curve(series, "val_loss") == []


DONE = [[(s, 1.0) for s in range(10)], [(s, 2.0) for s in range(10)], [(s, 3.0) for s in range(10)]]


@pytest.mark.parametrize(("running", "completed", "goal", "stop"), [
    ([(s, 2.5) for s in range(6)], DONE, "minimize", True),
    ([(s, 2.0) for s in range(6)], DONE, "minimize", False),  # equal to the median: not strictly worse
    ([(s, 1.5) for s in range(6)], DONE, "minimize", False),
    ([(s, 2.5) for s in range(3)], DONE, "minimize", False),  # before start_step
    ([(s, 2.5) for s in range(6)], DONE[:2], "minimize", False),  # too few completed trials
    ([(s, 1.5) for s in range(6)], DONE, "maximize", True),
], ids=["worse-than-median", "at-the-median", "better", "too-early", "too-few-completed", "maximize"])
def test_median_rule(running: list[tuple[int, float]], completed: list[list[tuple[int, float]]], goal: str,
                     stop: bool) -> None:
    assert sweeps.median_stop(running, completed, goal, min_trials=3, start_step=4) is stop


def test_ranking_and_best() -> None:
    trials = [sweeps.TrialStatus(i, f"lr-{i}", {}, "Succeeded", v) for i, v in enumerate([0.5, None, 0.2, 0.2, 0.9])]
    status = sweeps.SweepStatus("lr", "alice", {"metric": "loss", "goal": "minimize"}, "random", 5, 2, trials=trials)
    assert [t.index for t in status.ranked()] == [2, 3, 0, 4, 1]
    assert sweeps.best_index(trials, "minimize") == 2 and sweeps.best_index(trials, "maximize") == 4
    again = sweeps.SweepStatus.from_dict(status.to_dict())
    assert again == status


def test_thin_keeps_the_ends() -> None:
    points = [(s, float(s)) for s in range(1000)]
    kept = sweeps.thin(points, 50)
    assert len(kept) == 50 and kept[0] == [0, 0.0] and kept[-1] == [999, 999.0]


def test_the_record_keeps_env_names_and_the_secret_the_values() -> None:
    s = sweep(job={**JOB, "env": {"WANDB_KEY": "secret-value"}})
    record = make_record(s, "alice", ["gpu-users"], "jobs", "http://hub/hub/api", "kubelab")
    assert "secret-value" not in json.dumps(record) and is_sweep_record(record)
    assert json.loads(record["data"]["sweep.json"])["job"]["env_names"] == ["WANDB_KEY"]
    assert record["metadata"]["labels"]["kubelab.io/sweep"] == "lr"
    secret = make_env_record(s, "alice", "jobs", {"apiVersion": "v1", "kind": "ConfigMap", "name": "r", "uid": "u"})
    assert secret is not None and secret["metadata"]["ownerReferences"][0]["name"] == "r"
    assert base64.b64decode(secret["data"]["WANDB_KEY"]).decode() == "secret-value"


def test_the_sweep_chart_draws_each_trial_and_the_best_so_far() -> None:
    values = [0.5, None, 0.7, 0.2, 0.3]
    trials = [sweeps.TrialStatus(i, f"lr-{i}", {}, "Succeeded", v) for i, v in enumerate(values)]
    status = sweeps.SweepStatus("lr", "alice", {"metric": "loss", "goal": "minimize"}, "random", 6, 2,
                                trials=trials, best=3)
    assert best_so_far(trials, "minimize") == [(0, 0.5), (2, 0.5), (3, 0.2), (4, 0.2)]
    svg = sweep_chart_svg(status)
    assert svg.count("class='kubelab-trial'") == 4 and "data-points='4'" in svg
    assert "best so far: 0.2 (trial 3)" in svg and "best 0.2 (trial 3)" in svg
    empty = sweeps.SweepStatus("lr", "alice", {"metric": "loss", "goal": "minimize"}, "random", 6, 2)
    assert "No trial has reported loss yet" in sweep_chart_svg(empty)
