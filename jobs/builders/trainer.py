"""Kubeflow Trainer v2 engine (``trainer.kubeflow.org/v1alpha1`` TrainJob).

A TrainJob names a ClusterTrainingRuntime, which holds the JobSet template; the TrainJob sets the
image, command, node count, resources and env, and Trainer writes them into the container named
``node`` of the replicated job labelled ``trainer.kubeflow.org/trainjob-ancestor-step: trainer``
(Trainer v2.3.0 ``pkg/runtime/framework/plugins/jobset/builder.go``, ``Trainer``). kubelab's pod
labels, annotations, volumes and GPU placement go in as one ``runtimePatches`` entry owned by
kubelab, with one patch per replicated job that runs user code: Trainer refuses a patch that
names a replicated job or container the runtime does not have (``plugins/jobset/jobset.go``,
``Validate``), so the patch follows the runtime's own names, given as a :class:`TrainerRuntime`
(read from the cluster by :mod:`kubelab.jobs.runtimes`, else Trainer v2.3.0's runtimes).

Torch runtimes have one job, ``node``: pods are ``<name>-node-0-<index>.<name>`` and the rank is
the completion index. MPI runtimes (``deepspeed-distributed``) add a ``launcher`` job: it is the
trainer step, runs mpirun as rank 0 (and, with ``runLauncherAsNode``, is a node itself), while the
``node`` pods run the runtime's sshd and receive the ranks mpirun starts; both run user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubelab.jobs.builders.common import (
    ENTRYPOINT,
    BuildContext,
    apply_kueue,
    contract_env,
    job_id,
    labels,
    placement,
    pod_metadata,
    resources,
    volumes,
)
from kubelab.jobs.builders.jobset import rank_env
from kubelab.jobs.spec import JobSpec, JobSpecError

ENGINE = "trainer-v2"
API_VERSION = "trainer.kubeflow.org/v1alpha1"
# Trainer v2.3.0's runtime per framework (manifests/base/runtimes); the catalogue's
# jobs.trainerRuntimes names others. It ships none for TensorFlow.
RUNTIMES = {"pytorch": "torch-distributed", "replicas": "torch-distributed", "mpi": "deepspeed-distributed"}
PATCH_MANAGER = "kubelab.io/jobs"
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
ANCESTOR_TRAINER = "trainer"
# The container Trainer puts the trainer's image, command and env into (constants.Node).
NODE = "node"
INITIALIZER_JOBS = frozenset({"dataset-initializer", "model-initializer"})
# The sshd port of Trainer v2.3.0's MPI runtimes (their node containers' readinessProbe).
MPI_SSH_PORT = 2222
# Where Trainer v2.3.0's MPI runtimes mount the job's SSH key (mlPolicy.mpi.sshAuthMountPath).
MPI_SSH_DIR = "/home/mpiuser/.ssh"


@dataclass(frozen=True)
class RuntimeJob:
    """One replicated job of a training runtime.

    Attributes:
        name: The replicatedJob's name.
        containers: Its pod template's container names, in order.
        trainer: Whether it is the trainer step (Trainer sets the TrainJob's command in it).
    """

    name: str
    containers: tuple[str, ...]
    trainer: bool = False

    @property
    def user_container(self) -> str:
        """The container user code runs in: Trainer's ``node``, else the job's first container."""
        return NODE if NODE in self.containers else self.containers[0]


@dataclass(frozen=True)
class TrainerRuntime:
    """The names in a (Cluster)TrainingRuntime that a TrainJob's patches must use.

    Attributes:
        name: The runtime's name (the TrainJob's ``runtimeRef``).
        jobs: Its replicated jobs, in order.
        mpi: Whether its ML policy is MPI (mpirun over sshd).
        launcher_as_node: MPI ``runLauncherAsNode``: the launcher is one of the nodes.
        ssh_port: The port the node pods' sshd listens on (MPI only).
        ssh_dir: Where Trainer mounts the job's SSH key (MPI ``sshAuthMountPath``).
    """

    name: str
    jobs: tuple[RuntimeJob, ...]
    mpi: bool = False
    launcher_as_node: bool = False
    ssh_port: int = MPI_SSH_PORT
    ssh_dir: str = MPI_SSH_DIR

    @property
    def trainer_job(self) -> RuntimeJob:
        """The trainer step; a runtime without the ancestor label has it in its ``node`` job."""
        for job in self.jobs:
            if job.trainer:
                return job
        for job in self.jobs:
            if job.name == NODE:
                return job
        return self.user_code_jobs[0]

    @property
    def user_code_jobs(self) -> tuple[RuntimeJob, ...]:
        """Every job whose pods run user code (all but the dataset/model initializers)."""
        return tuple(j for j in self.jobs if j.name not in INITIALIZER_JOBS and j.containers)

    @property
    def node_job(self) -> RuntimeJob | None:
        """The MPI node job (the pods mpirun reaches over ssh), when it is not the trainer step."""
        for job in self.user_code_jobs:
            if job.name == NODE and job != self.trainer_job:
                return job
        return None


# Trainer v2.3.0's runtimes as they ship (tests/data/crds/kubeflow-trainer-v2/runtimes), for when
# the cluster's own cannot be read.
DEFAULT_RUNTIMES = {
    "torch-distributed": TrainerRuntime("torch-distributed", (RuntimeJob(NODE, (NODE,), trainer=True),)),
    "deepspeed-distributed": TrainerRuntime(
        "deepspeed-distributed",
        (RuntimeJob(NODE, (NODE,)), RuntimeJob("launcher", (NODE,), trainer=True)),
        mpi=True, launcher_as_node=True,
    ),
}


def default_runtime(framework: str, name: str | None = None) -> TrainerRuntime:
    """Trainer v2.3.0's runtime ``name`` (default: the framework's); a name Trainer does not ship
    gets the shape of the framework's upstream runtime under that name.

    Raises:
        JobSpecError: ``framework`` has no Trainer v2 runtime (tensorflow).
    """
    if framework not in RUNTIMES:
        raise JobSpecError("framework", f"{framework!r} has no Kubeflow Trainer v2 runtime; "
                           f"allowed with this engine: {', '.join(sorted(RUNTIMES))}")
    upstream = DEFAULT_RUNTIMES[RUNTIMES[framework]]
    name = name or upstream.name
    if name in DEFAULT_RUNTIMES:
        return DEFAULT_RUNTIMES[name]
    return TrainerRuntime(name, upstream.jobs, upstream.mpi, upstream.launcher_as_node, upstream.ssh_port,
                          upstream.ssh_dir)


def runtime_from_object(obj: Mapping[str, Any]) -> TrainerRuntime:
    """The :class:`TrainerRuntime` of a ClusterTrainingRuntime's (or TrainingRuntime's) JSON."""
    spec = obj.get("spec") or {}
    mpi = (spec.get("mlPolicy") or {}).get("mpi")
    jobs = []
    ssh_port = MPI_SSH_PORT
    for rjob in ((spec.get("template") or {}).get("spec") or {}).get("replicatedJobs") or []:
        template = rjob.get("template") or {}
        ancestor = ((template.get("metadata") or {}).get("labels") or {}).get(ANCESTOR_LABEL)
        pod = (((template.get("spec") or {}).get("template") or {}).get("spec")) or {}
        containers = pod.get("containers") or []
        for c in containers:
            probe_port = ((c.get("readinessProbe") or {}).get("tcpSocket") or {}).get("port")
            if mpi is not None and isinstance(probe_port, int) and not ancestor:
                ssh_port = probe_port
        jobs.append(RuntimeJob(str(rjob["name"]), tuple(str(c["name"]) for c in containers),
                               trainer=ancestor == ANCESTOR_TRAINER))
    return TrainerRuntime(
        name=str(obj["metadata"]["name"]), jobs=tuple(jobs), mpi=mpi is not None,
        launcher_as_node=bool((mpi or {}).get("runLauncherAsNode", False)), ssh_port=ssh_port,
        ssh_dir=str((mpi or {}).get("sshAuthMountPath") or MPI_SSH_DIR),
    )


def hostname(jid: str, job: str, index: int) -> str:
    """A JobSet pod's stable name: ``<jobset>-<replicatedJob>-<job index>-<pod index>.<subdomain>``."""
    return f"{jid}-{job}-0-{index}.{jid}"


