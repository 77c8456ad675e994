"""The small interface every JobClient backend implements."""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubelab.jobs.spec import JobSpec, JobSpecError, JobStatus


def check_script_exists(spec: JobSpec, base: Path) -> None:
    """Refuse a spec whose script is not a file, seen from the notebook, before anything starts.

    A relative path is taken from ``base`` (the home, where the ranks start). Without this the
    job would start, and every rank fail with ``can't open file``.

    Raises:
        JobSpecError: On ``script``, naming the path that was looked at.
    """
    if spec.script is None:
        return
    path = Path(spec.script).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        what = "is a folder, not a script" if path.is_dir() else "does not exist"
        raise JobSpecError("script", f"{spec.script} {what} (looked at {path}); give the path of a .py file, "
                           "relative to your home")


#: How often the default :meth:`JobBackend.wait_briefly` asks for the status (an end is seen within it).
WAIT_POLL_SECONDS = 0.2


class JobBackend(abc.ABC):
    """Where jobs run. ``JobClient`` is a thin facade over one of these."""

    @abc.abstractmethod
    def options(self) -> dict[str, Any]:
        """What this user may choose: frameworks, GPU classes and counts with availability,
        images, limits and the remaining quota (the widget renders its form from this)."""

    def check_script(self, spec: JobSpec) -> None:
        """Check, where the notebook can, that the job's script exists (``JobClient.submit`` calls it).

        Raises:
            JobSpecError: On ``script``.
        """
        return None  # a backend that cannot see the job's files checks nothing

    @abc.abstractmethod
    def submit(self, spec: JobSpec) -> JobStatus:
        """Start ``spec``.

        Raises:
            kubelab.jobs.spec.JobSpecError: The spec is invalid or not allowed (names the field).
            PermissionError: Policy or quota refuses it (the message says why).
            RuntimeError: The backend failed.
        """

    @abc.abstractmethod
    def list(self, all_users: bool = False) -> list[JobStatus]:
        """The user's jobs, newest first (``all_users`` for admins)."""

    @abc.abstractmethod
    def get(self, name: str) -> JobStatus:
        """One job's status.

        Raises:
            KeyError: No such job for this user.
        """

    def wait_briefly(self, name: str, seconds: float) -> JobStatus:
        """The job's status once it ended, or after about ``seconds`` (``JobClient.wait`` loops on it).

        This default polls :meth:`get` every 0.2 s, so an end is seen within that; a backend with
        a long poll (the hub's ``?wait=``) overrides it with one request.

        Raises:
            KeyError: No such job for this user.
        """
        deadline = time.monotonic() + seconds
        while True:
            status = self.get(name)
            if status.done or time.monotonic() >= deadline:
                return status
            time.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    @abc.abstractmethod
    def logs(self, name: str, rank: int = 0, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """Log lines of one rank; with ``follow`` the iterator ends when the rank ends."""

    @abc.abstractmethod
    def cancel(self, name: str) -> None:
        """Stop the job's ranks; its record (status, logs of the failed rank, metrics) stays
        listed until :meth:`delete`.

        Raises:
            KeyError: No such job for this user.
        """

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove the job and everything it created (stopping it first if it still runs).

        Raises:
            KeyError: No such job for this user.
        """

    @abc.abstractmethod
    def metrics(self, name: str) -> dict[str, Any]:
        """Every series the job's ranks logged with :func:`kubelab.jobs.metrics.log`:
        ``{"series": [{"rank", "name", "steps", "values"}], "seq": N, "dropped": D}``, plus
        ``"message"`` saying so when the job has logged none (``series`` is then empty).

        Raises:
            KeyError: No such job for this user.
        """

    def follow_metrics(self, name: str, seq: int = 0, *, poll: float = 1.0) -> Iterator[dict[str, Any]]:
        """The job's metrics as they grow, until the job ends.

        Items are either a whole snapshot (``{"series": [...], "seq": N}``, as :meth:`metrics`)
        or the points that came after the previous item (``{"points": [[rank, name, step, value],
        ...], "seq": N}``); the last item is ``{"done": True, "seq": N}``. A reader replaces its
        series on a snapshot and appends on points.

        This default asks :meth:`metrics` at most once per ``poll`` seconds (never more often than
        once a second) and yields a snapshot whenever ``seq`` moved; a backend with a streaming
        endpoint overrides it.

        Raises:
            KeyError: No such job for this user.
        """
        poll = max(1.0, poll)
        while True:
            started = time.monotonic()
            done = self.get(name).done
            data = self.metrics(name)
            current = int(data.get("seq") or 0)
            if current > seq:
                seq = current
                yield {"series": data.get("series", []), "seq": seq}
            if done:
                yield {"done": True, "seq": seq}
                return
            time.sleep(max(0.0, poll - (time.monotonic() - started)))

    # -- sweeps (kubelab.jobs.sweeps): they run in the hub, where the quota and the trials' record are

    def sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a sweep from its JSON (a ``SweepSpec``); the answer is its ``SweepStatus`` JSON.

        Raises:
            RuntimeError: This backend runs no sweeps (only the hub's jobs service does).
        """
        raise RuntimeError(f"{type(self).__name__} runs no sweeps: sweeps run in the hub's jobs service "
                           "(JobClient('hub'), in a notebook of the hub)")

    def sweeps(self, all_users: bool = False) -> list[dict[str, Any]]:
        """Every sweep of the user (``SweepStatus`` JSON), newest first."""
        raise RuntimeError(f"{type(self).__name__} runs no sweeps")

    def get_sweep(self, name: str, wait: float = 0) -> dict[str, Any]:
        """One sweep's status (``wait``: up to that many seconds for it to end).

        Raises:
            KeyError: No such sweep.
        """
        raise RuntimeError(f"{type(self).__name__} runs no sweeps")

    def cancel_sweep(self, name: str) -> dict[str, Any]:
        """Stop the sweep's trials and remove their objects; its results stay."""
        raise RuntimeError(f"{type(self).__name__} runs no sweeps")

    def delete_sweep(self, name: str) -> dict[str, Any]:
        """Remove the sweep with everything it made."""
        raise RuntimeError(f"{type(self).__name__} runs no sweeps")
