"""Catalogue policy for jobs: what a user may ask for, given their groups (pure).

The same catalogue that drives the spawner's profile picker decides what a job may use: images
and GPU classes/counts come from the profiles the user's groups may use; workers, processes, CPU,
memory and runtime are capped by the catalogue's ``jobs`` section, per group
(:meth:`~kubelab.core.catalogue.Catalogue.job_limits_for`). Refusals name the JobSpec field and
the limit (:class:`~kubelab.jobs.spec.JobSpecError`, HTTP 400) or say why the user may not do
it at all (:class:`PermissionError`, HTTP 403). :func:`check_totals` adds the per-user totals
over the user's running jobs, from pod records (:func:`job_usage`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kubelab.core.catalogue import BUILTIN_JOB_LIMITS, JOB_LIMIT_KEYS, Catalogue, GpuClass, Image, JobLimits
from kubelab.core.naming import COMPONENT_COLLECTOR, LABEL_COMPONENT, LABEL_JOB
from kubelab.core.quantity import format_bytes, format_millicores
from kubelab.core.records import PodInfo
from kubelab.jobs.spec import JobSpec, JobSpecError


class JobLimitExceeded(PermissionError):
    """The user's running jobs and this one together would exceed a per-user limit (HTTP 403).

    Attributes:
        limit: The catalogue key, e.g. ``cpuPerUser``.
    """

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class UserOptions:
    """What one user may choose for jobs (the ``options`` endpoint serialises this).

    Attributes:
        images: Allowed images, in catalogue order.
        default_image: Key of the image used when a spec names none.
        gpu_counts: GPU class key → allowed GPUs per worker (union over the user's profiles).
        max_workers: Most workers per job.
        max_runtime_seconds: Longest runtime.
        queues: Kueue LocalQueues a job may name (empty: any, or Kueue off).
        default_queue: Queue used when a spec names none.
        limits: The job limits of the user's groups (CPU in millicores, memory in bytes).
    """

    images: tuple[Image, ...]
    default_image: str | None
    gpu_counts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    max_workers: int = 8
    max_runtime_seconds: int = 86400
    queues: tuple[str, ...] = ()
    default_queue: str | None = None
    limits: JobLimits = BUILTIN_JOB_LIMITS

    def limits_json(self) -> dict[str, str | int | None]:
        """The limits in the catalogue's words, for the ``options`` endpoint (``{"cpuPerWorker": "2", ...}``)."""
        out: dict[str, str | int | None] = {}
        for name, key in JOB_LIMIT_KEYS.items():
            value = getattr(self.limits, name)
            if value is not None and ("cpu" in name):
                value = format_millicores(value)
            elif value is not None and "memory" in name:
                value = format_bytes(value)
            out[key] = value
        return out


@dataclass(frozen=True)
class Decision:
    """What the service will use for an accepted spec.

    Attributes:
        image: The image reference.
        gpu_class: The GPU class, if the job uses GPUs.
        max_runtime_seconds: The runtime limit in force.
        queue: The Kueue LocalQueue, or None.
        cpu_millis: CPU per worker in force (the spec's, else the group's ``defaultCpu``; None: no request).
        memory_bytes: Memory per worker in force (the spec's, else ``defaultMemory``; None: no request).
        limits: The job limits that were applied (for :func:`check_totals`).
    """

    image: str
    gpu_class: GpuClass | None
    max_runtime_seconds: int
    queue: str | None
    cpu_millis: int | None = None
    memory_bytes: int | None = None
    limits: JobLimits = BUILTIN_JOB_LIMITS


def options_for(catalogue: Catalogue, groups: Iterable[str]) -> UserOptions:
    """The job options a member of ``groups`` has."""
    profiles = catalogue.profiles_for(groups)
    keys: list[str] = []
    counts: dict[str, set[int]] = {}
    for prof in profiles:
        for key in prof.images:
            if key not in keys:
                keys.append(key)
        if prof.gpu is not None:
            counts.setdefault(prof.gpu.gpu_class, set()).update(prof.gpu.counts)
    default = next((p for p in profiles if p.default), profiles[0] if profiles else None)
    default_image = default.images[0] if default and default.images else (keys[0] if keys else None)
    jobs = catalogue.jobs
    limits = catalogue.job_limits_for(groups)
    return UserOptions(
        images=tuple(catalogue.images[k] for k in keys if k in catalogue.images),
        default_image=default_image,
        gpu_counts={k: tuple(sorted(v)) for k, v in counts.items()},
        max_workers=limits.workers_per_job if limits.workers_per_job is not None else jobs.max_workers,
        max_runtime_seconds=jobs.max_runtime_seconds,
        queues=jobs.kueue.queues,
        default_queue=jobs.kueue.default_queue,
        limits=limits,
    )


def check_spec(spec: JobSpec, catalogue: Catalogue, groups: Iterable[str], *, kueue: bool) -> Decision:
    """Check ``spec`` against the catalogue for a member of ``groups``.

    Args:
        kueue: Whether Kueue is in use (installed and not disabled).

    Raises:
        JobSpecError: A field the user's groups may not use, or over a platform limit (names the field).
        PermissionError: The user's groups may not use GPUs at all.
    """
    opts = options_for(catalogue, groups)
    image = _image(spec, catalogue, opts)
    gpu_class = None
    if spec.gpus_per_worker:
        if spec.gpu_class not in catalogue.gpu_classes:
            allowed = ", ".join(sorted(catalogue.gpu_classes)) or "(none)"
            raise JobSpecError("gpu_class", f"unknown GPU class {spec.gpu_class!r}; allowed: {allowed}")
        if not opts.gpu_counts:
            raise PermissionError(f"your groups ({', '.join(sorted(groups)) or 'none'}) may not use GPUs")
        if spec.gpu_class not in opts.gpu_counts:
            raise JobSpecError("gpu_class", f"{spec.gpu_class!r} is not allowed for your groups; "
                               f"allowed: {', '.join(sorted(opts.gpu_counts))}")
        counts = opts.gpu_counts[spec.gpu_class]
        if spec.gpus_per_worker not in counts:
            raise JobSpecError("gpus_per_worker", f"{spec.gpus_per_worker} is not allowed for {spec.gpu_class}; "
                               f"allowed: {', '.join(map(str, counts))}")
        gpu_class = catalogue.gpu_classes[spec.gpu_class]
    limits = opts.limits
    if spec.workers > opts.max_workers:
        raise JobSpecError("workers", f"{spec.workers} is not allowed; allowed: 1..{opts.max_workers} "
                           f"({_over(limits, 'workers_per_job', groups)})")
    if limits.procs_per_worker is not None and spec.nprocs > limits.procs_per_worker:
        raise JobSpecError("procs_per_worker", f"{spec.nprocs} is not allowed; allowed: 1..{limits.procs_per_worker} "
                           f"({_over(limits, 'procs_per_worker', groups)})")
    cpu = spec.cpu_millis if spec.cpu_millis is not None else limits.default_cpu
    if cpu is not None and limits.cpu_per_worker is not None and cpu > limits.cpu_per_worker:
        raise JobSpecError("cpu", f"{_short(spec.cpu)} is not allowed; allowed: up to "
                           f"{format_millicores(limits.cpu_per_worker)} ({_over(limits, 'cpu_per_worker', groups)})")
    memory = spec.memory_bytes if spec.memory_bytes is not None else limits.default_memory
    if memory is not None and limits.memory_per_worker is not None and memory > limits.memory_per_worker:
        raise JobSpecError("memory", f"{_short(spec.memory)} is not allowed; allowed: up to "
                           f"{format_bytes(limits.memory_per_worker)} ({_over(limits, 'memory_per_worker', groups)})")
    runtime = spec.max_runtime_seconds or opts.max_runtime_seconds
    if runtime > opts.max_runtime_seconds:
        raise JobSpecError("max_runtime_seconds", f"{runtime} is not allowed; allowed: 1..{opts.max_runtime_seconds}")
    return Decision(image=image, gpu_class=gpu_class, max_runtime_seconds=runtime, queue=_queue(spec, opts, kueue),
                    cpu_millis=cpu, memory_bytes=memory, limits=limits)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _over(limits: JobLimits, name: str, groups: Iterable[str]) -> str:
    """Words naming the catalogue limit that refused a request: ``limit cpuPerWorker of your groups (students)``."""
    return f"limit {JOB_LIMIT_KEYS[name]} for your groups ({', '.join(sorted(set(groups))) or 'none'})"


@dataclass(frozen=True)
class JobUsage:
    """What a user's running jobs hold now, from their pods.

    Attributes:
        jobs: Distinct running jobs.
        workers: Active job pods (one per rank; an MPI launcher counts as one more).
        cpu_millis: Their CPU requests, in millicores.
        memory_bytes: Their memory requests, in bytes.
    """

    jobs: int = 0
    workers: int = 0
    cpu_millis: int = 0
    memory_bytes: int = 0


def job_usage(pods: Iterable[PodInfo]) -> JobUsage:
    """Sum the job pods among ``pods`` that still hold resources (pure).

    Pass the pods of one user (``ClusterCache.pods_of_user(user_label(user))``): servers (no
    ``kubelab.io/job`` label) and pods in a terminal phase count for nothing.
    """
    jobs: set[str] = set()
    workers = cpu = memory = 0
    for pod in pods:
        if not pod.active or LABEL_JOB not in pod.labels:
            continue
        if pod.labels.get(LABEL_COMPONENT) == COMPONENT_COLLECTOR:
            continue  # kubelab's own file mover on an RWO home, not one of the user's workers
        jobs.add(pod.labels[LABEL_JOB])
        workers += 1
        cpu += pod.cpu_millis
        memory += pod.memory_bytes
    return JobUsage(jobs=len(jobs), workers=workers, cpu_millis=cpu, memory_bytes=memory)


def check_totals(spec: JobSpec, decision: Decision, usage: JobUsage) -> None:
    """Refuse ``spec`` when the user's running jobs (``usage``) and it together pass a per-user limit.

    Call it with the usage of the user's pods right before creating the job (pure).

    Raises:
        JobLimitExceeded: Names the limit (``workersPerUser``, ``cpuPerUser``, ``memoryPerUser``)
            and what the running jobs hold.
    """
    limits = decision.limits
    held = f"your {usage.jobs} running job(s) hold"
    if limits.workers_per_user is not None and usage.workers + spec.workers > limits.workers_per_user:
        raise JobLimitExceeded("workersPerUser", f"limit workersPerUser {limits.workers_per_user}: {held} "
                               f"{usage.workers} workers and job '{spec.name}' asks for {spec.workers}")
    cpu = (decision.cpu_millis or 0) * spec.workers
    if limits.cpu_per_user is not None and usage.cpu_millis + cpu > limits.cpu_per_user:
        raise JobLimitExceeded("cpuPerUser", f"limit cpuPerUser {format_millicores(limits.cpu_per_user)}: {held} "
                               f"{format_millicores(usage.cpu_millis)} CPU and job '{spec.name}' asks for "
                               f"{format_millicores(cpu)}")
    memory = (decision.memory_bytes or 0) * spec.workers
    if limits.memory_per_user is not None and usage.memory_bytes + memory > limits.memory_per_user:
        raise JobLimitExceeded("memoryPerUser", f"limit memoryPerUser {format_bytes(limits.memory_per_user)}: {held} "
                               f"{format_bytes(usage.memory_bytes)} and job '{spec.name}' asks for "
                               f"{format_bytes(memory)}")


def _image(spec: JobSpec, catalogue: Catalogue, opts: UserOptions) -> str:
    allowed = ", ".join(i.key for i in opts.images) or "(none for your groups)"
    if spec.image is None:
        if opts.default_image is None or opts.default_image not in catalogue.images:
            raise JobSpecError("image", f"no default image for your groups; allowed: {allowed}")
        return catalogue.images[opts.default_image].image
    for img in opts.images:
        if spec.image in (img.key, img.image):
            return img.image
    raise JobSpecError("image", f"{spec.image!r} is not allowed for your groups; allowed: {allowed}")


def _queue(spec: JobSpec, opts: UserOptions, kueue: bool) -> str | None:
    if not kueue:
        if spec.queue:
            raise JobSpecError("queue", f"{spec.queue!r}: Kueue is not in use on this platform; leave queue empty")
        return None
    queue = spec.queue or opts.default_queue
    if queue and opts.queues and queue not in opts.queues:
        raise JobSpecError("queue", f"{queue!r} is not allowed; allowed: {', '.join(opts.queues)}")
    return queue
