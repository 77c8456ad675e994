"""Pieces every engine's builder shares: names, labels, the CONTRACT env, the trainer container,
the volumes that let job pods see the user's files, and GPU placement (all pure).

Builders take a :class:`BuildContext` (what the service decided: who, where, which image, which
GPU class, how files are reached) and a validated :class:`~kubelab.jobs.spec.JobSpec`, and return
plain dicts in the API's camelCase JSON, ready to POST.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubelab.core.catalogue import GpuClass, HomeStorage, SharedStorage
from kubelab.core.naming import (
    ANNOTATION_GROUPS,
    COMPONENT_ENV,
    COMPONENT_METRICS_TOKEN,
    COMPONENT_RANK,
    KUEUE_QUEUE_LABEL,
    LABEL_COMPONENT,
    LABEL_JOB,
    LABEL_RANK,
    LABEL_USER,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    home_claim_name,
    metrics_secret_name,
    user_label,
)
from kubelab.core.quantity import format_bytes, format_millicores
from kubelab.jobs.spec import JobSpec, JobSpecError

if TYPE_CHECKING:
    from kubelab.jobs.builders.trainer import TrainerRuntime
    from kubelab.jobs.sshkeys import SshAuth

CONTAINER_NAME = "trainer"
ENTRYPOINT = ["python", "-m", "kubelab.jobs.entrypoint"]
DEFAULT_PORTS = {"pytorch": 29500, "tensorflow": 2222, "mpi": 22, "replicas": 29500}
MAX_FILES_BYTES = 1024 * 1024
FILES_MOUNT_DIR = "/kubelab/files"

# How job pods see the user's files (DESIGN.md, "Job pods see the user's files").
FILES_HOME = "home"
FILES_SHARED = "shared"
FILES_CONFIGMAP = "configmap"
#: Folder under the files root (home or shared volume) holding every job's log directory.
RUNS_FOLDER = "kubelab-runs"


@dataclass(frozen=True)
class BuildContext:
    """What the service decided for one submission; builders only turn it into objects.

    Attributes:
        user: JupyterHub user name (labels use :func:`user_label` of it).
        namespace: Namespace the job's objects go to.
        image: Image reference (already resolved from the catalogue).
        home: Home storage settings.
        shared: The shared RWX volume, if the platform has one.
        gpu_class: The GPU class of ``spec.gpu_class``, if any.
        queue: Kueue LocalQueue, or None for no Kueue.
        files: ``{relative path: bytes}`` of the script's folder, shipped as a ConfigMap when job pods
            can see neither the home nor a shared volume.
        max_runtime_seconds: The runtime limit in force (spec's, else the platform's).
        rendezvous_timeout: Seconds the entrypoint waits for peers.
        extra_env: Environment added to every worker after the spec's (the service's own settings).
        groups: The user's groups, written on pods so that group GPU quotas count the job.
        trainer_runtime: The replicatedJob and container names of the ClusterTrainingRuntime a
            TrainJob refers to, as read from the cluster (:mod:`kubelab.jobs.runtimes`); None
            uses Trainer v2.3.0's own runtimes (``trainer-v2`` engine only).
        ssh_auth: The job's SSH key pair (:func:`kubelab.jobs.sshkeys.new_ssh_auth`) for MPI ranks;
            the plain engine ships it in a Secret the job owns.
        home_claim: The user's home PVC as :func:`kubelab.core.home.find_home_claim` chose it;
            None: :func:`~kubelab.core.naming.home_claim_name` of the user.
        default_cpu_millis: CPU per worker when the spec names none (the policy's ``Decision``).
        default_memory_bytes: Memory per worker when the spec names none.
        metrics_url: This job's metrics ingest URL on the hub (``KUBELAB_METRICS_URL``); None gives
            the ranks no metrics env (their ``metrics.log`` calls then keep nothing).
        metrics_token: The job's random ingest token, shipped in a Secret the job owns
            (:func:`make_metrics_secret`) and read by the ranks through ``secretKeyRef``.
    """

    user: str
    namespace: str
    image: str
    home: HomeStorage = field(default_factory=HomeStorage)
    shared: SharedStorage | None = None
    gpu_class: GpuClass | None = None
    queue: str | None = None
    files: Mapping[str, bytes] | None = None
    max_runtime_seconds: int | None = None
    rendezvous_timeout: int = 300
    extra_env: Mapping[str, str] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    trainer_runtime: TrainerRuntime | None = None
    ssh_auth: SshAuth | None = None
    home_claim: str | None = None
    default_cpu_millis: int | None = None
    default_memory_bytes: int | None = None
    metrics_url: str | None = None
    metrics_token: str | None = None

    @property
    def home_claim_name(self) -> str:
        """The home PVC job pods mount (files mode ``home``)."""
        return self.home_claim or home_claim_name(self.user)


def job_id(user: str, name: str) -> str:
    """The base name of every object of ``user``'s job ``name``: ``<name>-<6 hex>``.

    The hash of (user, name) keeps names unique across users (``a-b`` of ``c`` vs ``a`` of
    ``b-c``) while staying short enough for ``<id>-<rank>`` to be a pod hostname (≤ 63).
    """
    digest = hashlib.sha256(f"{user}\0{name}".encode()).hexdigest()[:6]
    return f"{name}-{digest}"


def labels(user: str, name: str, rank: int | None = None, component: str | None = None) -> dict[str, str]:
    """The labels every object of a job carries (``naming.py``), plus rank and component."""
    out = {
        MANAGED_BY: MANAGED_BY_VALUE,
        LABEL_USER: user_label(user),
        LABEL_JOB: name,
    }
    if rank is not None:
        out[LABEL_RANK] = str(rank)
    if component is not None:
        out[LABEL_COMPONENT] = component
    return out


def apply_kueue(ctx: BuildContext, object_labels: dict[str, str], suspendable: dict[str, Any]) -> None:
    """Hand the workload to Kueue when a queue is set: Kueue admits (unsuspends) only suspended
    workloads that carry its queue label. ``suspendable`` is the dict holding the engine's
    ``suspend`` field (a Job's spec, a JobSet's spec, a Kubeflow ``runPolicy``)."""
    if ctx.queue:
        object_labels[KUEUE_QUEUE_LABEL] = ctx.queue
        suspendable["suspend"] = True


def selector(user: str, name: str) -> str:
    """Label selector matching every object of ``user``'s job ``name``."""
    return ",".join(f"{k}={v}" for k, v in labels(user, name).items())


def files_mode(home: HomeStorage, shared: SharedStorage | None) -> str:
    """How job pods reach the user's files: mount an RWX home, else the shared RWX volume, else a ConfigMap.

    An RWO home is never mounted into job pods: they may land on another node (Multi-Attach).
    """
    if home.access_mode == "ReadWriteMany":
        return FILES_HOME
    if shared is not None:
        return FILES_SHARED
    return FILES_CONFIGMAP


def files_description(ctx: BuildContext) -> str:
    """One line saying how job pods see the user's files (reported in the job's events)."""
    mode = files_mode(ctx.home, ctx.shared)
    if mode == FILES_HOME:
        return f"files: home claim {ctx.home_claim_name} mounted at {ctx.home.mount_path}"
    if mode == FILES_SHARED:
        assert ctx.shared is not None
        return (f"files: home is {ctx.home.access_mode}, so the shared volume {ctx.shared.claim_name} is "
                f"mounted at {ctx.shared.mount_path} (the home is not)")
    count = len(ctx.files or {})
    return (f"files: home is {ctx.home.access_mode} and there is no shared volume, so the script's folder "
            f"({count} file(s)) was shipped as a ConfigMap at {ctx.home.mount_path}")


def working_dir(ctx: BuildContext) -> str:
    """Where the trainer runs: relative script paths are taken from the home (or the shared volume)."""
    if files_mode(ctx.home, ctx.shared) == FILES_SHARED:
        assert ctx.shared is not None
        return ctx.shared.mount_path
    return ctx.home.mount_path


def check_files(spec: JobSpec, ctx: BuildContext) -> None:
    """Check that job pods will see ``spec.script`` under the files mode in force.

    Raises:
        JobSpecError: ``script`` outside the shared volume with an RWO home, or ``files`` missing or
            over 1 MiB when the folder must be shipped.
    """
    mode = files_mode(ctx.home, ctx.shared)
    if mode == FILES_SHARED and spec.script and spec.script.startswith("/"):
        assert ctx.shared is not None
        if not spec.script.startswith(ctx.shared.mount_path.rstrip("/") + "/"):
            raise JobSpecError(
                "script", f"homes are {ctx.home.access_mode}, so job pods cannot see {spec.script}; "
                f"put the script under the shared volume {ctx.shared.mount_path}"
            )
    if mode == FILES_CONFIGMAP and spec.script:
        if not ctx.files:
            raise JobSpecError(
                "files", f"homes are {ctx.home.access_mode} and there is no shared volume: send the script's "
                "folder in 'files' (at most 1 MiB)"
            )
        total = sum(len(v) for v in ctx.files.values())
        if total > MAX_FILES_BYTES:
            raise JobSpecError("files", f"the script's folder holds {total} bytes; at most {MAX_FILES_BYTES} (1 MiB)")
        for path in ctx.files:
            if path.startswith("/") or ".." in path.split("/") or not path:
                raise JobSpecError("files", f"{path!r} must be a relative path inside the script's folder")


def contract_env(spec: JobSpec, ctx: BuildContext, *, rank: int | str | None, peers: list[str],
                 world_size: int | None = None, port: int | None = None) -> list[dict[str, Any]]:
    """The CONTRACT.md environment as a container ``env`` list.

    Args:
        rank: The rank as a literal, or None when the caller adds ``KUBELAB_RANK`` itself (downward API).
        peers: ``host[:port]`` of every worker in rank order.
        world_size: Number of workers, default ``spec.workers``.
        port: Base port, default the framework's.
    """
    values: dict[str, str] = {
        "KUBELAB_JOB": spec.name,
        "KUBELAB_FRAMEWORK": spec.framework,
        "KUBELAB_WORLD_SIZE": str(world_size if world_size is not None else spec.workers),
        "KUBELAB_NPROCS": str(spec.nprocs),
        "KUBELAB_PEERS": ",".join(peers),
        "KUBELAB_PORT": str(port or DEFAULT_PORTS[spec.framework]),
        "KUBELAB_RENDEZVOUS_TIMEOUT": str(ctx.rendezvous_timeout),
    }
    if rank is not None:
        values["KUBELAB_RANK"] = str(rank)
    if spec.script:
        values["KUBELAB_SCRIPT"] = spec.script
    else:
        assert spec.module is not None
        values["KUBELAB_MODULE"] = spec.module
    # The user's env first, so the contract's variables always win (a user cannot fake a rank;
    # JobSpec refuses KUBELAB_* names anyway). Its values come from the job's Secret
    # (make_env_secret): they are often tokens, and pod specs and the job's record are readable
    # by more people and tools than a Secret is.
    secret = env_secret_name(ctx, spec)
    env = [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}}
           for k in sorted(spec.env) if k not in values]
    env += [{"name": k, "value": v} for k, v in sorted(ctx.extra_env.items()) if k not in values]
    env += [{"name": k, "value": v} for k, v in values.items()]
    return env + observability_env(spec, ctx)


