"""Kubeflow training-operator v1 engine: PyTorchJob, TFJob, MPIJob (``kubeflow.org/v1``).

The operator creates the pods and a Service per pod (``<name>-<type>-<index>``); the builder
still runs the kubelab entrypoint in every pod so that one CONTRACT env drives all engines. The
rank comes from the operator's ``training.kubeflow.org/replica-index`` label through the downward
API, plus ``KUBELAB_RANK_OFFSET`` for replica types after the first (PyTorchJob Workers follow the
Master; MPIJob Workers follow the Launcher, which is rank 0 and a node itself).
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
from kubelab.jobs.spec import JobSpec, JobSpecError

ENGINE = "kubeflow-v1"
API_VERSION = "kubeflow.org/v1"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
# The operators find the training container by these names.
CONTAINER_NAMES = {"PyTorchJob": "pytorch", "TFJob": "tensorflow", "MPIJob": "mpi"}
KINDS = {"pytorch": "PyTorchJob", "tensorflow": "TFJob", "mpi": "MPIJob", "replicas": "PyTorchJob"}


def _rank_from_label(offset: int) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{
        "name": "KUBELAB_RANK",
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{REPLICA_INDEX_LABEL}']"}},
    }]
    if offset:
        env.append({"name": "KUBELAB_RANK_OFFSET", "value": str(offset)})
    return env


def restart_policy(spec: JobSpec) -> str:
    """The replica restartPolicy that makes ``runPolicy.backoffLimit`` mean the spec's retries.

    With ``Never`` the operator fails the job at the first failed pod and ignores the backoff
    limit; it counts restarts (containers' ``restartCount``) only for ``OnFailure``/``Always``/
    ``ExitCode`` replicas (training-operator v1.9.4 ``pkg/core/job.go`` ``PastBackoffLimit`` and
    ``pkg/controller.v1/pytorch/pytorchjob_controller.go`` ``UpdateJobStatus``).
    """
    return "OnFailure" if spec.retries else "Never"


def _replica(spec: JobSpec, ctx: BuildContext, kind: str, replicas: int, env: list[dict[str, Any]],
             files_configmap: str | None) -> dict[str, Any]:
    vols, mounts = volumes(spec, ctx, files_configmap)
    cont = container(spec, ctx, env, mounts)
    cont["name"] = CONTAINER_NAMES[kind]
    pod = pod_spec(spec, ctx, cont, vols)
    # The operator sets the pod's restartPolicy from the replica's (and warns when the template has one).
    del pod["restartPolicy"]
    template: dict[str, Any] = {"metadata": pod_metadata(spec, ctx), "spec": pod}
    return {"replicas": replicas, "restartPolicy": restart_policy(spec), "template": template}


def make_training_job(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> dict[str, Any]:
    """The PyTorchJob (pytorch, replicas), TFJob (tensorflow) or MPIJob (mpi) of ``spec``.

    Raises:
        JobSpecError: A framework this engine has no kind for.
    """
    try:
        kind = KINDS[spec.framework]
    except KeyError:
        raise JobSpecError("framework", f"{spec.framework!r} has no Kubeflow v1 kind") from None
    name = job_id(ctx.user, spec.name)
    run_policy: dict[str, Any] = {"backoffLimit": spec.retries, "cleanPodPolicy": "All"}
    if ctx.max_runtime_seconds:
        run_policy["activeDeadlineSeconds"] = ctx.max_runtime_seconds
    meta_labels = labels(ctx.user, spec.name)
    apply_kueue(ctx, meta_labels, run_policy)

    def env_for(first_rank: int, peers: list[str], world: int) -> list[dict[str, Any]]:
        return _rank_from_label(first_rank) + contract_env(spec, ctx, rank=None, peers=peers, world_size=world)

    body: dict[str, Any]
    if kind == "PyTorchJob":
        peers = [f"{name}-master-0"] + [f"{name}-worker-{i}" for i in range(spec.workers - 1)]
        master_env = contract_env(spec, ctx, rank=0, peers=peers)
        specs = {"Master": _replica(spec, ctx, kind, 1, master_env, files_configmap)}
        if spec.workers > 1:
            specs["Worker"] = _replica(spec, ctx, kind, spec.workers - 1, env_for(1, peers, spec.workers),
                                       files_configmap)
        body = {"pytorchReplicaSpecs": specs}
    elif kind == "TFJob":
        peers = [f"{name}-worker-{i}" for i in range(spec.workers)]
        body = {"tfReplicaSpecs": {
            "Worker": _replica(spec, ctx, kind, spec.workers, env_for(0, peers, spec.workers), files_configmap),
        }}
    else:
        # The launcher is rank 0: it runs mpirun and, like the plain engine's rank 0 (and Trainer's
        # runLauncherAsNode), ranks of its own; the W-1 Workers (ranks 1..W-1) run sshd.
        peers = [f"{name}-launcher-0"] + [f"{name}-worker-{i}" for i in range(spec.workers - 1)]
        specs = {"Launcher": _replica(spec, ctx, kind, 1, contract_env(spec, ctx, rank=0, peers=peers),
                                      files_configmap)}
        if spec.workers > 1:
            specs["Worker"] = _replica(spec, ctx, kind, spec.workers - 1, env_for(1, peers, spec.workers),
                                       files_configmap)
        body = {"slotsPerWorker": spec.nprocs, "mpiReplicaSpecs": specs}
    body["runPolicy"] = run_policy
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": ctx.namespace, "labels": meta_labels},
        "spec": body,
    }


def make_objects(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> list[dict[str, Any]]:
    return [make_training_job(spec, ctx, files_configmap)]
