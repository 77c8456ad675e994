"""Pod volumes on the process node: host folders per volume, and the bind-mount plan.

``persistentVolumeClaim`` volumes use the bound PV's per-claim folder, ``configMap``,
``secret``, ``downwardAPI`` and ``projected`` volumes are written as files under the
pod's folder, ``emptyDir`` is a fresh folder there, ``hostPath`` is used as is. The
launcher (:mod:`kubelab.devcluster.podinit`) bind-mounts them at each
``volumeMounts[].mountPath`` inside the pod's private mount namespace.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubelab.devcluster.podenv import PodConfigError, expand, field_value

DataLookup = Callable[[str], "Mapping[str, str | bytes] | None"]
ClaimLookup = Callable[[str], "str | None"]


@dataclasses.dataclass(frozen=True)
class Mount:
    """One bind mount: host ``source`` at ``target`` inside the pod."""

    source: str
    target: str
    read_only: bool = False


def key_files(
    data: Mapping[str, bytes], items: list[Mapping[str, Any]] | None, default_mode: int | None, what: str,
    optional: bool,
) -> dict[str, tuple[bytes, int]]:
    """Which files a configMap/secret volume holds: all keys, or only ``items`` (key → path, mode).

    Returns:
        Relative path → (content, mode).

    Raises:
        PodConfigError: An item names a key that does not exist (and the source is not optional).
    """
    mode = default_mode if default_mode is not None else 0o644
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise PodConfigError(f'{what}: key "{item["key"]}" not found')
        out[item["path"]] = (data[item["key"]], item.get("mode") or mode)
    return out


def _source_data(kind: str, source: Mapping[str, Any], configmaps: DataLookup, secrets: DataLookup) -> tuple[
    dict[str, bytes] | None, str
]:
    if kind == "configMap":
        name = source["name"]
        data = configmaps(name)
        if data is None:
            return None, f'configmap "{name}"'
        return {k: v.encode() if isinstance(v, str) else v for k, v in data.items()}, f'configmap "{name}"'
    name = source.get("secretName") or source.get("name")
    data = secrets(name)
    return (None if data is None else {k: base64.b64decode(v) for k, v in data.items()}), f'secret "{name}"'


def volume_files(
    volume: Mapping[str, Any], pod: Mapping[str, Any], configmaps: DataLookup, secrets: DataLookup
) -> dict[str, tuple[bytes, int]] | None:
    """The files of a file-backed volume (configMap, secret, downwardAPI, projected); None for others.

    Raises:
        PodConfigError: A referenced object or key is missing and not optional.
    """
    for kind in ("configMap", "secret"):
        if kind in volume:
            source = volume[kind]
            data, what = _source_data(kind, source, configmaps, secrets)
            if data is None:
                if source.get("optional"):
                    return {}
                raise PodConfigError(f"{what} not found")
            return key_files(data, source.get("items"), source.get("defaultMode"), what, bool(source.get("optional")))
    if "downwardAPI" in volume:
        return _downward_files(volume["downwardAPI"].get("items") or [], pod, volume["downwardAPI"].get("defaultMode"))
    if "projected" in volume:
        projected = volume["projected"]
        files: dict[str, tuple[bytes, int]] = {}
        for source in projected.get("sources") or []:
            if "downwardAPI" in source:
                files.update(_downward_files(source["downwardAPI"].get("items") or [], pod, projected.get("defaultMode")))
                continue
            kind = "configMap" if "configMap" in source else "secret" if "secret" in source else None
            if kind is None:
                # serviceAccountToken sources need the TokenRequest API; 1.20 pods use secret volumes instead.
                continue
            data, what = _source_data(kind, source[kind], configmaps, secrets)
            if data is None:
                if source[kind].get("optional"):
                    continue
                raise PodConfigError(f"{what} not found")
            files.update(key_files(data, source[kind].get("items"), projected.get("defaultMode"), what,
                                   bool(source[kind].get("optional"))))
        return files
    return None


def _downward_files(items: list[Mapping[str, Any]], pod: Mapping[str, Any], default_mode: int | None) -> dict[
    str, tuple[bytes, int]
]:
    out = {}
    for item in items:
        if "fieldRef" not in item:
            raise PodConfigError(f"downwardAPI item {item.get('path')}: only fieldRef is supported")
        out[item["path"]] = (field_value(pod, item["fieldRef"]["fieldPath"]).encode(), item.get("mode") or default_mode
                             or 0o644)
    return out


def write_files(folder: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Replace ``folder``'s content with ``files`` (relative path → content, mode)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for rel, (content, mode) in files.items():
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise PodConfigError(f"volume item path {rel!r} must be relative and stay inside the volume")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def materialise(
    pod: Mapping[str, Any],
    pod_dir: Path,
    configmaps: DataLookup,
    secrets: DataLookup,
    claim_path: ClaimLookup,
) -> dict[str, str]:
    """Create each volume's host folder.

    Args:
        pod: The pod.
        pod_dir: The pod's folder on the node (``emptyDir`` and file volumes live under it).
        configmaps: Name → ConfigMap data.
        secrets: Name → Secret data.
        claim_path: PVC name → host folder of its bound PV (None while unbound).

    Returns:
        Volume name → host path.

    Raises:
        PodConfigError: Something referenced is missing or a claim is not bound yet.
    """
    paths: dict[str, str] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume["name"]
        folder = pod_dir / "volumes" / name
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            path = claim_path(claim)
            if path is None:
                raise PodConfigError(f'persistentvolumeclaim "{claim}" is not bound')
            Path(path).mkdir(parents=True, exist_ok=True)
            paths[name] = path
        elif "emptyDir" in volume:
            folder.mkdir(parents=True, exist_ok=True)
            paths[name] = str(folder)
        elif "hostPath" in volume:
            host = volume["hostPath"]
            if host.get("type") in ("DirectoryOrCreate",):
                Path(host["path"]).mkdir(parents=True, exist_ok=True)
            paths[name] = host["path"]
        else:
            files = volume_files(volume, pod, configmaps, secrets)
            if files is None:
                raise PodConfigError(f"volume {name!r}: unsupported volume type {sorted(set(volume) - {'name'})}")
            write_files(folder, files)
            paths[name] = str(folder)
    return paths


def mount_plan(
    container: Mapping[str, Any], volume_paths: Mapping[str, str], env: Mapping[str, str]
) -> list[Mount]:
    """Bind mounts for ``container``'s ``volumeMounts`` (with ``subPath``/``subPathExpr``), in order.

    Raises:
        PodConfigError: A mount names an unknown volume or a subPath escapes its volume.
    """
    mounts = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volume_paths:
            raise PodConfigError(f"volumeMount {vm['mountPath']}: no volume named {vm['name']!r}")
        source = volume_paths[vm["name"]]
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub:
            if ".." in Path(sub).parts or os.path.isabs(sub):
                raise PodConfigError(f"subPath {sub!r} must be relative and stay inside the volume")
            source = os.path.join(source, sub)
        mounts.append(Mount(source, vm["mountPath"], bool(vm.get("readOnly"))))
    return mounts
