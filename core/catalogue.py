"""The platform catalogue: one YAML file describing GPU classes, images, profiles, storage and quotas.

The file is checked in two passes. The JSON schema (``catalogue.schema.yaml``) checks shapes and
types; :func:`check_references` checks what a schema cannot (a profile naming an unknown GPU class,
a default profile that does not exist). Every error names the file, the path in the file
(``profiles[2].gpu.count``) and what is allowed, so an admin can fix it without reading code.

The loaded :class:`Catalogue` is immutable and is the single source of policy for the spawner,
the jobs service and the Helm chart.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from kubelab.core.duration import DurationError, parse_duration
from kubelab.core.quantity import QuantityError, bytes_of, format_bytes, format_millicores, millicores, parse_number

SCHEMA_PATH = Path(__file__).with_name("catalogue.schema.yaml")
EXAMPLE_PATH = Path(__file__).with_name("catalogue.example.yaml")
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
#: Largest job storage size the catalogue may set (``storage.scratch``, ``storage.transfer``): 1Pi.
MAX_STORAGE_BYTES = 2**50


class CatalogueError(ValueError):
    """The catalogue file is invalid. The message names the file, the path and what is allowed."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class GpuClass:
    """A kind of GPU the cluster offers.

    Attributes:
        key: Short id used by profiles and jobs, e.g. ``a100``.
        display_name: Shown to users, e.g. ``NVIDIA A100 80GB``.
        resource: Extended resource name requested per GPU.
        node_selector: Node labels identifying nodes of this class.
        tolerations: Kubernetes toleration dicts added to pods of this class.
        memory: GPU memory, informational.
    """

    key: str
    display_name: str
    node_selector: Mapping[str, str]
    resource: str = DEFAULT_GPU_RESOURCE
    tolerations: tuple[Mapping[str, str], ...] = ()
    memory: str | None = None


@dataclass(frozen=True)
class Image:
    """An image users may choose."""

    key: str
    display_name: str
    image: str
    variant: str = "cpu"


@dataclass(frozen=True)
class GpuRequest:
    """The GPU part of a profile: which class, and which counts a user may pick."""

    gpu_class: str
    counts: tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """A server profile offered in the picker."""

    slug: str
    name: str
    images: tuple[str, ...]
    description: str = ""
    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    mem_guarantee: str | None = None
    mem_limit: str | None = None
    gpu: GpuRequest | None = None
    groups: frozenset[str] = frozenset()
    idle_timeout: int | None = None
    default: bool = False

    def allows(self, groups: Iterable[str]) -> bool:
        """Whether a member of ``groups`` may use this profile (no groups listed means everyone)."""
        return not self.groups or bool(self.groups & set(groups))


@dataclass(frozen=True)
class HomeStorage:
    """Where users' persistent homes live."""

    storage_class: str | None = None
    size: str = "10Gi"
    access_mode: str = "ReadWriteOnce"
    mount_path: str = "/home/jovyan"


@dataclass(frozen=True)
class SharedStorage:
    """An existing ReadWriteMany claim mounted into servers and jobs."""

    claim_name: str
    mount_path: str = "/shared"


@dataclass(frozen=True)
class ScratchStorage:
    """Per-rank scratch space of job pods: an ``emptyDir`` with a size limit.

    It backs each rank's ``/tmp``, and its home folder where job pods cannot mount the home, so
    no job fills a node's disk (the kubelet evicts a rank that writes more).

    Attributes:
        size_bytes: The ``sizeLimit`` of each rank's scratch, in bytes.
    """

    size_bytes: int = 10 * 2**30


@dataclass(frozen=True)
class TransferLimits:
    """What a job's collector may move between a ReadWriteOnce home and the job's ranks.

    Attributes:
        max_output_bytes: Outputs brought back into the home per job, all ranks together; also
            each rank's output folder's ``sizeLimit``.
        max_input_bytes: Inputs (``inputs``) fetched from the home per job.
        max_files: Files per job in either direction.
    """

    max_output_bytes: int = 2 * 2**30
    max_input_bytes: int = 2 * 2**30
    max_files: int = 10_000


@dataclass(frozen=True)
class Limits:
    """Quota limits; ``None`` means unlimited."""

    max_gpus: int | None = None
    max_servers: int | None = None


