"""Fixtures for the chart tests: the chart rendered once per values set, through real Helm."""

from __future__ import annotations

import pytest
from kubelab_chart import FULL_VALUES, Manifest, load_values, render

# Values sets every rendering test runs over: the chart's defaults and the full example
# (three GPU classes, Kueue on, a separate jobs namespace, every engine).
VALUE_SETS = {
    "default": None,
    "full": FULL_VALUES,
}


@pytest.fixture(scope="session", params=sorted(VALUE_SETS), ids=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    """``(name, objects)`` of the chart rendered with one values set."""
    path = VALUE_SETS[request.param]
    return request.param, render(load_values(path) if path else None)


@pytest.fixture(scope="session")
def full_objects() -> list[Manifest]:
    """The chart rendered with ``helm/examples/full-values.yaml``."""
    return render(load_values(FULL_VALUES))


@pytest.fixture(scope="session")
def default_objects() -> list[Manifest]:
    """The chart rendered with its defaults only."""
    return render()
