"""Hyperparameter sweeps, the pure part: the search space, the trials' plan, the objective, the
median stopping rule, a sweep's status, and the Katib ``Experiment`` of a sweep.

A sweep is one job spec (the *template*), a search space over its arguments or environment, an
objective (a metric the script logs with :func:`kubelab.jobs.metrics.log`, minimised or maximised)
and a number of trials, of which ``parallel`` run at once. Each trial is an ordinary kubelab job
named ``<sweep>-<index>``; its parameters are appended to the template's arguments
(``--lr=0.003``) or set in its environment (``WARMUP=5``).

Space, in Python (the helpers below) or as JSON::

    {"lr":     {"type": "loguniform", "min": 1e-4, "max": 0.1},          # --lr=<value>
     "batch":  {"type": "grid", "values": [16, 32, 64]},                # --batch=<value>
     "WARMUP": {"type": "uniform", "min": 0, "max": 10, "int": true, "in": "env"}}

Types: ``grid`` (the values, each tried: a grid axis), ``choice`` (one of the values, at random),
``uniform`` (a range, ``int`` for integers; ``step`` makes it a grid axis too) and ``loguniform``
(a range sampled on a log scale, ``min`` > 0). Algorithm: ``grid`` (every combination of the grid
axes, in order) when every parameter is a grid axis, else ``random`` (each trial drawn from a
generator seeded with ``seed``, so a plan is the same every time it is made). Both are Katib's
algorithm names, and the Katib Experiment of a sweep uses the same search space
(:func:`make_experiment`).

Early stopping, optional, is Katib's median rule (``medianstop``, katib
``pkg/earlystopping/v1beta1/medianstop/service.py``): a running trial whose best objective by step S
is strictly worse than the median of the completed trials' running averages up to step S is stopped,
once ``min_trials`` trials completed and from ``start_step`` on.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kubelab.jobs.spec import MAX_NAME_LEN, RESERVED_ENV_PREFIX, JobSpec, JobSpecError

PARAM_TYPES = ("grid", "choice", "uniform", "loguniform")
TARGETS = ("args", "env")
ALGORITHMS = ("grid", "random")
GOALS = ("minimize", "maximize")
STRATEGIES = ("min", "max", "latest")
SWEEP_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Cancelled")
TRIAL_PHASES = ("Waiting", "Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled", "Stopped")
#: Bounds of a sweep's sizes.
MAX_PARAMETERS = 16
MAX_VALUES = 100
MAX_TRIALS = 200
MAX_PARALLEL = 50
#: Trials of a random sweep that names no number.
DEFAULT_RANDOM_TRIALS = 10
#: A sweep's name leaves room for ``-<index>`` in its trials' job names (``MAX_NAME_LEN``), and
#: for ``-<6 hex>`` in its Katib Experiment's, which Katib caps at 40 characters (its webhook).
MAX_SWEEP_NAME = min(MAX_NAME_LEN - 4, 40 - 7)
_SWEEP_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_ARG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_VALUE = re.compile(r"[^\x00\n]{1,256}")
#: Points of a trial's objective curve kept in the sweep's record (the chart's line).
CURVE_POINTS = 50


# -- the space, in Python ---------------------------------------------------------------------------


def grid(*values: Any) -> dict[str, Any]:
    """A grid axis: every value is tried (``grid(16, 32, 64)``)."""
    return {"type": "grid", "values": list(values)}


def choice(*values: Any) -> dict[str, Any]:
    """One of the values, drawn at random per trial."""
    return {"type": "choice", "values": list(values)}


def uniform(low: float, high: float, *, integer: bool = False, step: float | None = None) -> dict[str, Any]:
    """A range ``[low, high]``, drawn uniformly (``step`` makes it a grid axis)."""
    out: dict[str, Any] = {"type": "uniform", "min": low, "max": high}
    if integer:
        out["int"] = True
    if step is not None:
        out["step"] = step
    return out


def loguniform(low: float, high: float) -> dict[str, Any]:
    """A range ``[low, high]`` (``low`` > 0), drawn uniformly on a log scale (learning rates)."""
    return {"type": "loguniform", "min": low, "max": high}


def env(param: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter set as an environment variable of each trial instead of an argument."""
    return {**param, "in": "env"}


