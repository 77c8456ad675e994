"""The jobs service's metrics, in memory and bounded (pure: no I/O, no clock, no threads).

One :class:`JobMetrics` per job holds a :class:`Series` per (rank, name). Bounds
(:class:`MetricLimits`), each enforced where a point arrives:

- **points per series**: a full series is *downsampled*, not cut: every other point goes,
  except the first and the last, so a chart keeps the whole run from step 0 at half the
  resolution, and the newest points stay dense. Amortised O(1) per point.
- **series per job**: a point of a new series beyond the limit is refused and counted.
- **points per user**: over it, the user's largest series is downsampled until under.

:meth:`MetricStore.ingest` takes one batch as sent by :mod:`kubelab.jobs.metrics`
(:func:`parse_batch` checks it first and names what is wrong). Every accepted point gets the
job's next sequence number, and the newest points stay in a bounded ring, so a follower asks for
"what came after seq N" (:meth:`JobMetrics.since`).

:func:`dump` / :func:`load` turn a job's series into the compact JSON kept in its
``<job id>-metrics`` ConfigMap, downsampled further if needed to stay under
``MetricLimits.persisted_bytes`` (a ConfigMap holds at most 1 MiB).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelab.jobs.metrics import MAX_BATCH, as_step, as_value, check_name

#: Highest rank accepted in a batch.
MAX_RANK = 4095
#: Format version of the persisted JSON.
DUMP_VERSION = 1
#: Key of the series in the metrics ConfigMap.
CONFIGMAP_KEY = "metrics.json"


def no_metrics(name: str) -> dict[str, Any]:
    """The answer for a job that has logged no metrics (yet): it says so, and how to log some."""
    return {"series": [], "seq": 0, "dropped": 0,
            "message": f"job '{name}' has reported no metrics; call kubelab.jobs.metrics.log(step, loss=...) "
                       "in the script to see curves here"}


class MetricsInputError(ValueError):
    """A batch is malformed. ``field`` names the part; the message says what is allowed."""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


@dataclass(frozen=True)
class MetricLimits:
    """Bounds of the metrics kept in the hub.

    Attributes:
        points_per_series: Points kept per (rank, name) before downsampling.
        series_per_job: Distinct (rank, name) pairs per job.
        points_per_user: Points over all of a user's jobs.
        recent_points: Newest points kept per job for followers.
        persisted_bytes: Largest serialized form written to the job's ConfigMap.
        body_bytes: Largest ingest body accepted.
    """

    points_per_series: int = 2_000
    series_per_job: int = 64
    points_per_user: int = 400_000
    recent_points: int = 10_000
    persisted_bytes: int = 900_000
    body_bytes: int = 256 * 1024


@dataclass(frozen=True)
class Batch:
    """One checked ingest batch."""

    rank: int
    points: list[tuple[str, int, float]]
    dropped: int = 0


def parse_batch(body: bytes, limits: MetricLimits = MetricLimits()) -> Batch:  # noqa: B008 - frozen, immutable
    """Check an ingest body (JSON ``{"rank": R, "points": [[name, step, value], ...], "dropped": N}``).

    Raises:
        MetricsInputError: Too large, not JSON, or a field out of bounds (names it).
    """
    if len(body) > limits.body_bytes:
        raise MetricsInputError("(body)", f"{len(body)} bytes; at most {limits.body_bytes}")
    try:
        data = json.loads(body or b"null")
    except ValueError as e:
        raise MetricsInputError("(body)", f"not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise MetricsInputError("(body)", "must be a JSON object with rank, points and dropped")
    unknown = sorted(set(data) - {"rank", "points", "dropped"})
    if unknown:
        raise MetricsInputError(unknown[0], "unknown field; allowed fields: rank, points, dropped")
    rank = data.get("rank")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= MAX_RANK:
        raise MetricsInputError("rank", f"{rank!r} is not allowed; an integer 0..{MAX_RANK}")
    dropped = data.get("dropped", 0)
    if isinstance(dropped, bool) or not isinstance(dropped, int) or dropped < 0:
        raise MetricsInputError("dropped", f"{dropped!r} is not allowed; an integer >= 0")
    raw = data.get("points")
    if not isinstance(raw, list) or len(raw) > MAX_BATCH:
        raise MetricsInputError("points", f"must be a list of at most {MAX_BATCH} [name, step, value]")
    points = []
    for i, point in enumerate(raw):
        if not isinstance(point, list) or len(point) != 3:
            raise MetricsInputError(f"points[{i}]", "must be [name, step, value]")
        name, step, value = point
        problem = check_name(name)
        if problem:
            raise MetricsInputError(f"points[{i}]", problem)
        step_number = as_step(step)
        if step_number is None:
            raise MetricsInputError(f"points[{i}]", f"step {step!r} must be an integer >= 0")
        number = as_value(value) if isinstance(value, int | float) else None
        if number is None:
            raise MetricsInputError(f"points[{i}]", f"value {value!r} must be a finite number")
        points.append((name, step_number, number))
    return Batch(rank=rank, points=points, dropped=dropped)


class Series:
    """The points of one (rank, name), oldest first."""

    __slots__ = ("rank", "name", "steps", "values", "stride")

    def __init__(self, rank: int, name: str) -> None:
        self.rank = rank
        self.name = name
        self.steps: list[int] = []
        self.values: list[float] = []
        self.stride = 1  # how many original points each kept one stands for, after downsampling

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, value: float, limit: int) -> int:
        """Append a point; returns the change in the number of points kept."""
        self.steps.append(step)
        self.values.append(value)
        if len(self.steps) > limit:
            return 1 - self.downsample()
        return 1

    def downsample(self) -> int:
        """Keep every other point, and always the first and the last; returns how many went."""
        before = len(self.steps)
        if before < 3:
            return 0
        last_step, last_value = self.steps[-1], self.values[-1]
        self.steps = self.steps[::2]
        self.values = self.values[::2]
        if self.steps[-1] != last_step:
            self.steps.append(last_step)
            self.values.append(last_value)
        self.stride *= 2
        return before - len(self.steps)

    def latest(self) -> float | None:
        return self.values[-1] if self.values else None

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "name": self.name, "steps": list(self.steps), "values": list(self.values)}


class JobMetrics:
    """Every series of one job, and the newest points for followers."""

    def __init__(self, user: str, limits: MetricLimits) -> None:
        self.user = user
        self.limits = limits
        self.series: dict[tuple[int, str], Series] = {}
        self.seq = 0
        self.recent: deque[tuple[int, int, str, int, float]] = deque(maxlen=limits.recent_points)
        #: Points the ranks say they dropped before sending (buffer full, hub unreachable), per rank.
        self.dropped_by_rank: dict[int, int] = {}
        #: Points refused here (series over the per-job limit).
        self.refused = 0

    def points(self) -> int:
        return sum(len(s) for s in self.series.values())

    def add(self, rank: int, name: str, step: int, value: float) -> int | None:
        """Add one point; returns the change in points kept, or None when refused."""
        key = (rank, name)
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= self.limits.series_per_job:
                self.refused += 1
                return None
            series = self.series[key] = Series(rank, name)
        self.seq += 1
        self.recent.append((self.seq, rank, name, step, value))
        return series.add(step, value, self.limits.points_per_series)

    def since(self, seq: int) -> list[list[Any]]:
        """Points accepted after sequence number ``seq``, as ``[rank, name, step, value]``.

        A follower further behind than the ring holds gets what the ring holds.
        """
        if seq >= self.seq:
            return []
        return [[r, n, s, v] for q, r, n, s, v in self.recent if q > seq]

    def latest(self) -> dict[str, dict[int, float]]:
        """The newest value of every scalar, per rank: ``{"loss": {0: 0.31, 1: 0.30}}``."""
        out: dict[str, dict[int, float]] = {}
        for (rank, name), series in sorted(self.series.items()):
            value = series.latest()
            if value is not None:
                out.setdefault(name, {})[rank] = value
        return out

    def to_json(self) -> dict[str, Any]:
        """The whole job, as the service's ``GET .../metrics`` answers it."""
        return {
            "series": [s.to_json() for _, s in sorted(self.series.items())],
            "seq": self.seq,
            "dropped": sum(self.dropped_by_rank.values()) + self.refused,
        }


