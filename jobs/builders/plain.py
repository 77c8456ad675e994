"""Plain Kubernetes engine (works from 1.20 up): one batch/v1 Job per rank with a stable
``hostname``/``subdomain``, a headless Service that makes ``<id>-<rank>.<id>`` resolve, and
ownerReferences to the job's parent ConfigMap so that deleting the parent removes everything.

Indexed Jobs would need 1.21+, so each rank is its own Job: a failed rank is then visible as its
own Job condition, and the service tears the others down.
"""

from __future__ import annotations

from typing import Any

from kubelab.core.naming import COMPONENT_RANK, LABEL_COMPONENT, LABEL_JOB, LABEL_USER, user_label
from kubelab.jobs.builders.common import (
    DEFAULT_PORTS,
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

ENGINE = "plain"
# Where MPI ranks find the job's SSH key (CONTRACT.md, KUBELAB_MPI_SSH_DIR); the file names are
# the MPI Operator's (mpi_job_controller.go, sshVolumeItems).
SSH_DIR = "/kubelab/ssh"
SSH_ITEMS = [{"key": "ssh-privatekey", "path": "id_rsa", "mode": 0o600},
             {"key": "ssh-publickey", "path": "id_rsa.pub", "mode": 0o644},
             {"key": "ssh-publickey", "path": "authorized_keys", "mode": 0o644}]


def peers(spec: JobSpec, user: str) -> list[str]:
    """Stable DNS names ``<id>-<rank>.<id>`` of every rank, in rank order."""
    jid = job_id(user, spec.name)
    return [f"{jid}-{r}.{jid}" for r in range(spec.workers)]


def make_headless_service(spec: JobSpec, ctx: BuildContext) -> dict[str, Any]:
    """The headless Service whose name is every rank pod's ``subdomain``."""
    jid = job_id(ctx.user, spec.name)
    port = DEFAULT_PORTS[spec.framework]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": jid, "namespace": ctx.namespace, "labels": labels(ctx.user, spec.name)},
        "spec": {
            "clusterIP": "None",
            # Peers must resolve before any rank is Ready: rendezvous happens before readiness.
            "publishNotReadyAddresses": True,
            "selector": {LABEL_USER: user_label(ctx.user), LABEL_JOB: spec.name, LABEL_COMPONENT: COMPONENT_RANK},
            "ports": [{"name": "rendezvous", "port": port, "targetPort": port}],
        },
    }


def ssh_secret_name(spec: JobSpec, ctx: BuildContext) -> str:
    """``<job id>-ssh``, as the MPI Operator names its jobs' SSH Secrets."""
    return f"{job_id(ctx.user, spec.name)}-ssh"


def make_ssh_secret(spec: JobSpec, ctx: BuildContext) -> dict[str, Any] | None:
    """The ``kubernetes.io/ssh-auth`` Secret of an MPI job (None for other frameworks, or without a
    key in the context); owned by the job like every child, so it goes when the job does."""
    if spec.framework != "mpi" or ctx.ssh_auth is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/ssh-auth",
        "metadata": {"name": ssh_secret_name(spec, ctx), "namespace": ctx.namespace,
                     "labels": labels(ctx.user, spec.name)},
        "stringData": {"ssh-privatekey": ctx.ssh_auth.private_key, "ssh-publickey": ctx.ssh_auth.public_key},
    }


def _with_ssh(spec: JobSpec, ctx: BuildContext, pod: dict[str, Any]) -> None:
    """Mount the job's SSH Secret in an MPI rank and tell the entrypoint where it is."""
    if spec.framework != "mpi" or ctx.ssh_auth is None:
        return
    pod.setdefault("volumes", []).append(
        {"name": "ssh", "secret": {"secretName": ssh_secret_name(spec, ctx), "items": SSH_ITEMS}})
    container = pod["containers"][0]
    container.setdefault("volumeMounts", []).append({"name": "ssh", "mountPath": SSH_DIR, "readOnly": True})
    container["env"].append({"name": "KUBELAB_MPI_SSH_DIR", "value": SSH_DIR})


def make_rank_job(spec: JobSpec, ctx: BuildContext, rank: int, files_configmap: str | None = None) -> dict[str, Any]:
    """The batch/v1 Job of one rank.

    ``backoffLimit`` is the spec's retries; ``activeDeadlineSeconds`` the runtime limit. With a
    Kueue queue the Job carries the queue label and starts suspended (Kueue admits it).
    """
    jid = job_id(ctx.user, spec.name)
    vols, mounts = volumes(spec, ctx, files_configmap)
    env = contract_env(spec, ctx, rank=rank, peers=peers(spec, ctx.user))
    pod = pod_spec(spec, ctx, container(spec, ctx, env, mounts), vols)
    _with_ssh(spec, ctx, pod)
    pod["hostname"] = f"{jid}-{rank}"
    pod["subdomain"] = jid
    job_labels = labels(ctx.user, spec.name, rank=rank, component=COMPONENT_RANK)
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.retries,
        "completions": 1,
        "parallelism": 1,
        "template": {"metadata": pod_metadata(spec, ctx, rank=rank), "spec": pod},
    }
    if ctx.max_runtime_seconds:
        job_spec["activeDeadlineSeconds"] = ctx.max_runtime_seconds
    apply_kueue(ctx, job_labels, job_spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{jid}-{rank}", "namespace": ctx.namespace, "labels": job_labels},
        "spec": job_spec,
    }


def make_objects(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> list[dict[str, Any]]:
    """The headless Service, an MPI job's SSH Secret, and one Job per rank (the parent and its files
    are built elsewhere)."""
    secret = make_ssh_secret(spec, ctx)
    return [make_headless_service(spec, ctx)] + ([secret] if secret else []) + [
        make_rank_job(spec, ctx, r, files_configmap) for r in range(spec.workers)
    ]
