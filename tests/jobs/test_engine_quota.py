"""A group GPU quota counts the pods of every engine's builder (issue 10: "every engine counts").

Trainer v2's pods carried no groups annotation, so group quotas missed them. Here, for each engine,
the job's objects come from kubelab's builders; the pods the engine's controller would make are
created on the devcluster from the pod templates in those objects, copying the template's
metadata the way the controllers do (batch Job controller: pkg/controller/job/job_controller.go
``getPodsForJob``/``podTemplate``; Kubeflow training-operator: pkg/controller.v1/common/pod.go
``createNewPod`` copies ``template.ObjectMeta``; JobSet: its child Jobs' templates; Trainer v2:
the runtime's template with the TrainJob's ``runtimePatches`` and ``resourcesPerNode`` merged in,
pkg/runtime/framework/plugins/jobset/builder.go). The quota ledger then reads them through a real
watch-backed cluster cache.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import kubernetes
import pytest
from kubernetes_asyncio import client as aclient
from kubernetes_asyncio import config as aconfig

from kubelab.core.cluster import ClusterCache
from kubelab.core.quota import QuotaExceeded, QuotaLedger
from kubelab.devcluster import SIMULATE_ANNOTATION
from kubelab.jobs.builders import make_children
from kubelab.jobs.builders.common import BuildContext
from kubelab.jobs.spec import JobSpec
from tests.jobs.helpers import catalogue

pytestmark = pytest.mark.integration

ENGINES = ["plain", "kubeflow-v1", "trainer-v2", "jobset"]
#: A group of this test run alone: group usage is counted over the whole cluster.
GROUP = f"lab-{secrets.token_hex(4)}"
#: The group may hold 2 GPUs; each job below asks for 2 workers x 1 GPU.
CATALOGUE = catalogue(quotas={"perUser": {"maxGpus": 8}, "groups": {GROUP: {"maxGpus": 2}}})


def pod_templates(obj: Any) -> Iterator[Mapping[str, Any]]:
    """Every pod template (``{"metadata", "spec": {"containers"}}``) inside an engine's object."""
    if isinstance(obj, Mapping):
        template = obj.get("template")
        if isinstance(template, Mapping) and "containers" in (template.get("spec") or {}):
            yield template
        for value in obj.values():
            yield from pod_templates(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from pod_templates(value)


def controller_pods(objects: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    """The pods a controller would create: one per worker, from the last template that covers it."""
    templates = [t for o in objects if o["kind"] not in ("ConfigMap", "Secret", "Service") for t in pod_templates(o)]
    assert templates, [o["kind"] for o in objects]
    per_node = next((o["spec"]["trainer"].get("resourcesPerNode") for o in objects if o["kind"] == "TrainJob"), None)
    pods = []
    for rank in range(workers):
        template = templates[min(rank, len(templates) - 1)]
        meta = template.get("metadata") or {}
        container = template["spec"]["containers"][0]
        resources = container.get("resources") or per_node or {}
        pods.append({
            "metadata": {"name": f"w{rank}-{secrets.token_hex(3)}", "labels": dict(meta.get("labels") or {}),
                         "annotations": {**(meta.get("annotations") or {}), SIMULATE_ANNOTATION: "true"}},
            "spec": {"nodeSelector": template["spec"].get("nodeSelector") or {},
                     "tolerations": template["spec"].get("tolerations") or [],
                     "automountServiceAccountToken": False,
                     "containers": [{"name": container.get("name", "node"), "image": "trainer",
                                     "command": ["sleep", "600"], "resources": resources}]},
        })
    return pods


@pytest.mark.parametrize("engine", ENGINES)
async def test_group_quota_counts_every_engines_pods(engine: str, cluster, kube, namespace) -> None:
    ctx = BuildContext(user="alice", namespace=namespace, image="trainer", home=CATALOGUE.home,
                       shared=CATALOGUE.shared, gpu_class=CATALOGUE.gpu_classes["a100"], groups=(GROUP,))
    spec = JobSpec.from_dict({"name": "ddp", "script": "train.py", "workers": 2, "gpus_per_worker": 1,
                              "gpu_class": "a100", "framework": "pytorch"})
    objects = make_children(spec, ctx, engine, ("ddp-parent", "uid"))
    core = kubernetes.client.CoreV1Api(kube)
    for pod in controller_pods(objects, spec.workers):
        core.create_namespaced_pod(namespace, pod)

    api_client = await aconfig.new_client_from_config(config_file=str(cluster.kubeconfig))
    cache = ClusterCache(aclient.CoreV1Api(api_client))
    try:
        await cache.start()
        ledger = QuotaLedger(cache, CATALOGUE)
        usage = await cache.wait_for(lambda: (u := ledger.group_usage(GROUP)).gpus == 2 and u, timeout=30)
        assert usage.gpu_holders == ["job 'ddp' with 1", "job 'ddp' with 1"], usage.gpu_holders
        # Another member of the group finds its quota used up by alice's job, whichever engine runs it.
        with pytest.raises(QuotaExceeded, match=rf"GPU quota of group '{GROUP}': group '{GROUP}' uses 2 of 2"):
            await ledger.reserve("bob", [GROUP], gpus=1, what="server 'gpu'")
    finally:
        await cache.stop()
        await api_client.close()
        await asyncio.sleep(0)