class MetricStore:
    """Metrics of every job of one hub, bounded per series, per job and per user.

    Jobs are keyed by their job id (``<name>-<hash>``, unique across users).
    """

    def __init__(self, limits: MetricLimits | None = None) -> None:
        self.limits = limits or MetricLimits()
        self.jobs: dict[str, JobMetrics] = {}
        self._user_points: dict[str, int] = {}

    def job(self, jid: str) -> JobMetrics | None:
        return self.jobs.get(jid)

    def ingest(self, jid: str, user: str, batch: Batch) -> int:
        """Add a checked batch to job ``jid`` of ``user``; returns the points accepted."""
        job = self.jobs.get(jid)
        if job is None:
            job = self.jobs[jid] = JobMetrics(user, self.limits)
        accepted = 0
        change = 0
        for name, step, value in batch.points:
            delta = job.add(batch.rank, name, step, value)
            if delta is not None:
                accepted += 1
                change += delta
        job.dropped_by_rank[batch.rank] = max(job.dropped_by_rank.get(batch.rank, 0), batch.dropped)
        self._count(user, change)
        return accepted

    def _count(self, user: str, change: int) -> None:
        total = self._user_points.get(user, 0) + change
        while total > self.limits.points_per_user:
            largest = max((s for j in self.jobs.values() if j.user == user for s in j.series.values()),
                          key=len, default=None)
            if largest is None or len(largest) < 3:
                break
            total -= largest.downsample()
        self._user_points[user] = total

    def user_points(self, user: str) -> int:
        return self._user_points.get(user, 0)

    def put(self, jid: str, job: JobMetrics) -> None:
        """Install a job's metrics (loaded from its ConfigMap), replacing any in memory."""
        self.drop(jid)
        self.jobs[jid] = job
        self._count(job.user, job.points())

    def drop(self, jid: str) -> None:
        """Forget a job (it was deleted)."""
        job = self.jobs.pop(jid, None)
        if job is not None:
            self._user_points[job.user] = max(0, self._user_points.get(job.user, 0) - job.points())


