"""The jobs cache follows large objects through its watch (a job's files ConfigMap is up to 1 MiB)."""

from __future__ import annotations

import asyncio
import time

import kubernetes
import pytest
from kubernetes_asyncio import config as aconfig

from kubelab.core.naming import LABEL_JOB, LABEL_USER, MANAGED_BY, MANAGED_BY_VALUE
from kubelab.jobs.kube import JobCache

pytestmark = pytest.mark.integration


async def test_watch_delivers_objects_larger_than_a_stream_line(cluster, namespace, kube):
    api_client = await aconfig.new_client_from_config(config_file=str(cluster.kubeconfig))
    cache = JobCache(api_client, namespace)
    core = kubernetes.client.CoreV1Api(kube)
    try:
        await cache.start()
        assert cache.stats["list_configmaps"] == 1
        # 600 KiB: far over aiohttp's 128 KiB line limit, under the 1 MiB files ConfigMap cap.
        payload = "x" * (600 * 1024)
        core.create_namespaced_config_map(namespace, {
            "metadata": {"name": "big-files", "labels": {MANAGED_BY: MANAGED_BY_VALUE, LABEL_JOB: "big",
                                                          LABEL_USER: "alice"}},
            "data": {"train.py": payload},
        })
        deadline = time.monotonic() + 20
        while "big-files" not in cache.parents and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert cache.parents["big-files"]["data"]["train.py"] == payload
        assert cache.stats["list_configmaps"] == 1, "the object must come from the watch, not a relist"
    finally:
        await cache.stop()
        await api_client.close()
