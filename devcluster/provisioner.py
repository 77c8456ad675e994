"""Dynamic provisioner of the ``kubelab-local`` StorageClass: one hostPath PV per claim.

For each pending claim of the class it creates a PV that already names the claim in
``claimRef``, so the PV controller binds the two at once. The PV's folder lives
under the state folder, so data outlives pods and ``down``/``up``; only ``down
--wipe`` (or deleting the claim, with the class's Delete policy) removes it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

STORAGE_CLASS = "kubelab-local"
PROVISIONER = "kubelab.io/process-node"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def make_storage_class() -> dict[str, Any]:
    """The default StorageClass (Immediate binding: there is one host, so topology does not matter)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def wants_volume(pvc: dict[str, Any]) -> bool:
    """Whether ``pvc`` is an unbound claim of our class."""
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    return (
        spec.get("storageClassName") == STORAGE_CLASS
        and not spec.get("volumeName")
        and status.get("phase", "Pending") == "Pending"
        and not pvc["metadata"].get("deletionTimestamp")
    )


def pv_name(pvc: dict[str, Any]) -> str:
    """The PV name for a claim (``pvc-<uid>``, as external provisioners name them)."""
    return f"pvc-{pvc['metadata']['uid']}"


def make_volume(pvc: dict[str, Any], root: Path) -> dict[str, Any]:
    """The PV for ``pvc``: its size and access modes, a hostPath under ``root``, bound by claimRef."""
    meta, spec = pvc["metadata"], pvc["spec"]
    name = pv_name(pvc)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
            },
        },
    }


class Provisioner:
    """Create PVs for new claims and clean up released ones.

    Args:
        core: The CoreV1 API.
        root: Folder that holds one sub-folder per volume.
    """

    def __init__(self, core: client.CoreV1Api, root: Path) -> None:
        self.core = core
        self.root = root

    def ensure_storage_class(self, storage: client.StorageV1Api) -> None:
        """Create the default StorageClass if it is missing."""
        try:
            storage.create_storage_class(make_storage_class())
        except ApiException as e:
            if e.status != 409:
                raise

    def on_claim(self, kind: str, pvc: dict[str, Any]) -> None:
        """Informer handler for PVCs."""
        if kind == "DELETED" or not wants_volume(pvc):
            return
        pv = make_volume(pvc, self.root)
        Path(pv["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
        try:
            self.core.create_persistent_volume(pv)
            log.info("provisioned %s for %s/%s", pv["metadata"]["name"], pvc["metadata"]["namespace"],
                     pvc["metadata"]["name"])
        except ApiException as e:
            if e.status != 409:
                raise

    def on_volume(self, kind: str, pv: dict[str, Any]) -> None:
        """Informer handler for PVs: delete released volumes we made (Delete reclaim policy)."""
        annotations = pv["metadata"].get("annotations") or {}
        if kind == "DELETED" or annotations.get(PROVISIONED_BY) != PROVISIONER:
            return
        spec, status = pv.get("spec") or {}, pv.get("status") or {}
        if status.get("phase") != "Released" or spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = Path(spec["hostPath"]["path"])
        if path.parent == self.root:
            shutil.rmtree(path, ignore_errors=True)
        try:
            self.core.delete_persistent_volume(pv["metadata"]["name"])
        except ApiException as e:
            if e.status != 404:
                raise
