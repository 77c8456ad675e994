"""A regular (non-editable) install carries every module and data file of the design card's folders.

The editable install used by the tests maps folders on the fly, so a package missing from
setup.py would go unnoticed until an image is built; this builds the real wheel.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
FOLDERS = ["hub_config", "spawner", "widgets", "jobs", "devcluster"]
DATA_SUFFIXES = {".py", ".yaml", ".html", ".mjs", ".sh", ".json"}


def test_wheel_holds_every_source_and_data_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("kubelab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"kubelab/{path.relative_to(ROOT).as_posix()}"
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("*")
        if path.suffix in DATA_SUFFIXES and "node_modules" not in path.parts and "__pycache__" not in path.parts
    }
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"
