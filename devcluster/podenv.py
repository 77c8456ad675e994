"""A container's environment and command line, resolved the way the kubelet does (pure).

Inputs are plain pod dicts (the API's camelCase JSON) and lookups for ConfigMaps and
Secrets, so every rule is testable without a cluster.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

Lookup = Callable[[str], "Mapping[str, str | bytes] | None"]

_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
    "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class PodConfigError(ValueError):
    """The pod references something missing (a key, a ConfigMap); the kubelet's CreateContainerConfigError."""


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a Kubernetes quantity (``500m``, ``4Gi``, ``1e3``) into a number.

    Raises:
        ValueError: For a malformed quantity.
    """
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"invalid quantity {value!r}")
    number, suffix = match.groups()
    if suffix[:1] in ("e", "E"):
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    if suffix not in _SUFFIXES:
        raise ValueError(f"invalid quantity suffix in {value!r}")
    return Decimal(number) * _SUFFIXES[suffix]


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand ``$(VAR)`` from ``env``; unknown references stay as written and ``$$`` escapes ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, value)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """Value of a ``fieldRef.fieldPath`` (downward API).

    Raises:
        PodConfigError: For a path the downward API does not support.
    """
    meta = pod.get("metadata", {})
    status = pod.get("status", {}) or {}
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs") or []),
    }
    if path in simple:
        return simple[path] or ""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise PodConfigError(f"unsupported fieldRef.fieldPath {path!r}")


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any], node_allocatable: Mapping[str, str]) -> str:
    """Value of a ``resourceFieldRef``: the container's request/limit divided by ``divisor``, rounded up.

    A limit that is not set reads as the node's allocatable amount, as in the kubelet.
    """
    resource = ref["resource"]
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = node_allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(raw) / divisor))


def _decoded_secret(data: Mapping[str, str | bytes] | None) -> dict[str, str] | None:
    if data is None:
        return None
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}


def _text(data: Mapping[str, str | bytes] | None) -> dict[str, str] | None:
    """ConfigMap values as text (``binaryData`` arrives as bytes)."""
    if data is None:
        return None
    return {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in data.items()}


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    configmaps: Lookup,
    secrets: Lookup,
    node_allocatable: Mapping[str, str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Resolve ``envFrom`` then ``env`` (later entries win, ``$(VAR)`` sees earlier ones).

    Args:
        pod: The pod (with ``status.podIP`` already set, for ``status.podIP`` refs).
        container: The container spec.
        configmaps: Name → ConfigMap ``data`` (None if missing).
        secrets: Name → Secret ``data`` (base64 values, None if missing).
        node_allocatable: The node's allocatable resources (defaults for unset limits).
        base: Variables every container starts with (PATH, HOME, HOSTNAME).

    Returns:
        The full environment.

    Raises:
        PodConfigError: A non-optional reference is missing.
    """
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if "configMapRef" in source:
            ref, data = source["configMapRef"], _text(configmaps(source["configMapRef"]["name"]))
            kind = "configmap"
        else:
            ref, data = source["secretRef"], _decoded_secret(secrets(source["secretRef"]["name"]))
            kind = "secret"
        if data is None:
            if ref.get("optional"):
                continue
            raise PodConfigError(f'{kind} "{ref["name"]}" not found')
        env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value") or "", env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"], node_allocatable)
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            is_cm = "configMapKeyRef" in source
            ref = source["configMapKeyRef"] if is_cm else source["secretKeyRef"]
            data = _text(configmaps(ref["name"])) if is_cm else _decoded_secret(secrets(ref["name"]))
            kind = "configmap" if is_cm else "secret"
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                what = f'{kind} "{ref["name"]}"' if data is None else f'key "{ref["key"]}" in {kind} "{ref["name"]}"'
                raise PodConfigError(f"{what} not found")
            env[name] = data[ref["key"]]
        else:
            raise PodConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env


def command_line(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The container's ``command + args`` with ``$(VAR)`` expanded.

    Raises:
        PodConfigError: Neither is set (the image's entrypoint cannot be used without an image).
    """
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if not argv:
        raise PodConfigError(
            f"container {container.get('name')!r} sets neither command nor args; the process node "
            f"cannot use the image's entrypoint"
        )
    return [expand(a, env) for a in argv]
