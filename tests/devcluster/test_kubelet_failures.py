"""What a kubelet reports when a container runs out of memory or its image cannot be pulled, produced
for real on the process node (docs/devcluster.md: memory limits, image pulls).

Upstream behaviour emulated (kubernetes v1.20): ``pkg/kubelet/dockershim/docker_container.go``
(``OOMKilled``), ``pkg/kubelet/images/image_manager.go`` and
``pkg/kubelet/kuberuntime/kuberuntime_container.go`` (``ErrImagePull``, ``ImagePullBackOff``, the
``Pulling``/``Failed``/``BackOff`` events).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client, watch

from kubelab.devcluster.cgroups import MEMORY_ANNOTATION
from kubelab.devcluster.testing import (
    PROCESS_NODE_LABEL,
    UNPULLABLE_IMAGE,
    memory_limits_unenforced,
    python_pod,
    require_image_pull_failures,
    wait_for,
    wait_pod_gone,
    wait_pod_phase,
)

pytestmark = pytest.mark.integration
#: Allocates and touches 8 MiB at a time, up to 256 MiB, printing as it goes.
HOG = ("chunks = []\nfor i in range(32):\n    chunks.append(bytearray(b'x') * (8 << 20))\n"
       "    print(f'{(i + 1) * 8} MiB', flush=True)\nprint('done', flush=True)\n")


@pytest.fixture
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


@pytest.fixture
def enforced(core: client.CoreV1Api) -> None:
    reason = memory_limits_unenforced(core)
    if reason:
        pytest.skip(reason)


def container_cgroups(core: client.CoreV1Api) -> set[Path]:
    """The container cgroups that exist now in every process node's folder."""
    out: set[Path] = set()
    for node in core.list_node(label_selector=f"{PROCESS_NODE_LABEL}=true").items:
        value = (node.metadata.annotations or {}).get(MEMORY_ANNOTATION, "")
        if value.startswith("cgroup v"):
            folder = Path(value.split(" ", 2)[2])
            out |= {p for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    return out


def terminated(core: client.CoreV1Api, namespace: str, name: str) -> client.V1ContainerStateTerminated:
    pod = core.read_namespaced_pod(name, namespace)
    return pod.status.container_statuses[0].state.terminated


@pytest.mark.parametrize(
    ("limit", "phase", "reason", "code"),
    [("96Mi", "Failed", "OOMKilled", 137), ("512Mi", "Succeeded", "Completed", 0)],
    ids=["over-the-limit", "within-the-limit"],
)
def test_memory_limit_is_enforced_and_an_oom_kill_says_OOMKilled(core, namespace, enforced, limit, phase, reason,
                                                                 code):
    pod = python_pod("hog", HOG, container={"resources": {"limits": {"memory": limit}}})
    core.create_namespaced_pod(namespace, pod)
    wait_pod_phase(core, namespace, "hog", ("Succeeded", "Failed"), timeout=90)
    state = terminated(core, namespace, "hog")
    assert core.read_namespaced_pod("hog", namespace).status.phase == phase
    assert (state.reason, state.exit_code) == (reason, code)
    log = core.read_namespaced_pod_log("hog", namespace, _preload_content=False).data.decode()
    if reason == "OOMKilled":
        assert "done" not in log and "8 MiB" in log, log  # it ran, and was killed on its way up
    else:
        assert "256 MiB" in log and "done" in log, log
    uid = core.read_namespaced_pod("hog", namespace).metadata.uid
    assert not {p for p in container_cgroups(core) if p.name.startswith(uid)}, "the container's cgroup stayed"


def test_an_oom_killed_container_restarts_with_its_last_state(core, namespace, enforced):
    pod = python_pod("hog", HOG, restart_policy="OnFailure", container={"resources": {"limits": {"memory": "96Mi"}}})
    core.create_namespaced_pod(namespace, pod)

    def restarted() -> client.V1ContainerStatus | None:
        statuses = core.read_namespaced_pod("hog", namespace).status.container_statuses or []
        return statuses[0] if statuses and statuses[0].restart_count >= 1 else None

    status = wait_for(restarted, 90, "the OOM-killed container's restart")
    assert status.last_state.terminated.reason == "OOMKilled"
    assert status.last_state.terminated.exit_code == 137


def test_an_image_on_an_unreachable_registry_fails_like_a_kubelets_pull(core, namespace):
    require_image_pull_failures(core)
    pod = python_pod("pull", "print('never runs')", container={"image": UNPULLABLE_IMAGE})
    core.create_namespaced_pod(namespace, pod)
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()
    deadline = time.monotonic() + 60
    for event in stream.stream(core.list_namespaced_pod, namespace, field_selector="metadata.name=pull",
                               timeout_seconds=60):
        statuses = event["object"].status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        if waiting is not None and (not seen or seen[-1][0] != waiting.reason):
            seen.append((waiting.reason, waiting.message or ""))
        if [r for r, _ in seen if r != "ContainerCreating"][:3] == ["ErrImagePull", "ImagePullBackOff",
                                                                    "ErrImagePull"] or time.monotonic() > deadline:
            stream.stop()
    reasons = [r for r, _ in seen if r != "ContainerCreating"]
    assert reasons[:3] == ["ErrImagePull", "ImagePullBackOff", "ErrImagePull"], seen
    messages = dict(seen)
    assert messages["ErrImagePull"] == ("rpc error: code = Unknown desc = Error response from daemon: Get "
                                        "https://registry.invalid/v2/: dial tcp: lookup registry.invalid: no such host")
    assert messages["ImagePullBackOff"] == f'Back-off pulling image "{UNPULLABLE_IMAGE}"'
    pod = core.read_namespaced_pod("pull", namespace)
    assert pod.status.phase == "Pending" and pod.status.container_statuses[0].restart_count == 0

    events = {(e.type, e.reason, e.message) for e in core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=pull").items}
    assert ("Normal", "Pulling", f'Pulling image "{UNPULLABLE_IMAGE}"') in events
    assert ("Warning", "Failed", f'Failed to pull image "{UNPULLABLE_IMAGE}": {messages["ErrImagePull"]}') in events
    assert ("Warning", "Failed", "Error: ErrImagePull") in events
    # The kubelet records the pull's BackOff as Normal (image_manager.go) and the failure as Warning.
    assert ("Normal", "BackOff", f'Back-off pulling image "{UNPULLABLE_IMAGE}"') in events
    assert ("Warning", "Failed", "Error: ImagePullBackOff") in events
    # Deleting it while it backs off ends it at once.
    core.delete_namespaced_pod("pull", namespace)
    wait_pod_gone(core, namespace, "pull", timeout=30)


def test_pull_policy_never_with_an_unreachable_image_says_ErrImageNeverPull(core, namespace):
    require_image_pull_failures(core)
    pod = python_pod("never", "print('never runs')", container={"image": UNPULLABLE_IMAGE,
                                                                 "imagePullPolicy": "Never"})
    core.create_namespaced_pod(namespace, pod)

    def waiting() -> client.V1ContainerStateWaiting | None:
        statuses = core.read_namespaced_pod("never", namespace).status.container_statuses or []
        state = statuses[0].state.waiting if statuses else None
        return state if state is not None and state.reason == "ErrImageNeverPull" else None

    state = wait_for(waiting, 30, "ErrImageNeverPull")
    assert state.message == f'Container image "{UNPULLABLE_IMAGE}" is not present with pull policy of Never'
