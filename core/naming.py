"""Names and labels shared by the spawner, the jobs service and the chart.

Every object kubelab creates carries ``app.kubernetes.io/managed-by=kubelab`` and
``kubelab.io/user``; quota is counted over the user label, so servers and jobs
draw on one budget.

**One identity rule.** Every Kubernetes-facing value derived from a JupyterHub user or server
name (the user and server labels, the home claim) comes from :func:`slug`, which is injective:
two distinct names never share a value, whatever characters they hold. The exact name is also
written in an annotation (:data:`ANNOTATION_USER`), which is what ownership checks compare
(:func:`owner_of`); labels exist for selectors. ``docs/security.md`` explains the scheme.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

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
#: The Secret holding a job's env values (kept out of its record and its pod specs).
COMPONENT_ENV = "job-env"
COMPONENT_RANK = "rank"
#: A job's metrics (ConfigMap ``<job id>-metrics``) and its ingest token (Secret ``<job id>-metrics-token``).
COMPONENT_METRICS = "job-metrics"
COMPONENT_METRICS_TOKEN = "job-metrics-token"
#: A hyperparameter sweep (``kubelab.jobs.sweeps``): its record ConfigMap, the Secret holding its
#: template's env values, and the label that names the sweep on each trial's parent.
COMPONENT_SWEEP = "sweep"
COMPONENT_SWEEP_ENV = "sweep-env"
LABEL_SWEEP = "kubelab.io/sweep"
#: sha256 (hex) of a job's metrics ingest token, on its parent; the token itself is only in the Secret.
ANNOTATION_METRICS_TOKEN_SHA = "kubelab.io/metrics-token-sha256"
#: The groups a pod's owner belonged to at launch (comma separated). Group quotas are counted
#: over it, so they survive a hub restart without a user→groups lookup.
ANNOTATION_GROUPS = "kubelab.io/groups"
#: The JupyterHub server name (labels cannot hold every server name).
ANNOTATION_SERVER_NAME = "kubelab.io/servername"
#: The engine that runs a job (plain, jobset, kubeflow-v1, trainer-v2), on its parent.
ANNOTATION_ENGINE = "kubelab.io/engine"
#: How a job's pods see the user's files (home, shared, configmap), on its parent.
ANNOTATION_FILES = "kubelab.io/files"
#: Where a job's outputs go and by which route (JSON ``{"dir", "route"}``), on its parent.
ANNOTATION_OUTPUTS = "kubelab.io/outputs"
#: A job's collector: on a ReadWriteOnce home, the one pod that mounts the home (on the node that
#: holds it) and moves files between it and the ranks; and the Secret of its transfer token.
COMPONENT_COLLECTOR = "job-collector"
COMPONENT_TRANSFER_TOKEN = "job-transfer-token"
#: The collector pod's hostname; with its subdomain (:func:`collector_name`) the ranks dial it.
COLLECTOR_HOSTNAME = "collector"
#: Kueue's queue label (Kueue owns the key; kubelab sets it on every job it hands to Kueue).
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: The node label the scheduler and the home pinning use to name a node.
HOSTNAME_LABEL = "kubernetes.io/hostname"
#: JupyterHub scope: submit, list, watch and cancel one's own jobs.
JOBS_SCOPE = "custom:kubelab:jobs"
#: JupyterHub scope: every user's jobs.
JOBS_ADMIN_SCOPE = "custom:kubelab:jobs-admin"
#: The hub role holding both scopes, for the admin users and groups.
JOBS_ADMIN_ROLE = "kubelab-jobs-admin"
#: JupyterHub scope: the admin page and the GPU-hour API (every user's GPUs, usage and quotas).
ADMIN_SCOPE = "custom:kubelab:admin"
#: The hub role holding :data:`ADMIN_SCOPE`, for the admin users and groups.
ADMIN_ROLE = "kubelab-admin"

#: What a safe value looks like: a DNS-1123 label (lower-case letters, digits and single hyphens
#: between them). Always applied with ``fullmatch``: ``$`` would let a trailing newline through.
_SAFE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
#: The separator before the hash of a hashed value. A safe value never holds ``--``, so a hashed
#: value (which always holds ``---``) can never equal a safe one. KubeSpawner 7 uses the same
#: marker for its slugs (``kubespawner/slugs.py``, ``strip_and_hash``).
HASH_MARKER = "---"
#: Hex digits of SHA-256 kept in a hashed value: 32 = 128 bits, so finding a second name with the
#: hash of a victim's name (a second preimage) costs about 2^128 tries. KubeSpawner keeps 8 (32
#: bits), which a laptop can match in hours; that is why kubelab does not reuse its slugs.
HASH_HEX = 32
#: Longest label value Kubernetes accepts.
MAX_LABEL = 63
#: ``kubelab.io/server`` of the default server. It holds ``--`` but not ``---`` + a hash, so no
#: named server (whose value is either safe, hence without ``--``, or hashed) can take it.
DEFAULT_SERVER_LABEL = "default--server"
#: Where an object's owner is recorded exactly, beside the lossy label: kubelab's annotation,
#: else the one KubeSpawner writes on every pod and PVC it creates (``_build_common_annotations``).
OWNER_ANNOTATIONS = (ANNOTATION_USER, "hub.jupyter.org/username")
_HOME_PREFIX = "home-"


def is_safe(value: str, max_len: int = MAX_LABEL) -> bool:
    """Whether ``value`` is kept as it is by :func:`slug`: a DNS-1123 label of at most ``max_len``
    characters without ``--``."""
    return isinstance(value, str) and 0 < len(value) <= max_len and "--" not in value and bool(_SAFE.fullmatch(value))


def _readable(value: str, max_len: int) -> str:
    """A readable, safe hint of ``value`` (lower-cased, runs of other characters as one ``-``)."""
    text = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:max_len].rstrip("-")
    return text or "x"


def slug(value: str, max_len: int = MAX_LABEL) -> str:
    """The injective Kubernetes-facing form of a JupyterHub name (user or server).

    * A safe name (:func:`is_safe`) maps to itself: ``alice`` stays ``alice``.
    * Every other name maps to ``<readable prefix>---<128-bit hash of the name>``:
      ``john.doe`` becomes ``john-doe---<32 hex>``.

    No two names share a value: two safe names differ as they are; a safe and a hashed value
    differ because only hashed values hold ``--``; two hashed values differ unless SHA-256
    collides. So ``john-doe-30f69670`` (safe, itself) and ``john.doe`` (hashed) stay apart, and the
    image of a name used as a name maps elsewhere again (``slug(slug(x))`` is hashed since
    ``slug(x)`` holds ``---``). The result is a DNS-1123 label of at most ``max_len`` characters,
    valid as a label value and as an object name. The scheme follows KubeSpawner 7's ``safe_slug``
    (``kubespawner/slugs.py``) with a hash four times as long.

    Args:
        value: Any string, including empty strings, newlines and lone surrogates.
        max_len: Longest result (at least ``len(HASH_MARKER) + HASH_HEX + 1``).
    """
    if is_safe(value, max_len):
        return value
    room = max_len - len(HASH_MARKER) - HASH_HEX
    if room < 1:
        raise ValueError(f"slug needs max_len >= {len(HASH_MARKER) + HASH_HEX + 1}, not {max_len}")
    # surrogatepass: JSON can carry lone surrogates, and every str must still hash (injectively)
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]
    return f"{_readable(value, room)}{HASH_MARKER}{digest}"


def user_label(username: str) -> str:
    """The ``kubelab.io/user`` label value for ``username`` (injective, see :func:`slug`)."""
    return slug(username)


def server_label(server_name: str) -> str:
    """The ``kubelab.io/server`` label value: :data:`DEFAULT_SERVER_LABEL` for the default server
    (``""``), else :func:`slug` of the name, so a named server called ``default`` is not it."""
    return slug(server_name) if server_name else DEFAULT_SERVER_LABEL


def home_claim_name(username: str) -> str:
    """The name of ``username``'s home PVC; it outlives every server.

    New homes get this name; :mod:`kubelab.core.home` also finds a home made under the
    previous naming (:func:`legacy_home_claim_name`).
    """
    return f"{_HOME_PREFIX}{slug(username, MAX_LABEL - len(_HOME_PREFIX))}"


def owner_of(annotations: Mapping[str, str] | None) -> str | None:
    """The exact JupyterHub user an object was made for, from its annotations (None: unrecorded)."""
    for key in OWNER_ANNOTATIONS:
        value = (annotations or {}).get(key)
        if value is not None:
            return value
    return None


def legacy_safe_name(value: str, max_len: int = MAX_LABEL) -> str:
    """The naming of kubelab 0.1 (not injective: ``john.doe`` and ``john-doe-30f69670`` shared
    ``john-doe-30f69670``). Kept only to find homes made before the upgrade; never used for new names."""
    if _LEGACY_OK.match(value) and len(value) <= max_len and "." not in value:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    cleaned = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-") or "x"
    return f"{cleaned[: max_len - 9].rstrip('-')}-{digest}"


_LEGACY_OK = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def legacy_home_claim_name(username: str) -> str | None:
    """The home PVC name kubelab 0.1 gave ``username``, when it differs from today's and is a
    valid name (the old rule let ``alice\n`` through as an invalid one); else None."""
    old = f"{_HOME_PREFIX}{legacy_safe_name(username, MAX_LABEL - len(_HOME_PREFIX))}"
    if old == home_claim_name(username) or not is_valid_name(old):
        return None
    return old


def is_valid_name(value: str) -> bool:
    """Whether ``value`` is a DNS-1123 label (the names kubelab gives objects)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_LABEL and bool(_SAFE.fullmatch(value))


