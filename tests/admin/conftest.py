"""Fixtures of the admin tests: a real PostgreSQL beside SQLite."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.postgres import TempPostgres

# the spawner tests' hub helpers (labhub, and the harness it imports) are shared with these tests
TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS, TESTS / "spawner"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a throw-away PostgreSQL cluster started for this test session."""
    pg = TempPostgres().start()
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database URL, once SQLite (a file of the test's own) and once the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    return request.getfixturevalue("postgres_url")
