"""kubelab.jobs: distributed training jobs from the notebook.

``JobClient`` (notebook side) submits a ``JobSpec`` to a backend and reports ``JobStatus``.

Only standard-library modules are imported here: ``python -m kubelab.jobs.entrypoint`` imports
this package first and must run in any trainer image (``requests`` is imported by the hub
backend when it is used).
"""

from kubelab.jobs.client import JobClient
from kubelab.jobs.spec import JobSpec, JobSpecError, JobStatus, RankStatus

__all__ = ["JobClient", "JobSpec", "JobSpecError", "JobStatus", "RankStatus"]