@dataclass(frozen=True)
class KueueSettings:
    enabled: str | bool = "auto"
    queues: tuple[str, ...] = ()
    default_queue: str | None = None


@dataclass(frozen=True)
class JobLimits:
    """Bounds on what one user's jobs may ask for; ``None`` means this layer sets no bound.

    CPU is in millicores and memory in bytes, parsed strictly (:mod:`kubelab.core.quantity`).

    Attributes:
        workers_per_job: Most workers (ranks) in one job.
        workers_per_user: Most workers over all of the user's running jobs, this one included.
        procs_per_worker: Most processes per worker (``procs_per_worker``).
        cpu_per_worker: Most CPU per worker (``cpu``).
        memory_per_worker: Most memory per worker (``memory``).
        cpu_per_user: Most CPU requested over all of the user's running jobs.
        memory_per_user: Most memory requested over all of the user's running jobs.
        default_cpu: CPU per worker of a job that names none (None: no request, as Kubernetes does).
        default_memory: Memory per worker of a job that names none.
    """

    workers_per_job: int | None = None
    workers_per_user: int | None = None
    procs_per_worker: int | None = None
    cpu_per_worker: int | None = None
    memory_per_worker: int | None = None
    cpu_per_user: int | None = None
    memory_per_user: int | None = None
    default_cpu: int | None = None
    default_memory: int | None = None

    def describe(self, name: str) -> str:
        """The value of limit ``name`` in the catalogue's words (``cpuPerWorker 4``)."""
        value = getattr(self, name)
        if value is not None and name in _CPU_LIMITS:
            value = format_millicores(value)
        elif value is not None and name in _MEMORY_LIMITS:
            value = format_bytes(value)
        return f"{JOB_LIMIT_KEYS[name]} {value}"


#: JobLimits field → catalogue key (``jobs.limits.<key>``, ``jobs.groupLimits.<group>.<key>``).
JOB_LIMIT_KEYS = {
    "workers_per_job": "workersPerJob", "workers_per_user": "workersPerUser", "procs_per_worker": "procsPerWorker",
    "cpu_per_worker": "cpuPerWorker", "memory_per_worker": "memoryPerWorker", "cpu_per_user": "cpuPerUser",
    "memory_per_user": "memoryPerUser", "default_cpu": "defaultCpu", "default_memory": "defaultMemory",
}
_CPU_LIMITS = frozenset({"cpu_per_worker", "cpu_per_user", "default_cpu"})
_MEMORY_LIMITS = frozenset({"memory_per_worker", "memory_per_user", "default_memory"})
#: Bounds in force when the catalogue sets none: finite, so that no job asks for ``cpu: 1e300``;
#: a lab sets its own in ``jobs.limits`` (``workersPerJob`` defaults to ``jobs.maxWorkers``).
BUILTIN_JOB_LIMITS = JobLimits(
    workers_per_user=64, procs_per_worker=64, cpu_per_worker=128_000, memory_per_worker=2**40,
    cpu_per_user=512_000, memory_per_user=4 * 2**40,
)