# -- kubelab's own objects, and the recommended labels ------------------------------------------

#: The label kubelab recognises its own pods and PVCs by (servers, their homes, jobs). It is a
#: ``kubelab.io/`` key, which nothing else sets. ``app.kubernetes.io/managed-by`` cannot serve:
#: KubeSpawner lets ``common_labels`` override every label it writes, and z2jh's hub config sets
#: ``common_labels["app.kubernetes.io/managed-by"] = "kubespawner"``.
KUBELAB_OBJECT_LABEL = LABEL_USER
#: Kubernetes' recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
APP_NAME = "app.kubernetes.io/name"
APP_INSTANCE = "app.kubernetes.io/instance"
APP_COMPONENT = "app.kubernetes.io/component"
APP_PART_OF = "app.kubernetes.io/part-of"
#: ``app.kubernetes.io/part-of`` of everything kubelab makes.
PART_OF_VALUE = "kubelab"
# a label value: at most 63 characters, alphanumeric at both ends, ``-_.`` inside
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def is_kubelab_object(labels: Mapping[str, str] | None) -> bool:
    """Whether an object with ``labels`` is one kubelab made (it carries :data:`KUBELAB_OBJECT_LABEL`)."""
    return KUBELAB_OBJECT_LABEL in (labels or {})


