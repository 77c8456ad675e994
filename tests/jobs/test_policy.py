"""Catalogue policy for jobs and engine selection (pure, table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelab.jobs.engines import EngineConfigError, select
from kubelab.jobs.policy import check_spec, options_for
from kubelab.jobs.spec import JobSpec, JobSpecError
from tests.jobs.helpers import catalogue

CAT = catalogue()


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {"name": "ddp", "script": "train.py", "workers": 2}
    base.update(kw)
    return JobSpec(**base)


def test_options_follow_the_users_profiles() -> None:
    plain = options_for(CAT, [])
    assert [i.key for i in plain.images] == ["cpu"] and plain.gpu_counts == {}
    gpu = options_for(CAT, ["gpu-users"])
    assert [i.key for i in gpu.images] == ["cpu", "gpu"] and gpu.gpu_counts == {"a100": (1, 2)}
    assert gpu.default_image == "cpu" and gpu.max_workers == 4


ACCEPTED = [
    pytest.param(spec(), [], "ghcr.io/kubelab/notebook-cpu:0.1.0", None, 3600, id="defaults"),
    pytest.param(spec(image="gpu", gpus_per_worker=2, gpu_class="a100", max_runtime_seconds=60), ["gpu-users"],
                 "ghcr.io/kubelab/notebook-gpu:0.1.0", "a100", 60, id="gpu-user-a100x2"),
    pytest.param(spec(image="ghcr.io/kubelab/staff:1"), ["staff"], "ghcr.io/kubelab/staff:1", None, 3600,
                 id="image-by-reference"),
]


@pytest.mark.parametrize(("s", "groups", "image", "gpu", "runtime"), ACCEPTED)
def test_accepted(s: JobSpec, groups: list[str], image: str, gpu: str | None, runtime: int) -> None:
    d = check_spec(s, CAT, groups, kueue=False)
    assert d.image == image
    assert (d.gpu_class.key if d.gpu_class else None) == gpu
    assert d.max_runtime_seconds == runtime and d.queue is None


REFUSED = [
    pytest.param(spec(image="secret"), [], "image", "'secret' is not allowed for your groups; allowed: cpu",
                 id="image-of-another-group"),
    pytest.param(spec(image="docker.io/evil:latest"), ["gpu-users"], "image", "allowed: cpu, gpu", id="foreign-image"),
    pytest.param(spec(gpus_per_worker=8, gpu_class="a100"), ["gpu-users"], "gpus_per_worker",
                 "8 is not allowed for a100; allowed: 1, 2", id="8-gpus"),
    pytest.param(spec(gpus_per_worker=1, gpu_class="h100"), ["gpu-users"], "gpu_class", "unknown GPU class 'h100'",
                 id="unknown-gpu-class"),
    pytest.param(spec(gpus_per_worker=1, gpu_class="v100"), ["gpu-users"], "gpu_class",
                 "'v100' is not allowed for your groups; allowed: a100", id="gpu-class-of-another-group"),
    pytest.param(spec(workers=5), [], "workers", "5 is not allowed; allowed: 1..4", id="too-many-workers"),
    pytest.param(spec(max_runtime_seconds=7200), [], "max_runtime_seconds", "allowed: 1..3600", id="runtime"),
    pytest.param(spec(queue="team-a"), [], "queue", "Kueue is not in use", id="queue-without-kueue"),
]


@pytest.mark.parametrize(("s", "groups", "field", "match"), REFUSED)
def test_refused_naming_the_field(s: JobSpec, groups: list[str], field: str, match: str) -> None:
    with pytest.raises(JobSpecError, match=match) as err:
        check_spec(s, CAT, groups, kueue=False)
    assert err.value.field == field


def test_no_gpu_profiles_at_all_is_a_permission_error() -> None:
    with pytest.raises(PermissionError, match=r"your groups \(students\) may not use GPUs"):
        check_spec(spec(gpus_per_worker=1, gpu_class="a100"), CAT, ["students"], kueue=False)


QUEUES = [
    pytest.param(None, "team-a", id="default-queue"),
    pytest.param("team-b", "team-b", id="named-queue"),
]


@pytest.mark.parametrize(("queue", "expected"), QUEUES)
def test_queue_with_kueue(queue: str | None, expected: str) -> None:
    assert check_spec(spec(queue=queue), CAT, [], kueue=True).queue == expected


def test_unknown_queue_is_refused() -> None:
    with pytest.raises(JobSpecError, match="'nope' is not allowed; allowed: team-a, team-b"):
        check_spec(spec(queue="nope"), CAT, [], kueue=True)


ENGINE_CASES = [
    pytest.param(set(), "auto", "pytorch", "plain", id="bare-cluster-plain"),
    pytest.param({"jobset.x-k8s.io"}, "auto", "pytorch", "jobset", id="jobset"),
    pytest.param({"kubeflow.org", "jobset.x-k8s.io"}, "auto", "tensorflow", "kubeflow-v1", id="kubeflow-tf"),
    pytest.param({"trainer.kubeflow.org", "kubeflow.org"}, "auto", "pytorch", "trainer-v2", id="trainer-first"),
    pytest.param({"trainer.kubeflow.org"}, "auto", "tensorflow", "plain", id="trainer-has-no-tf"),
    pytest.param({"trainer.kubeflow.org", "kubeflow.org"}, "plain", "pytorch", "plain", id="pinned-plain"),
    pytest.param({"kubeflow.org"}, "kubeflow-v1", "mpi", "kubeflow-v1", id="pinned-kubeflow"),
]


@pytest.mark.parametrize(("groups", "pin", "framework", "engine"), ENGINE_CASES)
def test_engine_selection(groups: set[str], pin: str, framework: str, engine: str) -> None:
    assert select(groups, pin).engine_for(framework) == engine


ENGINE_ERRORS = [
    pytest.param(set(), "jobset", "auto", r"jobs.engine: 'jobset' needs the API group jobset.x-k8s.io", id="pin"),
    pytest.param(set(), "slurm", "auto", r"jobs.engine: 'slurm' is not allowed", id="unknown"),
    pytest.param(set(), "auto", True, r"jobs.kueue.enabled: true, but the cluster does not serve", id="kueue"),
]


@pytest.mark.parametrize(("groups", "pin", "kueue", "match"), ENGINE_ERRORS)
def test_engine_config_errors(groups: set[str], pin: str, kueue: Any, match: str) -> None:
    with pytest.raises(EngineConfigError, match=match):
        select(groups, pin, kueue)


@pytest.mark.parametrize(("groups", "enabled", "expected"), [
    pytest.param({"kueue.x-k8s.io"}, "auto", True, id="auto-installed"),
    pytest.param(set(), "auto", False, id="auto-absent"),
    pytest.param({"kueue.x-k8s.io"}, False, False, id="disabled"),
])
def test_kueue_use(groups: set[str], enabled: Any, expected: bool) -> None:
    assert select(groups, "auto", enabled).kueue is expected