def dump(job: JobMetrics, max_bytes: int | None = None) -> str:
    """The compact JSON of ``job``'s series for its ConfigMap, downsampled to fit ``max_bytes``.

    Shape: ``{"v": 1, "seq": N, "dropped": {rank: n}, "refused": n,
    "series": [[rank, name, stride, [steps], [values]], ...]}``. ``job`` itself is not changed.
    """
    limit = max_bytes if max_bytes is not None else job.limits.persisted_bytes
    rows = [[s.rank, s.name, s.stride, list(s.steps), list(s.values)] for _, s in sorted(job.series.items())]
    while True:
        text = json.dumps({"v": DUMP_VERSION, "seq": job.seq, "dropped": job.dropped_by_rank,
                           "refused": job.refused, "series": rows}, separators=(",", ":"))
        if len(text.encode()) <= limit or all(len(r[3]) < 3 for r in rows):
            return text
        for row in rows:
            if len(row[3]) >= 3:
                steps, values = row[3], row[4]
                row[3], row[4] = steps[::2] + ([steps[-1]] if len(steps) % 2 == 0 else []), \
                    values[::2] + ([values[-1]] if len(values) % 2 == 0 else [])
                row[2] *= 2


def load(text: str, user: str, limits: MetricLimits | None = None) -> JobMetrics:
    """A :class:`JobMetrics` from :func:`dump`'s JSON.

    Raises:
        MetricsInputError: Not a dump of this version.
    """
    limits = limits or MetricLimits()
    try:
        data = json.loads(text)
    except ValueError as e:
        raise MetricsInputError("(configmap)", f"not valid JSON: {e}") from None
    if not isinstance(data, Mapping) or data.get("v") != DUMP_VERSION:
        raise MetricsInputError("(configmap)", f"not a metrics dump of version {DUMP_VERSION}")
    job = JobMetrics(user, limits)
    job.seq = int(data.get("seq") or 0)
    job.refused = int(data.get("refused") or 0)
    job.dropped_by_rank = {int(k): int(v) for k, v in (data.get("dropped") or {}).items()}
    for rank, name, stride, steps, values in data.get("series") or []:
        series = Series(int(rank), str(name))
        series.stride = int(stride)
        series.steps = [int(s) for s in steps][-limits.points_per_series:]
        series.values = [float(v) for v in values][-limits.points_per_series:]
        job.series[(series.rank, series.name)] = series
    return job


def points_of(series: Iterable[Mapping[str, Any]], name: str, rank: int) -> list[tuple[int, float]]:
    """``(step, value)`` of one scalar of one rank from a ``GET .../metrics`` answer (for readers)."""
    for s in series:
        if s.get("name") == name and s.get("rank") == rank:
            return list(zip(s.get("steps") or [], s.get("values") or [], strict=False))
    return []
