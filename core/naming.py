"""Names and labels shared by the spawner, the jobs service and the chart.

Every object kubelab creates carries ``app.kubernetes.io/managed-by=kubelab`` and
``kubelab.io/user``; quota is counted over the user label, so servers and jobs
draw on one budget.
"""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kubelab"
LABEL_USER = "kubelab.io/user"
LABEL_PROFILE = "kubelab.io/profile"
LABEL_SERVER = "kubelab.io/server"
LABEL_JOB = "kubelab.io/job"
LABEL_RANK = "kubelab.io/rank"
ANNOTATION_USER = "kubelab.io/username"
#: Which kind of kubelab object this is (a job's parent record, its files, a rank).
LABEL_COMPONENT = "kubelab.io/component"
COMPONENT_PARENT = "job"
COMPONENT_FILES = "job-files"
COMPONENT_RANK = "rank"
#: The groups a pod's owner belonged to at launch (comma separated). Group quotas are counted
#: over it, so they survive a hub restart without a user→groups lookup.
ANNOTATION_GROUPS = "kubelab.io/groups"
#: The JupyterHub server name (labels cannot hold every server name).
ANNOTATION_SERVER_NAME = "kubelab.io/servername"
#: The engine that runs a job (plain, jobset, kubeflow-v1, trainer-v2), on its parent.
ANNOTATION_ENGINE = "kubelab.io/engine"
#: How a job's pods see the user's files (home, shared, configmap), on its parent.
ANNOTATION_FILES = "kubelab.io/files"
#: Kueue's queue label (Kueue owns the key; kubelab sets it on every job it hands to Kueue).
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: The node label the scheduler and the home pinning use to name a node.
HOSTNAME_LABEL = "kubernetes.io/hostname"
#: Marks pods the devcluster's process node reports Running without running them (benchmarks).
SIMULATE_ANNOTATION = "kubelab.io/simulate"

_LABEL_OK = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def safe_name(value: str, max_len: int = 63) -> str:
    """Turn ``value`` into a DNS-1123 label, stable and collision-resistant.

    Names that are already valid and short enough are kept as they are, so
    ``alice`` stays ``alice``. Others are lower-cased, invalid characters become
    ``-``, and a short hash of the original is appended so that ``Alice`` and
    ``alice`` never share a PVC.
    """
    if _LABEL_OK.match(value) and len(value) <= max_len and "." not in value:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-") or "x"
    return f"{cleaned[: max_len - 9].rstrip('-')}-{digest}"


def user_label(username: str) -> str:
    """The ``kubelab.io/user`` label value for ``username``."""
    return safe_name(username)


def home_claim_name(username: str) -> str:
    """The name of ``username``'s home PVC; it outlives every server."""
    return f"home-{safe_name(username, 58)}"
