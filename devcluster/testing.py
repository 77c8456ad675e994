"""Helpers for tests against a cluster: waiting, namespaces, and small pod manifests that run Python
on the process node."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.rest import ApiException

from kubelab.devcluster.cgroups import MEMORY_ANNOTATION
from kubelab.devcluster.images import REGISTRY_ANNOTATION
from kubelab.devcluster.runtime import SIMULATE_LABEL

#: The label every Node of a process node carries (nodes.make_node).
PROCESS_NODE_LABEL = "kubelab.io/process-node"
#: An image no node can pull: its registry lies under the reserved ``.invalid`` (RFC 2606).
UNPULLABLE_IMAGE = "registry.invalid/team/trainer:1"

T = TypeVar("T")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy and return that.

    Raises:
        TimeoutError: Naming ``what`` when ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def simulated_namespace(core: client.CoreV1Api, prefix: str) -> str:
    """Create ``<prefix>-<6 hex>`` labelled ``kubelab.io/simulate=true`` (every pod in it runs simulated:
    Running with an address, no process) and wait until it admits pods.

    Raises:
        TimeoutError: The namespace's default ServiceAccount has no token after 30 s (v1.20 refuses
            pods until it has).
    """
    name = f"{prefix}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {SIMULATE_LABEL: "true", "kubelab.io/test": "true"}}})

    def has_token() -> bool:
        try:
            return bool(core.read_namespaced_service_account("default", name).secrets)
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    wait_for(has_token, 30, f"ServiceAccount {name}/default and its token")
    return name


def python_pod(
    name: str,
    code: str,
    *,
    restart_policy: str = "Never",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A pod whose only container runs ``python -c code`` (with the project's Python on the process node).

    Args:
        name: Pod name.
        code: Python source to run.
        restart_policy: ``Never``, ``OnFailure`` or ``Always``.
        labels: Pod labels.
        **spec: Extra pod ``spec`` fields (``hostname``, ``volumes``, ``tolerations``, ...); a
            ``container`` key is merged into the container instead.
    """
    container = {"name": "main", "image": "python:3.11", "command": ["python", "-u", "-c", code]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"restartPolicy": restart_policy, "containers": [container],
                 "terminationGracePeriodSeconds": 5, **spec},
    }


def bound_claim(core: client.CoreV1Api, namespace: str, name: str, mode: str = "ReadWriteOnce",
                size: str = "1Gi", timeout: float = 30) -> client.V1PersistentVolumeClaim:
    """Create a claim of the default StorageClass and return it once it is Bound.

    Raises:
        TimeoutError: It did not bind in time.
    """
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}},
    })

    def bound() -> client.V1PersistentVolumeClaim | None:
        pvc = core.read_namespaced_persistent_volume_claim(name, namespace)
        return pvc if pvc.status.phase == "Bound" else None

    return wait_for(bound, timeout, f"claim {namespace}/{name} to bind")


def pod_log(core: client.CoreV1Api, namespace: str, name: str, **params: Any) -> str:
    """A container's log as text (``read_namespaced_pod_log`` parameters).

    Read raw: clients before v36 (the Kubeflow SDK pins ``kubernetes<36``) decode a log that
    looks like JSON and hand back the Python repr of the object.
    """
    resp = core.read_namespaced_pod_log(name, namespace, _preload_content=False, **params)
    return resp.data.decode()


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    """The pod's phase, or None when it does not exist."""
    try:
        return core.read_namespaced_pod(name, namespace).status.phase
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_pod_phase(
    core: client.CoreV1Api, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 60
) -> client.V1Pod:
    """Wait until the pod is in one of ``phases`` and return it.

    Raises:
        TimeoutError: With the pod's last phase.
    """

    def check() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in phases else None

    try:
        return wait_for(check, timeout, f"pod {namespace}/{name} to reach {phases}")
    except TimeoutError as e:
        phase = pod_phase(core, namespace, name)
        raise TimeoutError(f"{e} (last phase {phase})") from e


def wait_pod_gone(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 60) -> None:
    """Wait until the pod object no longer exists."""
    wait_for(lambda: pod_phase(core, namespace, name) is None, timeout, f"pod {namespace}/{name} to be deleted")


def _process_node_annotations(core: client.CoreV1Api, key: str, feature: str) -> list[str]:
    """Each process node's value of annotation ``key`` (empty on another cluster's nodes).

    Raises:
        RuntimeError: A process node lacks it: its agent predates ``feature`` and must be restarted.
    """
    values = []
    for node in core.list_node(label_selector=f"{PROCESS_NODE_LABEL}=true").items:
        value = (node.metadata.annotations or {}).get(key)
        if value is None:
            raise RuntimeError(f"node {node.metadata.name}: its process node agent predates {feature} (no "
                               f"annotation {key}); restart the agent (docs/devcluster.md, Adding nodes)")
        values.append(value)
    return values


def memory_limits_unenforced(core: client.CoreV1Api) -> str | None:
    """Why the cluster's nodes do not enforce ``limits.memory``, or None when they do.

    A process node says how it enforces them (:data:`~kubelab.devcluster.cgroups.MEMORY_ANNOTATION`);
    another cluster's kubelets always do.

    Raises:
        RuntimeError: A process node whose agent predates memory limits.
    """
    for value in _process_node_annotations(core, MEMORY_ANNOTATION, "memory limits"):
        if value.startswith("not enforced"):
            return f"the process node runs without memory cgroups: {value}"
    return None


def require_image_pull_failures(core: client.CoreV1Api) -> None:
    """Check that the cluster's nodes fail to pull :data:`UNPULLABLE_IMAGE` (a kubelet always does).

    Raises:
        RuntimeError: A process node whose agent predates image pull failures.
    """
    _process_node_annotations(core, REGISTRY_ANNOTATION, "image pull failures")
