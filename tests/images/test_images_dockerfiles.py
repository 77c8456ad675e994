"""The Dockerfiles lint clean, pin every apt and pip package, and agree with the frozen requirements.

No container engine exists here, so the images are not built in CI; what can be checked
without one is checked: hadolint (with the pinning rules DL3008/DL3013 on), that each
requirements.txt pins the closure of its requirements.in, that every package is commented,
that every Dockerfile copies all of kubelab's folders, and that images/build.sh says clearly
when no engine is available.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "images"
IMAGES = ["hub", "notebook-cpu", "notebook-gpu", "trainer"]
HADOLINT = str(Path(sys.executable).with_name("hadolint"))
TORCH = "2.13.0"


def _freeze() -> Any:
    spec = importlib.util.spec_from_file_location("images_freeze", IMAGES_DIR / "freeze.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """hadolint with every rule on and any finding, even style, failing."""
    return subprocess.run([HADOLINT, "--no-color", "--failure-threshold", "style", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_passes(image: str) -> None:
    result = hadolint(IMAGES_DIR / image / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*", "DL3008"),
        ("RUN pip install --no-cache-dir requests", "DL3013"),
        ("RUN apt-get update && apt-get install -y curl=7.88.1-10+deb12u15 && rm -rf /var/lib/apt/lists/*", "DL3015"),
    ],
    ids=["apt-unpinned", "pip-unpinned", "apt-recommends"],
)
def test_hadolint_rejects_unpinned_packages(tmp_path: Path, body: str, rule: str) -> None:
    """The pinning rules are on, so an unpinned package would fail the test above."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM python:3.12.12-slim-bookworm\n{body}\nUSER 1000\n")
    result = hadolint(dockerfile)
    assert result.returncode != 0
    assert re.search(rule, result.stdout), result.stdout


def _apt_packages(dockerfile: str) -> list[str]:
    """Every `pkg=version` or bare package of every apt-get install in a Dockerfile."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    packages: list[str] = []
    for command in re.findall(r"apt-get install ([^&\n]*)", joined):
        packages += [word for word in command.split() if not word.startswith("-")]
    return packages


@pytest.mark.parametrize("image", IMAGES)
def test_every_apt_package_is_pinned_and_commented(image: str) -> None:
    text = (IMAGES_DIR / image / "Dockerfile").read_text()
    comments = " ".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for package in _apt_packages(text):
        name, _, version = package.partition("=")
        assert version, f"{image}: apt package {name} is not pinned"
        assert re.search(rf"\b{re.escape(name)}\b", comments), f"{image}: apt package {name} has no comment"


@pytest.mark.parametrize("image", IMAGES)
def test_every_pip_install_is_pinned(image: str) -> None:
    """pip/uv installs take a frozen requirements file, a local source tree, or name==version."""
    joined = re.sub(r"\\\n", " ", (IMAGES_DIR / image / "Dockerfile").read_text())
    for command in re.findall(r"pip install ([^&\n]*)", joined):
        words = iter(command.split())
        for word in words:
            if word in ("--requirement", "-r", "--index-url", "--python", "--no-binary"):
                next(words)  # the option's value: a frozen file, an index, an interpreter
                continue
            if word.startswith("-"):
                continue
            assert word == "/src" or re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^ ]*", word), (
                f"{image}: `pip install {command.strip()}` installs {word!r} unpinned"
            )


@pytest.mark.parametrize("image", IMAGES)
def test_requirements_txt_pins_requirements_in(image: str) -> None:
    assert _freeze().check(image) == []


def test_freeze_check_catches_a_missing_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    freeze = _freeze()
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "requirements.in").write_text("jupyterhub>=5  # the hub\nrequests  # http\n")
    (tmp_path / "hub" / "requirements.txt").write_text("jupyterhub==6.1.1\nurllib3>=2\n")
    monkeypatch.setattr(freeze, "IMAGES_DIR", tmp_path)
    problems = freeze.check("hub")
    assert any("requests from requirements.in is not pinned" in p for p in problems)
    assert any("'urllib3>=2' is not pinned" in p for p in problems)


@pytest.mark.parametrize("image", IMAGES)
def test_every_requirement_is_commented(image: str) -> None:
    for line in (IMAGES_DIR / image / "requirements.in").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"{image}/requirements.in: {line!r} says nothing about why"


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_copies_every_kubelab_folder(image: str) -> None:
    """A folder setup.py packages but the Dockerfile forgets would break `pip install /src`."""
    subpackages = re.search(r"SUBPACKAGES = \[([^\]]*)\]", (REPO / "setup.py").read_text())
    assert subpackages
    text = (IMAGES_DIR / image / "Dockerfile").read_text()
    for folder in re.findall(r'"([a-z_]+)"', subpackages.group(1)):
        assert re.search(rf"^COPY {folder} /src/{folder}$", text, re.M), f"{image}: does not copy {folder}/"
    assert f"COPY images/{image}/requirements.txt" in text


def test_torch_is_one_release_everywhere() -> None:
    assert f"torch=={TORCH}+cpu" in (IMAGES_DIR / "notebook-cpu" / "Dockerfile").read_text()
    for image in ("notebook-gpu", "trainer"):
        assert f"torch=={TORCH}\n" in (IMAGES_DIR / image / "requirements.txt").read_text()
    assert "torch==" not in (IMAGES_DIR / "notebook-cpu" / "requirements.txt").read_text()


def test_images_use_the_python_the_freeze_resolved_for() -> None:
    version = _freeze().PYTHON_VERSION
    for image in IMAGES:
        text = (IMAGES_DIR / image / "Dockerfile").read_text()
        pythons = re.findall(r"FROM python:(\d+\.\d+)\.\d+-slim", text) + re.findall(r"uv python install (\d+\.\d+)", text)
        assert pythons and set(pythons) == {version}, image


def test_build_script_without_an_engine_says_so(tmp_path: Path) -> None:
    """With neither docker nor podman on PATH, build.sh exits non-zero with one clear line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "head", "git", "mktemp", "tar", "rm", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir)}
    env.pop("CONTAINER_ENGINE", None)
    result = subprocess.run([str(bin_dir / "bash"), str(IMAGES_DIR / "build.sh")], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.returncode != 0
    assert re.search(r"no container engine available \(neither docker nor podman", result.stderr), result.stderr


def test_build_script_rejects_unknown_images() -> None:
    result = subprocess.run(["bash", str(IMAGES_DIR / "build.sh"), "notebook-tpu"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "unknown image 'notebook-tpu'" in result.stderr
