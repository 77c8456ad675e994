"""Catalogue policy for jobs: what a user may ask for, given their groups (pure).

The same catalogue that drives the spawner's profile picker decides what a job may use: images
and GPU classes/counts come from the profiles the user's groups may use; workers and runtime
are capped by the catalogue's ``jobs`` section. Refusals name the JobSpec field
(:class:`~kubelab.jobs.spec.JobSpecError`, HTTP 400) or say why the user may not do it at all
(:class:`PermissionError`, HTTP 403).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kubelab.core.catalogue import Catalogue, GpuClass, Image
from kubelab.jobs.spec import JobSpec, JobSpecError


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
    """

    images: tuple[Image, ...]
    default_image: str | None
    gpu_counts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    max_workers: int = 8
    max_runtime_seconds: int = 86400
    queues: tuple[str, ...] = ()
    default_queue: str | None = None


@dataclass(frozen=True)
class Decision:
    """What the service will use for an accepted spec.

    Attributes:
        image: The image reference.
        gpu_class: The GPU class, if the job uses GPUs.
        max_runtime_seconds: The runtime limit in force.
        queue: The Kueue LocalQueue, or None.
    """

    image: str
    gpu_class: GpuClass | None
    max_runtime_seconds: int
    queue: str | None


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
    return UserOptions(
        images=tuple(catalogue.images[k] for k in keys if k in catalogue.images),
        default_image=default_image,
        gpu_counts={k: tuple(sorted(v)) for k, v in counts.items()},
        max_workers=jobs.max_workers,
        max_runtime_seconds=jobs.max_runtime_seconds,
        queues=jobs.kueue.queues,
        default_queue=jobs.kueue.default_queue,
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
    if spec.workers > opts.max_workers:
        raise JobSpecError("workers", f"{spec.workers} is not allowed; allowed: 1..{opts.max_workers}")
    runtime = spec.max_runtime_seconds or opts.max_runtime_seconds
    if runtime > opts.max_runtime_seconds:
        raise JobSpecError("max_runtime_seconds", f"{runtime} is not allowed; allowed: 1..{opts.max_runtime_seconds}")
    return Decision(image=image, gpu_class=gpu_class, max_runtime_seconds=runtime, queue=_queue(spec, opts, kueue))


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