def minimize(metric: str, strategy: str | None = None) -> dict[str, Any]:
    """The objective: the lowest ``metric`` wins (the trial's value: its minimum, or ``strategy``)."""
    return {"metric": metric, "goal": "minimize", **({"strategy": strategy} if strategy else {})}


def maximize(metric: str, strategy: str | None = None) -> dict[str, Any]:
    """The objective: the highest ``metric`` wins."""
    return {"metric": metric, "goal": "maximize", **({"strategy": strategy} if strategy else {})}


# -- checking ----------------------------------------------------------------------------------------


def _number(value: Any, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise JobSpecError(field_name, f"{value!r} is not allowed; a finite number")
    return float(value)


def _check_value(value: Any, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise JobSpecError(field_name, f"{value!r} is not allowed; a number or a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise JobSpecError(field_name, f"{value!r} is not allowed; a finite number")
    if isinstance(value, str) and not _VALUE.fullmatch(value):
        raise JobSpecError(field_name, f"{value[:40]!r} is not allowed; 1..256 characters, no newline")


def check_parameter(name: Any, param: Any) -> dict[str, Any]:
    """One parameter of the space, checked and normalised (``in`` and ``int`` filled in).

    Raises:
        JobSpecError: On ``space.<name>...`` (an inverted range names ``space.<name>.min``).
    """
    if not isinstance(name, str):
        raise JobSpecError("space", f"{name!r} is not a parameter name")
    where = f"space.{name}"
    if not isinstance(param, Mapping):
        raise JobSpecError(where, "must be an object such as {\"type\": \"uniform\", \"min\": 0, \"max\": 1}")
    allowed = {"type", "values", "min", "max", "int", "step", "in"}
    unknown = sorted(set(param) - allowed)
    if unknown:
        raise JobSpecError(f"{where}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    target = param.get("in", "args")
    if target not in TARGETS:
        raise JobSpecError(f"{where}.in", f"{target!r} is not allowed; allowed: {', '.join(TARGETS)}")
    pattern = _ARG_NAME if target == "args" else _ENV_NAME
    if not pattern.fullmatch(name) or (target == "env" and name.startswith(RESERVED_ENV_PREFIX)):
        what = "an argument name ([A-Za-z][A-Za-z0-9_-]*)" if target == "args" else \
            f"a variable name ([A-Za-z_][A-Za-z0-9_]*, not {RESERVED_ENV_PREFIX}*)"
        raise JobSpecError(where, f"{name!r} is not {what}, at most 63 characters")
    kind = param.get("type")
    if kind not in PARAM_TYPES:
        raise JobSpecError(f"{where}.type", f"{kind!r} is not allowed; allowed: {', '.join(PARAM_TYPES)}")
    out: dict[str, Any] = {"type": kind, "in": target}
    if kind in ("grid", "choice"):
        values = param.get("values")
        if not isinstance(values, list) or not values:
            raise JobSpecError(f"{where}.values", "must be a non-empty list of numbers or strings")
        if len(values) > MAX_VALUES:
            raise JobSpecError(f"{where}.values", f"{len(values)} values; at most {MAX_VALUES}")
        for i, v in enumerate(values):
            _check_value(v, f"{where}.values[{i}]")
        if len({repr(v) for v in values}) != len(values):
            raise JobSpecError(f"{where}.values", "holds a value twice; list each value once")
        out["values"] = list(values)
        return out
    low, high = _number(param.get("min"), f"{where}.min"), _number(param.get("max"), f"{where}.max")
    if low >= high:
        raise JobSpecError(f"{where}.min", f"the range is inverted or empty: min {param.get('min')!r} must be "
                           f"below max {param.get('max')!r}")
    integer = param.get("int", False)
    if not isinstance(integer, bool):
        raise JobSpecError(f"{where}.int", "must be true or false")
    if kind == "loguniform":
        if low <= 0:
            raise JobSpecError(f"{where}.min", f"{param.get('min')!r} is not allowed; a log-uniform range needs min > 0")
        if integer or "step" in param:
            raise JobSpecError(f"{where}.int" if integer else f"{where}.step",
                               "not allowed with loguniform; use uniform with int or step")
    if integer and (low != int(low) or high != int(high)):
        raise JobSpecError(f"{where}.min", "an integer range needs integer bounds")
    out.update(min=int(low) if integer else low, max=int(high) if integer else high, int=integer)
    if "step" in param:
        step = _number(param["step"], f"{where}.step")
        if step <= 0 or (integer and step != int(step)):
            raise JobSpecError(f"{where}.step", f"{param['step']!r} is not allowed; a number > 0 (an integer "
                               "for an int range)")
        if (high - low) / step + 1 > MAX_VALUES:
            raise JobSpecError(f"{where}.step", f"makes more than {MAX_VALUES} values; use a larger step")
        out["step"] = int(step) if integer else step
    return out


def is_axis(param: Mapping[str, Any]) -> bool:
    """Whether the (checked) parameter is a grid axis: a list of values or a stepped range."""
    return param["type"] == "grid" or (param["type"] == "uniform" and "step" in param)


def axis_values(param: Mapping[str, Any]) -> list[Any]:
    """The values of a grid axis (a grid's or choice's list, or a stepped range's points)."""
    if "values" in param:
        return list(param["values"])
    low, high, step = param["min"], param["max"], param["step"]
    count = int(math.floor((high - low) / step + 1e-9)) + 1
    points = [low + i * step for i in range(count)]
    return [int(p) for p in points] if param.get("int") else [_round(p) for p in points]


def _round(value: float) -> float:
    """Six significant digits: readable arguments, and the same value in args, records and Katib."""
    return float(f"{value:.6g}")


def check_objective(raw: Any) -> dict[str, str]:
    """The objective, normalised: ``{"metric", "goal", "strategy"}``.

    Raises:
        JobSpecError: On ``objective...``.
    """
    if isinstance(raw, str):
        raw = {"metric": raw}
    if not isinstance(raw, Mapping):
        raise JobSpecError("objective", "must be a metric name, or {\"metric\": \"loss\", \"goal\": \"minimize\"}")
    unknown = sorted(set(raw) - {"metric", "goal", "strategy"})
    if unknown:
        raise JobSpecError(f"objective.{unknown[0]}", "unknown key; allowed: goal, metric, strategy")
    metric = raw.get("metric")
    # The names kubelab.jobs.metrics accepts (its NAME_PATTERN).
    if not isinstance(metric, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./-]{0,63}", metric):
        raise JobSpecError("objective.metric", f"{metric!r} is not a metric name kubelab.jobs.metrics.log accepts "
                           "([A-Za-z_][A-Za-z0-9_./-]*, at most 64 characters)")
    goal = raw.get("goal", "minimize")
    if goal not in GOALS:
        raise JobSpecError("objective.goal", f"{goal!r} is not allowed; allowed: {', '.join(GOALS)}")
    strategy = raw.get("strategy", "min" if goal == "minimize" else "max")
    if strategy not in STRATEGIES:
        raise JobSpecError("objective.strategy", f"{strategy!r} is not allowed; allowed: {', '.join(STRATEGIES)}")
    return {"metric": metric, "goal": goal, "strategy": strategy}


def _check_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise JobSpecError(name, f"{value!r} is not allowed; an integer in {low}..{high}")
    return value


@dataclass
class SweepSpec:
    """A sweep, as a user describes it; checks itself (every refusal names its field).

    Attributes:
        name: DNS label of at most 33 characters; trials are the jobs ``<name>-<index>``.
        job: The template: :class:`~kubelab.jobs.spec.JobSpec` fields of every trial (its
            ``name`` is ignored).
        space: Parameter name → parameter (see the module's docstring).
        objective: A metric name (minimised), or ``{"metric", "goal", "strategy"}``.
        trials: How many trials to run; None: every point of a grid, 10 random ones.
        parallel: How many trials run at once (fewer when the quota has no room: they wait).
        algorithm: ``grid`` or ``random``; None picks ``grid`` when every parameter is a grid axis.
        seed: The random algorithm's seed.
        early_stopping: None, or ``{"rule": "median", "min_trials": 3, "start_step": 4}``.
    """

    name: str
    job: dict[str, Any]
    space: dict[str, Any]
    objective: Any
    trials: int | None = None
    parallel: int = 2
    algorithm: str | None = None
    seed: int = 0
    early_stopping: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or len(self.name) > MAX_SWEEP_NAME or not _SWEEP_NAME.fullmatch(self.name):
            raise JobSpecError("name", f"{self.name!r} is not allowed; use a-z, 0-9 and '-', starting with a letter, "
                               f"at most {MAX_SWEEP_NAME} characters (trials are <name>-<index>)")
        if not isinstance(self.space, Mapping) or not self.space:
            raise JobSpecError("space", "is empty; give at least one parameter, e.g. "
                               "{\"lr\": {\"type\": \"loguniform\", \"min\": 0.0001, \"max\": 0.1}}")
        if len(self.space) > MAX_PARAMETERS:
            raise JobSpecError("space", f"{len(self.space)} parameters; at most {MAX_PARAMETERS}")
        self.space = {name: check_parameter(name, p) for name, p in sorted(self.space.items(), key=lambda kv: str(kv[0]))}
        self.objective = check_objective(self.objective)
        self.parallel = _check_int(self.parallel, "parallel", 1, MAX_PARALLEL)
        self.seed = _check_int(self.seed, "seed", 0, 2**31 - 1)
        axes = all(is_axis(p) for p in self.space.values())
        if self.algorithm is None:
            self.algorithm = "grid" if axes else "random"
        if self.algorithm not in ALGORITHMS:
            raise JobSpecError("algorithm", f"{self.algorithm!r} is not allowed; allowed: {', '.join(ALGORITHMS)}")
        if self.algorithm == "grid":
            if not axes:
                odd = next(n for n, p in self.space.items() if not is_axis(p))
                raise JobSpecError(f"space.{odd}", "a grid search needs every parameter to be a grid axis "
                                   "(type grid, or a uniform range with step); use algorithm random")
            points = math.prod(len(axis_values(p)) for p in self.space.values())
            if self.trials is None:
                self.trials = min(points, MAX_TRIALS)
            if _check_int(self.trials, "trials", 1, MAX_TRIALS) > points:
                raise JobSpecError("trials", f"{self.trials} is not allowed; the grid holds {points} points; "
                                   f"allowed: 1..{points}")
        if self.trials is None:
            self.trials = DEFAULT_RANDOM_TRIALS
        self.trials = _check_int(self.trials, "trials", 1, MAX_TRIALS)
        self._check_early_stopping()
        self._check_job()

    def _check_early_stopping(self) -> None:
        if self.early_stopping is None:
            return
        rule = self.early_stopping
        if not isinstance(rule, Mapping):
            raise JobSpecError("early_stopping", "must be {\"rule\": \"median\", ...} or null")
        unknown = sorted(set(rule) - {"rule", "min_trials", "start_step"})
        if unknown:
            raise JobSpecError(f"early_stopping.{unknown[0]}", "unknown key; allowed: min_trials, rule, start_step")
        if rule.get("rule", "median") != "median":
            raise JobSpecError("early_stopping.rule", f"{rule.get('rule')!r} is not allowed; allowed: median")
        self.early_stopping = {
            "rule": "median",
            "min_trials": _check_int(rule.get("min_trials", 3), "early_stopping.min_trials", 1, MAX_TRIALS),
            "start_step": _check_int(rule.get("start_step", 4), "early_stopping.start_step", 0, 2**31 - 1),
        }

    def _check_job(self) -> None:
        if not isinstance(self.job, Mapping):
            raise JobSpecError("job", "must be a job spec (an object of JobSpec fields)")
        for i, params in enumerate(self.plan()[:1] or [{}]):
            try:
                self.trial_spec(i, params)
            except JobSpecError as e:
                raise JobSpecError(f"job.{e.field}", e.problem) from None

    # -- the plan --------------------------------------------------------------------------------

    def plan(self) -> list[dict[str, Any]]:
        """Every trial's parameters, in order (the same each time it is made)."""
        names = list(self.space)
        if self.algorithm == "grid":
            axes = [axis_values(self.space[n]) for n in names]
            return [dict(zip(names, point, strict=True)) for point in itertools.islice(itertools.product(*axes),
                                                                                         self.trials)]
        rng = random.Random(self.seed)  # noqa: S311 - a reproducible plan, not a secret
        return [{n: sample(self.space[n], rng) for n in names} for _ in range(self.trials)]

    def trial_name(self, index: int) -> str:
        return trial_name(self.name, index)

    def trial_spec(self, index: int, params: Mapping[str, Any]) -> JobSpec:
        """The job of trial ``index``: the template with the parameters in its args or env.

        Raises:
            JobSpecError: The template is not a valid job (names the JobSpec field).
        """
        fields_ = dict(self.job)
        fields_["name"] = self.trial_name(index)
        args = list(fields_.get("args") or [])
        env_vars = dict(fields_.get("env") or {})
        for name, value in params.items():
            if self.space[name]["in"] == "env":
                env_vars[name] = format_value(value)
            else:
                args.append(f"--{name}={format_value(value)}")
        fields_["args"], fields_["env"] = args, env_vars
        return JobSpec.from_dict(fields_)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SweepSpec:
        """A sweep from JSON, refusing unknown keys.

        Raises:
            JobSpecError: An unknown or missing key, or an invalid field.
        """
        if not isinstance(data, Mapping):
            raise JobSpecError("(body)", "must be a JSON object")
        allowed = [f.name for f in fields(cls)]
        for key in data:
            if key not in allowed:
                raise JobSpecError(key, f"unknown field; allowed fields: {', '.join(allowed)}")
        for key in ("name", "job", "space", "objective"):
            if key not in data:
                raise JobSpecError(key, "required")
        return cls(**data)


def trial_name(sweep: str, index: int) -> str:
    """The job name of a sweep's trial ``index``: ``<sweep>-<index>``."""
    return f"{sweep}-{index}"


def sample(param: Mapping[str, Any], rng: random.Random) -> Any:
    """One value of a (checked) parameter, drawn with ``rng``."""
    if "values" in param:
        return rng.choice(param["values"])
    if "step" in param:
        return rng.choice(axis_values(param))
    low, high = param["min"], param["max"]
    if param["type"] == "loguniform":
        return _round(math.exp(rng.uniform(math.log(low), math.log(high))))
    if param.get("int"):
        return rng.randint(int(low), int(high))
    return _round(rng.uniform(low, high))


def format_value(value: Any) -> str:
    """A parameter's value as it appears in a trial's args and env (``0.003``, ``32``, ``adam``)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# -- the objective and the median rule -----------------------------------------------------------------


def curve(series: Iterable[Mapping[str, Any]], metric: str) -> list[tuple[int, float]]:
    """``(step, value)`` of ``metric`` on the lowest rank that logged it, from a metrics answer's series."""
    found = sorted((s for s in series if s.get("name") == metric), key=lambda s: s.get("rank", 0))
    if not found:
        return []
    return list(zip(found[0].get("steps") or [], found[0].get("values") or [], strict=False))


def objective_value(points: Sequence[tuple[int, float]], strategy: str) -> float | None:
    """The trial's objective from its curve: the minimum, the maximum or the latest value."""
    if not points:
        return None
    values = [v for _, v in points]
    return min(values) if strategy == "min" else max(values) if strategy == "max" else values[-1]


def better(a: float, b: float, goal: str) -> bool:
    """Whether objective ``a`` beats ``b``."""
    return a < b if goal == "minimize" else a > b


def median_stop(running: Sequence[tuple[int, float]], completed: Sequence[Sequence[tuple[int, float]]],
                goal: str, *, min_trials: int = 3, start_step: int = 4) -> bool:
    """Katib's median stopping rule for one running trial (pure).

    Stop when at least ``min_trials`` trials completed, the running trial reached ``start_step``,
    and its best value so far is strictly worse than the median of the completed trials' running
    averages up to the same step.
    """
    if len(completed) < min_trials or not running or running[-1][0] < start_step:
        return False
    step = running[-1][0]
    averages = []
    for points in completed:
        upto = [v for s, v in points if s <= step]
        if upto:
            averages.append(sum(upto) / len(upto))
    if len(averages) < min_trials:
        return False
    median = statistics.median(averages)
    best = min(v for _, v in running) if goal == "minimize" else max(v for _, v in running)
    return better(median, best, goal)


def thin(points: Sequence[tuple[int, float]], limit: int = CURVE_POINTS) -> list[list[float]]:
    """At most ``limit`` points of a curve, evenly spaced, the first and the last kept."""
    points = list(points)
    if len(points) > limit:
        idx = sorted({round(i * (len(points) - 1) / (limit - 1)) for i in range(limit)})
        points = [points[i] for i in idx]
    return [[s, v] for s, v in points]


# -- a sweep's status -----------------------------------------------------------------------------------


@dataclass
class TrialStatus:
    """One trial: its job, parameters, phase and objective."""

    index: int
    name: str
    params: dict[str, Any]
    phase: str = "Waiting"
    objective: float | None = None
    message: str = ""
    early_stopped: bool = False
    curve: list[list[float]] = field(default_factory=list)


@dataclass
class SweepStatus:
    """What the service reports about a sweep (``GET sweeps/<name>``).

    Attributes:
        phase: One of :data:`SWEEP_PHASES`.
        best: The index of the best trial so far (by the objective), if any.
        warnings: Things to fix, e.g. an objective metric that the first ended trial never logged.
        engine: ``kubelab`` (the hub runs the trials) or ``katib`` (a Katib Experiment does).
    """

    name: str
    user: str
    objective: dict[str, str]
    algorithm: str
    trials_total: int
    parallel: int
    space: dict[str, Any] = field(default_factory=dict)
    phase: str = "Pending"
    created: str | None = None
    finished: str | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    best: int | None = None
    engine: str = "kubelab"
    trials: list[TrialStatus] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed", "Cancelled")

    @property
    def best_trial(self) -> TrialStatus | None:
        return next((t for t in self.trials if t.index == self.best), None)

    def ranked(self) -> list[TrialStatus]:
        """Trials sorted by objective, best first; trials without one last, by index."""
        goal = self.objective.get("goal", "minimize")
        sign = 1 if goal == "minimize" else -1
        return sorted(self.trials, key=lambda t: (t.objective is None, sign * (t.objective or 0.0), t.index))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepStatus:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        trial_fields = {f.name for f in fields(TrialStatus)}
        values["trials"] = [TrialStatus(**{k: v for k, v in t.items() if k in trial_fields})
                            for t in data.get("trials") or []]
        return cls(**values)


def best_index(trials: Iterable[TrialStatus], goal: str) -> int | None:
    """The trial with the best objective (the lowest index among equals)."""
    best: TrialStatus | None = None
    for t in sorted(trials, key=lambda t: t.index):
        if t.objective is not None and (best is None or better(t.objective, best.objective or 0.0, goal)):
            best = t
    return best.index if best is not None else None


# -- Katib ----------------------------------------------------------------------------------------------

KATIB_GROUP = "kubeflow.org"
KATIB_VERSION = "v1beta1"
KATIB_API_VERSION = f"{KATIB_GROUP}/{KATIB_VERSION}"
#: Katib's defaults for a batch Job trial (katib ``pkg/apis/controller/experiments/v1beta1/constants.go``).
JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'


def katib_parameter(name: str, param: Mapping[str, Any]) -> dict[str, Any]:
    """One parameter in Katib's words (``parameterType``, ``feasibleSpace``; values as strings)."""
    if "values" in param:
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in param["values"])
        return {"name": name, "parameterType": "discrete" if numeric else "categorical",
                "feasibleSpace": {"list": [format_value(v) for v in param["values"]]}}
    space: dict[str, Any] = {"min": format_value(param["min"]), "max": format_value(param["max"]),
                             "distribution": "logUniform" if param["type"] == "loguniform" else "uniform"}
    if "step" in param:
        space["step"] = format_value(param["step"])
    return {"name": name, "parameterType": "int" if param.get("int") else "double", "feasibleSpace": space}


def trial_template_spec(sweep: SweepSpec) -> JobSpec:
    """The template job with Katib's placeholders (``${trialParameters.lr}``) where values go."""
    fields_ = {**sweep.job, "name": sweep.name}
    args = list(fields_.get("args") or [])
    env_vars = dict(fields_.get("env") or {})
    for name, param in sweep.space.items():
        placeholder = "${trialParameters." + name + "}"
        if param["in"] == "env":
            env_vars[name] = placeholder
        else:
            args.append(f"--{name}={placeholder}")
    fields_["args"], fields_["env"] = args, env_vars
    return JobSpec.from_dict(fields_)


def make_experiment(sweep: SweepSpec, trial_job: Mapping[str, Any], *, name: str, namespace: str,
                    labels: Mapping[str, str], owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Katib ``Experiment`` of ``sweep`` (pure).

    Args:
        trial_job: kubelab's own job for one trial, with ``${trialParameters.<name>}`` where the
            values go (:func:`trial_template_spec` built by the engine's builder: a rank Job of
            the plain engine); Katib creates one per trial, named after the trial.
        name: The Experiment's name; ``labels`` and ``owner`` (an ownerReference) its metadata.
    """
    trial_job = copy.deepcopy(dict(trial_job))
    container = ((trial_job.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    # Katib fills placeholders in the trial's manifest only: an env parameter must be a literal
    # there, not a reference to the job's Secret (which keeps the template's own env values).
    as_env = {n for n, p in sweep.space.items() if p["in"] == "env"}
    for c in container:
        c["env"] = [{"name": e["name"], "value": "${trialParameters." + e["name"] + "}"} if e.get("name") in as_env
                    else e for e in c.get("env") or []]
    algorithm: dict[str, Any] = {"algorithmName": sweep.algorithm}
    if sweep.algorithm == "random":
        algorithm["algorithmSettings"] = [{"name": "random_state", "value": str(sweep.seed)}]
    objective = sweep.objective
    spec: dict[str, Any] = {
        "objective": {"type": objective["goal"], "objectiveMetricName": objective["metric"],
                      "metricStrategies": [{"name": objective["metric"], "value": objective["strategy"]}]},
        "algorithm": algorithm,
        "parallelTrialCount": sweep.parallel,
        "maxTrialCount": sweep.trials,
        "maxFailedTrialCount": sweep.trials,
        "parameters": [katib_parameter(n, p) for n, p in sweep.space.items()],
        # The trials print "name=value" (KUBELAB_METRICS_STDOUT) for Katib's StdOut collector.
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
        "trialTemplate": {
            "primaryContainerName": container[0].get("name", "trainer"),
            "trialParameters": [{"name": n, "reference": n, "description": f"{p['type']} parameter {n}"}
                                for n, p in sweep.space.items()],
            "trialSpec": dict(trial_job),
            "successCondition": JOB_SUCCESS,
            "failureCondition": JOB_FAILURE,
        },
    }
    if sweep.early_stopping is not None:
        spec["earlyStopping"] = {"algorithmName": "medianstop", "algorithmSettings": [
            {"name": "min_trials_required", "value": str(sweep.early_stopping["min_trials"])},
            {"name": "start_step", "value": str(sweep.early_stopping["start_step"])}]}
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    return {"apiVersion": KATIB_API_VERSION, "kind": "Experiment", "metadata": metadata, "spec": spec}


_KATIB_TRIAL_PHASES = (("EarlyStopped", "Stopped"), ("Succeeded", "Succeeded"), ("Failed", "Failed"),
                       ("Killed", "Cancelled"), ("MetricsUnavailable", "Failed"), ("Running", "Running"),
                       ("Created", "Pending"))


def _true_condition(obj: Mapping[str, Any], kinds: Sequence[tuple[str, str]]) -> str | None:
    conditions = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
    return next((phase for kind, phase in kinds if conditions.get(kind) == "True"), None)


def katib_status(sweep: SweepSpec, user: str, experiment: Mapping[str, Any],
                 trials: Iterable[Mapping[str, Any]]) -> SweepStatus:
    """A sweep's status from its Katib Experiment and Trials, as Katib's controllers write them
    (katib ``pkg/apis/controller/experiments/v1beta1/experiment_types.go``, ``trials/v1beta1/trial_types.go``)."""
    out = SweepStatus(name=sweep.name, user=user, objective=dict(sweep.objective), algorithm=sweep.algorithm or "",
                      trials_total=sweep.trials, parallel=sweep.parallel, space=dict(sweep.space), engine="katib",
                      created=(experiment.get("metadata") or {}).get("creationTimestamp"))
    status = experiment.get("status") or {}
    out.phase = _true_condition(experiment, (("Succeeded", "Succeeded"), ("Failed", "Failed"),
                                             ("Running", "Running"), ("Created", "Pending"))) or "Pending"
    out.finished = status.get("completionTime")
    metric = sweep.objective["metric"]
    # Katib names its Trials <experiment>-<random suffix>: they are numbered in the order Katib made them.
    ordered = sorted(trials, key=lambda t: ((t.get("metadata") or {}).get("creationTimestamp") or "",
                                            (t.get("metadata") or {}).get("name", "")))
    for number, trial in enumerate(ordered):
        tname = (trial.get("metadata") or {}).get("name", "")
        params = {a.get("name"): a.get("value") for a in (trial.get("spec") or {}).get("parameterAssignments") or []}
        observed = [m for m in ((trial.get("status") or {}).get("observation") or {}).get("metrics") or []
                    if m.get("name") == metric]
        value = None
        if observed:
            raw = observed[0].get(sweep.objective["strategy"]) or observed[0].get("latest")
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = None
        phase = _true_condition(trial, _KATIB_TRIAL_PHASES) or "Pending"
        out.trials.append(TrialStatus(index=number, name=tname, params=params, phase=phase,
                                      objective=value, early_stopped=phase == "Stopped"))
    optimal = (status.get("currentOptimalTrial") or {}).get("bestTrialName")
    best = next((t.index for t in out.trials if t.name == optimal), None)
    out.best = best if best is not None else best_index(out.trials, sweep.objective["goal"])
    out.message = f"{status.get('trialsSucceeded', 0)} of {sweep.trials} trials succeeded (Katib)"
    return out