def peers(spec: JobSpec, ctx: BuildContext, runtime: TrainerRuntime) -> list[str]:
    """Every worker's stable name in rank order: the trainer job's pods, or for MPI the launcher
    (rank 0) followed by the node pods."""
    jid = job_id(ctx.user, spec.name)
    node = runtime.node_job
    if runtime.mpi and node is not None:
        nodes = spec.workers - 1 if runtime.launcher_as_node else spec.workers
        launcher = [hostname(jid, runtime.trainer_job.name, 0)] if runtime.launcher_as_node else []
        return launcher + [hostname(jid, node.name, i) for i in range(nodes)]
    return [hostname(jid, runtime.trainer_job.name, r) for r in range(spec.workers)]


def runtime_patch(spec: JobSpec, ctx: BuildContext, runtime: TrainerRuntime,
                  files_configmap: str | None) -> dict[str, Any]:
    """kubelab's ``runtimePatches`` entry: for every job that runs user code, kubelab's pod metadata,
    the user's volumes (mounted in the job's user container) and the GPU placement."""
    vols, mounts = volumes(spec, ctx, files_configmap)
    patches = []
    for job in runtime.user_code_jobs:
        pod_patch: dict[str, Any] = dict(placement(spec, ctx))
        if vols:
            pod_patch["volumes"] = vols
            pod_patch["containers"] = [{"name": job.user_container, "volumeMounts": mounts}]
        pod_tpl: dict[str, Any] = {"metadata": pod_metadata(spec, ctx)}
        if pod_patch:
            pod_tpl["spec"] = pod_patch
        patches.append({"name": job.name, "template": {"spec": {"template": pod_tpl}}})
    return {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": patches}}}}


def make_trainjob(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> dict[str, Any]:
    """The TrainJob of ``spec``, patched for ``ctx.trainer_runtime`` (default: Trainer v2.3.0's).

    Raises:
        JobSpecError: ``framework`` tensorflow, for which Trainer v2 has no runtime.
    """
    default = default_runtime(spec.framework)  # refuses tensorflow, naming the field
    runtime = ctx.trainer_runtime or default
    port = runtime.ssh_port if runtime.mpi else None
    trainer: dict[str, Any] = {
        "image": ctx.image,
        "command": list(ENTRYPOINT),
        "args": ["--", *spec.args],
        "numNodes": spec.workers,
        "env": rank_env() + contract_env(spec, ctx, rank=None, peers=peers(spec, ctx, runtime), port=port),
    }
    if runtime.mpi:
        # Trainer makes the job's SSH key Secret and mounts it here (plugins/mpi/mpi.go).
        trainer["env"].append({"name": "KUBELAB_MPI_SSH_DIR", "value": runtime.ssh_dir})
    res = resources(spec, ctx)
    if res:
        trainer["resourcesPerNode"] = res
    body: dict[str, Any] = {
        "runtimeRef": {"name": runtime.name},
        "trainer": trainer,
        "runtimePatches": [runtime_patch(spec, ctx, runtime, files_configmap)],
    }
    if ctx.max_runtime_seconds:
        body["activeDeadlineSeconds"] = ctx.max_runtime_seconds
    meta_labels = labels(ctx.user, spec.name)
    apply_kueue(ctx, meta_labels, body)
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": job_id(ctx.user, spec.name), "namespace": ctx.namespace, "labels": meta_labels},
        "spec": body,
    }


def make_objects(spec: JobSpec, ctx: BuildContext, files_configmap: str | None = None) -> list[dict[str, Any]]:
    return [make_trainjob(spec, ctx, files_configmap)]
