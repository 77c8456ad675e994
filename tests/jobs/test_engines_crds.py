"""Engine manifests against the upstream CRDs: a real 1.20 API server for Kubeflow v1, and the
CRDs' ``openAPIV3Schema`` offline for JobSet and TrainJob (1.20 rejects those CRDs)."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from kubelab.core.catalogue import HomeStorage
from kubelab.jobs.builders import BuildContext, jobset, kubeflow, trainer
from kubelab.jobs.spec import JobSpec
from tests.jobs.helpers import catalogue
from tests.paths import CRDS

KUBECTL = Path(sys.executable).parent / "kubectl"
V1_CRDS = ["pytorchjobs", "tfjobs", "mpijobs"]


def ctx(namespace: str = "jobs", **kw: Any) -> BuildContext:
    return BuildContext(user="alice", namespace=namespace, image="ghcr.io/kubelab/trainer:0.1.0",
                        home=HomeStorage(access_mode="ReadWriteMany"), **kw)


def gpu_spec(framework: str) -> JobSpec:
    return JobSpec(name="big", framework=framework, script="train.py", workers=3, gpus_per_worker=2,
                   gpu_class="a100", cpu=4, memory="16Gi", retries=1, env={"EPOCHS": "3"})


def schema_of(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["schema"]["openAPIV3Schema"]


def validate(obj: dict[str, Any], path: Path) -> None:
    jsonschema.Draft4Validator(schema_of(path)).validate(obj)


A100 = catalogue().gpu_classes["a100"]
OFFLINE = [
    pytest.param(lambda: jobset.make_jobset(gpu_spec("pytorch"), ctx(gpu_class=A100, queue="team-a")),
                 CRDS / "jobset/jobset.x-k8s.io_jobsets.yaml", id="jobset-gpu-kueue"),
    pytest.param(lambda: jobset.make_jobset(JobSpec(name="cpu", module="pkg.train", workers=2), ctx()),
                 CRDS / "jobset/jobset.x-k8s.io_jobsets.yaml", id="jobset-cpu"),
    pytest.param(lambda: trainer.make_trainjob(gpu_spec("pytorch"), ctx(gpu_class=A100, queue="team-a",
                                                                          max_runtime_seconds=600)),
                 CRDS / "kubeflow-trainer-v2/trainer.kubeflow.org_trainjobs.yaml", id="trainjob-gpu-kueue"),
    pytest.param(lambda: trainer.make_trainjob(JobSpec(name="cpu", script="t.py", workers=2), ctx()),
                 CRDS / "kubeflow-trainer-v2/trainer.kubeflow.org_trainjobs.yaml", id="trainjob-cpu"),
]


@pytest.mark.parametrize(("build", "crd"), OFFLINE)
def test_validates_offline_against_the_crd_schema(build: Any, crd: Path) -> None:
    validate(build(), crd)


BROKEN = [
    pytest.param(lambda o: o["spec"].update(replicatedJobs="worker"), CRDS / "jobset/jobset.x-k8s.io_jobsets.yaml",
                 "is not of type 'array'", id="jobset-replicatedJobs-not-a-list"),
    pytest.param(lambda o: o["spec"]["trainer"].update(numNodes="three"),
                 CRDS / "kubeflow-trainer-v2/trainer.kubeflow.org_trainjobs.yaml", "is not of type 'integer'",
                 id="trainjob-numNodes-string"),
    pytest.param(lambda o: o["spec"].pop("runtimeRef"),
                 CRDS / "kubeflow-trainer-v2/trainer.kubeflow.org_trainjobs.yaml", "'runtimeRef' is a required",
                 id="trainjob-no-runtimeRef"),
]


@pytest.mark.parametrize(("breaks", "crd", "match"), BROKEN)
def test_the_offline_validator_catches_broken_objects(breaks: Any, crd: Path, match: str) -> None:
    obj = (jobset.make_jobset if "jobset" in crd.name else trainer.make_trainjob)(gpu_spec("pytorch"), ctx(gpu_class=A100))
    obj = copy.deepcopy(obj)
    breaks(obj)
    with pytest.raises(jsonschema.ValidationError, match=match):
        validate(obj, crd)


def assert_stored(built: Any, stored: Any, path: str) -> None:
    """Every leaf of ``built`` is in ``stored`` with the same value."""
    if isinstance(built, dict):
        assert isinstance(stored, dict), path
        for key, value in built.items():
            assert key in stored, f"{path}.{key} was pruned by the API server"
            assert_stored(value, stored[key], f"{path}.{key}")
    elif isinstance(built, list):
        assert isinstance(stored, list) and len(stored) == len(built), path
        for i, (b, s) in enumerate(zip(built, stored, strict=True)):
            assert_stored(b, s, f"{path}[{i}]")
    else:
        assert built == stored, f"{path}: built {built!r}, stored {stored!r}"


@pytest.fixture(scope="module")
def kubeflow_crds(kube: kubernetes.client.ApiClient) -> Any:
    """The Kubeflow training v1 CRDs installed (``kubectl create --validate=false``); removed afterwards
    if this module installed them, so that engine discovery elsewhere does not pick an engine whose
    operator is not running."""
    ext = kubernetes.client.ApiextensionsV1Api(kube)

    def state(name: str) -> str:
        try:
            crd = ext.read_custom_resource_definition(name)
        except ApiException as e:
            if e.status == 404:
                return "absent"
            raise
        return "terminating" if crd.metadata.deletion_timestamp else "present"

    installed = []
    for plural in V1_CRDS:
        name = f"{plural}.kubeflow.org"
        deadline = time.monotonic() + 120
        while state(name) == "terminating":  # an earlier run's removal still in progress
            assert time.monotonic() < deadline, f"CRD {name} still terminating"
            time.sleep(1)
        if state(name) == "absent":
            out = subprocess.run([str(KUBECTL), "create", "--validate=false", "-f",
                                  str(CRDS / f"kubeflow-training-v1/kubeflow.org_{plural}.yaml")],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            installed.append(name)
    deadline = time.monotonic() + 60
    for plural in V1_CRDS:
        while True:
            crd = ext.read_custom_resource_definition(f"{plural}.kubeflow.org")
            if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
                break
            assert time.monotonic() < deadline, f"CRD {plural}.kubeflow.org not Established"
            time.sleep(0.5)
    yield
    for name in installed:
        ext.delete_custom_resource_definition(name)
    deadline = time.monotonic() + 120
    for name in installed:  # leave no terminating CRD behind for the next run
        while state(name) != "absent" and time.monotonic() < deadline:
            time.sleep(1)


KUBEFLOW = [
    pytest.param("pytorch", "pytorchjobs", id="PyTorchJob"),
    pytest.param("tensorflow", "tfjobs", id="TFJob"),
    pytest.param("mpi", "mpijobs", id="MPIJob"),
]


@pytest.mark.integration
@pytest.mark.parametrize(("framework", "plural"), KUBEFLOW)
def test_kubeflow_v1_objects_are_accepted_by_the_api_server(
        kubeflow_crds: Any, kube: kubernetes.client.ApiClient, namespace: str, framework: str, plural: str) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube)
    obj = kubeflow.make_training_job(gpu_spec(framework), ctx(namespace, gpu_class=A100, queue="team-a"))
    created = custom.create_namespaced_custom_object("kubeflow.org", "v1", namespace, plural, obj)
    try:
        assert created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert created["spec"]["runPolicy"]["suspend"] is True
        # Everything built was stored: the structural schema pruned no field as unknown (the server
        # only adds defaults such as ports[].protocol).
        assert_stored(obj["spec"], created["spec"], "spec")
    finally:
        custom.delete_namespaced_custom_object("kubeflow.org", "v1", namespace, plural, obj["metadata"]["name"])
    assert custom.list_namespaced_custom_object("kubeflow.org", "v1", namespace, plural)["items"] == []


@pytest.mark.integration
def test_the_api_server_refuses_a_broken_pytorchjob(
        kubeflow_crds: Any, kube: kubernetes.client.ApiClient, namespace: str) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube)
    obj = kubeflow.make_training_job(gpu_spec("pytorch"), ctx(namespace, gpu_class=A100))
    obj["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "one"
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", obj)
    assert err.value.status == 422
