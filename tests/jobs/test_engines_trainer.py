"""Trainer v2 TrainJobs as Trainer v2.3.0 sees them, against its real runtimes (tests/data).

No Trainer controller runs here, and 1.20 rejects the TrainJob CRD, so what the controller does
is emulated with the pieces that are real:

- Trainer refuses a ``runtimePatches`` entry that names a replicated job or container that the
  runtime's job does not have, and one that sets env on the ``node`` container (Trainer v2.3.0
  ``pkg/runtime/framework/plugins/jobset/jobset.go``, ``Validate``); :func:`trainer_refusals`
  applies those rules, and the tests check that kubelab's patches pass and the old ``trainer``
  container patch does not.
- Trainer writes the TrainJob's image, command, args and env into the ``node`` container of the
  job labelled ``trainjob-ancestor-step: trainer`` (``plugins/jobset/builder.go``, ``Trainer``)
  and merges the patches into the runtime's pod templates. The merge is done by the devcluster's
  API server: a PodTemplate holding the runtime's pod template, strategic-merge-patched with the
  TrainJob's patch. What comes back is what the pod would run.
- The ``kubeflow`` SDK's TrainJob model (PyPI ``kubeflow``, ``kubeflow_trainer_api``) parses
  kubelab's TrainJob with nothing lost.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes
import pytest
import yaml
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

from kubelab.core.catalogue import HomeStorage
from kubelab.jobs.builders import BuildContext, trainer
from kubelab.jobs.spec import JobSpec
from tests.jobs.helpers import catalogue
from tests.paths import RUNTIMES

A100 = catalogue().gpu_classes["a100"]
RUNTIME_FILES = {p.stem.replace("_", "-"): p for p in sorted(RUNTIMES.glob("*.yaml"))}


def runtime_obj(name: str) -> dict[str, Any]:
    return yaml.safe_load(RUNTIME_FILES[name].read_text())


def ctx(runtime: trainer.TrainerRuntime | None = None, namespace: str = "jobs", **kw: Any) -> BuildContext:
    return BuildContext(user="alice", namespace=namespace, image="ghcr.io/kubelab/trainer:0.1.0",
                        home=HomeStorage(access_mode="ReadWriteMany"), groups=("gpu-users", "physics"),
                        trainer_runtime=runtime, **kw)


def spec(framework: str, workers: int = 3, **kw: Any) -> JobSpec:
    return JobSpec(name="big", framework=framework, script="train.py", workers=workers, **kw)


def runtime_jobs(runtime: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in runtime["spec"]["template"]["spec"]["replicatedJobs"]}


def trainer_refusals(trainjob: dict[str, Any], runtime: dict[str, Any]) -> list[str]:
    """What Trainer v2.3.0's TrainJob validation says about ``runtimePatches`` (plugins/jobset/jobset.go)."""
    jobs = runtime_jobs(runtime)
    out = []
    for patch in trainjob["spec"].get("runtimePatches") or []:
        for rjob in ((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec", {}).get(
                "replicatedJobs", []):
            if rjob["name"] not in jobs:
                out.append("must not have replicated job that doesn't exist in the runtime job template")
                continue
            names = {c["name"] for c in jobs[rjob["name"]]["template"]["spec"]["template"]["spec"]["containers"]}
            pod = rjob.get("template", {}).get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []):
                if c["name"] not in names:
                    out.append(f"must not have container that doesn't exist in the runtime job {rjob['name']}")
                elif c.get("env") and c["name"] == "node":
                    out.append("must not have envs for the dataset-initializer, model-initializer, node containers")
    return out


# framework → the upstream runtimes a TrainJob of it may refer to (the catalogue's jobs.trainerRuntimes).
CASES = [
    pytest.param("pytorch", "torch-distributed", id="pytorch-torch-distributed"),
    pytest.param("replicas", "torch-distributed", id="replicas-torch-distributed"),
    pytest.param("mpi", "deepspeed-distributed", id="mpi-deepspeed-distributed"),
    pytest.param("mpi", "mlx-distributed", id="mpi-mlx-distributed"),
    pytest.param("pytorch", "jax-distributed", id="pytorch-on-jax-distributed"),
    pytest.param("pytorch", "xgboost-distributed", id="pytorch-on-xgboost-distributed"),
]