def observability_env(spec: JobSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    """Where the ranks send metrics (``kubelab.jobs.metrics``) and write TensorBoard files.

    ``KUBELAB_METRICS_URL`` is the job's ingest URL and ``KUBELAB_METRICS_TOKEN`` its per-job
    token, read from the job's Secret (never a literal in the pod spec); ``KUBELAB_LOG_DIR`` is
    ``<files root>/kubelab-runs/<job>`` where the user's server sees the same files.
    """
    env: list[dict[str, Any]] = []
    if ctx.metrics_url and ctx.metrics_token:
        secret = metrics_secret_name(job_id(ctx.user, spec.name))
        env += [{"name": "KUBELAB_METRICS_URL", "value": ctx.metrics_url},
                {"name": "KUBELAB_METRICS_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]
    if files_mode(ctx.home, ctx.shared) in (FILES_HOME, FILES_SHARED):
        env.append({"name": "KUBELAB_LOG_DIR", "value": log_dir(working_dir(ctx), spec.name)})
    return env


def log_dir(root: str, job_name: str) -> str:
    """A job's log directory (TensorBoard event files) under the files root pods and server share."""
    return f"{root.rstrip('/')}/{RUNS_FOLDER}/{job_name}"


def make_metrics_secret(spec: JobSpec, ctx: BuildContext) -> dict[str, Any] | None:
    """The Secret holding the job's metrics ingest token (None without one); the job owns it.
    The service keeps only the token's sha256, on the parent."""
    if not ctx.metrics_token:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": metrics_secret_name(job_id(ctx.user, spec.name)),
            "namespace": ctx.namespace,
            "labels": labels(ctx.user, spec.name, component=COMPONENT_METRICS_TOKEN),
        },
        "data": {"token": base64.b64encode(ctx.metrics_token.encode()).decode()},
    }


def resources(spec: JobSpec, ctx: BuildContext) -> dict[str, Any]:
    """Requests and limits per worker; GPUs use the class's extended resource (requests == limits).

    CPU and memory are the spec's, else the context's defaults (the catalogue's ``defaultCpu`` and
    ``defaultMemory``), else left out.
    """
    req: dict[str, Any] = {}
    lim: dict[str, Any] = {}
    cpu = spec.cpu_millis if spec.cpu_millis is not None else ctx.default_cpu_millis
    if cpu is not None:
        req["cpu"] = lim["cpu"] = format_millicores(cpu)
    if spec.memory is not None:
        req["memory"] = lim["memory"] = spec.memory
    elif ctx.default_memory_bytes is not None:
        req["memory"] = lim["memory"] = format_bytes(ctx.default_memory_bytes)
    if spec.gpus_per_worker:
        assert ctx.gpu_class is not None
        req[ctx.gpu_class.resource] = lim[ctx.gpu_class.resource] = str(spec.gpus_per_worker)
    out: dict[str, Any] = {}
    if req:
        out["requests"] = req
    if lim:
        out["limits"] = lim
    return out


def volumes(spec: JobSpec, ctx: BuildContext, files_configmap: str | None) -> tuple[list[dict], list[dict]]:
    """(volumes, volumeMounts) giving the pod the user's files, per :func:`files_mode`."""
    mode = files_mode(ctx.home, ctx.shared)
    if mode == FILES_HOME:
        return ([{"name": "home", "persistentVolumeClaim": {"claimName": ctx.home_claim_name}}],
                [{"name": "home", "mountPath": ctx.home.mount_path}])
    if mode == FILES_SHARED:
        assert ctx.shared is not None
        return ([{"name": "shared", "persistentVolumeClaim": {"claimName": ctx.shared.claim_name}}],
                [{"name": "shared", "mountPath": ctx.shared.mount_path}])
    if not files_configmap or not ctx.files:
        return [], []
    items = [{"key": file_key(i), "path": path} for i, path in enumerate(sorted(ctx.files))]
    return ([{"name": "files", "configMap": {"name": files_configmap, "items": items}}],
            [{"name": "files", "mountPath": ctx.home.mount_path, "readOnly": True}])


def file_key(index: int) -> str:
    """ConfigMap key of the ``index``-th shipped file (keys cannot hold '/', so the path goes in ``items``)."""
    return f"f{index:04d}"


def placement(spec: JobSpec, ctx: BuildContext) -> dict[str, Any]:
    """nodeSelector and tolerations of the GPU class (none on CPU)."""
    if not spec.gpus_per_worker or ctx.gpu_class is None:
        return {}
    out: dict[str, Any] = {"nodeSelector": dict(ctx.gpu_class.node_selector)}
    if ctx.gpu_class.tolerations:
        out["tolerations"] = [dict(t) for t in ctx.gpu_class.tolerations]
    return out


def container(spec: JobSpec, ctx: BuildContext, env: list[dict[str, Any]], mounts: list[dict[str, Any]],
              port: int | None = None) -> dict[str, Any]:
    """The trainer container: the entrypoint, with the spec's args after ``--``."""
    out: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": ctx.image,
        "command": list(ENTRYPOINT),
        "args": ["--", *spec.args],
        "workingDir": working_dir(ctx),
        "env": env,
        "ports": [{"name": "rendezvous", "containerPort": port or DEFAULT_PORTS[spec.framework]}],
    }
    res = resources(spec, ctx)
    if res:
        out["resources"] = res
    if mounts:
        out["volumeMounts"] = mounts
    return out


