"""Serialized output of the pure manifest builders, per engine (table-driven)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelab.core.catalogue import HomeStorage, SharedStorage
from kubelab.jobs import builders
from kubelab.jobs.builders import BuildContext, job_id, make_children, make_parent
from kubelab.jobs.builders.common import check_files
from kubelab.jobs.spec import JobSpec, JobSpecError
from tests.jobs.helpers import catalogue

CAT = catalogue()
RWX = HomeStorage(access_mode="ReadWriteMany")
RWO = HomeStorage(access_mode="ReadWriteOnce")
SHARED = SharedStorage("lab-shared", "/shared")
LABELS = {"app.kubernetes.io/managed-by": "kubelab", "kubelab.io/user": "alice", "kubelab.io/job": "ddp"}


def ctx(**kw: Any) -> BuildContext:
    base: dict[str, Any] = {"user": "alice", "namespace": "jobs", "image": "img:1", "home": RWX}
    base.update(kw)
    return BuildContext(**base)


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {"name": "ddp", "script": "train.py", "workers": 2}
    base.update(kw)
    return JobSpec(**base)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def children(s: JobSpec, c: BuildContext, engine: str = "plain") -> list[dict[str, Any]]:
    return make_children(s, c, engine, (job_id(c.user, s.name), "uid-1"))


def plain_jobs(s: JobSpec, c: BuildContext) -> list[dict[str, Any]]:
    return [o for o in children(s, c) if o["kind"] == "Job"]


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


JID = job_id("alice", "ddp")


def test_job_id_is_unique_per_user_and_short() -> None:
    assert job_id("c", "a-b") != job_id("b-c", "a")
    assert len(job_id("x" * 200, "n" * 40)) <= 47
    assert JID.startswith("ddp-")


def test_parent_holds_the_spec_and_says_how_files_are_seen() -> None:
    parent = make_parent(spec(), ctx(), "plain")
    assert parent["kind"] == "ConfigMap" and parent["metadata"]["name"] == JID
    assert parent["metadata"]["labels"] == {**LABELS, "kubelab.io/component": "job"}
    assert json.loads(parent["data"]["spec.json"])["workers"] == 2
    assert parent["metadata"]["annotations"]["kubelab.io/files"] == (
        "files: home claim home-alice mounted at /home/jovyan")


@pytest.mark.parametrize("engine", sorted(builders.ENGINES))
def test_every_child_is_owned_by_the_parent_and_labelled(engine: str) -> None:
    for obj in children(spec(), ctx(), engine):
        assert obj["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": JID, "uid": "uid-1"}]
        assert LABELS.items() <= obj["metadata"]["labels"].items()
        assert obj["metadata"]["namespace"] == "jobs"


def test_plain_headless_service() -> None:
    svc = children(spec(), ctx())[0]
    assert svc["kind"] == "Service" and svc["metadata"]["name"] == JID
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"kubelab.io/user": "alice", "kubelab.io/job": "ddp",
                                       "kubelab.io/component": "rank"}


@pytest.mark.parametrize("rank", [0, 1])
def test_plain_rank_job(rank: int) -> None:
    job = plain_jobs(spec(retries=2, env={"FOO": "bar"}), ctx(max_runtime_seconds=600))[rank]
    assert job["metadata"]["name"] == f"{JID}-{rank}"
    assert job["metadata"]["labels"]["kubelab.io/rank"] == str(rank)
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 600
    assert "suspend" not in job["spec"]
    pod = pod_of(job)
    assert pod["hostname"] == f"{JID}-{rank}" and pod["subdomain"] == JID
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "kubelab.jobs.entrypoint"] and c["args"] == ["--"]
    assert env_of(c) == {
        "FOO": {"secretKeyRef": {"name": f"{JID}-env", "key": "FOO"}}, "KUBELAB_JOB": "ddp", "KUBELAB_FRAMEWORK": "pytorch", "KUBELAB_WORLD_SIZE": "2",
        "KUBELAB_NPROCS": "1", "KUBELAB_PEERS": f"{JID}-0.{JID},{JID}-1.{JID}", "KUBELAB_PORT": "29500",
        "KUBELAB_RENDEZVOUS_TIMEOUT": "300", "KUBELAB_RANK": str(rank), "KUBELAB_SCRIPT": "train.py",
        "KUBELAB_LOG_DIR": "/home/jovyan/kubelab-runs/ddp",
        "HOME": "/home/jovyan", "KUBELAB_OUTPUT_DIR": "/home/jovyan/kubelab-runs/ddp",
    }


@pytest.mark.parametrize("name", ["KUBELAB_RANK", "KUBELAB_RANK_OFFSET", "KUBELAB_PEERS"])
def test_user_env_cannot_set_the_contract(name: str) -> None:
    """A user-supplied KUBELAB_RANK_OFFSET faked the rank (issue 9): every KUBELAB_* name is reserved."""
    with pytest.raises(JobSpecError, match=rf"^env: {name} is reserved: kubelab sets the KUBELAB_\* variables"):
        spec(env={name: "7"})


@pytest.mark.parametrize("engine", ["plain", "jobset", "kubeflow-v1", "trainer-v2"])
def test_env_values_live_in_a_secret_owned_by_the_job(engine: str) -> None:
    s = spec(env={"TOKEN": "s3cr3t-value", "EPOCHS": "3"})
    parent = make_parent(s, ctx(), engine)
    assert "s3cr3t-value" not in json.dumps(parent), "the job's record keeps names only"
    assert json.loads(parent["data"]["spec.json"])["env_names"] == ["EPOCHS", "TOKEN"]
    objs = make_children(s, ctx(), engine, (JID, "uid-1"))
    (secret,) = [o for o in objs if o["kind"] == "Secret"]
    assert secret["metadata"]["name"] == f"{JID}-env"
    assert secret["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap", "name": JID,
                                                      "uid": "uid-1"}]
    assert secret["data"] == {"EPOCHS": "Mw==", "TOKEN": "czNjcjN0LXZhbHVl"}
    assert objs.index(secret) < min(i for i, o in enumerate(objs) if o["kind"] not in ("Secret", "ConfigMap"))
    rest = json.dumps([o for o in objs if o is not secret])
    assert "s3cr3t-value" not in rest, "no pod spec carries the value"
    assert rest.count('"secretKeyRef": {"name": "' + f"{JID}-env" + '", "key": "TOKEN"}') >= 1


def test_no_secret_without_env() -> None:
    assert not [o for o in make_children(spec(), ctx(), "plain", (JID, "u")) if o["kind"] == "Secret"]


def test_defaults_from_the_policy_fill_cpu_and_memory() -> None:
    pod = pod_of(plain_jobs(spec(), ctx(default_cpu_millis=500, default_memory_bytes=2 * 2**30))[0])
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"},
                                                 "limits": {"cpu": "500m", "memory": "2Gi"}}
    pod = pod_of(plain_jobs(spec(cpu="250m", memory="1Gi"), ctx(default_cpu_millis=500))[0])
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "250m", "memory": "1Gi"}


def test_job_pods_mount_the_home_the_lookup_chose() -> None:
    rwx = ctx(home=HomeStorage(access_mode="ReadWriteMany"), home_claim="home-alice-3bc51062")
    pod = pod_of(plain_jobs(spec(), rwx)[0])
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": "home", "persistentVolumeClaim": {"claimName": "home-alice-3bc51062"}}]


def test_gpu_resources_and_placement() -> None:
    gpu = CAT.gpu_classes["a100"]
    pod = pod_of(plain_jobs(spec(gpus_per_worker=2, gpu_class="a100", cpu=1.5, memory="8Gi"), ctx(gpu_class=gpu))[0])
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "1500m", "memory": "8Gi", "nvidia.com/gpu": "2"},
        "limits": {"cpu": "1500m", "memory": "8Gi", "nvidia.com/gpu": "2"},
    }
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_cpu_job_has_no_gpu_placement() -> None:
    pod = pod_of(plain_jobs(spec(cpu=2), ctx())[0])
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}


FILES_CASES = [
    pytest.param(RWX, None, None, {"home", "scratch"}, "/home/jovyan", "home claim home-alice", id="rwx-home-mounted"),
    pytest.param(RWX, SHARED, None, {"home", "shared", "scratch"}, "/home/jovyan", "home claim",
                 id="rwx-home-wins-over-shared"),
    pytest.param(RWO, SHARED, None, {"shared", "scratch"}, "/home/jovyan", "shared volume lab-shared",
                 id="rwo-home-uses-shared"),
    pytest.param(RWO, None, {"train.py": b"print(1)", "lib/util.py": b"x=1"}, {"files", "scratch", "outputs"},
                 "/home/jovyan", "shipped as a ConfigMap", id="rwo-home-no-shared-ships-configmap"),
]


@pytest.mark.parametrize(("home", "shared", "files", "volumes", "workdir", "says"), FILES_CASES)
def test_job_pods_see_the_users_files(home: HomeStorage, shared: SharedStorage | None,
                                      files: dict[str, bytes] | None, volumes: set[str], workdir: str,
                                      says: str) -> None:
    c = ctx(home=home, shared=shared, files=files)
    objs = children(spec(), c)
    pod = pod_of([o for o in objs if o["kind"] == "Job"][0])
    assert {v["name"] for v in pod["volumes"]} == volumes
    assert pod["containers"][0]["workingDir"] == workdir
    assert says in make_parent(spec(), c, "plain")["metadata"]["annotations"]["kubelab.io/files"]
    # The rule DESIGN.md insists on: an RWO home is never mounted into job pods (Multi-Attach).
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    if home.access_mode == "ReadWriteOnce":
        assert "home-alice" not in claims
    if files:
        cm = [o for o in objs if o["kind"] == "ConfigMap"][0]
        assert cm["metadata"]["name"] == f"{JID}-files"
        items = next(v for v in pod["volumes"] if v["name"] == "files")["configMap"]["items"]
        assert sorted(i["path"] for i in items) == sorted(files)


@pytest.mark.parametrize("engine", sorted(builders.ENGINES))
def test_rwo_home_is_never_mounted_by_any_engine(engine: str) -> None:
    text = json.dumps(children(spec(), ctx(home=RWO, shared=SHARED), engine))
    assert "home-alice" not in text and "lab-shared" in text


FILE_ERRORS = [
    pytest.param(RWO, None, None, "script", "files", "send the script's folder", id="configmap-needs-files"),
    pytest.param(RWO, None, {"big.bin": b"x" * (1024 * 1024 + 1)}, "script", "files", "at most 1048576",
                 id="configmap-over-1mib"),
    pytest.param(RWO, None, {"../etc/passwd": b"x"}, "script", "files", "relative path", id="configmap-escape"),
    pytest.param(RWO, SHARED, None, "/home/jovyan/train.py", "script", "under the shared volume",
                 id="shared-script-outside-shared"),
]


@pytest.mark.parametrize(("home", "shared", "files", "script", "field", "match"), FILE_ERRORS)
def test_files_refusals_name_the_field(home: HomeStorage, shared: SharedStorage | None,
                                       files: dict[str, bytes] | None, script: str, field: str, match: str) -> None:
    with pytest.raises(JobSpecError, match=match) as err:
        check_files(spec(script=script), ctx(home=home, shared=shared, files=files))
    assert err.value.field == field


QUEUE_CASES = [
    pytest.param("plain", lambda o: [j for j in o if j["kind"] == "Job"], lambda j: j["spec"]["suspend"], id="plain"),
    pytest.param("kubeflow-v1", lambda o: o, lambda j: j["spec"]["runPolicy"]["suspend"], id="kubeflow-v1"),
    pytest.param("jobset", lambda o: o, lambda j: j["spec"]["suspend"], id="jobset"),
    pytest.param("trainer-v2", lambda o: o, lambda j: j["spec"]["suspend"], id="trainer-v2"),
]


@pytest.mark.parametrize(("engine", "pick", "suspended"), QUEUE_CASES)
def test_kueue_label_and_suspended_when_a_queue_is_set(engine: str, pick: Any, suspended: Any) -> None:
    objs = pick(children(spec(), ctx(queue="team-a"), engine))
    assert objs
    for obj in objs:
        assert obj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert suspended(obj) is True
    for obj in pick(children(spec(), ctx(), engine)):
        assert "kueue.x-k8s.io/queue-name" not in obj["metadata"]["labels"]


KUBEFLOW_CASES = [
    pytest.param("pytorch", "PyTorchJob", "pytorchReplicaSpecs", {"Master": 1, "Worker": 2}, "pytorch", id="pytorch"),
    pytest.param("tensorflow", "TFJob", "tfReplicaSpecs", {"Worker": 3}, "tensorflow", id="tensorflow"),
    pytest.param("mpi", "MPIJob", "mpiReplicaSpecs", {"Launcher": 1, "Worker": 2}, "mpi", id="mpi"),
]


@pytest.mark.parametrize(("framework", "kind", "key", "replicas", "container"), KUBEFLOW_CASES)
def test_kubeflow_v1_kinds(framework: str, kind: str, key: str, replicas: dict[str, int], container: str) -> None:
    (obj,) = children(spec(framework=framework, workers=3), ctx(), "kubeflow-v1")
    assert obj["apiVersion"] == "kubeflow.org/v1" and obj["kind"] == kind
    specs = obj["spec"][key]
    assert {k: v["replicas"] for k, v in specs.items()} == replicas
    for rtype, rspec in specs.items():
        pod = rspec["template"]["spec"]
        assert pod["containers"][0]["name"] == container
        assert pod["automountServiceAccountToken"] is False
        env = env_of(pod["containers"][0])
        assert env["KUBELAB_WORLD_SIZE"] == "3"
        if rtype in ("Master", "Launcher"):
            assert env["KUBELAB_RANK"] == "0"
        else:
            assert env["KUBELAB_RANK"] == {"fieldRef": {
                "fieldPath": "metadata.labels['training.kubeflow.org/replica-index']"}}
            assert env.get("KUBELAB_RANK_OFFSET") == (None if framework == "tensorflow" else "1")
    assert obj["spec"]["runPolicy"]["cleanPodPolicy"] == "All"


def test_jobset_is_one_indexed_job_with_dns_hostnames() -> None:
    (obj,) = children(spec(workers=3), ctx(), "jobset")
    assert obj["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    assert obj["spec"]["network"] == {"enableDNSHostnames": True, "subdomain": JID, "publishNotReadyAddresses": True}
    (rj,) = obj["spec"]["replicatedJobs"]
    job = rj["template"]["spec"]
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (3, 3, "Indexed")
    env = env_of(job["template"]["spec"]["containers"][0])
    assert env["KUBELAB_PEERS"] == ",".join(f"{JID}-worker-0-{r}.{JID}" for r in range(3))


def test_trainjob_refuses_tensorflow_naming_the_field() -> None:
    with pytest.raises(JobSpecError, match="no Kubeflow Trainer v2 runtime") as err:
        children(spec(framework="tensorflow"), ctx(), "trainer-v2")
    assert err.value.field == "framework"


def test_trainjob_shape() -> None:
    (obj,) = children(spec(workers=4), ctx(max_runtime_seconds=60), "trainer-v2")
    assert obj["spec"]["runtimeRef"] == {"name": "torch-distributed"}
    assert obj["spec"]["trainer"]["numNodes"] == 4 and obj["spec"]["activeDeadlineSeconds"] == 60
    patch = obj["spec"]["runtimePatches"][0]
    assert patch["manager"] == "kubelab.io/jobs"


def test_groups_annotation_reaches_the_pods() -> None:
    job = plain_jobs(spec(), ctx(groups=("gpu-users",)))[0]
    # exactly the groups: simulation is the devcluster's business, never a builder's
    assert job["spec"]["template"]["metadata"]["annotations"] == {"kubelab.io/groups": "gpu-users"}
