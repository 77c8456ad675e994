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

from kubelab.core.quantity import QuantityError, bytes_of, millicores

FRAMEWORKS = ("pytorch", "tensorflow", "mpi", "replicas")
PHASES = ("Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled")
# Every pattern is applied with fullmatch: with match/search, "$" also matches before a final "\n".
_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NAME_LEN = 40

# Bounds on every size in a submission, checked before anything reaches the API server (whose
# own limits, 1.5 MiB per object in etcd and 3 MiB per request, would answer 413/500 instead).
#: Most bytes in a submission's HTTP body (the jobs service refuses larger bodies with 413 unread;
#: the script's folder, at most 1 MiB, travels base64-encoded, hence the room).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Most environment variables, characters in one value, and characters over all values.
MAX_ENV_VARS = 64
MAX_ENV_VALUE = 32 * 1024
MAX_ENV_TOTAL = 128 * 1024
#: Most arguments, characters in one argument, and characters over all arguments.
MAX_ARGS = 256
MAX_ARG_LEN = 4096
MAX_ARGS_TOTAL = 32 * 1024
#: Most characters in ``script``/``module`` and in ``image``/``gpu_class``/``queue``.
MAX_PATH_LEN = 1024
#: Most entries in ``inputs``.
MAX_INPUTS = 32
MAX_REF_LEN = 256
#: Hard upper bounds of the integer fields (the catalogue's limits are usually lower).
MAX_WORKERS = 1000
MAX_GPUS_PER_WORKER = 16
MAX_RETRIES = 10
#: Hard upper bound of ``restarts`` (the catalogue's ``jobs.maxRestarts`` is the one in force).
MAX_RESTARTS = 100
MAX_PROCS_PER_WORKER = 1024
MAX_RUNTIME_SECONDS = 366 * 24 * 3600
#: Environment names kubelab sets itself (CONTRACT.md): a user's ``KUBELAB_RANK_OFFSET`` would fake the rank.
RESERVED_ENV_PREFIX = "KUBELAB_"


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
        cpu: CPU cores per worker (request and limit): a number (``1.5``) or a Kubernetes
            quantity (``1500m``); None for the platform default.
        memory: Memory per worker, a Kubernetes quantity such as ``8Gi``; None for the platform default.
        image: Catalogue image key or reference; None means the notebook's own image.
        env: Extra environment variables for every worker (names not starting with ``KUBELAB_``).
            The values travel in a Secret owned by the job, never in its record.
        max_runtime_seconds: Wall-clock limit (``activeDeadlineSeconds``); None means the platform's.
        retries: How many times a failed worker is retried before the job fails.
        queue: Kueue LocalQueue name; None uses the platform default, if any.
        procs_per_worker: Processes per worker for torchrun/mpirun; None means one per GPU, or 1 on CPU.
        output_dir: Where the job's outputs go, in the user's files (relative paths and ``~`` are taken
            from the home); None: ``~/kubelab-runs/<name>`` (``<shared>/kubelab-runs/<user>/<name>`` when
            only the shared volume is mounted). Ranks find it in ``KUBELAB_OUTPUT_DIR``.
        inputs: Folders or files of the home the job reads (a dataset), at the same paths; where job
            pods cannot mount the home they are fetched from it when each rank starts (docs/jobs.md).
        restarts: How many times the whole job is started again when a rank fails for good or its
            pod is deleted (preemption, node loss, eviction); the run resumes from its latest
            checkpoint. At most the catalogue's ``jobs.maxRestarts``.
        checkpoint_dir: A folder of the user's files that every rank and every restart sees (on an
            RWX home or the shared volume); ranks find it in ``KUBELAB_CHECKPOINT_DIR`` and
            :mod:`kubelab.jobs.checkpoint` saves and resumes there.
    """

    name: str
    framework: str = "pytorch"
    script: str | None = None
    module: str | None = None
    args: list[str] = field(default_factory=list)
    workers: int = 1
    gpus_per_worker: int = 0
    gpu_class: str | None = None
    cpu: float | str | None = None
    memory: str | None = None
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    max_runtime_seconds: int | None = None
    retries: int = 0
    queue: str | None = None
    procs_per_worker: int | None = None
    output_dir: str | None = None
    inputs: list[str] = field(default_factory=list)
    restarts: int = 0
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME_LEN or not _NAME.fullmatch(self.name):
            raise JobSpecError(
                "name", f"{_short(self.name)} is not allowed; use a-z, 0-9 and '-', starting with a letter, "
                f"at most {MAX_NAME_LEN} characters"
            )
        if self.framework not in FRAMEWORKS:
            raise JobSpecError("framework", f"{_short(self.framework)} is not allowed; allowed: {', '.join(FRAMEWORKS)}")
        if (self.script is None) == (self.module is None):
            raise JobSpecError("script", "set exactly one of 'script' and 'module'")
        for name in ("script", "module"):
            value = getattr(self, name)
            if value is not None:
                _check_text(value, name, MAX_PATH_LEN)
                if not value.strip():
                    raise JobSpecError(name, "must be a non-empty string")
        for name in ("image", "gpu_class", "queue"):
            if getattr(self, name) is not None:
                _check_text(getattr(self, name), name, MAX_REF_LEN)
        self._check_args()
        _check_int(self.workers, "workers", 1, MAX_WORKERS)
        _check_int(self.gpus_per_worker, "gpus_per_worker", 0, MAX_GPUS_PER_WORKER)
        _check_int(self.retries, "retries", 0, MAX_RETRIES)
        _check_int(self.restarts, "restarts", 0, MAX_RESTARTS)
        if self.gpus_per_worker and not self.gpu_class:
            raise JobSpecError("gpu_class", "required when gpus_per_worker > 0")
        if not self.gpus_per_worker and self.gpu_class:
            raise JobSpecError("gpu_class", "set gpus_per_worker >= 1 to use a GPU class")
        if self.cpu is not None:
            try:
                if millicores(self.cpu) <= 0:
                    raise QuantityError(f"{self.cpu!r} is not allowed")
            except QuantityError as e:
                raise JobSpecError("cpu", f"{e}; cores > 0 as a number (1.5) or a quantity (1500m)") from None
        if self.memory is not None:
            try:
                if not isinstance(self.memory, str) or bytes_of(self.memory) <= 0:
                    raise QuantityError(f"{_short(self.memory)} is not allowed")
            except QuantityError as e:
                raise JobSpecError("memory", f"{e}; a quantity > 0 such as 512Mi or 8Gi") from None
        self._check_env()
        self._check_files()
        if self.max_runtime_seconds is not None:
            _check_int(self.max_runtime_seconds, "max_runtime_seconds", 1, MAX_RUNTIME_SECONDS)
        if self.procs_per_worker is not None:
            _check_int(self.procs_per_worker, "procs_per_worker", 1, MAX_PROCS_PER_WORKER)
            if self.framework == "pytorch" and self.gpus_per_worker and self.procs_per_worker > self.gpus_per_worker:
                # NCCL refuses two ranks on one GPU ("Duplicate GPU detected").
                raise JobSpecError(
                    "procs_per_worker",
                    f"{self.procs_per_worker} processes on {self.gpus_per_worker} GPU(s): NCCL needs one GPU "
                    f"per process; allowed: 1..{self.gpus_per_worker}",
                )

    def _check_args(self) -> None:
        if not isinstance(self.args, list) or not all(isinstance(a, str) for a in self.args):
            raise JobSpecError("args", "must be a list of strings")
        if len(self.args) > MAX_ARGS:
            raise JobSpecError("args", f"{len(self.args)} arguments; at most {MAX_ARGS}")
        for i, arg in enumerate(self.args):
            _check_text(arg, f"args[{i}]", MAX_ARG_LEN, field_name="args")
        total = sum(len(a) for a in self.args)
        if total > MAX_ARGS_TOTAL:
            raise JobSpecError("args", f"{total} characters in all; at most {MAX_ARGS_TOTAL}")

    def _check_env(self) -> None:
        if not isinstance(self.env, dict):
            raise JobSpecError("env", "must map variable names ([A-Za-z_][A-Za-z0-9_]*) to strings")
        if len(self.env) > MAX_ENV_VARS:
            raise JobSpecError("env", f"{len(self.env)} variables; at most {MAX_ENV_VARS}")
        for key, value in self.env.items():
            if not isinstance(key, str) or len(key) > MAX_REF_LEN or not _ENV_NAME.fullmatch(key):
                raise JobSpecError("env", f"{_short(key)} is not a variable name; allowed: [A-Za-z_][A-Za-z0-9_]*, "
                                   f"at most {MAX_REF_LEN} characters")
            if key.startswith(RESERVED_ENV_PREFIX):
                raise JobSpecError("env", f"{key} is reserved: kubelab sets the {RESERVED_ENV_PREFIX}* variables "
                                   "itself (CONTRACT.md); pick another name")
            if not isinstance(value, str):
                raise JobSpecError("env", f"the value of {key} must be a string")
            _check_text(value, f"env.{key}", MAX_ENV_VALUE, field_name="env")
        total = sum(len(v) for v in self.env.values())
        if total > MAX_ENV_TOTAL:
            raise JobSpecError("env", f"{total} characters in all values; at most {MAX_ENV_TOTAL}")

    def _check_files(self) -> None:
        # Shapes only; where the paths may point depends on the storage (builders.check_files).
        if self.output_dir is not None:
            _check_text(self.output_dir, "output_dir", MAX_PATH_LEN)
            if not self.output_dir.strip():
                raise JobSpecError("output_dir", "must be a non-empty path, or left out for ~/kubelab-runs/<name>")
        if not isinstance(self.inputs, list) or not all(isinstance(p, str) for p in self.inputs):
            raise JobSpecError("inputs", "must be a list of paths (strings)")
        if len(self.inputs) > MAX_INPUTS:
            raise JobSpecError("inputs", f"{len(self.inputs)} paths; at most {MAX_INPUTS} (list folders, not files)")
        for i, path in enumerate(self.inputs):
            _check_text(path, f"inputs[{i}]", MAX_PATH_LEN, field_name="inputs")
            if not path.strip():
                raise JobSpecError("inputs", f"inputs[{i}] is empty; give a folder or file of your home")
        if self.checkpoint_dir is not None:
            _check_text(self.checkpoint_dir, "checkpoint_dir", MAX_PATH_LEN)
            if not self.checkpoint_dir.strip():
                raise JobSpecError("checkpoint_dir", "must be a folder of your files, or left out for no checkpoints")

    @property
    def cpu_millis(self) -> int | None:
        """``cpu`` in millicores (None when unset)."""
        return None if self.cpu is None else millicores(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        """``memory`` in bytes (None when unset)."""
        return None if self.memory is None else bytes_of(self.memory)

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


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of a refused value, cut short: messages must not echo a megabyte back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _check_int(value: Any, name: str, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise JobSpecError(name, f"{_short(value)} is not allowed; an integer in {minimum}..{maximum}")


def _check_text(value: Any, name: str, max_len: int, *, field_name: str | None = None) -> None:
    """A string of at most ``max_len`` characters without NUL (which no Kubernetes string may hold)."""
    if not isinstance(value, str):
        raise JobSpecError(field_name or name, f"{name} must be a string, not {_short(value)}")
    if len(value) > max_len:
        raise JobSpecError(field_name or name, f"{name} holds {len(value)} characters; at most {max_len}")
    if "\x00" in value:
        raise JobSpecError(field_name or name, f"{name} holds a NUL character")


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
        latest: The newest value of each scalar the job logged with ``kubelab.jobs.metrics.log``
            (its lowest rank's), e.g. ``{"loss": 0.031}``; empty when it logged none.
        outputs: Where the job's outputs go and whether they are there
            (:func:`kubelab.jobs.collect.outputs_status`): ``dir`` (as the user's server sees it),
            ``route`` (``direct``: written there by the ranks; ``collect``: brought into the home
            when the job ends), ``state``, ``message`` and, once collected, ``files``/``bytes``.
        restarts: For a job with ``restarts``: ``used``, ``limit``, ``history`` (each restart's
            ``n``, ``at``, ``rank``, ``reason``, ``resumed_from``) and ``message``
            (``Restarted 1 of 3: pod deleted (preempted); resumed from step 120``).
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
    latest: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    restarts: dict[str, Any] = field(default_factory=dict)

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
