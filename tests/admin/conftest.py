"""Fixtures of the admin tests: a real PostgreSQL beside SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.admin.postgres import TempPostgres


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
