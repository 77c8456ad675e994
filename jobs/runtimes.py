"""Read the Kubeflow Trainer v2 runtime a TrainJob will refer to (thin I/O; the shape is pure).

A TrainJob's ``runtimePatches`` must name the replicated jobs and containers of the runtime it
refers to, so the service reads that ClusterTrainingRuntime once per submit and hands its names
to the builder (:class:`~kubelab.jobs.builders.trainer.TrainerRuntime` in ``BuildContext``). When
it is not there (not installed yet, or no read access), Trainer v2.3.0's own runtime of that name
stands in, so a submit never fails on this read alone.
"""

from __future__ import annotations

import logging

from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from kubelab.jobs.builders.trainer import TrainerRuntime, default_runtime, runtime_from_object

log = logging.getLogger("kubelab.jobs.runtimes")

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes"


async def read_runtime(api_client: ApiClient, name: str) -> TrainerRuntime | None:
    """The ClusterTrainingRuntime ``name`` as the cluster has it, or None when it cannot be read.

    None for 404 (no such runtime, or the CRD is not installed) and 403 (the hub may not read
    runtimes); other API errors propagate.

    Raises:
        ApiException: Any other refusal by the API server.
    """
    try:
        obj = await CustomObjectsApi(api_client).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    except ApiException as e:
        if e.status in (403, 404):
            log.info("ClusterTrainingRuntime %s not readable (%s); using Trainer v2.3.0's names", name, e.status)
            return None
        raise
    return runtime_from_object(obj)


async def runtime_for(api_client: ApiClient, framework: str, name: str | None = None) -> TrainerRuntime:
    """The runtime a TrainJob of ``framework`` refers to: ``name`` (default: Trainer's own for the
    framework) as read from the cluster, else Trainer v2.3.0's shape of it.

    Raises:
        kubelab.jobs.spec.JobSpecError: ``framework`` has no Trainer v2 runtime.
        ApiException: The API server refused the read with something other than 403/404.
    """
    default = default_runtime(framework, name)
    return await read_runtime(api_client, default.name) or default
