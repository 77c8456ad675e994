"""tests/data holds the upstream files byte for byte, and its README accounts for each of them.

A clone of the repository alone must pass its tests, so the upstream CRDs, runtimes and schemas
live in tests/data; this checks that none was edited, dropped or added without a row saying where
it came from.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.paths import DATA, PROVENANCE

ROW = re.compile(r"^\| (?P<file>\S+) \| (?P<tag>v?[\d.]+) \| (?P<url>https://\S+) \| (?P<sha>[0-9a-f]{64}) \|$", re.M)


def _rows() -> dict[str, re.Match[str]]:
    return {m["file"]: m for m in ROW.finditer(PROVENANCE.read_text())}


def test_every_data_file_has_a_row_and_every_row_a_file() -> None:
    on_disk = {str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p != PROVENANCE}
    assert on_disk == set(_rows())


@pytest.mark.parametrize("name", sorted(_rows()))
def test_file_is_the_upstream_one(name: str) -> None:
    row = _rows()[name]
    assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == row["sha"]
    # The URL names the same tag and file as the row.
    assert f"/{row['tag']}/" in row["url"]
    assert row["url"].endswith("/" + name.rsplit("/", 1)[-1]) or name.endswith("z2jh-values.schema.yaml")
