"""Fixtures for the notebook side: a local-process JobClient whose jobs log under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelab.jobs import JobClient

HERE = Path(__file__).parent



@pytest.fixture
def local_client(tmp_path: Path) -> Iterator[JobClient]:
    """A JobClient on the local backend; every job it started is cancelled afterwards."""
    client = JobClient("local", root=tmp_path / "jobs", workdir=HERE, rendezvous_timeout=30)
    yield client
    for job in client.list():
        client.cancel(job.name)
