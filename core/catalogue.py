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
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("catalogue.schema.yaml")
EXAMPLE_PATH = Path(__file__).with_name("catalogue.example.yaml")
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


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
class JobSettings:
    engine: str = "auto"
    namespace: str | None = None
    max_workers: int = 8
    max_runtime_seconds: int = 86400
    kueue: KueueSettings = field(default_factory=KueueSettings)
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


def check_schema(raw: Any, source: str) -> None:
    """Check ``raw`` against the JSON schema.

    Raises:
        CatalogueError: The first error, in document order.
    """
    validator = jsonschema.Draft202012Validator(schema())
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
            if "guarantee" in spec and "limit" in spec and _quantity(spec["guarantee"]) > _quantity(spec["limit"]):
                raise CatalogueError(
                    source, f"{where}.{kind}", f"guarantee {spec['guarantee']} exceeds limit {spec['limit']}"
                )
    if defaults > 1:
        raise CatalogueError(source, "profiles", "more than one profile has default: true; allowed: at most one")
    kueue = (raw.get("jobs") or {}).get("kueue") or {}
    default_queue = kueue.get("defaultQueue")
    if default_queue and default_queue not in kueue.get("queues", []):
        allowed = ", ".join(kueue.get("queues", [])) or "(no queues listed)"
        raise CatalogueError(source, "jobs.kueue.defaultQueue", f"{default_queue!r} is not in queues; allowed: {allowed}")


_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _quantity(value: str | float | int) -> float:
    """Parse a Kubernetes quantity of the forms the schema allows (``2``, ``0.5``, ``8Gi``, ``500M``)."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    return float(text)


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
        per_user=_limits(quotas.get("perUser")),
        user_limits={name: _limits(v) for name, v in (quotas.get("users") or {}).items()},
        group_limits={name: _limits(v) for name, v in (quotas.get("groups") or {}).items()},
        jobs=JobSettings(
            engine=jobs.get("engine", "auto"),
            namespace=jobs.get("namespace"),
            max_workers=jobs.get("maxWorkers", 8),
            max_runtime_seconds=jobs.get("maxRuntimeSeconds", 86400),
            kueue=KueueSettings(
                enabled=kueue.get("enabled", "auto"),
                queues=tuple(kueue.get("queues", ())),
                default_queue=kueue.get("defaultQueue"),
            ),
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