@dataclass(frozen=True)
class JobSettings:
    engine: str = "auto"
    namespace: str | None = None
    max_workers: int = 8
    max_runtime_seconds: int = 86400
    #: Most ``restarts`` one job may ask for (``jobs.maxRestarts``).
    max_restarts: int = 3
    #: Seconds an ended job stays listed before the reconciler deletes it (``jobs.retention``);
    #: None keeps it until its user deletes it.
    retention_seconds: int | None = None
    kueue: KueueSettings = field(default_factory=KueueSettings)
    #: Platform-wide job limits (built-in defaults filled in); see :meth:`Catalogue.job_limits_for`.
    limits: JobLimits = field(default_factory=lambda: BUILTIN_JOB_LIMITS)
    #: Group → the limits its members get (only the keys the group sets).
    group_limits: Mapping[str, JobLimits] = field(default_factory=dict)
    #: Framework → ClusterTrainingRuntime name for the trainer-v2 engine (missing: Trainer's own).
    trainer_runtimes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalogue:
    """The whole platform description. Build it with :func:`load_catalogue` or :func:`parse_catalogue`."""

    profiles: tuple[Profile, ...]
    gpu_classes: Mapping[str, GpuClass] = field(default_factory=dict)
    images: Mapping[str, Image] = field(default_factory=dict)
    home: HomeStorage = field(default_factory=HomeStorage)
    shared: SharedStorage | None = None
    scratch: ScratchStorage = field(default_factory=ScratchStorage)
    transfer: TransferLimits = field(default_factory=TransferLimits)
    per_user: Limits = field(default_factory=Limits)
    user_limits: Mapping[str, Limits] = field(default_factory=dict)
    group_limits: Mapping[str, Limits] = field(default_factory=dict)
    jobs: JobSettings = field(default_factory=JobSettings)
    platform_name: str = "kubelab"
    login_service: str = "your institution"
    default_idle_timeout: int = 3600
    max_named_servers: int = 3
    source: str = "<catalogue>"

    def profile(self, slug: str) -> Profile:
        """Return the profile ``slug``.

        Raises:
            KeyError: No such profile.
        """
        for profile in self.profiles:
            if profile.slug == slug:
                return profile
        raise KeyError(slug)

    def profiles_for(self, groups: Iterable[str]) -> list[Profile]:
        """Profiles a member of ``groups`` may use, in catalogue order."""
        groups = set(groups)
        return [p for p in self.profiles if p.allows(groups)]

    def user_limits_for(self, user: str) -> Limits:
        """The per-user limits of ``user``: the override if any, else the platform default."""
        return self.user_limits.get(user, self.per_user)

    def job_limits_for(self, groups: Iterable[str]) -> JobLimits:
        """The job limits of a member of ``groups``.

        Per limit: the most generous value among the user's groups that set it in
        ``jobs.groupLimits``, else ``jobs.limits``, else the built-in default. A default CPU or
        memory is capped at the per-worker limit in force.
        """
        values = {}
        for name in JOB_LIMIT_KEYS:
            own = [getattr(self.jobs.group_limits[g], name) for g in sorted(set(groups)) if g in self.jobs.group_limits]
            own = [v for v in own if v is not None]
            values[name] = max(own) if own else getattr(self.jobs.limits, name)
        for default, cap in (("default_cpu", "cpu_per_worker"), ("default_memory", "memory_per_worker")):
            if values[default] is not None and values[cap] is not None:
                values[default] = min(values[default], values[cap])
        return JobLimits(**values)

    def idle_timeout_for(self, slug: str) -> int:
        """Idle timeout in seconds of servers of profile ``slug``."""
        try:
            timeout = self.profile(slug).idle_timeout
        except KeyError:
            timeout = None
        return timeout or self.default_idle_timeout


def _limits(raw: Mapping[str, Any] | None) -> Limits:
    raw = raw or {}
    return Limits(max_gpus=raw.get("maxGpus"), max_servers=raw.get("maxServers"))


def _json_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe_schema_error(error: jsonschema.ValidationError) -> tuple[str, str]:
    """Turn a jsonschema error into (path, problem) with the allowed values spelled out."""
    path = _json_path(list(error.absolute_path))
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, Mapping) else []
        key = extra[0] if extra else "?"
        return _json_path([*error.absolute_path, key]), f"unknown key {key!r}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        return path, f"{error.instance!r} is not allowed; allowed values: {', '.join(map(repr, error.validator_value))}"
    if error.validator == "required":
        return path or "(top level)", error.message
    if error.validator == "type":
        return path, f"{error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "pattern":
        return path, f"{error.instance!r} does not match the pattern {error.validator_value}"
    return path, error.message


