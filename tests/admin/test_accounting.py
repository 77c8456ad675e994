"""GPU accounting, the pure part: allocations, start and end times, totals, months and the CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from kubelab.admin.accounting import (
    CSV_COLUMNS,
    Interval,
    UsageQueryError,
    accounting_group,
    allocation_of,
    csv_text,
    finished_at,
    months,
    parse_month,
    recovered_end,
    started_at,
    totals,
    usage_rows,
)
from kubelab.core.records import node_info, pod_info
from tests.admin.pods import catalogue, node, pod

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def interval(user: str, group: str, cls: str, gpus: int, start: datetime, end: datetime | None, kind: str = "server",
             ) -> Interval:
    return Interval(uid=f"{user}-{start.isoformat()}", namespace="ns", pod="p", kind=kind, name="", user=user,
                    group=group, gpu_class=cls, gpus=gpus, start=start, end=end, last_seen=start)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (pod("s"), ("server", "", "alice", "gpu-users", "a100", 1)),
        (pod("s", server="big", gpus=2), ("server", "big", "alice", "gpu-users", "a100", 2)),
        (pod("r0", job="ddp", groups="gpu-users,lab-b"), ("job", "ddp", "alice", "lab-b", "a100", 1)),
        (pod("v", node_name="gpu-v"), ("server", "", "alice", "gpu-users", "v100", 1)),
        (pod("s", phase="Succeeded"), None),
        (pod("s", node_name=""), None),
        (pod("s", gpus=0), None),
    ],
    ids=["default-server", "named-server", "job-rank-charged-to-quota-group", "class-from-node", "ended", "unbound",
         "no-gpu"],
)
def test_what_a_pod_allocates(raw: dict, expected: tuple | None) -> None:
    nodes = {n["metadata"]["name"]: node_info(n) for n in (node("gpu-0"), node("gpu-v", "Tesla-V100"))}
    alloc = allocation_of(pod_info(raw), nodes, catalogue())
    got = None if alloc is None else (alloc.kind, alloc.name, alloc.user, alloc.group, alloc.gpu_class, alloc.gpus)
    assert got == expected


@pytest.mark.parametrize(
    ("groups", "group"),
    [(["zeta", "gpu-users"], "gpu-users"), (["zeta", "lab-b", "alpha"], "lab-b"), ([], "-")],
    ids=["first-by-name", "quota-group-first", "none"],
)
def test_each_interval_is_charged_to_one_group(groups: list[str], group: str) -> None:
    assert accounting_group(groups, catalogue()) == group


def test_start_and_end_times_come_from_the_pods_own_record() -> None:
    raw = pod("s", scheduled="2026-05-01T10:00:00Z", finished="2026-05-01T10:30:05Z", phase="Succeeded")
    assert started_at(raw) == T0
    assert finished_at(raw) == T0 + timedelta(minutes=30, seconds=5)
    assert started_at({"metadata": {"creationTimestamp": "2026-05-01T09:00:00Z"}}) == T0 - timedelta(hours=1)


@pytest.mark.parametrize(
    ("finished", "last_seen", "end"),
    [
        ("2026-05-01T10:30:00Z", T0 + timedelta(minutes=20), T0 + timedelta(minutes=30)),
        (None, T0 + timedelta(minutes=20), T0 + timedelta(minutes=20)),
        ("2026-05-01T10:10:00Z", T0 + timedelta(minutes=20), T0 + timedelta(minutes=20)),
        ("2026-05-01T23:00:00Z", None, T0 + timedelta(hours=2)),
    ],
    ids=["finishedAt", "last-seen-when-the-pod-is-gone", "never-before-last-seen", "never-in-the-future"],
)
def test_an_end_nobody_saw_is_the_best_known_time(finished: str | None, last_seen: datetime | None,
                                                  end: datetime) -> None:
    raw = pod("s", phase="Succeeded", finished=finished) if finished else None
    assert recovered_end(raw, last_seen, now=T0 + timedelta(hours=2)) == end


def test_an_interval_over_a_month_boundary_is_split_and_adds_up() -> None:
    start = datetime(2026, 4, 30, 23, 0, tzinfo=UTC)
    iv = interval("alice", "gpu-users", "a100", 2, start, start + timedelta(hours=3))
    rows = usage_rows([iv], now=start + timedelta(days=1), since=parse_month("2026-04", "from"),
                      until=parse_month("2026-06", "to"))
    assert [(r["month"], r["gpu_seconds"]) for r in rows] == [("2026-04", 7200.0), ("2026-05", 14400.0)]
    assert totals(rows, "user") == {"alice": 21600.0}


def test_totals_per_user_group_class_and_month_all_add_up_to_the_total() -> None:
    now = T0 + timedelta(hours=10)
    ivs = [interval("alice", "gpu-users", "a100", 1, T0, T0 + timedelta(hours=2)),
           interval("bob", "lab-b", "a100", 2, T0, T0 + timedelta(hours=1), kind="job"),
           interval("carol", "lab-b", "v100", 1, T0 + timedelta(hours=9), None)]  # still running: up to now
    rows = usage_rows(ivs, now, parse_month("2026-05", "from"), parse_month("2026-06", "to"))
    total = sum(r["gpu_seconds"] for r in rows)
    assert total == (2 + 2 + 1) * 3600
    for by in ("user", "group", "class", "kind", "month"):
        assert sum(totals(rows, by).values()) == total, by
    assert totals(rows, "group") == {"gpu-users": 7200.0, "lab-b": 10800.0}
    assert totals(rows, "class") == {"a100": 14400.0, "v100": 3600.0}


def test_the_csv_parses_and_holds_every_row() -> None:
    ivs = [interval("alice", "gpu-users", "a100", 1, T0, T0 + timedelta(minutes=90)),
           interval("o'neil, jr", "-", "a100", 1, T0, T0 + timedelta(minutes=30))]
    rows = usage_rows(ivs, T0 + timedelta(hours=3), parse_month("2026-05", "from"), parse_month("2026-06", "to"))
    parsed = list(csv.DictReader(io.StringIO(csv_text(rows))))
    assert tuple(parsed[0].keys()) == CSV_COLUMNS
    assert [(r["user"], float(r["gpu_seconds"]), float(r["gpu_hours"])) for r in parsed] == [
        ("alice", 5400.0, 1.5), ("o'neil, jr", 1800.0, 0.5)]


@pytest.mark.parametrize(
    ("value", "field"),
    [("2026-13", "from"), ("2026-5", "from"), ("1999-12", "to"), (" 2026-05", "from"), ("2026-05\n", "to"),
     ("२०२६-०५", "from")],
    ids=["month-13", "one-digit", "too-early", "blank", "newline", "other-digits"],
)
def test_bad_months_name_the_field(value: str, field: str) -> None:
    with pytest.raises(UsageQueryError, match=f"^{field}: .* allowed: a month YYYY-MM"):
        parse_month(value, field)


def test_an_unknown_breakdown_names_the_allowed_ones() -> None:
    with pytest.raises(UsageQueryError, match="by: 'pod' is not allowed; allowed: user, group, class, kind, month"):
        totals([], "pod")


def test_months_cut_to_the_window() -> None:
    got = months(datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    assert [(m, lo.day, hi.month, hi.day) for m, lo, hi in got] == [("2026-01", 15, 2, 1), ("2026-02", 1, 3, 1),
                                                                  ("2026-03", 1, 3, 2)]
