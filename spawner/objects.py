"""Pure builders: the KubeSpawner settings for one spawn, computed on a clean base.

KubeSpawner's ``kubespawner_override`` *merges* dict settings into the live spawner, which is
reused across spawns of the same server; that is how a GPU limit from one spawn leaks into the
next. Here every spawn starts from the administrator's configured values (the *base*) and the
result replaces each setting whole.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from kubelab.core.catalogue import Catalogue
from kubelab.core.naming import (
    ANNOTATION_GROUPS,
    ANNOTATION_SERVER_NAME,
    ANNOTATION_USER,
    LABEL_PROFILE,
    LABEL_SERVER,
    LABEL_USER,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    home_claim_name,
    recommended_labels,
    server_label,
    user_label,
)
from kubelab.core.quantity import bytes_of

from .options import Selection

#: Spawner traits that :func:`spawn_settings` owns; the spawner snapshots them at start-up as the base.
MANAGED_TRAITS: tuple[str, ...] = (
    "image",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "extra_resource_guarantees",
    "extra_resource_limits",
    "node_selector",
    "tolerations",
    "extra_labels",
    "extra_annotations",
    "environment",
    "volumes",
    "volume_mounts",
    "working_dir",
    "pvc_name",
    "storage_class",
    "storage_capacity",
    "storage_access_modes",
    "storage_extra_annotations",
    "storage_extra_labels",
)

HOME_VOLUME = "home"
SHARED_VOLUME = "shared"
__all__ = ["MANAGED_TRAITS", "escape_template", "pod_labels", "quantity_bytes", "server_label", "spawn_settings"]


def quantity_bytes(value: str | int | float | None) -> int | None:
    """Kubernetes memory quantity → bytes (``"2Gi"`` → 2147483648); KubeSpawner's byte traits
    reject the ``Gi`` suffix, so the catalogue's quantities are converted here (strictly, by
    :mod:`kubelab.core.quantity`: the catalogue has already refused anything else)."""
    if value is None:
        return None
    return bytes_of(value)


def escape_template(value: str) -> str:
    """Double the braces: KubeSpawner expands ``{username}``-style templates in labels, annotations
    and env values, so a group or server name holding ``{`` would break or be expanded."""
    return value.replace("{", "{{").replace("}", "}}")


def pod_labels(username: str, server_name: str, profile_slug: str) -> dict[str, str]:
    """The kubelab labels every server pod carries (quota and availability select on them)."""
    return {
        LABEL_USER: user_label(username),
        LABEL_PROFILE: profile_slug,
        LABEL_SERVER: server_label(server_name),
        MANAGED_BY: MANAGED_BY_VALUE,
    }


def _as_list(value: Any) -> list[Any]:
    """KubeSpawner accepts lists or dicts (sorted by key) for volumes, mounts and tolerations."""
    if isinstance(value, Mapping):
        return [copy.deepcopy(value[k]) for k in sorted(value)]
    return copy.deepcopy(list(value or []))


def spawn_settings(
    selection: Selection,
    catalogue: Catalogue,
    *,
    username: str,
    server_name: str,
    groups: Iterable[str],
    base: Mapping[str, Any],
    home_claim: str | None = None,
) -> dict[str, Any]:
    """Spawner settings for ``selection``: the base, with the selection's values on top.

    Args:
        selection: The validated choice.
        catalogue: The platform catalogue (storage).
        username: JupyterHub user name.
        server_name: JupyterHub server name (``""`` for the default server).
        groups: The user's groups, recorded on the pod for group quotas.
        base: The administrator's configured value of every trait in :data:`MANAGED_TRAITS`.
        home_claim: The user's home PVC as :func:`kubelab.core.home.find_home_claim` chose it
            (a home kept from the previous naming); default :func:`home_claim_name` of the user.

    Returns:
        Trait name → value for every trait in :data:`MANAGED_TRAITS`; set them whole.
    """
    profile, image, gpu_class = selection.profile, selection.image, selection.gpu_class
    home = catalogue.home
    out: dict[str, Any] = {name: copy.deepcopy(base.get(name)) for name in MANAGED_TRAITS}

    out["image"] = image.image
    out["cpu_guarantee"] = profile.cpu_guarantee if profile.cpu_guarantee is not None else base.get("cpu_guarantee")
    out["cpu_limit"] = profile.cpu_limit if profile.cpu_limit is not None else base.get("cpu_limit")
    out["mem_guarantee"] = quantity_bytes(profile.mem_guarantee) if profile.mem_guarantee else base.get("mem_guarantee")
    out["mem_limit"] = quantity_bytes(profile.mem_limit) if profile.mem_limit else base.get("mem_limit")

    guarantees = dict(base.get("extra_resource_guarantees") or {})
    limits = dict(base.get("extra_resource_limits") or {})
    node_selector = dict(base.get("node_selector") or {})
    tolerations = _as_list(base.get("tolerations"))
    if gpu_class is not None and selection.gpus:
        # extended resources cannot be overcommitted: requests must equal limits
        guarantees[gpu_class.resource] = str(selection.gpus)
        limits[gpu_class.resource] = str(selection.gpus)
        node_selector.update(gpu_class.node_selector)
        tolerations.extend(dict(t) for t in gpu_class.tolerations)
    out["extra_resource_guarantees"] = guarantees
    out["extra_resource_limits"] = limits
    out["node_selector"] = node_selector
    out["tolerations"] = tolerations

    out["extra_labels"] = {**(base.get("extra_labels") or {}), **pod_labels(username, server_name, profile.slug)}
    out["extra_annotations"] = {
        **(base.get("extra_annotations") or {}),
        ANNOTATION_USER: escape_template(username),
        ANNOTATION_SERVER_NAME: escape_template(server_name),
        ANNOTATION_GROUPS: escape_template(",".join(sorted(set(groups)))),
    }
    env = dict(base.get("environment") or {})
    env.update(
        {
            "KUBELAB_PROFILE": profile.slug,
            "KUBELAB_IMAGE": image.key,
            # the process node runs commands on the host, so HOME must not come from the image
            "HOME": home.mount_path,
        }
    )
    if gpu_class is not None:
        env["KUBELAB_GPU_CLASS"] = gpu_class.key
        env["KUBELAB_GPUS"] = str(selection.gpus)
    out["environment"] = env

    claim = home_claim or home_claim_name(username)
    volumes = [v for v in _as_list(base.get("volumes")) if v.get("name") not in (HOME_VOLUME, SHARED_VOLUME)]
    mounts = [m for m in _as_list(base.get("volume_mounts")) if m.get("name") not in (HOME_VOLUME, SHARED_VOLUME)]
    volumes.append({"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
    mounts.append({"name": HOME_VOLUME, "mountPath": home.mount_path})
    if catalogue.shared is not None:
        volumes.append({"name": SHARED_VOLUME, "persistentVolumeClaim": {"claimName": catalogue.shared.claim_name}})
        mounts.append({"name": SHARED_VOLUME, "mountPath": catalogue.shared.mount_path})
    out["volumes"] = volumes
    out["volume_mounts"] = mounts
    out["working_dir"] = home.mount_path
    out["pvc_name"] = claim
    out["storage_class"] = home.storage_class if home.storage_class is not None else base.get("storage_class")
    out["storage_capacity"] = home.size
    out["storage_access_modes"] = [home.access_mode]
    # the exact owner on the claim: the home lookup only ever mounts a claim recorded as this user's
    out["storage_extra_annotations"] = {
        **(base.get("storage_extra_annotations") or {}),
        ANNOTATION_USER: escape_template(username),
    }
    return out


#: ``app.kubernetes.io/name`` of a notebook server: the application it runs.
SERVER_APP_NAME = "jupyterhub"


def identity_settings(
    settings: Mapping[str, Any],
    *,
    username: str,
    server_name: str,
    groups: Iterable[str],
    profile_slug: str,
    pod_name: str,
    pvc_name: str,
    component: str,
    gpus: int = 0,
    gpu_class: str | None = None,
) -> dict[str, Any]:
    """kubelab's additions to one spawn's labels, annotations and environment (both sources).

    These are what a ``profile_list`` spawn has beyond stock KubeSpawner's (the differential
    test lists them): on the pod the ``kubelab.io/`` labels (:func:`pod_labels`) and the
    recommended labels (:func:`~kubelab.core.naming.recommended_labels`; KubeSpawner's
    ``common_labels`` and its component label still win, as for every label it writes), the
    owner annotations, and ``KUBELAB_PROFILE`` (plus ``KUBELAB_GPU_CLASS``/``KUBELAB_GPUS`` with
    GPUs); on the PVC the user label, by which kubelab recognises its homes, and the
    recommended labels.

    Args:
        settings: The spawn's settings so far (``extra_labels``, ``extra_annotations``,
            ``storage_extra_labels``, ``environment`` are read).
        username: JupyterHub user name.
        server_name: JupyterHub server name (``""``: default server).
        groups: The user's groups (group quotas count over them).
        profile_slug: The chosen profile.
        pod_name: The server's pod name (the recommended ``instance``).
        pvc_name: The home PVC's name (its ``instance``).
        component: KubeSpawner's ``component_label``.
        gpus: GPUs requested.
        gpu_class: Their class key.

    Returns:
        New values of ``extra_labels``, ``extra_annotations``, ``storage_extra_labels`` and
        ``environment``.
    """
    escaped = escape_template  # KubeSpawner expands {templates} in all four
    labels = {
        **(settings.get("extra_labels") or {}),
        **recommended_labels(name=SERVER_APP_NAME, instance=pod_name, component=component),
        **pod_labels(username, server_name, profile_slug),
    }
    annotations = {
        **(settings.get("extra_annotations") or {}),
        ANNOTATION_USER: escaped(username),
        ANNOTATION_SERVER_NAME: escaped(server_name),
        ANNOTATION_GROUPS: escaped(",".join(sorted(set(groups)))),
    }
    storage_labels = {
        **(settings.get("storage_extra_labels") or {}),
        **recommended_labels(name=SERVER_APP_NAME, instance=pvc_name, component=component),
        LABEL_USER: user_label(username),
    }
    env = {**(settings.get("environment") or {}), "KUBELAB_PROFILE": profile_slug}
    if gpu_class is not None and gpus:
        env["KUBELAB_GPU_CLASS"] = gpu_class
        env["KUBELAB_GPUS"] = str(gpus)
    return {"extra_labels": labels, "extra_annotations": annotations, "storage_extra_labels": storage_labels,
            "environment": env}