@cache
def schema() -> dict[str, Any]:
    """The catalogue JSON schema, loaded once."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _ecma_pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Any:
    """JSON schema's ``pattern`` with ECMA-262's ``$`` (the end of the text).

    jsonschema runs patterns with Python's ``re.search``, where ``$`` also matches before a
    trailing newline: ``"cpu\\n"`` would pass ``^[a-z]+$`` and reach Kubernetes as a label.
    """
    if not validator.is_type(instance, "string"):
        return
    strict = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern
    if re.search(strict, instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_StrictValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


def check_schema(raw: Any, source: str) -> None:
    """Check ``raw`` against the JSON schema.

    Raises:
        CatalogueError: The first error, in document order.
    """
    validator = _StrictValidator(schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        path, problem = _describe_schema_error(errors[0])
        raise CatalogueError(source, path, problem)


def check_references(raw: Mapping[str, Any], source: str) -> None:
    """Check what the schema cannot: cross references and combinations.

    Raises:
        CatalogueError: The first problem found.
    """
    gpu_classes = raw.get("gpuClasses") or {}
    images = raw.get("images") or {}
    seen: set[str] = set()
    defaults = 0
    for i, prof in enumerate(raw["profiles"]):
        where = f"profiles[{i}]"
        if prof["slug"] in seen:
            raise CatalogueError(source, f"{where}.slug", f"duplicate profile slug {prof['slug']!r}")
        seen.add(prof["slug"])
        defaults += bool(prof.get("default"))
        gpu = prof.get("gpu")
        if gpu and gpu["class"] not in gpu_classes:
            allowed = ", ".join(sorted(gpu_classes)) or "(none defined in gpuClasses)"
            raise CatalogueError(
                source, f"{where}.gpu.class", f"unknown GPU class {gpu['class']!r}; allowed: {allowed}"
            )
        for j, key in enumerate(prof["images"]):
            if key not in images:
                allowed = ", ".join(sorted(images)) or "(none defined in images)"
                raise CatalogueError(source, f"{where}.images[{j}]", f"unknown image {key!r}; allowed: {allowed}")
            if images[key].get("variant", "cpu") == "gpu" and not gpu:
                raise CatalogueError(
                    source, f"{where}.images[{j}]", f"image {key!r} is a gpu image but the profile has no gpu"
                )
        for kind in ("cpu", "memory"):
            spec = prof.get(kind) or {}
            for key in ("guarantee", "limit"):
                if key in spec:
                    _size(spec[key], source, f"{where}.{kind}.{key}")
            if "guarantee" in spec and "limit" in spec and parse_number(spec["guarantee"]) > parse_number(spec["limit"]):
                raise CatalogueError(
                    source, f"{where}.{kind}", f"guarantee {spec['guarantee']} exceeds limit {spec['limit']}"
                )
    if defaults > 1:
        raise CatalogueError(source, "profiles", "more than one profile has default: true; allowed: at most one")
    storage = raw.get("storage") or {}
    home_size = (storage.get("home") or {}).get("size")
    if home_size is not None:
        _size(home_size, source, "storage.home.size")
    for path, value in _storage_sizes(storage):
        _size(value, source, path)
        if not 0 < parse_number(value) <= MAX_STORAGE_BYTES:
            raise CatalogueError(source, path, f"{value!r} is not allowed; a size > 0 and at most 1Pi")
    jobs = raw.get("jobs") or {}
    if jobs.get("retention") is not None:
        try:
            parse_duration(jobs["retention"])
        except DurationError as e:
            raise CatalogueError(source, "jobs.retention", str(e)) from None
    _job_limits(jobs.get("limits"), source, "jobs.limits")
    for group, limits in (jobs.get("groupLimits") or {}).items():
        _job_limits(limits, source, f"jobs.groupLimits.{group}")
    kueue = jobs.get("kueue") or {}
    default_queue = kueue.get("defaultQueue")
    if default_queue and default_queue not in kueue.get("queues", []):
        allowed = ", ".join(kueue.get("queues", [])) or "(no queues listed)"
        raise CatalogueError(source, "jobs.kueue.defaultQueue", f"{default_queue!r} is not in queues; allowed: {allowed}")


def _storage_sizes(storage: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(path, value) of the job storage sizes the catalogue sets (``storage.scratch``, ``storage.transfer``)."""
    scratch = storage.get("scratch") or {}
    transfer = storage.get("transfer") or {}
    return ([("storage.scratch.size", scratch["size"])] if "size" in scratch else []) + [
        (f"storage.transfer.{key}", transfer[key]) for key in ("maxOutputSize", "maxInputSize") if key in transfer]


