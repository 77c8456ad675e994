"""What a user asks for (:class:`JobSpec`) and what they get back (:class:`JobStatus`).

Both are plain dataclasses that travel as JSON between ``JobClient`` in the notebook and the
jobs service in the hub. ``JobSpec`` checks everything it can check alone in ``__post_init__``;
the service then checks it against the catalogue (images, GPU classes, groups) and the quota.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FRAMEWORKS = ("pytorch", "tensorflow", "mpi", "replicas")
PHASES = ("Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled")
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([KMGT]i?)?$")
MAX_NAME_LEN = 40


class JobSpecError(ValueError):
    """A job spec field is invalid. ``field`` names it; the message says what is allowed."""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


@dataclass
class JobSpec:
    """A distributed training job, as a user describes it.

    Attributes:
        name: DNS label, unique among the user's jobs, at most 40 characters (``[a-z][-a-z0-9]*``).
        framework: ``pytorch`` (DDP via torchrun), ``tensorflow`` (MultiWorkerMirrored via
            ``TF_CONFIG``), ``mpi`` (mpirun/horovodrun) or ``replicas`` (N independent workers).
        script: Path of a Python script in the pod (under the home or the shared volume); a relative
            path is taken from the home. Exactly one of ``script`` and ``module`` is set.
        module: A module to run with ``python -m``.
        args: Arguments passed to the script or module.
        workers: Number of worker pods (ranks).
        gpus_per_worker: GPUs each worker requests; 0 runs on CPU.
        gpu_class: Catalogue GPU class key; required when ``gpus_per_worker`` > 0.
        cpu: CPU cores per worker (request and limit), or None for the platform default.
        memory: Memory per worker, a Kubernetes quantity such as ``8Gi``.
        image: Catalogue image key or reference; None means the notebook's own image.
        env: Extra environment variables for every worker.
        max_runtime_seconds: Wall-clock limit (``activeDeadlineSeconds``); None means the platform's.
        retries: How many times a failed worker is retried before the job fails.
        queue: Kueue LocalQueue name; None uses the platform default, if any.
        procs_per_worker: Processes per worker for torchrun/mpirun; None means one per GPU, or 1 on CPU.
    """

    name: str
    framework: str = "pytorch"
    script: str | None = None
    module: str | None = None
    args: list[str] = field(default_factory=list)
    workers: int = 1
    gpus_per_worker: int = 0
    gpu_class: str | None = None
    cpu: float | None = None
    memory: str | None = None
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    max_runtime_seconds: int | None = None
    retries: int = 0
    queue: str | None = None
    procs_per_worker: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or len(self.name) > MAX_NAME_LEN:
            raise JobSpecError(
                "name", f"{self.name!r} is not allowed; use a-z, 0-9 and '-', starting with a letter, "
                f"at most {MAX_NAME_LEN} characters"
            )
        if self.framework not in FRAMEWORKS:
            raise JobSpecError("framework", f"{self.framework!r} is not allowed; allowed: {', '.join(FRAMEWORKS)}")
        if (self.script is None) == (self.module is None):
            raise JobSpecError("script", "set exactly one of 'script' and 'module'")
        for name in ("script", "module"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise JobSpecError(name, "must be a non-empty string")
        if not isinstance(self.args, list) or not all(isinstance(a, str) for a in self.args):
            raise JobSpecError("args", "must be a list of strings")
        _check_int(self.workers, "workers", 1)
        _check_int(self.gpus_per_worker, "gpus_per_worker", 0)
        _check_int(self.retries, "retries", 0)
        if self.gpus_per_worker and not self.gpu_class:
            raise JobSpecError("gpu_class", "required when gpus_per_worker > 0")
        if not self.gpus_per_worker and self.gpu_class:
            raise JobSpecError("gpu_class", "set gpus_per_worker >= 1 to use a GPU class")
        if self.cpu is not None and (isinstance(self.cpu, bool) or not isinstance(self.cpu, int | float)
                                     or self.cpu <= 0):
            raise JobSpecError("cpu", f"{self.cpu!r} is not allowed; a number of cores > 0")
        if self.memory is not None and (not isinstance(self.memory, str) or not _QUANTITY.match(self.memory)):
            raise JobSpecError("memory", f"{self.memory!r} is not allowed; a quantity such as 512Mi or 8Gi")
        if not isinstance(self.env, dict) or not all(
            isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str) for k, v in self.env.items()
        ):
            raise JobSpecError("env", "must map variable names ([A-Za-z_][A-Za-z0-9_]*) to strings")
        if self.max_runtime_seconds is not None:
            _check_int(self.max_runtime_seconds, "max_runtime_seconds", 1)
        if self.procs_per_worker is not None:
            _check_int(self.procs_per_worker, "procs_per_worker", 1)
            if self.framework == "pytorch" and self.gpus_per_worker and self.procs_per_worker > self.gpus_per_worker:
                # NCCL refuses two ranks on one GPU ("Duplicate GPU detected").
                raise JobSpecError(
                    "procs_per_worker",
                    f"{self.procs_per_worker} processes on {self.gpus_per_worker} GPU(s): NCCL needs one GPU "
                    f"per process; allowed: 1..{self.gpus_per_worker}",
                )

    @property
    def nprocs(self) -> int:
        """Processes per worker: ``procs_per_worker``, else one per GPU, else 1."""
        return self.procs_per_worker or max(1, self.gpus_per_worker)

    @property
    def total_gpus(self) -> int:
        return self.workers * self.gpus_per_worker

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Build a spec from JSON, rejecting unknown keys.

        Raises:
            JobSpecError: An unknown key, or an invalid field.
        """
        if not isinstance(data, Mapping):
            raise JobSpecError("(body)", "must be a JSON object")
        allowed = [f.name for f in fields(cls)]
        for key in data:
            if key not in allowed:
                raise JobSpecError(key, f"unknown field; allowed fields: {', '.join(allowed)}")
        if "name" not in data:
            raise JobSpecError("name", "required")
        return cls(**data)


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise JobSpecError(name, f"{value!r} is not allowed; an integer >= {minimum}")


@dataclass
class RankStatus:
    """One worker (rank) of a job."""

    rank: int
    phase: str = "Pending"
    pod: str | None = None
    node: str | None = None
    exit_code: int | None = None
    message: str = ""


@dataclass
class JobStatus:
    """What the service reports about a job.

    Attributes:
        phase: One of ``PHASES``.
        failed_rank: The first rank that failed for good, if any.
        last_logs: The failed rank's last log lines, kept after teardown.
        events: A short summary of recent Kubernetes events (newest last).
    """

    name: str
    user: str
    framework: str
    workers: int
    gpus_per_worker: int = 0
    gpu_class: str | None = None
    engine: str = "plain"
    phase: str = "Pending"
    created: str | None = None
    finished: str | None = None
    message: str = ""
    ranks: list[RankStatus] = field(default_factory=list)
    failed_rank: int | None = None
    last_logs: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    queue: str | None = None

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed", "Cancelled")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobStatus:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["ranks"] = [RankStatus(**r) for r in data.get("ranks", [])]
        return cls(**values)