@pytest.mark.parametrize("name", ["torch-distributed", "deepspeed-distributed"])
def test_defaults_match_trainer_v2_3_0(name: str) -> None:
    """Without the cluster's runtime, the builder's names are exactly Trainer v2.3.0's."""
    assert trainer.DEFAULT_RUNTIMES[name] == trainer.runtime_from_object(runtime_obj(name))


def test_deepspeed_runtime_shape() -> None:
    rt = trainer.runtime_from_object(runtime_obj("deepspeed-distributed"))
    assert [j.name for j in rt.user_code_jobs] == ["node", "launcher"]
    assert rt.trainer_job.name == "launcher" and rt.mpi and rt.launcher_as_node and rt.ssh_port == 2222


@pytest.mark.parametrize(("framework", "name"), CASES)
def test_every_patched_container_exists_in_the_runtimes_job(framework: str, name: str) -> None:
    runtime = runtime_obj(name)
    obj = trainer.make_trainjob(spec(framework, gpus_per_worker=1, gpu_class="a100"),
                                ctx(trainer.runtime_from_object(runtime), gpu_class=A100))
    assert obj["spec"]["runtimeRef"] == {"name": name}
    assert trainer_refusals(obj, runtime) == []
    # Every job that runs user code is patched, so each such pod gets kubelab's labels and volumes.
    patched = [j["name"] for j in obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
        "replicatedJobs"]]
    assert patched == list(runtime_jobs(runtime))


