"""What the admin page shows and the metrics export, computed from plain inputs (pure, no I/O).

:func:`build_overview` turns cached nodes and pods, the quota ledger's counts, the hub's active
servers and the jobs' statuses into one :class:`Overview`; the page renders it and
:func:`metric_samples` turns the same object into Prometheus samples, so the page and
``/hub/metrics`` can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubelab.core.availability import gpu_availability
from kubelab.core.catalogue import Catalogue
from kubelab.core.quota import Usage
from kubelab.core.records import NodeInfo, PodInfo

from .accounting import KINDS, Allocation, allocation_of, started_at


@dataclass(frozen=True)
class ClassRow:
    """One GPU class: allocatable, in use (bound, not ended pods) and free."""

    key: str
    display_name: str
    allocatable: int
    in_use: int
    free: int


@dataclass(frozen=True)
class Holder:
    """Something that holds GPUs now, and since when."""

    alloc: Allocation
    since: datetime | None


@dataclass(frozen=True)
class ServerActivity:
    """One active server as the hub's database has it.

    Attributes:
        user: Its user.
        name: The server name (``""``: default).
        last_activity: The last activity the hub recorded (what the culler reads).
        user_options: The options it was started with (the profile).
    """

    user: str
    name: str
    last_activity: datetime | None
    user_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IdleServer:
    """A GPU server idle for longer than the page's threshold, and when the culler stops it."""

    user: str
    name: str
    gpu_class: str
    gpus: int
    last_activity: datetime | None
    idle_seconds: float
    timeout_seconds: int
    cull_at: datetime | None


@dataclass(frozen=True)
class WaitingJob:
    """A job whose GPUs are not all running: queued in Kueue, or pending for a node."""

    user: str
    name: str
    phase: str
    gpus: int
    gpu_class: str | None
    queue: str | None
    message: str
    created: str | None


@dataclass(frozen=True)
class QuotaRow:
    """A user's or a group's quota and what it holds now (running, starting and queued)."""

    name: str
    gpus: int
    max_gpus: int | None
    servers: int
    max_servers: int | None
    holders: tuple[str, ...]


@dataclass
class Overview:
    """Everything on the admin page, at ``now``."""

    now: datetime
    idle_minutes: int
    classes: list[ClassRow]
    holders: list[Holder]
    idle: list[IdleServer]
    waiting: list[WaitingJob]
    users: list[QuotaRow]
    groups: list[QuotaRow]
    jobs_by_phase: dict[str, int]


def holders_of(pods: Iterable[PodInfo], nodes: Mapping[str, NodeInfo], catalogue: Catalogue,
               starts: Mapping[str, datetime]) -> list[Holder]:
    """Every GPU allocation among ``pods``, with its start (accounting's, else the pod's own)."""
    out = []
    for pod in pods:
        alloc = allocation_of(pod, nodes, catalogue)
        if alloc is not None:
            out.append(Holder(alloc, starts.get(alloc.uid) or started_at(pod.raw)))
    out.sort(key=lambda h: (h.alloc.gpu_class, h.alloc.user, h.alloc.kind, h.alloc.name, h.alloc.pod))
    return out


def idle_servers(holders: Sequence[Holder], servers: Iterable[ServerActivity], now: datetime, idle_minutes: int,
                 timeout_for: Callable[[Mapping[str, Any]], int]) -> list[IdleServer]:
    """GPU servers whose last activity is more than ``idle_minutes`` ago, most idle first.

    Args:
        timeout_for: The culler's idle timeout in seconds for a server model (its ``user_options``).
    """
    gpu_servers = {(h.alloc.user, h.alloc.name): h.alloc for h in holders if h.alloc.kind == "server"}
    out = []
    for s in servers:
        alloc = gpu_servers.get((s.user, s.name))
        if alloc is None:
            continue
        idle = (now - s.last_activity).total_seconds() if s.last_activity else float("inf")
        if idle < idle_minutes * 60:
            continue
        timeout = timeout_for({"user_options": dict(s.user_options)})
        cull_at = s.last_activity + timedelta(seconds=timeout) if s.last_activity else None
        out.append(IdleServer(s.user, s.name, alloc.gpu_class, alloc.gpus, s.last_activity, idle, timeout, cull_at))
    out.sort(key=lambda i: (-i.idle_seconds, i.user, i.name))
    return out


