"""JobSet engine (``jobset.x-k8s.io/v1alpha2``): one replicated Indexed Job of W pods.

JobSet makes ``<jobset>-worker-0-<index>.<subdomain>`` resolve and restarts or fails the whole
set together (``failurePolicy.maxRestarts`` = retries), which is the gang semantics the plain
engine emulates. The rank is the Indexed Job's completion index, read through the downward API.
"""

from __future__ import annotations

from typing import Any

from kubelab.jobs.builders.common import (
    BuildContext,
    apply_kueue,
    container,
    contract_env,
    job_id,
    labels,
    pod_metadata,
    pod_spec,
    volumes,
)
from kubelab.jobs.spec import JobSpec

ENGINE = "jobset"
API_VERSION = "jobset.x-k8s.io/v1alpha2"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
REPLICATED_JOB = "worker"


def rank_env() -> list[dict[str, Any]]:
    """``KUBELAB_RANK`` from the Indexed Job's completion-index annotation."""
    return [{"name": "KUBELAB_RANK",
             "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}]


def make_jobset(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> dict[str, Any]:
    """The JobSet of ``spec``; suspended with the Kueue label when a queue is set."""
    name = job_id(ctx.user, spec.name)
    peers = [f"{name}-{REPLICATED_JOB}-0-{r}.{name}" for r in range(spec.workers)]
    env = rank_env() + contract_env(spec, ctx, rank=None, peers=peers)
    vols, mounts = volumes(spec, ctx, files_configmap)
    job_spec: dict[str, Any] = {
        "parallelism": spec.workers,
        "completions": spec.workers,
        "completionMode": "Indexed",
        # JobSet restarts the whole set; a single pod is not retried on its own.
        "backoffLimit": 0,
        "template": {"metadata": pod_metadata(spec, ctx), "spec": pod_spec(spec, ctx, container(spec, ctx, env, mounts), vols)},
    }
    if ctx.max_runtime_seconds:
        job_spec["activeDeadlineSeconds"] = ctx.max_runtime_seconds
    meta_labels = labels(ctx.user, spec.name)
    body: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "subdomain": name, "publishNotReadyAddresses": True},
        # retries and restarts alike: JobSet restarts the whole set, from the latest checkpoint.
        "failurePolicy": {"maxRestarts": spec.retries + spec.restarts},
        "successPolicy": {"operator": "All"},
        "replicatedJobs": [{
            "name": REPLICATED_JOB,
            "replicas": 1,
            "template": {"metadata": {"labels": labels(ctx.user, spec.name)}, "spec": job_spec},
        }],
    }
    apply_kueue(ctx, meta_labels, body)
    return {
        "apiVersion": API_VERSION,
        "kind": "JobSet",
        "metadata": {"name": name, "namespace": ctx.namespace, "labels": meta_labels},
        "spec": body,
    }


def make_objects(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> list[dict[str, Any]]:
    return [make_jobset(spec, ctx, files_configmap)]
