"""The small interface every JobClient backend implements."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any

from kubelab.jobs.spec import JobSpec, JobStatus


class JobBackend(abc.ABC):
    """Where jobs run. ``JobClient`` is a thin facade over one of these."""

    @abc.abstractmethod
    def options(self) -> dict[str, Any]:
        """What this user may choose: frameworks, GPU classes and counts with availability,
        images, limits and the remaining quota (the widget renders its form from this)."""

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

    @abc.abstractmethod
    def logs(self, name: str, rank: int = 0, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """Log lines of one rank; with ``follow`` the iterator ends when the rank ends."""

    @abc.abstractmethod
    def cancel(self, name: str) -> None:
        """Stop the job and remove everything it created."""
