"""The collector of a job on a ReadWriteOnce home (pure builders).

Job pods never mount an RWO home: they may land on other nodes than the one holding it, and a
second node's attach fails (Multi-Attach). When a job's outputs must reach such a home, or its
inputs come from it, one small pod, the **collector**, mounts the home instead, on the node where
the home is attached now (the user's server, or another job's collector), or wherever the
scheduler puts it when nothing holds the home. The ranks talk to it over the pod network
(:mod:`kubelab.jobs.transfer`): each fetches the job's inputs from it when it starts, and hands it
its output folder when it ends. Its objects, all owned by the job's parent:

* a Secret with the job's random transfer token (ranks and collector read it by ``secretKeyRef``),
  so no other pod can write into the home or read from it;
* a headless Service ``<id>-collector``, which makes ``collector.<id>-collector`` resolve;
* a batch Job ``<id>-collector`` of one pod (no retries: a second pod could land elsewhere).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from kubelab.core.naming import (
    COLLECTOR_HOSTNAME,
    COMPONENT_COLLECTOR,
    COMPONENT_TRANSFER_TOKEN,
    LABEL_COMPONENT,
    LABEL_JOB,
    LABEL_USER,
    collector_name,
    transfer_secret_name,
    user_label,
)
from kubelab.core.records import PodInfo
from kubelab.jobs.builders.common import (
    COLLECTOR_PORT,
    ROUTE_COLLECT,
    BuildContext,
    fetched_inputs,
    job_id,
    labels,
    needs_collector,
    output_dir,
    output_route,
    pod_annotations,
)
from kubelab.jobs.spec import JobSpec

#: The collector's container, and what it runs (standard library only, like the entrypoint).
CONTAINER = "collector"
COMMAND = ["python", "-m", "kubelab.jobs.transfer", "collect"]
#: Seconds the collector may outlive the job's runtime limit (the reconciler closes it sooner).
DEADLINE_SLACK = 900
#: Small: it copies files; the sizes are the kubelet's to enforce, not a node's to reserve.
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def home_node(pods: Iterable[PodInfo], claim: str, namespace: str) -> str | None:
    """The node holding the RWO home ``claim`` now: that of a live pod in ``namespace`` mounting it
    (the user's server, another job's collector), first by name; None when nothing holds it.

    The spawner follows the same holders (``LabSpawner._wait_for_home``), so a server started
    while the collector runs goes to the collector's node.
    """
    nodes = sorted({p.node for p in pods if p.namespace == namespace and claim in p.claims and p.active and p.node})
    return nodes[0] if nodes else None


def make_transfer_secret(spec: JobSpec, ctx: BuildContext) -> dict[str, Any] | None:
    """The Secret holding the job's transfer token (None when the job has no collector)."""
    if not needs_collector(spec, ctx) or not ctx.transfer_token:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": transfer_secret_name(job_id(ctx.user, spec.name)), "namespace": ctx.namespace,
                     "labels": labels(ctx.user, spec.name, component=COMPONENT_TRANSFER_TOKEN)},
        "data": {"token": base64.b64encode(ctx.transfer_token.encode()).decode()},
    }


def make_collector_service(spec: JobSpec, ctx: BuildContext) -> dict[str, Any]:
    """The headless Service whose name is the collector pod's subdomain."""
    name = collector_name(job_id(ctx.user, spec.name))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ctx.namespace,
                     "labels": labels(ctx.user, spec.name, component=COMPONENT_COLLECTOR)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_USER: user_label(ctx.user), LABEL_JOB: spec.name, LABEL_COMPONENT: COMPONENT_COLLECTOR},
            "ports": [{"name": "transfer", "port": COLLECTOR_PORT, "targetPort": COLLECTOR_PORT}],
        },
    }


def collector_env(spec: JobSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    """What the collector needs (jobs/CONTRACT.md, "The collector")."""
    secret = transfer_secret_name(job_id(ctx.user, spec.name))
    collect = output_route(spec, ctx) == ROUTE_COLLECT
    values = {
        "KUBELAB_JOB": spec.name,
        "KUBELAB_WORLD_SIZE": str(spec.workers),
        "KUBELAB_HOME": ctx.home.mount_path,
        "KUBELAB_OUTPUT_DIR": output_dir(spec, ctx) if collect else "",
        "KUBELAB_INPUTS": json.dumps(fetched_inputs(spec, ctx)),
        "KUBELAB_COLLECTOR_PORT": str(COLLECTOR_PORT),
        "KUBELAB_MAX_OUTPUT_BYTES": str(ctx.transfer.max_output_bytes),
        "KUBELAB_MAX_INPUT_BYTES": str(ctx.transfer.max_input_bytes),
        "KUBELAB_MAX_FILES": str(ctx.transfer.max_files),
        "PYTHONUNBUFFERED": "1",
    }
    return [{"name": k, "value": v} for k, v in values.items()] + [
        {"name": "KUBELAB_TRANSFER_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]


def make_collector_job(spec: JobSpec, ctx: BuildContext) -> dict[str, Any]:
    """The collector's batch Job: one pod on the home's node, the home mounted where the notebook has it.

    ``nodeName`` pins it to :attr:`BuildContext.home_node` (the scheduler is bypassed, as for a
    pod that must follow its volume; it tolerates every taint, since the home may sit on a GPU
    node); without a holder the scheduler places it, and it becomes the holder servers follow.
    """
    jid = job_id(ctx.user, spec.name)
    name = collector_name(jid)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostname": COLLECTOR_HOSTNAME,
        "subdomain": name,
        "tolerations": [{"operator": "Exists"}],
        "containers": [{
            "name": CONTAINER,
            "image": ctx.image,
            "command": list(COMMAND),
            "workingDir": ctx.home.mount_path,
            "env": collector_env(spec, ctx),
            "ports": [{"name": "transfer", "containerPort": COLLECTOR_PORT}],
            "resources": RESOURCES,
            "volumeMounts": [{"name": "home", "mountPath": ctx.home.mount_path}],
        }],
        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": ctx.home_claim_name}}],
    }
    if ctx.home_node:
        pod["nodeName"] = ctx.home_node
    metadata: dict[str, Any] = {"labels": labels(ctx.user, spec.name, component=COMPONENT_COLLECTOR)}
    annotations = pod_annotations(ctx)
    if annotations:
        metadata["annotations"] = annotations
    job_spec: dict[str, Any] = {"backoffLimit": 0, "completions": 1, "parallelism": 1,
                                "template": {"metadata": metadata, "spec": pod}}
    if ctx.max_runtime_seconds:
        job_spec["activeDeadlineSeconds"] = ctx.max_runtime_seconds + DEADLINE_SLACK
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ctx.namespace,
                     "labels": labels(ctx.user, spec.name, component=COMPONENT_COLLECTOR)},
        "spec": job_spec,
    }


def make_collector_objects(spec: JobSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    """The collector's Secret, Service and Job, in creation order; none without a collector."""
    secret = make_transfer_secret(spec, ctx)
    if secret is None:
        return []
    return [secret, make_collector_service(spec, ctx), make_collector_job(spec, ctx)]


def outputs_annotation(spec: JobSpec, ctx: BuildContext) -> str:
    """The parent's ``kubelab.io/outputs``: where the outputs go and by which route (JSON)."""
    return json.dumps({"dir": output_dir(spec, ctx), "route": output_route(spec, ctx)}, sort_keys=True)
