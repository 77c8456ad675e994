"""``JobClient``: the notebook's handle on distributed jobs, a thin facade over one backend.

Like the Kubeflow SDK's ``TrainerClient``, the user-facing object only picks a backend and turns
keyword arguments into a validated :class:`~kubelab.jobs.spec.JobSpec`; everything else is the
backend's (the hub's jobs service, or local processes for a dry run).

Example::

    from kubelab.jobs import JobClient

    client = JobClient()                     # the hub's jobs service inside JupyterHub
    client.submit(name="ddp", script="train.py", workers=2)
    status = client.wait("ddp", timeout=600)
    for line in client.logs("ddp", rank=0):
        print(line)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kubelab.jobs.backends.base import JobBackend
from kubelab.jobs.backends.hub import HubBackend
from kubelab.jobs.backends.local import LocalBackend
from kubelab.jobs.spec import JobSpec, JobStatus
from kubelab.jobs.sweeps import SweepSpec, SweepStatus

BACKENDS = ("auto", "hub", "local")


def make_backend(backend: str | JobBackend = "auto", **kwargs: Any) -> JobBackend:
    """The backend a ``JobClient`` uses.

    Args:
        backend: ``"hub"`` (the jobs service, via ``JUPYTERHUB_API_URL``/``JUPYTERHUB_API_TOKEN``),
            ``"local"`` (local processes), ``"auto"`` (hub when ``JUPYTERHUB_API_TOKEN`` is set,
            i.e. inside a hub-spawned notebook, else local), or a ready ``JobBackend``.
        **kwargs: Passed to the backend's constructor (``HubBackend`` or ``LocalBackend``).

    Raises:
        ValueError: An unknown backend name, or kwargs with a ready backend.
    """
    if isinstance(backend, JobBackend):
        if kwargs:
            raise ValueError(f"backend options {sorted(kwargs)} given with a ready backend {backend!r}")
        return backend
    if backend == "auto":
        backend = "hub" if os.environ.get("JUPYTERHUB_API_TOKEN") else "local"
    if backend == "hub":
        return HubBackend(**kwargs)
    if backend == "local":
        return LocalBackend(**kwargs)
    raise ValueError(f"backend={backend!r} is not allowed; allowed: {', '.join(BACKENDS)} or a JobBackend")


class JobClient:
    """Submit, watch and cancel distributed training jobs.

    Args:
        backend: ``"auto"`` (default), ``"hub"``, ``"local"`` or a ``JobBackend`` instance
            (see :func:`make_backend`).
        **backend_options: Passed to the backend, e.g. ``api_url=``/``token=`` for the hub or
            ``root=``/``workdir=`` for local processes.
    """

    def __init__(self, backend: str | JobBackend = "auto", **backend_options: Any) -> None:
        self.backend = make_backend(backend, **backend_options)

    def __repr__(self) -> str:
        return f"JobClient({self.backend!r})"

    def options(self) -> dict[str, Any]:
        """What you may choose: frameworks, images, GPU classes with availability, limits and
        your remaining GPU quota (the shape is in ``docs/jobs.md``)."""
        return self.backend.options()

    def submit(self, spec: JobSpec | Mapping[str, Any] | None = None, **fields: Any) -> JobStatus:
        """Start a job from a ``JobSpec``, a dict of its fields, or keyword arguments.

        Example: ``client.submit(name="ddp", script="train.py", workers=2)``.

        Raises:
            JobSpecError: A field is invalid or not allowed (``.field`` names it).
            PermissionError: Group policy or the GPU quota refuses the job.
            RuntimeError: The backend failed.
        """
        if spec is None:
            spec = JobSpec.from_dict(fields)
        elif fields:
            raise TypeError("give either a spec or keyword fields, not both")
        elif not isinstance(spec, JobSpec):
            spec = JobSpec.from_dict(spec)
        self.backend.check_script(spec)  # before anything starts: a missing script fails every rank
        return self.backend.submit(spec)

    def list(self, all_users: bool = False) -> list[JobStatus]:
        """Your jobs, newest first (``all_users=True`` lists everyone's, for admins)."""
        return self.backend.list(all_users=all_users)

    def get(self, name: str) -> JobStatus:
        """One job's status, per rank.

        Raises:
            KeyError: You have no job of that name.
        """
        return self.backend.get(name)

    def logs(self, name: str, rank: int = 0, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """Log lines of one rank; with ``follow`` the iterator ends when that rank ends.

        Raises:
            KeyError: You have no job of that name.
        """
        return self.backend.logs(name, rank=rank, follow=follow, tail=tail)

    def cancel(self, name: str) -> None:
        """Stop the job. It stays listed (Cancelled) with its logs and metrics until :meth:`delete`.

        Raises:
            KeyError: You have no job of that name.
        """
        self.backend.cancel(name)

    def delete(self, name: str) -> None:
        """Remove the job and everything it created, stopping it first if it still runs.

        Raises:
            KeyError: You have no job of that name.
        """
        self.backend.delete(name)

    def metrics(self, name: str) -> dict[str, Any]:
        """The job's training curves, as logged by ``kubelab.jobs.metrics.log`` on each rank:
        ``{"series": [{"rank": 0, "name": "loss", "steps": [...], "values": [...]}, ...], ...}``;
        ``"message"`` says so when the job has logged none.

        Raises:
            KeyError: You have no job of that name.
        """
        return self.backend.metrics(name)

    def follow_metrics(self, name: str, seq: int = 0) -> Iterator[dict[str, Any]]:
        """New metric points as they arrive until the job ends (see ``JobBackend.follow_metrics``).

        Raises:
            KeyError: You have no job of that name.
        """
        return self.backend.follow_metrics(name, seq)

    def wait(self, name: str, timeout: float | None = None) -> JobStatus:
        """Wait until the job is Succeeded, Failed or Cancelled, and return its status.

        Returns within about a second of the job's end: the hub backend long-polls the service,
        which answers from its watch the moment the job ends; the local backend polls every 0.2 s.
        It does not raise for a Failed job; look at ``status.phase``.

        Raises:
            TimeoutError: The job has not ended after ``timeout`` seconds (names the job and its phase).
            KeyError: You have no job of that name (or it was deleted meanwhile).
        """
        start = time.monotonic()
        while True:
            left = None if timeout is None else timeout - (time.monotonic() - start)
            status = self.backend.wait_briefly(name, 30 if left is None else max(0.0, min(30, left)))
            if status.done:
                return status
            if left is not None and time.monotonic() - start >= timeout:
                raise TimeoutError(
                    f"job {name!r} still {status.phase} after {timeout:g} s"
                    + (f" ({status.message})" if status.message else "")
                )

    # -- sweeps (kubelab.jobs.sweeps; docs/jobs.md, Sweeps) ------------------------------------

    def sweep(self, spec: JobSpec | Mapping[str, Any], space: Mapping[str, Any], objective: str | Mapping[str, Any],
              trials: int | None = None, parallel: int = 2, *, name: str | None = None, algorithm: str | None = None,
              seed: int = 0, early_stopping: Mapping[str, Any] | None = None) -> SweepStatus:
        """Run a hyperparameter sweep: trials of ``spec`` over ``space``, ``parallel`` at a time.

        Example::

            from kubelab.jobs import sweeps
            client.sweep(JobSpec(name="lr", script="train.py"),
                         space={"lr": sweeps.loguniform(1e-4, 1e-1), "batch": sweeps.grid(32, 64)},
                         objective=sweeps.minimize("loss"), trials=6, parallel=2)

        Args:
            spec: The job every trial runs (its name is the sweep's, unless ``name`` is given).
            space: Parameter name → ``sweeps.grid(...)``, ``choice``, ``uniform``, ``loguniform``
                (``sweeps.env(...)`` sets it in the environment instead of ``--name=value``).
            objective: A metric the script logs with ``kubelab.jobs.metrics.log`` (minimised), or
                ``sweeps.minimize(...)``/``sweeps.maximize(...)``.
            trials: How many trials; default every point of a grid, or 10.
            parallel: How many run at once; trials the quota has no room for wait their turn.
            algorithm: ``grid`` or ``random``; default grid when every parameter is a grid axis.
            early_stopping: ``{"rule": "median"}`` stops trials worse than the median of the completed.

        Raises:
            JobSpecError: A field is refused (``.field`` names it, e.g. ``space.lr.min``).
            PermissionError: A trial could never run (policy, or a quota it exceeds alone).
            RuntimeError: The backend runs no sweeps, or failed.
        """
        job = spec.to_dict() if isinstance(spec, JobSpec) else dict(spec)
        sweep_name = name or str(job.get("name") or "")
        job.pop("name", None)
        body = {"name": sweep_name, "job": job, "space": dict(space), "objective": objective, "trials": trials,
                "parallel": parallel, "algorithm": algorithm, "seed": seed,
                "early_stopping": dict(early_stopping) if early_stopping is not None else None}
        checked = SweepSpec.from_dict(body)  # the same checks as the service's, before any request
        self.backend.check_script(checked.trial_spec(0, checked.plan()[0]))
        return SweepStatus.from_dict(self.backend.sweep(body))

    def sweeps(self, all_users: bool = False) -> list[SweepStatus]:
        """Your sweeps, newest first."""
        return [SweepStatus.from_dict(s) for s in self.backend.sweeps(all_users=all_users)]

    def get_sweep(self, name: str) -> SweepStatus:
        """One sweep: its trials (parameters, phase, objective) and the best so far.

        Raises:
            KeyError: You have no sweep of that name.
        """
        return SweepStatus.from_dict(self.backend.get_sweep(name))

    def wait_sweep(self, name: str, timeout: float | None = None) -> SweepStatus:
        """Wait until the sweep ended (Succeeded, Failed or Cancelled) and return it.

        Raises:
            TimeoutError: Still running after ``timeout`` seconds.
            KeyError: You have no sweep of that name.
        """
        start = time.monotonic()
        while True:
            left = None if timeout is None else timeout - (time.monotonic() - start)
            status = SweepStatus.from_dict(self.backend.get_sweep(name, 30 if left is None else max(0, min(30, left))))
            if status.done:
                return status
            if left is not None and time.monotonic() - start >= timeout:
                raise TimeoutError(f"sweep {name!r} still {status.phase} after {timeout:g} s")

    def cancel_sweep(self, name: str) -> SweepStatus:
        """Stop the sweep: every trial's objects are removed; its results stay until :meth:`delete_sweep`."""
        return SweepStatus.from_dict(self.backend.cancel_sweep(name))

    def delete_sweep(self, name: str) -> None:
        """Remove the sweep with everything it made."""
        self.backend.delete_sweep(name)

