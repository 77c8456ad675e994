"""GPU-hour accounting, the pure part: what an allocation is, when it began and ended, and totals.

An *allocation* is one pod that holds GPUs: labelled ``kubelab.io/user``, bound to a node (the
scheduler has counted its GPUs there) and not yet Succeeded/Failed. A terminating pod still holds
its GPUs, exactly as :mod:`kubelab.core.availability` counts them. Each allocation becomes one
*interval* (server or job, user, group, GPU class, GPU count, start, end) in the hub's database
(:mod:`kubelab.admin.store`); :mod:`kubelab.admin.accountant` opens and closes them as the cluster
changes.

Times are aware UTC :class:`~datetime.datetime`. Totals are GPU-seconds (``gpus × seconds``),
cut at the edges of the asked window and of calendar months (UTC), so that the month totals of
an interval that runs over midnight on the 1st add up to the interval.

**One group per interval.** A pod carries every group its owner had at launch
(:data:`~kubelab.core.naming.ANNOTATION_GROUPS`), but the totals per group must add up to the
total, so each interval is charged to one group: the first (in name order) of the owner's groups
that has a group quota in the catalogue, else the first of their groups, else :data:`NO_GROUP`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubelab.core.availability import node_matches
from kubelab.core.catalogue import Catalogue
from kubelab.core.naming import ANNOTATION_USER, LABEL_JOB, LABEL_SERVER
from kubelab.core.records import NodeInfo, PodInfo

#: What holds GPUs: a notebook server or a job's rank.
KINDS = ("server", "job")
#: The group an interval is charged to when its owner had none.
NO_GROUP = "-"
#: How totals may be broken down (``?by=`` of the usage API).
BREAKDOWNS = ("user", "group", "class", "kind", "month")
#: Columns of the CSV export, one row per month, user, group, class and kind.
CSV_COLUMNS = ("month", "user", "group", "gpu_class", "kind", "gpu_seconds", "gpu_hours")
#: Earliest and latest month the usage API accepts (a bound on the work a request can ask for).
FIRST_MONTH, LAST_MONTH = (2000, 1), (2199, 12)

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


class UsageQueryError(ValueError):
    """A usage query parameter is not allowed (the message names the field and what is allowed)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Allocation:
    """One pod that holds GPUs now.

    Attributes:
        uid: The pod's UID (an interval per pod UID: a pod recreated under the same name is new).
        namespace: Its namespace.
        pod: Its name.
        kind: ``server`` or ``job``.
        name: The server name (``""``: the default server) or the job name.
        user: The JupyterHub user name.
        group: The group it is charged to (module docstring).
        gpu_class: The catalogue's GPU class key of its node.
        gpus: GPUs it requests.
    """

    uid: str
    namespace: str
    pod: str
    kind: str
    name: str
    user: str
    group: str
    gpu_class: str
    gpus: int


@dataclass(frozen=True)
class Interval(Allocation):
    """One allocation over time, as the database keeps it.

    Attributes:
        start: When its GPUs were taken.
        end: When they were given back; None while it runs.
        last_seen: The last time the hub saw it hold them (the end if it ended while the hub was down).
        id: The row's id (0 before it is stored).
    """

    start: datetime
    end: datetime | None = None
    last_seen: datetime | None = None
    id: int = 0

    def gpu_seconds(self, now: datetime, since: datetime | None = None, until: datetime | None = None) -> float:
        """GPU-seconds of this interval within ``[since, until)`` (open intervals run to ``now``)."""
        lo = max(self.start, since) if since else self.start
        hi = self.end or now
        if until is not None:
            hi = min(hi, until)
        return max(0.0, (hi - lo).total_seconds()) * self.gpus


def accounting_group(groups: Iterable[str], catalogue: Catalogue) -> str:
    """The one group an allocation of an owner in ``groups`` is charged to (module docstring)."""
    ordered = sorted(set(groups))
    with_quota = [g for g in ordered if g in catalogue.group_limits]
    return (with_quota or ordered or [NO_GROUP])[0]


def gpu_class_of(pod: PodInfo, nodes: Mapping[str, NodeInfo], catalogue: Catalogue) -> tuple[str, int] | None:
    """``(class key, GPUs)`` a bound pod holds, from its node's labels; None when it holds none."""
    node = nodes.get(pod.node)
    for key, cls in catalogue.gpu_classes.items():
        n = pod.requests.get(cls.resource, 0)
        if n and (node is None or node_matches(node, cls)):
            return key, n
    return None