def waiting_jobs(statuses: Iterable[Any]) -> list[WaitingJob]:
    """Jobs that are not running yet (phase Pending or Queued), oldest first."""
    out = [WaitingJob(s.user, s.name, s.phase, s.gpus_per_worker * s.workers, s.gpu_class, s.queue,
                      s.message or next((r.message for r in s.ranks if r.message), ""), s.created)
           for s in statuses if s.phase in ("Pending", "Queued")]
    out.sort(key=lambda j: (j.created or "", j.user, j.name))
    return out


def quota_row(name: str, usage: Usage, max_gpus: int | None, max_servers: int | None) -> QuotaRow:
    """One row of the quota tables."""
    return QuotaRow(name, usage.gpus, max_gpus, usage.servers, max_servers, tuple(usage.gpu_holders))


def build_overview(
    *,
    catalogue: Catalogue,
    nodes: Mapping[str, NodeInfo],
    pods: Iterable[PodInfo],
    starts: Mapping[str, datetime],
    servers: Iterable[ServerActivity],
    jobs: Iterable[Any],
    users: Iterable[QuotaRow],
    groups: Iterable[QuotaRow],
    now: datetime,
    idle_minutes: int,
    timeout_for: Callable[[Mapping[str, Any]], int],
    phases: Sequence[str],
) -> Overview:
    """The admin page's content (module docstring).

    Args:
        starts: Pod UID → interval start, from the accounting.
        jobs: Every job's :class:`~kubelab.jobs.spec.JobStatus`.
        users: Each user's quota row; groups: each group's.
        phases: Every job phase (for zero counts).
    """
    pods = list(pods)
    availability = gpu_availability(nodes.values(), pods, catalogue.gpu_classes)
    classes = [ClassRow(a.key, a.display_name, a.allocatable, a.requested, a.free) for a in availability.values()]
    holders = holders_of(pods, nodes, catalogue, starts)
    jobs = list(jobs)
    by_phase = dict.fromkeys(phases, 0)
    for j in jobs:
        by_phase[j.phase] = by_phase.get(j.phase, 0) + 1
    return Overview(
        now=now, idle_minutes=idle_minutes, classes=classes, holders=holders,
        idle=idle_servers(holders, servers, now, idle_minutes, timeout_for), waiting=waiting_jobs(jobs),
        users=sorted(users, key=lambda r: r.name), groups=sorted(groups, key=lambda r: r.name), jobs_by_phase=by_phase,
    )


# -- metrics -------------------------------------------------------------------------------------

#: Metric name → help text, for the gauges :func:`metric_samples` computes.
GAUGES = {
    "kubelab_gpus_allocatable": "GPUs on schedulable nodes, per GPU class.",
    "kubelab_gpus_in_use": "GPUs requested by pods bound to nodes of the class (what the scheduler counts).",
    "kubelab_gpus_free": "GPUs allocatable and not in use, per GPU class.",
    "kubelab_gpus_allocated": "GPUs held by kubelab's servers and jobs, per GPU class and kind "
                              "(kind=other: pods kubelab did not start).",
    "kubelab_group_gpus": "GPUs held by each group's members (running, starting or queued), as group quotas count them.",
    "kubelab_jobs": "kubelab jobs, per phase.",
    "kubelab_user_gpus": "GPUs held by each user (only with KubelabAdmin.per_user_metrics).",
}

Sample = tuple[str, dict[str, str], float]


def metric_samples(overview: Overview, *, per_user: bool = False) -> list[Sample]:
    """``(name, labels, value)`` of every gauge, from the page's own :class:`Overview`."""
    out: list[Sample] = []
    for c in overview.classes:
        out += [("kubelab_gpus_allocatable", {"gpu_class": c.key}, c.allocatable),
                ("kubelab_gpus_in_use", {"gpu_class": c.key}, c.in_use),
                ("kubelab_gpus_free", {"gpu_class": c.key}, c.free)]
        held = {k: sum(h.alloc.gpus for h in overview.holders if h.alloc.gpu_class == c.key and h.alloc.kind == k)
                for k in KINDS}
        for kind, n in held.items():
            out.append(("kubelab_gpus_allocated", {"gpu_class": c.key, "kind": kind}, n))
        out.append(("kubelab_gpus_allocated", {"gpu_class": c.key, "kind": "other"}, max(0, c.in_use - sum(held.values()))))
    out += [("kubelab_group_gpus", {"group": g.name}, g.gpus) for g in overview.groups]
    out += [("kubelab_jobs", {"phase": p}, n) for p, n in overview.jobs_by_phase.items()]
    if per_user:
        out += [("kubelab_user_gpus", {"user": u.name}, u.gpus) for u in overview.users]
    return out