def _size(value: Any, source: str, path: str) -> Any:
    """Check a size strictly (finite, >= 0, Kubernetes quantity grammar); the schema checks only types.

    Raises:
        CatalogueError: Naming ``path``; ``.nan``, ``.inf``, ``"2Gi\\n"`` and ``"1e999"`` are all refused.
    """
    try:
        parse_number(value)
    except QuantityError as e:
        raise CatalogueError(source, path, str(e)) from None
    return value


def _job_limits(raw: Mapping[str, Any] | None, source: str, path: str) -> None:
    """Check the sizes of one ``jobs.limits``-shaped mapping (the schema checked keys and integers)."""
    for key, value in (raw or {}).items():
        if key in ("cpuPerWorker", "cpuPerUser", "defaultCpu", "memoryPerWorker", "memoryPerUser", "defaultMemory"):
            _size(value, source, f"{path}.{key}")
            if parse_number(value) <= 0:
                raise CatalogueError(source, f"{path}.{key}", f"{value!r} is not allowed; a size > 0")


def _parse_job_limits(raw: Mapping[str, Any] | None, base: JobLimits | None = None) -> JobLimits:
    """Build :class:`JobLimits` from checked YAML; keys it does not set come from ``base``."""
    raw = raw or {}
    values: dict[str, int | None] = {}
    for name, key in JOB_LIMIT_KEYS.items():
        if key not in raw:
            values[name] = getattr(base, name) if base else None
        elif name in _CPU_LIMITS:
            values[name] = millicores(raw[key])
        elif name in _MEMORY_LIMITS:
            values[name] = bytes_of(raw[key])
        else:
            values[name] = int(raw[key])
    return JobLimits(**values)


def parse_catalogue(raw: Any, source: str = "<catalogue>") -> Catalogue:
    """Validate a parsed YAML document and build the :class:`Catalogue`.

    Args:
        raw: The document, as ``yaml.safe_load`` returns it.
        source: The file name, used in error messages.

    Raises:
        CatalogueError: The document is invalid.
    """
    if not isinstance(raw, Mapping):
        raise CatalogueError(source, "", "the file must hold a mapping with at least 'profiles'")
    check_schema(raw, source)
    check_references(raw, source)

    gpu_classes = {
        key: GpuClass(
            key=key,
            display_name=g["displayName"],
            resource=g.get("resource", DEFAULT_GPU_RESOURCE),
            node_selector=dict(g["nodeSelector"]),
            tolerations=tuple(dict(t) for t in g.get("tolerations", [])),
            memory=g.get("memory"),
        )
        for key, g in (raw.get("gpuClasses") or {}).items()
    }
    images = {
        key: Image(key=key, display_name=i["displayName"], image=i["image"], variant=i.get("variant", "cpu"))
        for key, i in (raw.get("images") or {}).items()
    }
    profiles = tuple(
        Profile(
            slug=p["slug"],
            name=p["name"],
            description=p.get("description", ""),
            images=tuple(p["images"]),
            cpu_guarantee=(p.get("cpu") or {}).get("guarantee"),
            cpu_limit=(p.get("cpu") or {}).get("limit"),
            mem_guarantee=(p.get("memory") or {}).get("guarantee"),
            mem_limit=(p.get("memory") or {}).get("limit"),
            gpu=GpuRequest(p["gpu"]["class"], tuple(p["gpu"]["counts"])) if p.get("gpu") else None,
            groups=frozenset(p.get("groups") or ()),
            idle_timeout=p.get("idleTimeout"),
            default=bool(p.get("default", False)),
        )
        for p in raw["profiles"]
    )
    storage = raw.get("storage") or {}
    home = storage.get("home") or {}
    shared = storage.get("shared")
    scratch = storage.get("scratch") or {}
    transfer = storage.get("transfer") or {}
    quotas = raw.get("quotas") or {}
    jobs = raw.get("jobs") or {}
    kueue = jobs.get("kueue") or {}
    defaults = raw.get("defaults") or {}
    platform = raw.get("platform") or {}
    return Catalogue(
        profiles=profiles,
        gpu_classes=gpu_classes,
        images=images,
        home=HomeStorage(
            storage_class=home.get("storageClass"),
            size=home.get("size", "10Gi"),
            access_mode=home.get("accessMode", "ReadWriteOnce"),
            mount_path=home.get("mountPath", "/home/jovyan"),
        ),
        shared=SharedStorage(shared["claimName"], shared.get("mountPath", "/shared")) if shared else None,
        scratch=ScratchStorage(**({"size_bytes": bytes_of(scratch["size"])} if "size" in scratch else {})),
        transfer=TransferLimits(
            max_output_bytes=bytes_of(transfer.get("maxOutputSize", TransferLimits.max_output_bytes)),
            max_input_bytes=bytes_of(transfer.get("maxInputSize", TransferLimits.max_input_bytes)),
            max_files=transfer.get("maxFiles", TransferLimits.max_files),
        ),
        per_user=_limits(quotas.get("perUser")),
        user_limits={name: _limits(v) for name, v in (quotas.get("users") or {}).items()},
        group_limits={name: _limits(v) for name, v in (quotas.get("groups") or {}).items()},
        jobs=JobSettings(
            engine=jobs.get("engine", "auto"),
            namespace=jobs.get("namespace"),
            max_workers=jobs.get("maxWorkers", 8),
            max_runtime_seconds=jobs.get("maxRuntimeSeconds", 86400),
            max_restarts=jobs.get("maxRestarts", 3),
            retention_seconds=None if jobs.get("retention") is None else parse_duration(jobs["retention"]),
            kueue=KueueSettings(
                enabled=kueue.get("enabled", "auto"),
                queues=tuple(kueue.get("queues", ())),
                default_queue=kueue.get("defaultQueue"),
            ),
            limits=_parse_job_limits(
                jobs.get("limits"),
                replace(BUILTIN_JOB_LIMITS, workers_per_job=jobs.get("maxWorkers", 8)),
            ),
            group_limits={g: _parse_job_limits(v) for g, v in (jobs.get("groupLimits") or {}).items()},
            trainer_runtimes=dict(jobs.get("trainerRuntimes") or {}),
        ),
        platform_name=platform.get("name", "kubelab"),
        login_service=platform.get("loginService", "your institution"),
        default_idle_timeout=defaults.get("idleTimeout", 3600),
        max_named_servers=defaults.get("maxNamedServers", 3),
        source=source,
    )


