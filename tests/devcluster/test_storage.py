"""Storage on the process node: ReadWriteMany claims across nodes, and local-storage eviction.

Eviction follows the kubelet's eviction manager (kubernetes/kubernetes
``pkg/kubelet/eviction/eviction_manager.go``: ``emptyDirLimitEviction``,
``containerEphemeralStorageLimitEviction``, ``evictPod``; messages from
``pkg/kubelet/eviction/helpers.go``): the pod ends ``Failed`` with reason ``Evicted``
whatever its restart policy, and a Warning event ``Evicted`` carries the message.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from kubelab.devcluster.testing import bound_claim, pod_log, python_pod, wait_pod_phase

pytestmark = pytest.mark.integration
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


def test_read_write_many_claim_is_shared_by_pods_on_two_nodes_at_once(core, namespace, cluster):
    if cluster.external:
        pytest.skip("node names are the devcluster's")
    pvc = bound_claim(core, namespace, "shared", "ReadWriteMany")
    assert pvc.status.access_modes == ["ReadWriteMany"]
    assert core.read_persistent_volume(pvc.spec.volume_name).spec.access_modes == ["ReadWriteMany"]
    # Each rank writes its file, then waits until it sees the other's: both run at the same time.
    code = (
        "import os, pathlib, time\n"
        "me, peer = os.environ['ME'], os.environ['PEER']\n"
        "pathlib.Path(f'/data/{me}').write_text(os.environ['NODE'])\n"
        "for _ in range(300):\n"
        "    if pathlib.Path(f'/data/{peer}').exists():\n"
        "        break\n"
        "    time.sleep(0.1)\n"
        "print(pathlib.Path(f'/data/{peer}').read_text())\n"
    )
    nodes = {"a": "kubelab-cpu", "b": "kubelab-gpu-a100"}
    for me, peer in (("a", "b"), ("b", "a")):
        core.create_namespaced_pod(namespace, python_pod(
            f"rank-{me}", code, nodeName=nodes[me], tolerations=[GPU_TOLERATION],
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}],
            container={"volumeMounts": [{"name": "data", "mountPath": "/data"}], "env": [
                {"name": "ME", "value": me}, {"name": "PEER", "value": peer},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}))
    for me, peer in (("a", "b"), ("b", "a")):
        pod = wait_pod_phase(core, namespace, f"rank-{me}", ("Succeeded",), timeout=90)
        assert pod.spec.node_name == nodes[me]
        assert pod_log(core, namespace, f"rank-{me}") == f"{nodes[peer]}\n"


WRITE = (
    "import os, time\n"
    "for i in range(int(os.environ['MIB'])):\n"
    "    with open(os.environ['TARGET'] + f'/chunk-{i}', 'wb') as f:\n"
    "        f.write(os.urandom(1 << 20))\n"
    "        f.flush()\n"
    "        os.fsync(f.fileno())\n"
    "    time.sleep(0.2)\n"
    "print('wrote everything', flush=True)\n"
    "time.sleep(float(os.environ['LINGER']))\n"
)


def _storage_pod(name: str, target: str, mib: int, *, size_limit: str | None = None, ephemeral: str | None = None,
                 linger: float = 30, restart_policy: str = "Never") -> dict:
    container = {"env": [{"name": "TARGET", "value": target}, {"name": "MIB", "value": str(mib)},
                         {"name": "LINGER", "value": str(linger)}],
                 "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}
    if ephemeral:
        container["resources"] = {"limits": {"ephemeral-storage": ephemeral}}
    empty_dir = {"sizeLimit": size_limit} if size_limit else {}
    return python_pod(name, WRITE, restart_policy=restart_policy, container=container,
                      volumes=[{"name": "scratch", "emptyDir": empty_dir}])


@pytest.mark.parametrize(
    ("pod_args", "message"),
    [
        ({"target": "/scratch", "mib": 20, "size_limit": "4Mi", "restart_policy": "OnFailure"},
         'Usage of EmptyDir volume "scratch" exceeds the limit "4Mi". '),
        ({"target": "/tmp", "mib": 20, "ephemeral": "4Mi"},
         'Container main exceeded its local ephemeral storage limit "4Mi". '),
    ],
    ids=["emptydir-over-size-limit", "tmp-over-ephemeral-storage-limit"],
)
def test_pod_over_its_local_storage_limit_is_evicted(core, namespace, cluster, pod_args, message):
    created = core.create_namespaced_pod(namespace, _storage_pod("hog", **pod_args))
    pod = wait_pod_phase(core, namespace, "hog", ("Failed",), timeout=60)
    assert (pod.status.reason, pod.status.message) == ("Evicted", message)
    status = pod.status.container_statuses[0]
    assert status.state.terminated.exit_code == 137 and status.restart_count == 0
    assert "wrote everything" not in pod_log(core, namespace, "hog"), "the writer must be stopped on the way"
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=hog").items
    assert [(e.type, e.message) for e in events if e.reason == "Evicted"] == [("Warning", message)]
    if not cluster.external:
        # The space is given back at once: the emptyDir and the writable layer are gone from the node.
        pod_dir = cluster.state / "agent" / "pods" / f"{namespace}_hog_{created.metadata.uid}"
        assert not (pod_dir / "volumes" / "scratch").exists() and not (pod_dir / "tmp").exists()


def test_pod_within_its_limits_runs_to_the_end(core, namespace):
    pod = _storage_pod("tidy", "/scratch", 2, size_limit="8Mi", ephemeral="8Mi", linger=1.5)
    core.create_namespaced_pod(namespace, pod)
    done = wait_pod_phase(core, namespace, "tidy", ("Succeeded",), timeout=60)
    assert done.status.reason is None
    assert pod_log(core, namespace, "tidy") == "wrote everything\n"


def test_memory_medium_is_limited_the_same_way(core, namespace):
    pod = _storage_pod("mem", "/scratch", 12, size_limit="4Mi")
    pod["spec"]["volumes"][0]["emptyDir"]["medium"] = "Memory"
    core.create_namespaced_pod(namespace, json.loads(json.dumps(pod)))
    evicted = wait_pod_phase(core, namespace, "mem", ("Failed",), timeout=60)
    assert evicted.status.reason == "Evicted"
