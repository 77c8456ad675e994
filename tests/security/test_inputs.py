"""Input hygiene and catalogue limits, pure: every refusal names the field (and the limit).

The same inputs travel through a real hub in ``test_attacks.py``; here each rule is pinned
one by one: ``fullmatch`` everywhere, a bound on every size, strict numbers, reserved
``KUBELAB_*`` names, and the catalogue's per-group job limits (``jobs/policy.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from kubelab.core.catalogue import parse_catalogue
from kubelab.core.records import pod_info
from kubelab.jobs.policy import JobLimitExceeded, JobUsage, check_spec, check_totals, job_usage
from kubelab.jobs.spec import JobSpec, JobSpecError
from tests.jobs.helpers import BASE

LIMITED = {**BASE, "jobs": {**BASE["jobs"], "limits": {
    "cpuPerWorker": 1, "memoryPerWorker": "2Gi", "procsPerWorker": 2, "workersPerUser": 4,
    "cpuPerUser": 2, "memoryPerUser": "4Gi", "defaultCpu": "500m", "defaultMemory": "1Gi",
}, "groupLimits": {"gpu-users": {"cpuPerWorker": 8, "memoryPerWorker": "32Gi", "procsPerWorker": 8}}}}
CAT = parse_catalogue(LIMITED, "limited.yaml")


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {"name": "ddp", "script": "train.py", "workers": 2}
    base.update(kw)
    return JobSpec(**base)


MALFORMED = [
    ("name-trailing-newline", {"name": "ddp\n"}, "name", "'ddp\\n' is not allowed"),
    ("name-too-long", {"name": "a" * 41}, "name", "at most 40 characters"),
    ("name-not-a-string", {"name": ["ddp"]}, "name", "is not allowed"),
    ("cpu-nan", {"cpu": float("nan")}, "cpu", "nan is not allowed"),
    ("cpu-infinity", {"cpu": float("inf")}, "cpu", "inf is not allowed"),
    ("cpu-negative", {"cpu": -1}, "cpu", "not allowed"),
    ("cpu-zero", {"cpu": 0}, "cpu", "not allowed"),
    ("cpu-bool", {"cpu": True}, "cpu", "True is not allowed"),
    ("cpu-text-with-space", {"cpu": "2 "}, "cpu", "'2 ' is not allowed"),
    ("memory-trailing-newline", {"memory": "2Gi\n"}, "memory", "'2Gi\\n' is not allowed"),
    ("memory-huge-exponent", {"memory": "1e999"}, "memory", "exponent"),
    ("memory-number", {"memory": 1024}, "memory", "1024 is not allowed"),
    ("retries-huge", {"retries": 10**9}, "retries", "an integer in 0..10"),
    ("retries-negative", {"retries": -1}, "retries", "an integer in 0..10"),
    ("workers-huge", {"workers": 10**6}, "workers", "an integer in 1..1000"),
    ("procs-huge", {"procs_per_worker": 100000}, "procs_per_worker", "an integer in 1..1024"),
    ("runtime-huge", {"max_runtime_seconds": 10**12}, "max_runtime_seconds", "an integer in 1.."),
    ("env-reserved", {"env": {"KUBELAB_RANK_OFFSET": "3"}}, "env", "KUBELAB_RANK_OFFSET is reserved"),
    ("env-name-newline", {"env": {"A\n": "x"}}, "env", "is not a variable name"),
    ("env-value-huge", {"env": {"A": "x" * 40000}}, "env", "env.A holds 40000 characters; at most 32768"),
    ("env-too-many", {"env": {f"V{i}": "" for i in range(65)}}, "env", "65 variables; at most 64"),
    ("env-total", {"env": {f"V{i}": "x" * 30000 for i in range(5)}}, "env", "characters in all values"),
    ("env-value-not-text", {"env": {"A": 1}}, "env", "the value of A must be a string"),
    ("args-too-many", {"args": ["a"] * 300}, "args", "300 arguments; at most 256"),
    ("arg-huge", {"args": ["x" * 5000]}, "args", "args[0] holds 5000 characters; at most 4096"),
    ("args-total", {"args": ["x" * 4000] * 10}, "args", "characters in all; at most 32768"),
    ("arg-nul", {"args": ["a\x00b"]}, "args", "NUL"),
    ("script-huge", {"script": "x" * 2000}, "script", "at most 1024"),
    ("image-not-text", {"image": {"ref": "x"}}, "image", "image must be a string"),
]


@pytest.mark.parametrize(("kw", "field", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_specs_name_the_field(kw: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(JobSpecError, match=r"^" + field + r": ") as err:
        spec(**kw)
    assert err.value.field == field and message in str(err.value)
    assert len(str(err.value)) < 300, "a refusal never echoes a huge value back"


OVER = [
    ("student-8-cpu", {"cpu": 8}, [], "cpu", "8 is not allowed; allowed: up to 1 (limit cpuPerWorker for your groups (none))"),
    ("student-30Gi", {"memory": "30Gi"}, ["students"], "memory",
     "'30Gi' is not allowed; allowed: up to 2Gi (limit memoryPerWorker for your groups (students))"),
    ("cpu-1e300", {"cpu": 1e300}, ["gpu-users"], "cpu", "allowed: up to 8 (limit cpuPerWorker"),
    ("memory-999999999Ti", {"memory": "999999999Ti"}, ["gpu-users"], "memory", "allowed: up to 32Gi"),
    ("procs-1000-mpi", {"procs_per_worker": 1000, "framework": "mpi"}, ["gpu-users"], "procs_per_worker",
     "1000 is not allowed; allowed: 1..8 (limit procsPerWorker"),
    ("workers-per-job", {"workers": 5}, [], "workers", "5 is not allowed; allowed: 1..4 (limit workersPerJob"),
]


@pytest.mark.parametrize(("kw", "groups", "field", "message"), [o[1:] for o in OVER], ids=[o[0] for o in OVER])
def test_catalogue_limits_refuse_naming_the_limit(kw: dict[str, Any], groups: list[str], field: str,
                                                  message: str) -> None:
    with pytest.raises(JobSpecError, match=r"^" + field) as err:
        check_spec(spec(**kw), CAT, groups, kueue=False)
    assert message in str(err.value)


def test_defaults_and_group_limits_apply() -> None:
    d = check_spec(spec(), CAT, [], kueue=False)
    assert (d.cpu_millis, d.memory_bytes) == (500, 2**30), "defaultCpu/defaultMemory for a spec naming none"
    d = check_spec(spec(cpu=6, memory="16Gi"), CAT, ["gpu-users"], kueue=False)
    assert (d.cpu_millis, d.memory_bytes) == (6000, 16 * 2**30)


def job_pod(name: str, job: str, cpu: str, memory: str, phase: str = "Running", server: bool = False) -> Any:
    labels = {"kubelab.io/user": "alice", **({"kubelab.io/server": "x"} if server else {"kubelab.io/job": job})}
    return pod_info({"metadata": {"name": name, "namespace": "jobs", "labels": labels},
                     "spec": {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
                     "status": {"phase": phase}})


def test_job_usage_counts_running_job_pods_only() -> None:
    pods = [job_pod("a-0", "a", "1", "1Gi"), job_pod("a-1", "a", "500m", "1Gi"),
            job_pod("b-0", "b", "2", "8Gi", phase="Succeeded"), job_pod("srv", "", "4", "8Gi", server=True)]
    assert job_usage(pods) == JobUsage(jobs=1, workers=2, cpu_millis=1500, memory_bytes=2 * 2**30)


TOTALS = [
    ("cpu", JobUsage(1, 1, 1500, 0), {"workers": 1, "cpu": 1}, "cpuPerUser",
     "limit cpuPerUser 2: your 1 running job(s) hold 1500m CPU and job 'ddp' asks for 1"),
    ("memory", JobUsage(1, 1, 0, 3 * 2**30), {"workers": 1, "memory": "2Gi"}, "memoryPerUser",
     "limit memoryPerUser 4Gi: your 1 running job(s) hold 3Gi and job 'ddp' asks for 2Gi"),
    ("workers", JobUsage(2, 3, 0, 0), {"workers": 2, "cpu": "1m", "memory": "1"}, "workersPerUser",
     "limit workersPerUser 4: your 2 running job(s) hold 3 workers and job 'ddp' asks for 2"),
]


@pytest.mark.parametrize(("usage", "kw", "limit", "message"), [t[1:] for t in TOTALS], ids=[t[0] for t in TOTALS])
def test_totals_per_user(usage: JobUsage, kw: dict[str, Any], limit: str, message: str) -> None:
    s = spec(**kw)
    decision = check_spec(s, CAT, [], kueue=False)
    with pytest.raises(JobLimitExceeded, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$") as err:
        check_totals(s, decision, usage)
    assert err.value.limit == limit and isinstance(err.value, PermissionError)
    check_totals(s, decision, JobUsage())  # alone it fits


SPAWN_GPUS = ["1\n", " 1", "\u0661", "1.0", "01e0", "+1", True, 1.0, float("nan")]


@pytest.mark.parametrize("gpus", SPAWN_GPUS, ids=repr)
def test_spawn_gpu_counts_are_plain_ascii_digits(gpus: Any) -> None:
    from kubelab.spawner.options import OptionsError, validate_user_options

    with pytest.raises(OptionsError, match=r"^gpus .* is not allowed with profile 'a100'; allowed: 1, 2") as err:
        validate_user_options({"profile": "a100", "gpus": gpus}, CAT, ["gpu-users"])
    assert err.value.status == 400
    assert validate_user_options({"profile": "a100", "gpus": "2"}, CAT, ["gpu-users"]).gpus == 2
