#!/usr/bin/env python3
"""Freeze each image's ``requirements.in`` into ``requirements.txt``, for the image's Python and platform.

The resolution is pip's own (``pip install --dry-run --report``), done for CPython 3.12 on
manylinux x86_64 with binary wheels only, i.e. for what the Dockerfile installs, not for the
machine running this script. pip runs ``--isolated`` so that local indexes and constraints of
the build machine cannot leak into the pins; only PyPI is used.

Usage::

    python images/freeze.py               # every image
    python images/freeze.py hub trainer   # some
    python images/freeze.py --check       # exit 1 if a requirements.txt does not pin what its .in asks
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGES_DIR = Path(__file__).resolve().parent
IMAGES = ("hub", "notebook-cpu", "notebook-gpu", "trainer")
PYTHON_VERSION = "3.12"
# manylinux tags glibc 2.17 to 2.39 cover bookworm (2.36) and Ubuntu 24.04 (2.39) bases.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 40)] + ["manylinux2014_x86_64", "linux_x86_64"]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HEADER = """\
# Frozen from requirements.in by `python images/freeze.py {image}` for CPython {python}
# on manylinux x86_64 (binary wheels only). Do not edit by hand: change requirements.in and
# re-run. Installed with `pip install --no-deps -r requirements.txt`, so this list is complete.
"""


def _requirement_name(line: str) -> str | None:
    """The normalized project name a requirements.in line asks for (None for comments/blank)."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return _normalize(match.group(1)) if match else None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(requirements_in: Path) -> list[tuple[str, str]]:
    """Resolve ``requirements_in`` with pip for the image platform.

    Returns:
        Sorted ``(name, version)`` pairs of everything pip would install.

    Raises:
        subprocess.CalledProcessError: pip could not resolve the requirements.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
            "--report", str(report), "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--only-binary=:all:", "-r", str(requirements_in),
        ]
        if Path(CA_BUNDLE).exists():
            command += ["--cert", CA_BUNDLE]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        subprocess.run(command, check=True)
        installed = json.loads(report.read_text())["install"]
    return sorted((item["metadata"]["name"], item["metadata"]["version"]) for item in installed)


def frozen_text(image: str, pins: list[tuple[str, str]]) -> str:
    lines = [HEADER.format(image=image, python=PYTHON_VERSION)]
    lines += [f"{_normalize(name)}=={version}\n" for name, version in sorted(pins, key=lambda p: _normalize(p[0]))]
    return "".join(lines)


def check(image: str) -> list[str]:
    """Problems with an image's frozen file: a requirement of the .in not pinned, or a line not pinned."""
    folder = IMAGES_DIR / image
    wanted = {n for n in map(_requirement_name, (folder / "requirements.in").read_text().splitlines()) if n}
    pinned: dict[str, str] = {}
    problems = []
    for line in (folder / "requirements.txt").read_text().splitlines():
        bare = line.split("#", 1)[0].strip()
        if not bare:
            continue
        match = re.fullmatch(r"([a-z0-9][a-z0-9-]*)==([A-Za-z0-9.+!-]+)", bare)
        if not match:
            problems.append(f"{image}/requirements.txt: {bare!r} is not pinned as name==version")
            continue
        pinned[match.group(1)] = match.group(2)
    problems += [f"{image}/requirements.txt: {name} from requirements.in is not pinned" for name in sorted(wanted - set(pinned))]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", help=f"images to freeze, of {', '.join(IMAGES)} (default: all)")
    parser.add_argument("--check", action="store_true", help="only check the frozen files")
    args = parser.parse_args(argv)
    images = args.images or list(IMAGES)
    unknown = sorted(set(images) - set(IMAGES))
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(IMAGES)}")
    if args.check:
        problems = [p for image in images for p in check(image)]
        print("\n".join(problems) or "all frozen requirements pin their requirements.in")
        return 1 if problems else 0
    for image in images:
        pins = resolve(IMAGES_DIR / image / "requirements.in")
        (IMAGES_DIR / image / "requirements.txt").write_text(frozen_text(image, pins))
        print(f"{image}: {len(pins)} packages pinned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
