"""The watch-backed cluster cache against the devcluster: one LIST, then watch events only."""

from __future__ import annotations

import kubernetes
import pytest
from kubernetes_asyncio import client as aclient
from kubernetes_asyncio import config as aconfig
from labhub import uname

from kubelab.core.availability import gpu_availability
from kubelab.core.catalogue import parse_catalogue
from kubelab.core.cluster import ClusterCache
from kubelab.devcluster import SIMULATE_ANNOTATION

pytestmark = pytest.mark.integration
USER = uname("cachetest")

CLASSES = parse_catalogue({
    "gpuClasses": {"a100": {"displayName": "A100", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}}},
    "images": {"i": {"displayName": "i", "image": "i"}},
    "profiles": [{"slug": "p", "name": "p", "images": ["i"]}],
}).gpu_classes


async def test_cache_follows_pods_without_relisting(cluster, namespace, kube):
    api_client = await aconfig.new_client_from_config(config_file=str(cluster.kubeconfig))
    cache = ClusterCache(aclient.CoreV1Api(api_client))
    core = kubernetes.client.CoreV1Api(kube)
    try:
        await cache.start()
        assert "kubelab-gpu-a100" in cache.nodes
        before = gpu_availability(cache.nodes.values(), cache.pods.values(), CLASSES)["a100"]
        core.create_namespaced_pod(namespace, {
            "metadata": {"name": "holder", "annotations": {SIMULATE_ANNOTATION: "true"},
                         "labels": {"kubelab.io/user": USER, "app.kubernetes.io/managed-by": "kubelab"}},
            "spec": {
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [{"name": "c", "image": "x", "command": ["sleep", "60"],
                                "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            },
        })
        key = f"{namespace}/holder"
        await cache.wait_for(lambda: key in cache.pods and cache.pods[key].node, timeout=20)
        after = gpu_availability(cache.nodes.values(), cache.pods.values(), CLASSES)["a100"]
        assert after.requested == before.requested + 1
        assert [p.name for p in cache.pods_of_user(USER)] == ["holder"]
        assert cache.pods[key].raw is not None  # managed pods keep their JSON for KubeSpawner
        core.delete_namespaced_pod("holder", namespace, grace_period_seconds=0)
        await cache.wait_for(lambda: key not in cache.pods, timeout=30)
        assert cache.pods_of_user(USER) == []
        assert (cache.stats["list_pods"], cache.stats["list_nodes"]) == (1, 1)
    finally:
        await cache.stop()
        await api_client.close()