def pod_spec(spec: JobSpec, ctx: BuildContext, cont: dict[str, Any], vols: list[dict[str, Any]],
             restart_policy: str = "Never") -> dict[str, Any]:
    """A pod spec with no Kubernetes credentials (the security model) and the GPU placement."""
    out: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [cont],
    }
    if vols:
        out["volumes"] = vols
    out.update(placement(spec, ctx))
    return out


def pod_metadata(spec: JobSpec, ctx: BuildContext, rank: int | None = None) -> dict[str, Any]:
    """The metadata of every pod that runs user code, whatever the engine: kubelab's labels (the
    rank component, so quota, the headless Service and the jobs cache find it) and annotations."""
    out: dict[str, Any] = {"labels": labels(ctx.user, spec.name, rank=rank, component=COMPONENT_RANK)}
    annotations = pod_annotations(ctx)
    if annotations:
        out["annotations"] = annotations
    return out


def pod_annotations(ctx: BuildContext) -> dict[str, str]:
    """Pod annotations: the owner's groups (group quotas count pods by them)."""
    return {ANNOTATION_GROUPS: ",".join(sorted(ctx.groups))} if ctx.groups else {}


def spec_json(spec: JobSpec) -> str:
    """The spec as the job's record keeps it: env names only, since values may be secrets
    (they live in the job's Secret, :func:`make_env_secret`)."""
    record = spec.to_dict()
    record["env_names"] = sorted(record.pop("env"))
    return json.dumps(record, sort_keys=True)


def env_secret_name(ctx: BuildContext, spec: JobSpec) -> str:
    """Name of the Secret holding ``spec.env``: ``<job id>-env``."""
    return f"{job_id(ctx.user, spec.name)}-env"


def make_env_secret(spec: JobSpec, ctx: BuildContext) -> dict[str, Any] | None:
    """The Secret holding the values of ``spec.env`` (None without env); the job owns it, so
    cancelling the job deletes it. Pods read it through ``valueFrom.secretKeyRef``."""
    if not spec.env:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": env_secret_name(ctx, spec),
            "namespace": ctx.namespace,
            "labels": labels(ctx.user, spec.name, component=COMPONENT_ENV),
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(spec.env.items())},
    }
