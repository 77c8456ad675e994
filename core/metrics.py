"""The Prometheus counters the spawner and the jobs service increment, in the hub's registry.

JupyterHub serves ``prometheus_client``'s default ``REGISTRY`` on ``/hub/metrics``
(:mod:`jupyterhub.metrics` registers its own metrics there), so counters made here appear beside
JupyterHub's with no second endpoint. They live in ``core`` because the parts that count them (the
spawner, the jobs handlers) sit above it; the gauges computed from the cluster cache at scrape
time, and the cull counter, are :mod:`kubelab.admin.metrics`'s.

Every label value is from a closed set (no user names), and each counter is created for every
value up front, so dashboards and alerts see a zero instead of a missing series.
"""

from __future__ import annotations

from prometheus_client import Counter

from kubelab.core.quota import REFUSAL_REASONS, QuotaExceeded

#: Prefix of every kubelab metric name.
PREFIX = "kubelab"
#: What a refused start was: a notebook server or a job.
REFUSAL_SOURCES = ("server", "job")
#: Why the spawner ended a spawn early (fail fast) instead of waiting for its start timeout.
EARLY_END_REASONS = ("unschedulable", "quota", "resourcequota", "home_busy")

QUOTA_REFUSALS = Counter(
    "quota_refusals",
    "Starts refused by a kubelab quota, by what was started and which limit refused it "
    "(status 429: full now; 403: the request alone exceeds the limit).",
    ["source", "reason", "status"],
    namespace=PREFIX,
)
SPAWNS_ENDED_EARLY = Counter(
    "spawns_ended_early",
    "Spawns the spawner ended at once with a reason instead of after the start timeout.",
    ["reason"],
    namespace=PREFIX,
)

for _source in REFUSAL_SOURCES:
    for _reason in REFUSAL_REASONS:
        for _status in ("403", "429"):
            QUOTA_REFUSALS.labels(source=_source, reason=_reason, status=_status)
for _reason in EARLY_END_REASONS:
    SPAWNS_ENDED_EARLY.labels(reason=_reason)


def count_quota_refusal(source: str, error: QuotaExceeded) -> None:
    """Count one quota refusal of a ``source`` (``server``/``job``) start."""
    QUOTA_REFUSALS.labels(source=source, reason=error.reason, status=str(error.status)).inc()


def count_early_end(reason: str) -> None:
    """Count one spawn ended early, for one of :data:`EARLY_END_REASONS`."""
    SPAWNS_ENDED_EARLY.labels(reason=reason).inc()
