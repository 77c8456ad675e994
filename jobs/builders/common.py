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
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubelab.core.catalogue import GpuClass, HomeStorage, ScratchStorage, SharedStorage, TransferLimits
from kubelab.core.naming import (
    ANNOTATION_GROUPS,
    COLLECTOR_HOSTNAME,
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
    collector_name,
    home_claim_name,
    metrics_secret_name,
    transfer_secret_name,
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
#: Where a rank sees the shipped script folder (read-only); the entrypoint copies it into the home.
FILES_MOUNT_DIR = "/kubelab/files"

# How job pods see the user's files (DESIGN.md, "Job pods see the user's files").
FILES_HOME = "home"
FILES_SHARED = "shared"
FILES_CONFIGMAP = "configmap"
#: Folder under the home (or the shared volume) holding each job's outputs and log files.
RUNS_FOLDER = "kubelab-runs"
#: How a job's outputs reach the user's files: written there by the ranks, on a volume they mount
#: (``direct``), or brought into the ReadWriteOnce home by the job's collector when each rank ends.
ROUTE_DIRECT = "direct"
ROUTE_COLLECT = "collect"
#: Per-rank scratch (an emptyDir with the catalogue's sizeLimit): /tmp, and the home where it is not mounted.
SCRATCH_VOLUME = "scratch"
#: Per-rank output folder on the collect route (an emptyDir of at most the job's output budget).
OUTPUTS_VOLUME = "outputs"
#: Port the collector serves the ranks on.
COLLECTOR_PORT = 8470


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
        scratch: Per-rank scratch settings (``storage.scratch``).
        transfer: What a collector may move (``storage.transfer``).
        home_node: The node where the (ReadWriteOnce) home is attached now, by a running server or
            another job's collector; the collector is pinned there. None: nothing holds it.
        transfer_token: The job's random transfer token (ranks ↔ collector), when it has a collector.
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
    scratch: ScratchStorage = field(default_factory=ScratchStorage)
    transfer: TransferLimits = field(default_factory=TransferLimits)
    home_node: str | None = None
    transfer_token: str | None = None

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
    shared = (f", shared volume {ctx.shared.claim_name} at {ctx.shared.mount_path}"
              if ctx.shared is not None else "")
    if mode == FILES_HOME:
        return f"files: home claim {ctx.home_claim_name} mounted at {ctx.home.mount_path}{shared}"
    if mode == FILES_SHARED:
        assert ctx.shared is not None
        return (f"files: home is {ctx.home.access_mode}, so the shared volume {ctx.shared.claim_name} is "
                f"mounted at {ctx.shared.mount_path} (the home is not: {ctx.home.mount_path} is the rank's scratch)")
    count = len(ctx.files or {})
    return (f"files: home is {ctx.home.access_mode} and there is no shared volume, so the script's folder "
            f"({count} file(s)) was shipped as a ConfigMap and copied to {ctx.home.mount_path} (the rank's scratch)")


def working_dir(ctx: BuildContext) -> str:
    """Where the trainer runs and ``HOME``: the home's mount path, as in the notebook, so a relative
    path means the same in both. It is the home itself (RWX), or the rank's scratch."""
    return ctx.home.mount_path


# -- where things are: paths as the notebook means them ------------------------------------------


def user_path(ctx: BuildContext, path: str) -> str:
    """``path`` as the user's notebook means it: ``~`` and relative paths from the home, normalised
    (``..`` resolved, so ``~/../etc`` is ``/etc``)."""
    home = ctx.home.mount_path.rstrip("/")
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    elif not path.startswith("/"):
        path = f"{home}/{path}"
    return "/" + posixpath.normpath(path).lstrip("/")


def is_within(path: str, root: str) -> bool:
    """Whether normalised ``path`` is ``root`` or below it."""
    root = "/" + posixpath.normpath(root).lstrip("/")
    return path == root or path.startswith(root.rstrip("/") + "/")


def mounted_roots(ctx: BuildContext) -> list[str]:
    """The user's folders that job pods mount read-write at the notebook's paths: an RWX home, the shared volume."""
    roots = [ctx.home.mount_path] if files_mode(ctx.home, ctx.shared) == FILES_HOME else []
    if ctx.shared is not None:
        roots.append(ctx.shared.mount_path)
    return ["/" + posixpath.normpath(r).lstrip("/") for r in roots]


def user_roots(ctx: BuildContext) -> list[str]:
    """Every folder that is the user's files for a job: the home (mounted, or collected into), the shared volume."""
    home = "/" + posixpath.normpath(ctx.home.mount_path).lstrip("/")
    return [home] + [r for r in mounted_roots(ctx) if r != home]


def output_dir(spec: JobSpec, ctx: BuildContext) -> str:
    """Where the job's outputs go (``KUBELAB_OUTPUT_DIR``), as the notebook sees it.

    ``spec.output_dir``, else ``~/kubelab-runs/<job>``; when only the shared volume is mounted,
    ``<shared>/kubelab-runs/<user>/<job>`` (a lab-wide volume: one folder per user, so two users'
    jobs of one name never write into each other's files).
    """
    if spec.output_dir is not None:
        return user_path(ctx, spec.output_dir)
    if files_mode(ctx.home, ctx.shared) == FILES_SHARED:
        assert ctx.shared is not None
        return f"{ctx.shared.mount_path.rstrip('/')}/{RUNS_FOLDER}/{user_label(ctx.user)}/{spec.name}"
    return log_dir(ctx.home.mount_path, spec.name)


def output_route(spec: JobSpec, ctx: BuildContext) -> str:
    """``direct`` when the output folder is on a volume the ranks mount, else ``collect``."""
    folder = output_dir(spec, ctx)
    return ROUTE_DIRECT if any(is_within(folder, r) for r in mounted_roots(ctx)) else ROUTE_COLLECT


def fetched_inputs(spec: JobSpec, ctx: BuildContext) -> list[str]:
    """The job's inputs that its pods cannot see (in a ReadWriteOnce home): each rank fetches them
    from the collector into its scratch, at the same path, before the script starts."""
    paths = (user_path(ctx, p) for p in spec.inputs)
    return sorted({p for p in paths if not any(is_within(p, r) for r in mounted_roots(ctx))})


def needs_collector(spec: JobSpec, ctx: BuildContext) -> bool:
    """Whether the job needs a collector: outputs to bring into, or inputs to fetch from, an RWO home.

    The builders make one (and point the ranks at it) only with :attr:`BuildContext.transfer_token`,
    which the service always sets for such jobs."""
    return output_route(spec, ctx) == ROUTE_COLLECT or bool(fetched_inputs(spec, ctx))


def collector_url(ctx: BuildContext, spec: JobSpec) -> str:
    """Where the ranks reach the job's collector: its pod's stable name ``collector.<job id>-collector``."""
    return f"http://{COLLECTOR_HOSTNAME}.{collector_name(job_id(ctx.user, spec.name))}:{COLLECTOR_PORT}"


def storage_options(ctx: BuildContext) -> dict[str, Any]:
    """Where things are for a new job of ``ctx.user`` (``GET options``' ``storage``): the home and
    the shared volume as the notebook sees them, and where outputs go by default, by which route."""
    probe = JobSpec(name="job", module="probe")
    return {
        "home": ctx.home.mount_path,
        "shared": ctx.shared.mount_path if ctx.shared is not None else None,
        "outputs": posixpath.dirname(output_dir(probe, ctx)) + "/<job>",
        "outputs_route": output_route(probe, ctx),
        "scratch_bytes": ctx.scratch.size_bytes,
        "max_output_bytes": ctx.transfer.max_output_bytes,
        "max_input_bytes": ctx.transfer.max_input_bytes,
    }


def _files_words(ctx: BuildContext) -> str:
    """The user's files in words: ``your home /home/jovyan`` (``or the shared volume /shared``)."""
    shared = f" or the shared volume {ctx.shared.mount_path}" if ctx.shared is not None else ""
    return f"your home {ctx.home.mount_path}{shared}"


def check_files(spec: JobSpec, ctx: BuildContext) -> None:
    """Check that job pods will see ``spec.script`` and ``spec.inputs``, and may write ``output_dir``.

    Every refusal names the route to use instead.

    Raises:
        JobSpecError: ``script`` where job pods cannot see it; ``output_dir`` or ``inputs`` outside
            the user's files (or all of them); ``files`` missing, unsafe or over 1 MiB when the
            script's folder must be shipped.
    """
    mode = files_mode(ctx.home, ctx.shared)
    roots = user_roots(ctx)
    home = roots[0]
    folder = output_dir(spec, ctx)
    if folder in roots:
        raise JobSpecError("output_dir", f"{spec.output_dir} is the whole of {folder}; give the outputs a folder "
                           f"of their own, e.g. ~/{RUNS_FOLDER}/{spec.name}")
    if not any(is_within(folder, r) for r in roots):
        raise JobSpecError("output_dir", f"{spec.output_dir} is outside your files, where your notebook could not "
                           f"read the outputs; use a folder under {_files_words(ctx)}, e.g. ~/{RUNS_FOLDER}/{spec.name}")
    for i, raw in enumerate(spec.inputs):
        path = user_path(ctx, raw)
        if path in roots:
            raise JobSpecError("inputs", f"inputs[{i}] {raw!r} is all of {path}; list the folders the job reads "
                               "(a dataset's folder), not the whole volume")
        if not any(is_within(path, r) for r in roots):
            raise JobSpecError("inputs", f"inputs[{i}] {raw!r} is outside your files; list folders or files under "
                               f"{_files_words(ctx)} (an image's own files need no listing)")
    if spec.script is None:
        return
    script = user_path(ctx, spec.script)
    if mode == FILES_SHARED and not any(is_within(script, r) for r in mounted_roots(ctx)):
        assert ctx.shared is not None
        where = "is in your home, which" if is_within(script, home) else "is not on a volume that"
        raise JobSpecError(
            "script", f"{spec.script} {where} job pods cannot mount (homes are {ctx.home.access_mode}); "
            f"put the script under the shared volume {ctx.shared.mount_path}, which they do mount"
        )
    if mode == FILES_CONFIGMAP:
        _check_shipped(spec, ctx, script, home)


def _check_shipped(spec: JobSpec, ctx: BuildContext, script: str, home: str) -> None:
    """The script's folder, shipped as a ConfigMap: present, safe, at most 1 MiB, holding the script."""
    if not ctx.files:
        raise JobSpecError(
            "files", f"homes are {ctx.home.access_mode} and there is no shared volume: send the script's "
            "folder in 'files' (at most 1 MiB)"
        )
    for path in ctx.files:
        if path.startswith("/") or ".." in path.split("/") or not path or "" in path.split("/"):
            raise JobSpecError("files", f"{path!r} must be a relative path inside the script's folder")
    total = sum(len(v) for v in ctx.files.values())
    if total > MAX_FILES_BYTES:
        raise JobSpecError(
            "files", f"the script's folder holds {total} bytes; at most {MAX_FILES_BYTES} (1 MiB) can be shipped "
            "with the job, because job pods cannot mount your ReadWriteOnce home. Keep data out of the script's "
            "folder and list it in 'inputs' (each rank fetches it from your home when it starts, up to "
            f"{_mib(ctx.transfer.max_input_bytes)} per job)")
    if is_within(script, home):
        relative = script[len(home.rstrip("/")) + 1:]
        if relative not in ctx.files:
            raise JobSpecError("files", f"the shipped files do not hold the script {relative}; send its folder")


def _mib(count: int) -> str:
    """A byte count in MiB (GiB from 1 GiB), for messages."""
    return f"{count / 2**30:g} GiB" if count >= 2**30 else f"{count / 2**20:g} MiB"


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
    own = values.keys() | {"HOME"}  # HOME too: storage_env sets it to the user's files or the scratch
    env = [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}}
           for k in sorted(spec.env) if k not in own]
    env += [{"name": k, "value": v} for k, v in sorted(ctx.extra_env.items()) if k not in own]
    env += [{"name": k, "value": v} for k, v in values.items()]
    return env + observability_env(spec, ctx) + storage_env(spec, ctx)


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
    if output_route(spec, ctx) == ROUTE_DIRECT:
        # Live where the user's server sees it (TensorBoard): the output folder, on a mounted volume.
        env.append({"name": "KUBELAB_LOG_DIR", "value": output_dir(spec, ctx)})
    return env