def load_catalogue(path: str | Path) -> Catalogue:
    """Read, validate and build the catalogue at ``path``.

    Raises:
        CatalogueError: The file is missing, not YAML, or invalid.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise CatalogueError(source, "", f"cannot read the file: {e.strerror}") from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogueError(source, "", f"not valid YAML: {e}") from e
    return parse_catalogue(raw, source)


def schema_docs() -> str:
    """Render the schema as a Markdown reference (``docs/catalogue.md``)."""
    lines = ["# Catalogue reference", "", "Generated from `core/catalogue.schema.yaml`; do not edit.", ""]

    def walk(node: Mapping[str, Any], path: str) -> None:
        if "$ref" in node:
            node = {**schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]], **node}
        kind = node.get("type", "enum" if "enum" in node else "")
        allowed = f" Allowed: {', '.join(map(repr, node['enum']))}." if "enum" in node else ""
        default = f" Default: `{node['default']}`." if "default" in node else ""
        if path:
            lines.append(f"- `{path}` ({kind}): {node.get('description', '')}{allowed}{default}".rstrip())
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}" if path else key)
        if isinstance(node.get("additionalProperties"), Mapping):
            walk(node["additionalProperties"], f"{path}.<key>")
        if isinstance(node.get("items"), Mapping) and "properties" in node["items"]:
            walk(node["items"], f"{path}[]")

    walk(schema(), "")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``kubelab-check-config FILE``: validate a catalogue, or print the reference docs."""
    parser = argparse.ArgumentParser(prog="kubelab-check-config", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=str(EXAMPLE_PATH), help="catalogue YAML (default: the example)")
    parser.add_argument("--docs", action="store_true", help="print the Markdown reference generated from the schema")
    args = parser.parse_args(argv)
    if args.docs:
        sys.stdout.write(schema_docs())
        return 0
    try:
        cat = load_catalogue(args.file)
    except CatalogueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(cat.profiles)} profiles, {len(cat.gpu_classes)} GPU classes, {len(cat.images)} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
