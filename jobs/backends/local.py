"""Local-process backend: the same :class:`JobSpec` as W processes on this machine.

A dry run before using the cluster. Each rank is one ``python -m kubelab.jobs.entrypoint``
process with the environment of ``jobs/CONTRACT.md``, exactly what a worker pod gets, except
that the peers are ``127.0.0.1`` with a distinct free port each instead of stable DNS names.
So the entrypoint, torchrun and the user's script do on the laptop what they do on the cluster.

What differs from the cluster, on purpose:

- ``image`` is not used: the processes run with this Python (``sys.executable``).
- GPUs: a worker with ``gpus_per_worker`` = g sees its own g devices through
  ``CUDA_VISIBLE_DEVICES``; no quota applies.
- ``retries`` and ``queue`` are not applied; the status message says so.
- Jobs live in this Python process (the notebook kernel): when the kernel exits, its jobs are
  stopped (each rank runs in its own process group, which ``cancel`` and teardown kill).

Logs go to one file per rank, ``<root>/<job>/rank-<r>.log`` (stdout and stderr together).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from kubelab.jobs.backends.base import JobBackend, check_script_exists
from kubelab.jobs.metricstore import JobMetrics, MetricLimits, MetricsInputError, no_metrics, parse_batch
from kubelab.jobs.spec import FRAMEWORKS, JobSpec, JobSpecError, JobStatus, RankStatus

# torchrun ends a failed rank with its own traceback and a ~35-line banner; keep enough to see
# the user's traceback above them (the headline quotes its last line).
_LAST_LOG_LINES = 120
#: Seconds between SIGTERM and SIGKILL when stopping a rank, like a pod's grace period.
GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.1
#: The file every rank of a local job appends its metrics batches to (``KUBELAB_METRICS_FILE``).
METRICS_FILE = "metrics.jsonl"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets are held open until every port is chosen, so the ports are distinct; another
    program could still take one before the rank binds it, a race that only a retry could close
    and that is rare on loopback.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_gpu_count() -> int:
    """NVIDIA GPUs visible here, from ``nvidia-smi -L`` (0 without a driver).

    ``nvidia-smi`` rather than ``torch.cuda`` so that options() does not import torch into the
    kernel and does not initialise CUDA in it.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


