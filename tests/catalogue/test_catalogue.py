"""The platform catalogue: every error names the file, the path and what is allowed."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelab.core import catalogue as cat
from kubelab.core.naming import home_claim_name, slug

EXAMPLE = yaml.safe_load(cat.EXAMPLE_PATH.read_text())


def mutated(path: str, value: Any) -> dict[str, Any]:
    """A deep copy of the example with ``value`` set at a dotted path (``profiles.2.gpu.class``)."""
    doc = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return doc


def test_example_loads() -> None:
    c = cat.load_catalogue(cat.EXAMPLE_PATH)
    assert [p.slug for p in c.profiles] == ["cpu-small", "cpu-large", "a100"]
    gpu = c.profile("a100")
    assert gpu.gpu == cat.GpuRequest("a100", (1, 2))
    assert c.gpu_classes["a100"].node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert c.idle_timeout_for("a100") == 1800
    assert c.idle_timeout_for("cpu-small") == 3600
    assert c.user_limits_for("admin") == cat.Limits(max_gpus=8, max_servers=5)
    assert c.user_limits_for("alice") == cat.Limits(max_gpus=2, max_servers=3)
    assert c.group_limits["students"] == cat.Limits(max_gpus=0, max_servers=None)


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ([], ["cpu-small"]),
        (["students"], ["cpu-small"]),
        (["gpu-users"], ["cpu-small", "cpu-large", "a100"]),
        (["students", "admins"], ["cpu-small", "cpu-large", "a100"]),
    ],
    ids=["no-groups", "students", "gpu-users", "any-listed-group-suffices"],
)
def test_profiles_for_groups(groups: list[str], expected: list[str]) -> None:
    c = cat.load_catalogue(cat.EXAMPLE_PATH)
    assert [p.slug for p in c.profiles_for(groups)] == expected


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        ("profiles.2.gpu.class", "h100", r"profiles\[2\]\.gpu\.class: unknown GPU class 'h100'; allowed: a100"),
        ("profiles.2.gpu.counts", ["two"], r"profiles\[2\]\.gpu\.counts\[0\]: 'two' has the wrong type; expected integer"),
        ("profiles.2.gpu.counts", [0], r"profiles\[2\]\.gpu\.counts\[0\]: 0 is less than the minimum of 1"),
        ("profiles.0.images", ["nope"], r"profiles\[0\]\.images\[0\]: unknown image 'nope'; allowed: pytorch-cpu, pytorch-gpu, scipy"),
        ("profiles.0.images", ["pytorch-gpu"], r"profiles\[0\]\.images\[0\]: image 'pytorch-gpu' is a gpu image but the profile has no gpu"),
        ("profiles.0.colour", "red", r"profiles\[0\]\.colour: unknown key 'colour'; allowed keys: cpu, default,"),
        ("profiles.0.slug", "Small CPU", r"profiles\[0\]\.slug: 'Small CPU' does not match the pattern"),
        ("profiles.1.slug", "cpu-small", r"profiles\[1\]\.slug: duplicate profile slug 'cpu-small'"),
        ("profiles.1.default", True, r"profiles: more than one profile has default: true"),
        ("profiles.0.cpu", {"guarantee": 4, "limit": 1}, r"profiles\[0\]\.cpu: guarantee 4 exceeds limit 1"),
        ("profiles.0.memory", {"guarantee": "8Gi", "limit": "2Gi"}, r"profiles\[0\]\.memory: guarantee 8Gi exceeds limit 2Gi"),
        ("storage.home.accessMode", "ReadWriteSometimes", r"storage\.home\.accessMode: 'ReadWriteSometimes' is not allowed; allowed values: 'ReadWriteOnce', 'ReadWriteMany'"),
        ("jobs.engine", "slurm", r"jobs\.engine: 'slurm' is not allowed; allowed values: 'auto', 'plain'"),
        ("jobs.kueue.defaultQueue", "gpu", r"jobs\.kueue\.defaultQueue: 'gpu' is not in queues"),
        ("quotas.perUser.maxGpus", -1, r"quotas\.perUser\.maxGpus: -1 is less than the minimum of 0"),
        ("profiles", KeyError, r"\(top level\): 'profiles' is a required property"),
        ("gpuClasses.a100.nodeSelector", KeyError, r"gpuClasses\.a100: 'nodeSelector' is a required property"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v and " " not in v else None,
)
def test_invalid_catalogue_names_path(path: str, value: Any, error: str) -> None:
    with pytest.raises(cat.CatalogueError, match=r"^lab\.yaml: " + error):
        cat.parse_catalogue(mutated(path, value), "lab.yaml")


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(cat.CatalogueError, match=r"missing\.yaml: cannot read the file"):
        cat.load_catalogue(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles: [\n")
    with pytest.raises(cat.CatalogueError, match=r"bad\.yaml: not valid YAML"):
        cat.load_catalogue(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(cat.CatalogueError, match=r"scalar\.yaml: the file must hold a mapping"):
        cat.load_catalogue(scalar)


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cat.main([str(cat.EXAMPLE_PATH)]) == 0
    assert "ok (3 profiles, 1 GPU classes, 3 images)" in capsys.readouterr().out
    bad = tmp_path / "lab.yaml"
    bad.write_text(yaml.safe_dump(mutated("profiles.2.gpu.class", "h100")))
    assert cat.main([str(bad)]) == 1
    assert "profiles[2].gpu.class: unknown GPU class 'h100'" in capsys.readouterr().err


def test_reference_docs_are_current() -> None:
    """docs/catalogue.md is generated from the schema; regenerate with `make docs`."""
    docs = Path(__file__).parents[2] / "docs" / "catalogue.md"
    assert docs.read_text() == cat.schema_docs(), "docs/catalogue.md is stale: run `make docs`"


@pytest.mark.parametrize(
    ("name", "kept"),
    [("alice", True), ("bob-2", True), ("Alice", False), ("alice@uni.edu", False), ("---", False), ("a" * 80, False),
     ("a--b", False), ("alice\n", False)],
    ids=["plain", "dash", "upper-case", "email", "nothing-valid", "too-long", "double-dash", "trailing-newline"],
)
def test_slug(name: str, kept: bool) -> None:
    result = slug(name)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", result), result
    assert len(result) <= 63
    assert (result == name) is kept
    assert slug(name) == result, "names must be stable across calls"


def test_home_claims_never_collide() -> None:
    assert home_claim_name("alice") == "home-alice"
    assert home_claim_name("Alice") != home_claim_name("alice")
    assert len(home_claim_name("x" * 200)) <= 63
