"""The catalogue's job limits and its strict numbers (``core/catalogue.py``, ``core/quantity.py``)."""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from typing import Any

import pytest
import yaml

from kubelab.core import catalogue as cat
from kubelab.core.quantity import QuantityError, bytes_of, format_bytes, millicores, parse_number, parse_quantity

EXAMPLE = yaml.safe_load(cat.EXAMPLE_PATH.read_text())

QUANTITIES = [
    ("500m", Fraction(1, 2)), ("2", Fraction(2)), ("1.5", Fraction(3, 2)), (".5", Fraction(1, 2)),
    ("1.", Fraction(1)), ("8Gi", Fraction(8 * 2**30)), ("1k", Fraction(1000)), ("1e3", Fraction(1000)),
    ("1E-3", Fraction(1, 1000)), ("2E", Fraction(2 * 10**18)),
]


@pytest.mark.parametrize(("text", "value"), QUANTITIES, ids=[q[0] for q in QUANTITIES])
def test_quantity_grammar(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


BAD_QUANTITIES = ["nan", "NaN", "inf", "Infinity", "2Gi\n", " 2", "2 ", "-1", "+1", "1e99", "1_000", "\uff12", "",
                  "1K", "8GB", "0x10", "1" * 40, "1e", "e3", ".", "2Gi2"]


@pytest.mark.parametrize("text", BAD_QUANTITIES, ids=[repr(t) for t in BAD_QUANTITIES])
def test_quantity_refusals(text: str) -> None:
    with pytest.raises(QuantityError, match="not allowed|exponent|longer than"):
        parse_quantity(text)


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, -1, -0.5, True, None, [1]], ids=repr,
)
def test_number_refusals(value: Any) -> None:
    with pytest.raises(QuantityError, match="not allowed"):
        parse_number(value)


def test_numbers_are_exact() -> None:
    assert millicores(0.1) == 100 and millicores(1.5) == 1500 and millicores("250m") == 250
    assert millicores(0.0001) == 1, "rounded up, like the API server"
    assert bytes_of("1.5") == 2 and bytes_of(1024) == 1024
    assert format_bytes(4 * 2**30) == "4Gi" and format_bytes(1000) == "1000"


def mutated(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[int(last) if last.isdigit() else last] = value
    return doc


REFUSED = [
    ("profiles.0.cpu.limit", math.nan, r"profiles\[0\]\.cpu\.limit: nan is not allowed"),
    ("profiles.0.cpu.limit", math.inf, r"profiles\[0\]\.cpu\.limit: inf is not allowed"),
    ("profiles.0.memory.limit", "2Gi\n", r"profiles\[0\]\.memory\.limit: '2Gi\\n' is not allowed"),
    ("profiles.0.memory.limit", "999999999Ti1", r"profiles\[0\]\.memory\.limit: .* is not allowed"),
    ("profiles.0.slug", "cpu-small\n", r"profiles\[0\]\.slug: 'cpu-small\\n' does not match the pattern"),
    ("storage.home.size", "10Gi ", r"storage\.home\.size: '10Gi ' is not allowed"),
    ("jobs.limits.cpuPerWorker", "1e300", r"jobs\.limits\.cpuPerWorker: '1e300': the exponent"),
    ("jobs.limits.cpuPerWorker", math.nan, r"jobs\.limits\.cpuPerWorker: nan is not allowed"),
    ("jobs.limits.memoryPerUser", "0", r"jobs\.limits\.memoryPerUser: '0' is not allowed; a size > 0"),
    ("jobs.limits.procsPerWorker", 100000, r"jobs\.limits\.procsPerWorker: 100000 is greater than the maximum of 1024"),
    ("jobs.limits.gpus", 3, r"jobs\.limits\.gpus: unknown key 'gpus'; allowed keys: cpuPerUser, cpuPerWorker"),
    ("jobs.groupLimits.students.memoryPerWorker", "lots", r"jobs\.groupLimits\.students\.memoryPerWorker: 'lots'"),
]


@pytest.mark.parametrize(("path", "value", "error"), REFUSED, ids=[f"{r[0]}={r[1]!r}" for r in REFUSED])
def test_strict_numbers_name_the_path(path: str, value: Any, error: str) -> None:
    with pytest.raises(cat.CatalogueError, match=r"^lab\.yaml: " + error):
        cat.parse_catalogue(mutated(path, value), "lab.yaml")


def test_limits_per_group_with_defaults() -> None:
    doc = mutated("jobs.groupLimits.staff", {"cpuPerWorker": "16", "defaultCpu": 4})
    c = cat.parse_catalogue(doc, "lab.yaml")
    everyone = c.job_limits_for([])
    assert (everyone.cpu_per_worker, everyone.memory_per_worker, everyone.procs_per_worker) == (2000, 4 * 2**30, 4)
    assert (everyone.workers_per_job, everyone.default_cpu) == (8, 1000), "workersPerJob defaults to jobs.maxWorkers"
    gpu = c.job_limits_for(["gpu-users"])
    assert (gpu.cpu_per_worker, gpu.memory_per_worker, gpu.cpu_per_user) == (8000, 64 * 2**30, 64000)
    both = c.job_limits_for(["gpu-users", "staff"])
    assert both.cpu_per_worker == 16000, "the most generous group wins, per key"
    assert both.memory_per_worker == 64 * 2**30 and both.default_cpu == 4000
    assert everyone.describe("memory_per_worker") == "memoryPerWorker 4Gi"
    assert everyone.describe("cpu_per_worker") == "cpuPerWorker 2"


def test_builtin_limits_are_finite() -> None:
    doc = copy.deepcopy(EXAMPLE)
    del doc["jobs"]["limits"], doc["jobs"]["groupLimits"]
    limits = cat.parse_catalogue(doc, "lab.yaml").job_limits_for(["anyone"])
    assert limits == cat.JobLimits(workers_per_job=8, workers_per_user=64, procs_per_worker=64,
                                   cpu_per_worker=128_000, memory_per_worker=2**40, cpu_per_user=512_000,
                                   memory_per_user=4 * 2**40)