class _LocalJob:
    """One submitted job: its processes, log files and status. Guarded by ``lock``."""

    def __init__(self, spec: JobSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = folder
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = time.monotonic()
        self.stopping: str | None = None  # why we are stopping it (cancel, teardown, deadline)
        notes = []
        if spec.retries:
            notes.append("retries are not applied locally")
        if spec.queue:
            notes.append("no queue locally")
        if spec.image:
            notes.append(f"image {spec.image!r} is not used locally; this Python runs the job")
        self.status = JobStatus(
            name=spec.name,
            user=os.environ.get("JUPYTERHUB_USER") or _login_name(),
            framework=spec.framework,
            workers=spec.workers,
            gpus_per_worker=spec.gpus_per_worker,
            gpu_class=spec.gpu_class,
            engine="local",
            phase="Pending",
            created=_now(),
            message="; ".join(notes),
            ranks=[RankStatus(rank=r, node="localhost") for r in range(spec.workers)],
            queue=spec.queue,
        )

        self.metrics = JobMetrics(self.status.user, MetricLimits())
        self.metrics_offset = 0  # bytes of metrics.jsonl already read

    def log_path(self, rank: int) -> Path:
        return self.folder / f"rank-{rank}.log"

    @property
    def metrics_path(self) -> Path:
        return self.folder / METRICS_FILE

    def read_metrics(self) -> JobMetrics:
        """Take in the batches the ranks appended since the last read (whole lines only)."""
        with self.lock:
            try:
                with open(self.metrics_path, "rb") as handle:
                    handle.seek(self.metrics_offset)
                    data = handle.read()
            except FileNotFoundError:
                return self.metrics
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            for line in data[:end].splitlines():
                try:
                    batch = parse_batch(line, self.metrics.limits)
                except MetricsInputError:
                    continue  # not written by kubelab.jobs.metrics; the cluster's service refuses it too
                for name, step, value in batch.points:
                    self.metrics.add(batch.rank, name, step, value)
                self.metrics.dropped_by_rank[batch.rank] = batch.dropped
            self.metrics_offset += end
            return self.metrics


def _login_name() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return "local"


# Jobs of every LocalBackend in this process, by (root folder, name): two JobClient("local")
# objects in one notebook see the same jobs, as two clients of the service would.
_JOBS: dict[tuple[Path, str], _LocalJob] = {}
_JOBS_LOCK = threading.Lock()


class LocalBackend(JobBackend):
    """Runs each rank of a job as a local process (a dry run before the cluster).

    Args:
        root: Folder for the jobs' log files; defaults to ``~/.kubelab/local-jobs``.
        workdir: Working directory of the ranks, against which a relative ``script`` is
            resolved; defaults to the home, as on the cluster.
        python: The interpreter that runs the entrypoint; defaults to this one.
        max_workers: Most ranks a job may have; defaults to the number of CPUs (each rank is a
            process and DDP ranks busy-wait in collectives, so more would just thrash).
        rendezvous_timeout: ``KUBELAB_RENDEZVOUS_TIMEOUT`` in seconds; peers are on this machine,
            so a short one makes a broken rank show up quickly.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        workdir: str | os.PathLike[str] | None = None,
        python: str = sys.executable,
        max_workers: int | None = None,
        rendezvous_timeout: int = 60,
    ) -> None:
        self.root = Path(root if root is not None else Path.home() / ".kubelab" / "local-jobs").resolve()
        self.workdir = Path(workdir) if workdir is not None else Path.home()
        self.python = python
        self.max_workers = max_workers or os.cpu_count() or 1
        self.rendezvous_timeout = rendezvous_timeout

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    # -- the JobBackend interface -------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The same shape as the service's ``GET options`` (docs/jobs.md), for this machine."""
        gpus = local_gpu_count()
        running = sum(j.spec.total_gpus for j in self._jobs() if not j.status.done)
        return {
            "user": os.environ.get("JUPYTERHUB_USER") or _login_name(),
            "admin": False,
            "engine": "local",
            "frameworks": list(FRAMEWORKS),
            # No images locally: the job runs with this Python, like image=None on the cluster.
            "images": [],
            "default_image": None,
            "gpu_classes": (
                [{"key": "local", "display_name": "local GPU", "counts": list(range(1, gpus + 1)),
                  "allocatable": gpus, "free": max(0, gpus - running)}]
                if gpus else []
            ),
            "max_workers": self.max_workers,
            "max_runtime_seconds": None,
            "queues": [],
            "default_queue": None,
            "quota": {"max_gpus": None, "used_gpus": running, "remaining_gpus": None, "used_by": []},
            "files": "local",
        }

    def check_script(self, spec: JobSpec) -> None:
        """The script must exist under the ranks' working directory (or be absolute)."""
        check_script_exists(spec, self.workdir)

    def submit(self, spec: JobSpec) -> JobStatus:
        """Start one entrypoint process per rank.

        Raises:
            JobSpecError: The name is in use, there are more workers than ``max_workers``, or
                more GPUs than this machine has.
            RuntimeError: A process could not be started (its ranks already started are stopped).
        """
        if spec.workers > self.max_workers:
            raise JobSpecError("workers", f"{spec.workers} is not allowed here; allowed: 1..{self.max_workers}")
        if spec.gpus_per_worker:
            have = local_gpu_count()
            if spec.total_gpus > have:
                raise JobSpecError("gpus_per_worker", f"{spec.workers} x {spec.gpus_per_worker} GPUs asked, "
                                   f"this machine has {have}")
        key = (self.root, spec.name)
        folder = self.root / spec.name
        with _JOBS_LOCK:
            if key in _JOBS:
                raise JobSpecError("name", f"job {spec.name!r} already exists; delete it first or pick another name")
            job = _LocalJob(spec, folder)
            _JOBS[key] = job
        try:
            if folder.exists():  # left by a kernel that exited; its processes died with it
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            self._start(job)
        except BaseException:
            self._stop(job, "submit failed")
            with _JOBS_LOCK:
                _JOBS.pop(key, None)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        threading.Thread(target=self._monitor, args=(job,), name=f"kubelab-local-{spec.name}", daemon=True).start()
        return self._snapshot(job)

    def list(self, all_users: bool = False) -> list[JobStatus]:
        """Jobs started by local backends with this ``root`` in this process, newest first
        (ended and cancelled ones too, until deleted)."""
        jobs = sorted(self._jobs(), key=lambda j: j.started, reverse=True)
        return [self._snapshot(j) for j in jobs]

    def get(self, name: str) -> JobStatus:
        """Raises:
            KeyError: No such job.
        """
        return self._snapshot(self._job(name))

    def logs(self, name: str, rank: int = 0, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """Lines of ``rank-<rank>.log``; with ``follow`` it waits for more until the rank ends.

        Raises:
            KeyError: No such job.
            JobSpecError: ``rank`` is outside ``0..workers-1``.
        """
        job = self._job(name)
        if not 0 <= rank < job.spec.workers:
            raise JobSpecError("rank", f"{rank} is not allowed; allowed: 0..{job.spec.workers - 1}")
        return self._follow(job, rank, follow, tail)

    def cancel(self, name: str) -> None:
        """Stop every rank (SIGTERM to its process group, SIGKILL after the grace period). The
        job stays listed, Cancelled, with its logs and metrics, until :meth:`delete`.

        Raises:
            KeyError: No such job.
        """
        self._stop(self._job(name), "cancelled")

    def delete(self, name: str) -> None:
        """Stop the job if it runs, then remove it with its log and metrics files.

        Raises:
            KeyError: No such job.
        """
        job = self._job(name)
        self._stop(job, "deleted")
        with _JOBS_LOCK:
            _JOBS.pop((self.root, name), None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def metrics(self, name: str) -> dict[str, Any]:
        """Every series the ranks logged (read from ``metrics.jsonl``), or a message saying there are none.

        Raises:
            KeyError: No such job.
        """
        job = self._job(name)
        data = job.read_metrics()
        with job.lock:
            return data.to_json() if data.series else no_metrics(name)

    def follow_metrics(self, name: str, seq: int = 0, *, poll: float = 1.0) -> Iterator[dict[str, Any]]:
        """New points after ``seq`` as they are appended, checked every ``poll`` seconds (at
        least 0.2), until the job ended and every point was read.

        Raises:
            KeyError: No such job.
        """
        job = self._job(name)
        poll = max(0.2, poll)
        while True:
            done = job.status.done
            data = job.read_metrics()
            with job.lock:
                points, current = data.since(seq), data.seq
            if points:
                seq = current
                yield {"points": points, "seq": seq}
            if done:
                yield {"done": True, "seq": seq}
                return
            time.sleep(poll)

    # -- processes ----------------------------------------------------------------------------

    def rank_env(self, spec: JobSpec, rank: int, ports: list[int]) -> dict[str, str]:
        """The environment of ``jobs/CONTRACT.md`` for one rank, with loopback peers."""
        env = {
            "KUBELAB_JOB": spec.name,
            "KUBELAB_FRAMEWORK": spec.framework,
            "KUBELAB_RANK": str(rank),
            "KUBELAB_WORLD_SIZE": str(spec.workers),
            "KUBELAB_NPROCS": str(spec.nprocs),
            # Each peer gets its own port: on one host, TF and MPI workers cannot share one.
            "KUBELAB_PEERS": ",".join(f"127.0.0.1:{p}" for p in ports),
            "KUBELAB_PORT": str(ports[0]),
            "KUBELAB_RENDEZVOUS_TIMEOUT": str(self.rendezvous_timeout),
            # Log lines reach the file (and a follower) as they are printed, as in a pod.
            "PYTHONUNBUFFERED": "1",
            # kubelab.jobs.metrics appends here; on the cluster the builder sets an ingest URL instead.
            "KUBELAB_METRICS_FILE": str(self.root / spec.name / METRICS_FILE),
            # Outputs where they go on the cluster: the job's folder under the ranks' home.
            "KUBELAB_OUTPUT_DIR": str(self.workdir / Path(spec.output_dir).expanduser() if spec.output_dir
                                      else self.workdir / "kubelab-runs" / spec.name),
        }
        if spec.script is not None:
            env["KUBELAB_SCRIPT"] = spec.script
        else:
            env["KUBELAB_MODULE"] = str(spec.module)
        if spec.gpus_per_worker:
            first = rank * spec.gpus_per_worker
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(first + i) for i in range(spec.gpus_per_worker))
        else:
            # A CPU job must not grab a GPU that happens to be here; on the cluster it has none.
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def _start(self, job: _LocalJob) -> None:
        spec = job.spec
        ports = free_ports(spec.workers)
        argv = [self.python, "-m", "kubelab.jobs.entrypoint", "--", *spec.args]
        for rank in range(spec.workers):
            # The user's env first, then the contract's, which the user may not override (as in the pod).
            env = {**os.environ, **spec.env, **self.rank_env(spec, rank, ports)}
            logfile: IO[bytes]
            with open(job.log_path(rank), "wb") as logfile:
                proc = subprocess.Popen(  # noqa: S603 - argv is ours; the spec only adds arguments
                    argv,
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    # Own process group: cancel reaches torchrun's children too, not only the entrypoint.
                    start_new_session=True,
                )
            with job.lock:
                job.procs.append(proc)
                job.status.ranks[rank] = replace(job.status.ranks[rank], phase="Running", pod=f"pid:{proc.pid}")
        with job.lock:
            job.status.phase = "Running"

    def _monitor(self, job: _LocalJob) -> None:
        """Turn exit codes into phases; a failing rank fails the job and tears the others down."""
        deadline = job.spec.max_runtime_seconds
        while True:
            codes = [p.poll() for p in job.procs]
            with job.lock:
                if job.stopping:
                    return
                for rank, code in enumerate(codes):
                    if code is not None and job.status.ranks[rank].exit_code is None:
                        job.status.ranks[rank] = replace(
                            job.status.ranks[rank], phase="Succeeded" if code == 0 else "Failed", exit_code=code
                        )
                failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank = failed[0]
                with job.lock:
                    job.status.failed_rank = rank
                    job.status.last_logs = _last_lines(job.log_path(rank), _LAST_LOG_LINES)
                    job.status.message = _join(job.status.message, f"rank {rank} exited with code {codes[rank]}")
                self._stop(job, f"rank {rank} failed", final="Failed")
                return
            if all(c == 0 for c in codes):
                with job.lock:
                    job.status.phase = "Succeeded"
                    job.status.finished = _now()
                return
            if deadline is not None and time.monotonic() - job.started > deadline:
                with job.lock:
                    job.status.message = _join(job.status.message, f"exceeded max_runtime_seconds={deadline}")
                self._stop(job, "deadline exceeded", final="Failed")
                return
            time.sleep(_POLL_SECONDS)

    def _stop(self, job: _LocalJob, why: str, final: str = "Cancelled") -> None:
        """SIGTERM every live rank's process group, SIGKILL what is left after the grace period."""
        with job.lock:
            if job.stopping is None:
                job.stopping = why
            procs = list(job.procs)
        # The entrypoint starts torchrun/mpirun in a session of its own and forwards SIGTERM to it;
        # note every descendant now, so that none outlives a rank that had to be SIGKILLed.
        tree = [pid for proc in procs if proc.poll() is None for pid in descendants(proc.pid)]
        for proc in procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        end = time.monotonic() + GRACE_SECONDS
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)
        for pid in tree:
            # Still there after its rank ended: orphaned by a SIGKILL, or it ignored SIGTERM.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with job.lock:
            for rank, proc in enumerate(procs):
                status = job.status.ranks[rank]
                if status.exit_code is None:
                    job.status.ranks[rank] = replace(status, phase="Cancelled", exit_code=proc.returncode,
                                                     message=f"stopped: {why}")
            if not job.status.done:
                job.status.phase = final
                job.status.finished = _now()

    def _follow(self, job: _LocalJob, rank: int, follow: bool, tail: int | None) -> Iterator[str]:
        path = job.log_path(rank)
        try:
            handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in finally
        except FileNotFoundError:
            return
        try:
            if tail is not None:
                yield from deque(handle.read().splitlines(), maxlen=tail)
            partial = ""
            while True:
                chunk = handle.readline()
                if chunk:
                    partial += chunk
                    if partial.endswith("\n"):
                        yield partial.rstrip("\n")
                        partial = ""
                    continue
                ended = rank >= len(job.procs) or job.procs[rank].poll() is not None
                if not follow or ended:
                    # One more read: lines written between the last read and the exit.
                    rest = handle.read()
                    lines = (partial + rest).splitlines()
                    yield from lines
                    return
                time.sleep(_POLL_SECONDS)
        finally:
            handle.close()

    # -- registry -----------------------------------------------------------------------------

    def _jobs(self) -> list[_LocalJob]:
        with _JOBS_LOCK:
            return [j for (root, _), j in _JOBS.items() if root == self.root]

    def _job(self, name: str) -> _LocalJob:
        with _JOBS_LOCK:
            job = _JOBS.get((self.root, name))
        if job is None:
            raise KeyError(f"no job {name!r}")
        return job

    @staticmethod
    def _snapshot(job: _LocalJob) -> JobStatus:
        """A copy, so a caller never sees the monitor change a status under its feet."""
        with job.lock:
            return JobStatus.from_dict(job.status.to_dict())


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc/<pid>/task/*/children`` (Linux; [] elsewhere)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(c) for c in children.read_text().split()]
            except OSError:  # the task ended while we looked
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The group may be gone already (it exited); that is what we wanted.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _last_lines(path: Path, count: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return list(deque(handle.read().splitlines(), maxlen=count))
    except FileNotFoundError:
        return []


def _join(message: str, more: str) -> str:
    return f"{message}; {more}" if message else more


@atexit.register
def _stop_all() -> None:
    """Stop every local job when the kernel exits: ranks run in their own process groups,
    so nothing else would stop them."""
    with _JOBS_LOCK:
        jobs = list(_JOBS.values())
    for job in jobs:
        for proc in job.procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