def test_the_rule_catches_the_old_trainer_container_patch() -> None:
    """The patch kubelab built before (container ``trainer``) is what Trainer refuses."""
    runtime = runtime_obj("torch-distributed")
    obj = trainer.make_trainjob(spec("pytorch"), ctx())
    broken = copy.deepcopy(obj)
    pod = broken["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]
    pod["containers"][0]["name"] = "trainer"
    assert trainer_refusals(broken, runtime) == [
        "must not have container that doesn't exist in the runtime job node"]
    pod["containers"][0] = {"name": "node", "env": [{"name": "X", "value": "1"}]}
    assert trainer_refusals(broken, runtime) == [
        "must not have envs for the dataset-initializer, model-initializer, node containers"]


def test_mpi_peers_are_the_launcher_then_the_nodes() -> None:
    obj = trainer.make_trainjob(spec("mpi", workers=3), ctx())
    env = {e["name"]: e.get("value") for e in obj["spec"]["trainer"]["env"]}
    jid = obj["metadata"]["name"]
    assert env["KUBELAB_PEERS"] == (f"{jid}-launcher-0-0.{jid},{jid}-node-0-0.{jid},{jid}-node-0-1.{jid}")
    assert env["KUBELAB_PORT"] == "2222"


@pytest.mark.parametrize(("framework", "name"), CASES)
def test_the_kubeflow_sdk_model_parses_it_with_nothing_lost(framework: str, name: str) -> None:
    obj = trainer.make_trainjob(
        spec(framework, gpus_per_worker=2, gpu_class="a100", cpu=4, memory="16Gi", env={"EPOCHS": "3"}),
        ctx(trainer.runtime_from_object(runtime_obj(name)), gpu_class=A100, queue="team-a", max_runtime_seconds=600))
    model = TrainerV1alpha1TrainJob.from_dict(copy.deepcopy(obj))
    assert model.to_dict() == obj
    assert model.spec.runtime_ref.name == name and model.spec.trainer.num_nodes == 3


def trainer_applies(job: dict[str, Any], trainjob: dict[str, Any], launcher_as_node: bool) -> dict[str, Any]:
    """The pod template of one runtime job after Trainer's ``Trainer`` step (plugins/jobset/builder.go):
    image/command/args on the trainer step's ``node`` container, env there and (MPI runLauncherAsNode)
    on the ``node`` job's."""
    tpl = copy.deepcopy(job["template"]["spec"]["template"])
    ancestor = (job["template"].get("metadata") or {}).get("labels", {}).get(trainer.ANCESTOR_LABEL)
    spec_trainer = trainjob["spec"]["trainer"]
    for c in tpl["spec"]["containers"]:
        if c["name"] != "node":
            continue
        if ancestor == "trainer":
            c.update(image=spec_trainer["image"], command=spec_trainer["command"], args=spec_trainer["args"])
        if ancestor == "trainer" or (launcher_as_node and job["name"] == "node"):
            c["env"] = c.get("env", []) + spec_trainer["env"]
    return tpl


def pod_patch(trainjob: dict[str, Any], job: str) -> dict[str, Any]:
    for rjob in trainjob["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
        if rjob["name"] == job:
            return rjob["template"]["spec"]["template"]
    raise LookupError(job)


@pytest.mark.integration
@pytest.mark.parametrize(("framework", "name"), CASES)
def test_the_api_server_merges_the_patches_into_the_runtimes_pod_templates(
        kube: kubernetes.client.ApiClient, namespace: str, framework: str, name: str) -> None:
    """Strategic merge on the devcluster: user code, labels, annotations and volumes land in the
    container that runs, and the patch adds no container of its own."""
    core = kubernetes.client.CoreV1Api(kube)
    runtime = runtime_obj(name)
    rt = trainer.runtime_from_object(runtime)
    obj = trainer.make_trainjob(spec(framework, gpus_per_worker=1, gpu_class="a100"),
                                ctx(rt, namespace, gpu_class=A100))
    for job_name, job in runtime_jobs(runtime).items():
        tpl = trainer_applies(job, obj, rt.launcher_as_node)
        before = [c["name"] for c in tpl["spec"]["containers"]]
        created = core.create_namespaced_pod_template(namespace, {
            "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"{name}-{job_name}"}, "template": tpl})
        merged = core.patch_namespaced_pod_template(
            created.metadata.name, namespace, {"template": pod_patch(obj, job_name)})
        pod = kube.sanitize_for_serialization(merged.template)
        assert [c["name"] for c in pod["spec"]["containers"]] == before, "the patch added a container"
        (node,) = [c for c in pod["spec"]["containers"] if c["name"] == "node"]
        labels = pod["metadata"]["labels"]
        assert labels["kubelab.io/job"] == "big" and labels["kubelab.io/component"] == "rank"
        assert labels["kubelab.io/user"] == "alice" and labels["app.kubernetes.io/managed-by"] == "kubelab"
        assert pod["metadata"]["annotations"]["kubelab.io/groups"] == "gpu-users,physics"
        assert {"name": "home", "mountPath": "/home/jovyan"} in node["volumeMounts"]
        assert {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                if "persistentVolumeClaim" in v} == {"home": "home-alice"}
        assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
        if job_name == rt.trainer_job.name:
            # The trainer step runs kubelab's entrypoint, with the rank from the completion index.
            assert node["command"] == ["python", "-m", "kubelab.jobs.entrypoint"]
            env = {e["name"]: e for e in node["env"]}
            assert env["KUBELAB_SCRIPT"]["value"] == "train.py"
            assert "job-completion-index" in env["KUBELAB_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
        else:
            # MPI nodes keep the runtime's sshd; mpirun starts the ranks in this container.
            assert node["command"] == job["template"]["spec"]["template"]["spec"]["containers"][0]["command"]


def test_runtime_files_are_the_upstream_set() -> None:
    """Every runtime Trainer v2.3.0 ships is covered by CASES."""
    assert set(RUNTIME_FILES) == {"torch-distributed", "deepspeed-distributed", "jax-distributed",
                                  "mlx-distributed", "xgboost-distributed"}