def allocation_of(pod: PodInfo, nodes: Mapping[str, NodeInfo], catalogue: Catalogue) -> Allocation | None:
    """The allocation ``pod`` is now, or None (not kubelab's, not bound, ended, or no GPU)."""
    if not pod.user or not pod.node or not pod.active or not pod.requests:
        return None
    if LABEL_JOB in pod.labels:
        kind, name = "job", pod.labels[LABEL_JOB]
    elif LABEL_SERVER in pod.labels:
        kind, name = "server", pod.server_name
    else:
        return None
    held = gpu_class_of(pod, nodes, catalogue)
    if held is None:
        return None
    meta = (pod.raw or {}).get("metadata") or {}
    user = (meta.get("annotations") or {}).get(ANNOTATION_USER) or pod.user
    return Allocation(
        uid=meta.get("uid") or pod.key, namespace=pod.namespace, pod=pod.name, kind=kind, name=name,
        user=user, group=accounting_group(pod.groups, catalogue), gpu_class=held[0], gpus=held[1],
    )


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from the API (``2026-05-01T10:00:00Z``) as aware UTC; None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def started_at(raw: Mapping[str, Any] | None) -> datetime | None:
    """When a pod took its GPUs, from its own record: its scheduling, else its start, else its creation.

    Used for pods that were already running when the hub first saw them (it was down); pods seen
    being bound are timed by the hub's clock instead, which is finer than the API's seconds.
    """
    raw = raw or {}
    status = raw.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
            when = parse_time(cond.get("lastTransitionTime"))
            if when:
                return when
    return parse_time(status.get("startTime")) or parse_time((raw.get("metadata") or {}).get("creationTimestamp"))


def finished_at(raw: Mapping[str, Any] | None) -> datetime | None:
    """When a pod that reached Succeeded/Failed gave its GPUs back: its containers' last ``finishedAt``."""
    status = (raw or {}).get("status") or {}
    ends = [parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for cs in status.get("containerStatuses") or []]
    known = [e for e in ends if e is not None]
    return max(known) if known else None


def recovered_end(raw: Mapping[str, Any] | None, last_seen: datetime | None, now: datetime) -> datetime:
    """The best known end of an allocation that ended while nobody watched.

    The pod's own ``finishedAt`` when its record still exists, else the last time the hub saw the
    allocation (an interval never ends before it was last seen, nor in the future).
    """
    end = finished_at(raw)
    if end is None:
        return last_seen or now
    if last_seen is not None and end < last_seen:
        return last_seen
    return min(end, now)


# -- totals --------------------------------------------------------------------------------------


def parse_month(value: str, field: str) -> datetime:
    """The first instant of month ``YYYY-MM`` (UTC), parsed strictly.

    Raises:
        UsageQueryError: Not ``YYYY-MM``, or outside 2000-01..2199-12.
    """
    m = _MONTH.fullmatch(value)
    if not m or not 1 <= int(m.group(2)) <= 12 or not FIRST_MONTH <= (int(m.group(1)), int(m.group(2))) <= LAST_MONTH:
        raise UsageQueryError(field, f"{value!r} is not allowed; allowed: a month YYYY-MM from 2000-01 to 2199-12")
    return datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    """The first instant of the month after ``start``'s."""
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def month_label(when: datetime) -> str:
    """``YYYY-MM`` of ``when`` (UTC)."""
    return f"{when.year:04d}-{when.month:02d}"


def months(since: datetime, until: datetime) -> list[tuple[str, datetime, datetime]]:
    """``(label, start, end)`` of every calendar month overlapping ``[since, until)``, cut to it."""
    out = []
    lo = datetime(since.year, since.month, 1, tzinfo=UTC)
    while lo < until:
        hi = next_month(lo)
        out.append((month_label(lo), max(lo, since), min(hi, until)))
        lo = hi
    return out


def usage_rows(intervals: Iterable[Interval], now: datetime, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """GPU-seconds per month, user, group, class and kind within ``[since, until)``, sorted.

    Every other breakdown (:func:`totals`) and the CSV export are sums of these rows.
    """
    sums: dict[tuple[str, str, str, str, str], float] = {}
    windows = months(since, min(until, now + timedelta(seconds=1)))
    for iv in intervals:
        for label, lo, hi in windows:
            secs = iv.gpu_seconds(now, lo, hi)
            if secs > 0:
                key = (label, iv.user, iv.group, iv.gpu_class, iv.kind)
                sums[key] = sums.get(key, 0.0) + secs
    return [{"month": k[0], "user": k[1], "group": k[2], "gpu_class": k[3], "kind": k[4], "gpu_seconds": v}
            for k, v in sorted(sums.items())]


def totals(rows: Iterable[Mapping[str, Any]], by: str) -> dict[str, float]:
    """GPU-seconds per ``by`` (one of :data:`BREAKDOWNS`) from :func:`usage_rows`.

    Raises:
        UsageQueryError: ``by`` is not one of :data:`BREAKDOWNS`.
    """
    if by not in BREAKDOWNS:
        raise UsageQueryError("by", f"{by!r} is not allowed; allowed: {', '.join(BREAKDOWNS)}")
    column = "gpu_class" if by == "class" else by
    out: dict[str, float] = {}
    for row in rows:
        out[row[column]] = out.get(row[column], 0.0) + row["gpu_seconds"]
    return dict(sorted(out.items()))


def hours(gpu_seconds: float) -> float:
    """GPU-hours, rounded to 1/1000 h (3.6 s) for display and export."""
    return round(gpu_seconds / 3600, 3)


def csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """The CSV export of :func:`usage_rows` (header :data:`CSV_COLUMNS`; seconds to 0.1 s)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r["month"], r["user"], r["group"], r["gpu_class"], r["kind"],
                         f"{r['gpu_seconds']:.1f}", f"{hours(r['gpu_seconds']):.3f}"])
    return buf.getvalue()
