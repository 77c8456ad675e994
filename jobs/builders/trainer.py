"""Kubeflow Trainer v2 engine (``trainer.kubeflow.org/v1alpha1`` TrainJob).

A TrainJob names a (Cluster)TrainingRuntime, which holds the JobSet template; the TrainJob sets
the image, command, node count, resources and env. Trainer builds a JobSet whose replicated job
is ``node``, so pods are ``<name>-node-0-<index>.<name>`` and the rank is the completion index.
Volumes and GPU placement go in as a ``runtimePatches`` entry owned by kubelab.
"""

from __future__ import annotations

from typing import Any

from kubelab.core.naming import COMPONENT_RANK
from kubelab.jobs.builders.common import (
    CONTAINER_NAME,
    ENTRYPOINT,
    BuildContext,
    apply_kueue,
    contract_env,
    job_id,
    labels,
    placement,
    resources,
    volumes,
)
from kubelab.jobs.builders.jobset import rank_env
from kubelab.jobs.spec import JobSpec, JobSpecError

ENGINE = "trainer-v2"
API_VERSION = "trainer.kubeflow.org/v1alpha1"
# The runtimes Trainer v2 installs; it ships none for TensorFlow.
RUNTIMES = {"pytorch": "torch-distributed", "replicas": "torch-distributed", "mpi": "deepspeed-distributed"}
TRAINER_JOB = "node"
PATCH_MANAGER = "kubelab.io/jobs"


def make_trainjob(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> dict[str, Any]:
    """The TrainJob of ``spec``.

    Raises:
        JobSpecError: ``framework`` tensorflow, for which Trainer v2 has no runtime.
    """
    if spec.framework not in RUNTIMES:
        raise JobSpecError("framework", f"{spec.framework!r} has no Kubeflow Trainer v2 runtime; "
                           f"allowed with this engine: {', '.join(sorted(RUNTIMES))}")
    name = job_id(ctx.user, spec.name)
    peers = [f"{name}-{TRAINER_JOB}-0-{r}.{name}" for r in range(spec.workers)]
    trainer: dict[str, Any] = {
        "image": ctx.image,
        "command": list(ENTRYPOINT),
        "args": ["--", *spec.args],
        "numNodes": spec.workers,
        "env": rank_env() + contract_env(spec, ctx, rank=None, peers=peers),
    }
    res = resources(spec, ctx)
    if res:
        trainer["resourcesPerNode"] = res
    vols, mounts = volumes(spec, ctx, files_configmap)
    pod_patch: dict[str, Any] = dict(placement(spec, ctx))
    if vols:
        pod_patch["volumes"] = vols
        pod_patch["containers"] = [{"name": CONTAINER_NAME, "volumeMounts": mounts}]
    pod_tpl: dict[str, Any] = {"metadata": {"labels": labels(ctx.user, spec.name, component=COMPONENT_RANK)}}
    if pod_patch:
        pod_tpl["spec"] = pod_patch
    body: dict[str, Any] = {
        "runtimeRef": {"name": RUNTIMES[spec.framework]},
        "trainer": trainer,
        "runtimePatches": [{
            "manager": PATCH_MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
                {"name": TRAINER_JOB, "template": {"spec": {"template": pod_tpl}}},
            ]}}},
        }],
    }
    if ctx.max_runtime_seconds:
        body["activeDeadlineSeconds"] = ctx.max_runtime_seconds
    meta_labels = labels(ctx.user, spec.name)
    apply_kueue(ctx, meta_labels, body)
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": ctx.namespace, "labels": meta_labels},
        "spec": body,
    }


def make_objects(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> list[dict[str, Any]]:
    return [make_trainjob(spec, ctx, files_configmap)]
