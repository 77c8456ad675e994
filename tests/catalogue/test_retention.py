"""``jobs.retention``: a duration parsed strictly, and when an ended job is due (pure)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from kubelab.core import catalogue as cat
from kubelab.core.duration import DurationError, format_duration, parse_duration
from kubelab.jobs.reconciler import retention_left

EXAMPLE = yaml.safe_load(cat.EXAMPLE_PATH.read_text())


def with_retention(value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    doc.setdefault("jobs", {})["retention"] = value
    return doc


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("3650d", 3650 * 86400), ("1s", 1)],
    ids=["seconds", "minutes", "hours", "days", "the-maximum", "the-minimum"],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("7", r"'7' is not a duration; a whole number and one unit s, m, h or d"),
        ("7 d", r"'7 d' is not a duration"),
        ("1.5h", r"'1.5h' is not a duration"),
        ("-1d", r"'-1d' is not a duration"),
        ("1d12h", r"'1d12h' is not a duration"),
        ("7D", r"'7D' is not a duration"),
        ("7d\n", r"'7d\\n' is not a duration"),
        ("\u0667d", r"is not a duration"),  # an Arabic-Indic seven: ASCII digits only
        ("0s", r"'0s' is not allowed; a duration > 0 and at most 3650d"),
        ("3651d", r"'3651d' is not allowed; a duration > 0 and at most 3650d"),
        ("9999999999d", r"is not a duration"),
        (7, r"7 is not a duration"),
        (True, r"True is not a duration"),
    ],
    ids=["no-unit", "space", "fraction", "sign", "two-units", "upper-case", "newline", "non-ascii-digit", "zero",
         "too-long", "too-many-digits", "integer", "boolean"],
)
def test_bad_durations(value: Any, error: str) -> None:
    with pytest.raises(DurationError, match=error):
        parse_duration(value)


def test_catalogue_default_keeps_jobs_and_a_retention_is_read() -> None:
    assert cat.parse_catalogue(copy.deepcopy(EXAMPLE), "lab.yaml").jobs.retention_seconds is None
    assert cat.parse_catalogue(with_retention(None), "lab.yaml").jobs.retention_seconds is None
    assert cat.parse_catalogue(with_retention("7d"), "lab.yaml").jobs.retention_seconds == 604800


@pytest.mark.parametrize(
    ("value", "error"),
    [("7", r"jobs\.retention: '7' is not a duration; a whole number and one unit s, m, h or d"),
     ("0d", r"jobs\.retention: '0d' is not allowed; a duration > 0 and at most 3650d"),
     (7, r"jobs\.retention: 7 has the wrong type; expected \['string', 'null'\]")],
    ids=["no-unit", "zero", "not-a-string"],
)
def test_catalogue_refuses_a_bad_retention_naming_the_path(value: Any, error: str) -> None:
    with pytest.raises(cat.CatalogueError, match=r"^lab\.yaml: " + error):
        cat.parse_catalogue(with_retention(value), "lab.yaml")


AT = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("finished", "retention", "left"),
    [
        ("2026-12-02T12:00:00Z", 60, 61.0),  # the stamp has whole seconds: one more for the part lost
        ("2026-12-02T11:59:00Z", 60, 1.0),
        ("2026-12-02T11:58:00Z", 60, -59.0),
        ("2026-12-01T12:00:00Z", 7 * 86400, 6 * 86400 + 1.0),
        ("yesterday", 60, None),
        (None, 60, None),
    ],
    ids=["just-ended", "almost-due", "due", "days-left", "unreadable", "missing"],
)
def test_retention_left(finished: Any, retention: int, left: float | None) -> None:
    assert retention_left(finished, AT, retention) == left