def recommended_labels(*, name: str, instance: str, component: str) -> dict[str, str]:
    """The recommended ``app.kubernetes.io/`` labels of one kubelab object.

    ``part-of`` is always ``kubelab`` and ``managed-by`` :data:`MANAGED_BY_VALUE`. A value that
    is not a valid label value (too long, odd characters) is replaced by its :func:`slug`.

    Args:
        name: The application the object runs, e.g. ``jupyterhub`` for a notebook server or
            ``pytorch`` for a training job.
        instance: This instance of it, unique among its kind: the server's pod name, the job's id.
        component: Its role, e.g. ``singleuser-server``, ``job``, ``rank``.

    Returns:
        ``{app.kubernetes.io/name, instance, component, part-of, managed-by}``.
    """
    def value(text: str) -> str:
        return text if len(text) <= MAX_LABEL and _LABEL_VALUE.fullmatch(text) else slug(text)

    return {
        APP_NAME: value(name),
        APP_INSTANCE: value(instance),
        APP_COMPONENT: value(component),
        APP_PART_OF: PART_OF_VALUE,
        MANAGED_BY: MANAGED_BY_VALUE,
    }


def metrics_configmap_name(job_id: str) -> str:
    """The ConfigMap holding a job's metrics (owned by the job's parent)."""
    return f"{job_id}-metrics"


def metrics_secret_name(job_id: str) -> str:
    """The Secret holding a job's metrics ingest token (owned by the job's parent)."""
    return f"{job_id}-metrics-token"


def sweep_record_name(sweep_id: str) -> str:
    """The ConfigMap recording a sweep (``sweep_id`` is ``job_id(user, sweep name)``): its spec, its
    trials' results, and the owner of every trial's parent."""
    return f"{sweep_id}-sweep"


def collector_name(job_id: str) -> str:
    """The collector of a job (its batch Job, its headless Service and its pod's subdomain)."""
    return f"{job_id}-collector"


def transfer_secret_name(job_id: str) -> str:
    """The Secret holding a job's transfer token (read by its ranks and its collector)."""
    return f"{job_id}-transfer-token"