def storage_env(spec: JobSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    """Where a rank's files are (CONTRACT.md): ``HOME``, ``KUBELAB_OUTPUT_DIR``, and, on an RWO
    home, the shipped folder, the collector and the inputs to fetch from it."""
    env: list[dict[str, Any]] = [
        # Never the image user's or the node's home: the user's files, or the rank's scratch.
        {"name": "HOME", "value": working_dir(ctx)},
        {"name": "KUBELAB_OUTPUT_DIR", "value": output_dir(spec, ctx)},
    ]
    if files_mode(ctx.home, ctx.shared) == FILES_CONFIGMAP and ctx.files:
        env.append({"name": "KUBELAB_FILES_DIR", "value": FILES_MOUNT_DIR})
    if needs_collector(spec, ctx) and ctx.transfer_token:
        secret = transfer_secret_name(job_id(ctx.user, spec.name))
        env += [{"name": "KUBELAB_COLLECTOR", "value": collector_url(ctx, spec)},
                {"name": "KUBELAB_TRANSFER_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]
        if output_route(spec, ctx) == ROUTE_COLLECT:
            env.append({"name": "KUBELAB_OUTPUT_COLLECT", "value": "1"})
        inputs = fetched_inputs(spec, ctx)
        if inputs:
            env.append({"name": "KUBELAB_INPUTS", "value": json.dumps(inputs)})
    # Resume instead of fail (kubelab.jobs.restarts): where checkpoints go, and torchrun's restart budget.
    if spec.checkpoint_dir is not None:
        env.append({"name": "KUBELAB_CHECKPOINT_DIR", "value": user_path(ctx, spec.checkpoint_dir)})
    if spec.restarts:
        env.append({"name": "KUBELAB_RESTARTS", "value": str(spec.restarts)})
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
    """(volumes, volumeMounts) of a rank: the user's files where the storage allows, and scratch.

    * An RWX home at its mount path; the shared volume at its mount path (the notebook's paths).
    * A per-rank scratch ``emptyDir`` (the catalogue's ``sizeLimit``): ``/tmp`` always, and the
      home's mount path when the home is not mounted (an RWO home is never mounted into job pods:
      they may land on another node, Multi-Attach).
    * On the collect route, an ``emptyDir`` at the output folder, of at most the job's output
      budget, which the entrypoint hands to the collector when the rank ends.
    * The shipped script folder (a ConfigMap) read-only at :data:`FILES_MOUNT_DIR`; the entrypoint
      copies it into the home's scratch, so the script's folder is writable.

    Mounts are ordered parents first, as container runtimes mount them.
    """
    mode = files_mode(ctx.home, ctx.shared)
    scratch = {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": format_bytes(ctx.scratch.size_bytes)}}
    vols: list[dict[str, Any]] = [scratch]
    mounts: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "mountPath": "/tmp", "subPath": "tmp"}]
    if mode == FILES_HOME:
        vols.append({"name": "home", "persistentVolumeClaim": {"claimName": ctx.home_claim_name}})
        mounts.append({"name": "home", "mountPath": ctx.home.mount_path})
    else:
        mounts.append({"name": SCRATCH_VOLUME, "mountPath": ctx.home.mount_path, "subPath": "home"})
    if ctx.shared is not None:
        vols.append({"name": "shared", "persistentVolumeClaim": {"claimName": ctx.shared.claim_name}})
        mounts.append({"name": "shared", "mountPath": ctx.shared.mount_path})
    if output_route(spec, ctx) == ROUTE_COLLECT:
        vols.append({"name": OUTPUTS_VOLUME, "emptyDir": {"sizeLimit": format_bytes(ctx.transfer.max_output_bytes)}})
        mounts.append({"name": OUTPUTS_VOLUME, "mountPath": output_dir(spec, ctx)})
    if mode == FILES_CONFIGMAP and files_configmap and ctx.files:
        items = [{"key": file_key(i), "path": path} for i, path in enumerate(sorted(ctx.files))]
        vols.append({"name": "files", "configMap": {"name": files_configmap, "items": items}})
        mounts.append({"name": "files", "mountPath": FILES_MOUNT_DIR, "readOnly": True})
    mounts.sort(key=lambda m: m["mountPath"].rstrip("/").count("/"))
    return vols, mounts


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
