"""Every pod that runs user code, in every engine, carries kubelab's labels, annotations and volumes.

Quota counts pods by the user label and the groups annotation, the jobs cache and the headless
Service find them by the job and component labels, and the user's script is only visible through
the volumes: a pod template that misses one (the MPI launcher, a Worker replica, a runtime job)
is a pod kubelab loses track of.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubelab.core.catalogue import HomeStorage
from kubelab.jobs.builders import BuildContext, job_id, kubeflow, make_children, plain
from kubelab.jobs.spec import JobSpec
from kubelab.jobs.sshkeys import new_ssh_auth

CTX = BuildContext(user="alice", namespace="jobs", image="img:1", home=HomeStorage(access_mode="ReadWriteMany"),
                   groups=("physics",))
LABELS = {"app.kubernetes.io/managed-by": "kubelab", "kubelab.io/user": "alice", "kubelab.io/job": "j",
          "kubelab.io/component": "rank"}
ANNOTATIONS = {"kubelab.io/groups": "physics"}


def user_pods(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(where, pod template metadata, [(pod spec or patch, container)]) of every user-code pod template."""
    kind, spec = obj["kind"], obj["spec"]
    if kind == "Job":
        yield "Job", spec["template"], spec["template"]["spec"]["containers"][0]
    elif kind == "JobSet":
        for rjob in spec["replicatedJobs"]:
            tpl = rjob["template"]["spec"]["template"]
            yield f"JobSet/{rjob['name']}", tpl, tpl["spec"]["containers"][0]
    elif kind in kubeflow.CONTAINER_NAMES:
        for key, replicas in spec.items():
            if key.endswith("ReplicaSpecs"):
                for rtype, replica in replicas.items():
                    tpl = replica["template"]
                    yield f"{kind}/{rtype}", tpl, tpl["spec"]["containers"][0]
    elif kind == "TrainJob":
        for rjob in spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            tpl = rjob["template"]["spec"]["template"]
            yield f"TrainJob/{rjob['name']}", tpl, tpl["spec"]["containers"][0]


CASES = [pytest.param(engine, framework, id=f"{engine}-{framework}")
         for engine in ("plain", "jobset", "kubeflow-v1", "trainer-v2")
         for framework in ("pytorch", "tensorflow", "mpi", "replicas")
         if not (engine == "trainer-v2" and framework == "tensorflow")]


@pytest.mark.parametrize(("engine", "framework"), CASES)
def test_every_user_code_pod_is_kubelabs(engine: str, framework: str) -> None:
    objects = make_children(JobSpec(name="j", framework=framework, script="t.py", workers=3), CTX, engine,
                            (job_id("alice", "j"), "uid"))
    seen = []
    for obj in objects:
        for where, tpl, container in user_pods(obj):
            seen.append(where)
            assert LABELS.items() <= tpl["metadata"]["labels"].items(), where
            assert tpl["metadata"]["annotations"] == ANNOTATIONS, where
            assert [v for v in tpl["spec"]["volumes"] if "persistentVolumeClaim" in v] == [
                {"name": "home", "persistentVolumeClaim": {"claimName": "home-alice"}}], where
            assert {"name": "home", "mountPath": "/home/jovyan"} in container["volumeMounts"], where
            assert {"name": "scratch", "mountPath": "/tmp", "subPath": "tmp"} in container["volumeMounts"], where
    by_engine = {"plain": ["Job"] * 3, "jobset": ["JobSet/worker"], "trainer-v2": ["TrainJob/node"]}
    by_engine_framework = {
        ("kubeflow-v1", "pytorch"): ["PyTorchJob/Master", "PyTorchJob/Worker"],
        ("kubeflow-v1", "replicas"): ["PyTorchJob/Master", "PyTorchJob/Worker"],
        ("kubeflow-v1", "tensorflow"): ["TFJob/Worker"],
        ("kubeflow-v1", "mpi"): ["MPIJob/Launcher", "MPIJob/Worker"],
        ("trainer-v2", "mpi"): ["TrainJob/node", "TrainJob/launcher"],
    }
    expected = by_engine_framework.get((engine, framework)) or by_engine[engine]
    assert seen == expected


@pytest.mark.parametrize(("retries", "policy"), [pytest.param(0, "Never", id="no-retries"),
                                                 pytest.param(2, "OnFailure", id="two-retries")])
def test_kubeflow_restart_policy_makes_retries_count(retries: int, policy: str) -> None:
    """With ``Never`` the operator fails at the first failed pod and ignores backoffLimit."""
    obj = kubeflow.make_training_job(JobSpec(name="j", script="t.py", workers=2, retries=retries), CTX)
    for replica in obj["spec"]["pytorchReplicaSpecs"].values():
        assert replica["restartPolicy"] == policy
        assert "restartPolicy" not in replica["template"]["spec"]  # the operator sets it (and warns otherwise)
    assert obj["spec"]["runPolicy"]["backoffLimit"] == retries


def test_an_mpi_job_ships_its_own_ssh_key_to_every_rank() -> None:
    """The MPI Operator's way: a kubernetes.io/ssh-auth Secret per job, owned by it, in every rank."""
    auth = new_ssh_auth()
    ctx = BuildContext(**{**CTX.__dict__, "ssh_auth": auth})
    objects = make_children(JobSpec(name="j", framework="mpi", script="t.py", workers=2), ctx, "plain",
                            (job_id("alice", "j"), "uid"))
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert secret["type"] == "kubernetes.io/ssh-auth" and secret["metadata"]["name"] == f"{job_id('alice', 'j')}-ssh"
    assert secret["metadata"]["ownerReferences"][0]["name"] == job_id("alice", "j")
    assert secret["stringData"]["ssh-privatekey"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert secret["stringData"]["ssh-publickey"].startswith("ecdsa-sha2-nistp521 ")
    assert auth.private_key not in repr(auth)
    for job in (o for o in objects if o["kind"] == "Job"):
        pod = job["spec"]["template"]["spec"]
        assert {"name": "ssh", "secret": {"secretName": secret["metadata"]["name"], "items": plain.SSH_ITEMS}} in pod[
            "volumes"]
        assert {"name": "ssh", "mountPath": "/kubelab/ssh", "readOnly": True} in pod["containers"][0]["volumeMounts"]
        assert {"name": "KUBELAB_MPI_SSH_DIR", "value": "/kubelab/ssh"} in pod["containers"][0]["env"]
    others = make_children(JobSpec(name="j", script="t.py", workers=2), ctx, "plain", (job_id("alice", "j"), "uid"))
    assert not [o for o in others if o["kind"] == "Secret" and o["type"] == "kubernetes.io/ssh-auth"]
