"""kubelab's status follows the engines' controllers, emulated on real objects.

No controller runs here. Each test writes what the controller documents onto the objects kubelab
built, and checks what ``build_status`` makes of them as read back from the API server:

- **Kubeflow training-operator v1.9.4**, on real PyTorchJob/TFJob objects (the CRDs install on 1.20
  with ``kubectl create --validate=false``, see ``test_engines_crds.py``). Pods as
  ``pkg/controller.v1/common/pod.go`` (``createNewPod``) makes them: named ``<job>-<type>-<index>``
  (``common/util.go``, ``GenGeneralName``), labelled ``training.kubeflow.org/{operator-name,job-name,
  replica-type,replica-index,job-role}``, owned by the job. Conditions as ``pkg/util/status.go``
  sets them (``Running`` and ``Restarting`` replace each other; ``Succeeded``/``Failed`` turn
  ``Running`` False) with the reasons and messages of ``pkg/controller.v1/pytorch/
  pytorchjob_controller.go`` (``UpdateJobStatus``) and ``pkg/controller.v1/common/job.go``
  (``ReconcileJobs``: past the active deadline it sets ``Failed`` and then deletes the pods,
  ``cleanPodPolicy: All``; a suspended job gets ``Suspended`` and loses its pods).
- **Kueue v0.19.2**: the Workload CRD is refused by 1.20, so Workloads are validated offline
  against its schema; what Kueue does to the job (``spec.runPolicy.suspend``,
  ``pkg/controller/jobframework/reconciler.go``) is done to the real PyTorchJob. Conditions as
  ``pkg/workload/workload.go`` and ``pkg/scheduler/preemption/preemption.go`` write them.
- **JobSet v0.12.0**: the CRD is refused by 1.20, so JobSets with the statuses that
  ``pkg/controllers/jobset_controller.go`` writes are validated offline against its schema.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jsonschema
import kubernetes
import pytest
import yaml

from kubelab.core.catalogue import HomeStorage
from kubelab.devcluster import SIMULATE_ANNOTATION
from kubelab.devcluster.testing import wait_for
from kubelab.jobs.builders import BuildContext, job_id, jobset, kubeflow, make_parent
from kubelab.jobs.spec import JobSpec
from kubelab.jobs.status import build_status, failure_record, first_failed
from tests.jobs.test_engines_crds import kubeflow_crds  # noqa: F401 - the fixture
from tests.paths import CRDS

GROUP, VERSION = "kubeflow.org", "v1"
PLURALS = {"PyTorchJob": "pytorchjobs", "TFJob": "tfjobs", "MPIJob": "mpijobs"}
OPERATOR_NAMES = {"PyTorchJob": "pytorchjob-controller", "TFJob": "tfjob-controller", "MPIJob": "mpijob-controller"}
MASTER_TYPES = {"PyTorchJob": "Master", "MPIJob": "Launcher"}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ctx(namespace: str, **kw: Any) -> BuildContext:
    # RWO homes and no script: no volume, so the pods need no claim.
    return BuildContext(**{"user": "alice", "namespace": namespace, "image": "img", "home": HomeStorage(), **kw})


class Operator:
    """The training-operator's documented writes, done by hand on the devcluster.

    With ``simulate`` the pods it creates carry the devcluster's simulate annotation, so the process
    node marks them Running without running the trainer (the test, not kubelab, asks for that).
    """

    def __init__(self, kube: kubernetes.client.ApiClient, namespace: str, job: dict[str, Any],
                 simulate: bool = True) -> None:
        self.simulate = simulate
        self.core = kubernetes.client.CoreV1Api(kube)
        self.custom = kubernetes.client.CustomObjectsApi(kube)
        self.namespace = namespace
        self.kind = job["kind"]
        self.plural = PLURALS[self.kind]
        self.name = job["metadata"]["name"]

    def get(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural, self.name)

    def condition(self, kind: str, reason: str, message: str, status: str = "True") -> None:
        """Set one condition the way pkg/util/status.go setCondition does."""
        job = self.get()
        conds = job.setdefault("status", {}).setdefault("conditions", [])
        if any(c["type"] == "Failed" and c["status"] == "True" for c in conds):
            return  # nothing changes a failed job's conditions
        kept = []
        for c in conds:
            if c["type"] == kind or {kind, c["type"]} == {"Running", "Restarting"}:
                continue
            if kind in ("Failed", "Succeeded") and c["type"] == "Running":
                c = {**c, "status": "False"}
            kept.append(c)
        kept.append({"type": kind, "status": status, "reason": f"{self.kind}{reason}", "message": message,
                     "lastUpdateTime": now(), "lastTransitionTime": now()})
        job["status"]["conditions"] = kept
        job["status"].setdefault("replicaStatuses", {})
        self.custom.replace_namespaced_custom_object_status(GROUP, VERSION, self.namespace, self.plural, self.name, job)

    def create_pods(self) -> list[str]:
        """One pod per replica, from the job's templates, as createNewPod makes them."""
        job = self.get()
        names = []
        for key, replicas in job["spec"].items():
            if not key.endswith("ReplicaSpecs"):
                continue
            for rtype, replica in replicas.items():
                for index in range(replica["replicas"]):
                    tpl = copy.deepcopy(replica["template"])
                    name = f"{self.name}-{rtype.lower()}-{index}"
                    labels = {**tpl["metadata"].get("labels", {}),
                              "training.kubeflow.org/operator-name": OPERATOR_NAMES[self.kind],
                              "training.kubeflow.org/job-name": self.name,
                              "training.kubeflow.org/replica-type": rtype.lower(),
                              "training.kubeflow.org/replica-index": str(index)}
                    if rtype == MASTER_TYPES.get(self.kind):
                        labels["training.kubeflow.org/job-role"] = "master"
                    tpl["spec"]["restartPolicy"] = replica["restartPolicy"]
                    if self.simulate:
                        tpl["metadata"]["annotations"] = {**tpl["metadata"].get("annotations", {}),
                                                          SIMULATE_ANNOTATION: "true"}
                    self.core.create_namespaced_pod(self.namespace, {
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {**tpl["metadata"], "name": name, "labels": labels, "ownerReferences": [{
                            "apiVersion": f"{GROUP}/{VERSION}", "kind": self.kind, "name": self.name,
                            "uid": job["metadata"]["uid"], "controller": True}]},
                        "spec": tpl["spec"]})
                    names.append(name)
        return names

    def pods(self) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"training.kubeflow.org/job-name={self.name}").items
        return [self.core.api_client.sanitize_for_serialization(p) for p in items]

    def delete_pods(self) -> None:
        """cleanPodPolicy All: every pod goes (job.go DeletePodsAndServices)."""
        for pod in self.pods():
            self.core.delete_namespaced_pod(pod["metadata"]["name"], self.namespace, grace_period_seconds=0)
        wait_for(lambda: not self.pods(), 60, f"pods of {self.name} deleted")


@pytest.fixture
def make_job(kube: kubernetes.client.ApiClient, namespace: str) -> Iterator[Any]:
    """Create a job's parent and its Kubeflow v1 object on the devcluster; gives (status reader, operator)."""
    core = kubernetes.client.CoreV1Api(kube)
    custom = kubernetes.client.CustomObjectsApi(kube)

    def make(spec: JobSpec, simulate: bool = True, **kw: Any) -> tuple[Any, Operator]:
        c = ctx(namespace, **kw)
        parent = core.create_namespaced_config_map(namespace, make_parent(spec, c, "kubeflow-v1"))
        obj = kubeflow.make_training_job(spec, c)
        obj["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": parent.metadata.name,
                                               "uid": parent.metadata.uid}]
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[obj["kind"]], obj)
        op = Operator(kube, namespace, obj, simulate)

        def status(**kw: Any) -> Any:
            raw = kube.sanitize_for_serialization(core.read_namespaced_config_map(parent.metadata.name, namespace))
            return build_status(raw, op.pods(), [], {}, engine_object=op.get(), **kw)

        return status, op

    yield make


def wait_running(op: Operator, count: int) -> None:
    wait_for(lambda: len([p for p in op.pods() if p["status"].get("phase") == "Running"]) == count, 60,
             f"{count} pods of {op.name} Running")


@pytest.mark.integration
def test_pytorchjob_running_restarting_succeeded(kubeflow_crds: Any, make_job: Any) -> None:  # noqa: F811
    status, op = make_job(JobSpec(name="ddp", module="pkg.train", workers=3, retries=3), )
    op.condition("Created", "Created", f"PyTorchJob {op.name} is created.")
    assert status().phase == "Pending"
    op.create_pods()
    wait_running(op, 3)
    op.condition("Running", "Running", f"PyTorchJob {op.name} is running.")
    s = status()
    assert (s.phase, s.message) == ("Running", "")
    assert [r.phase for r in s.ranks] == ["Running"] * 3
    # A Worker restarts in place twice (OnFailure, since retries are set); the kubelet's count shows
    # on the pod, and the operator says Restarting (restarts count towards backoffLimit 3).
    worker = f"{op.name}-worker-0"
    pod = op.core.read_namespaced_pod_status(worker, op.namespace)
    body = op.core.api_client.sanitize_for_serialization(pod)
    for cs in body["status"]["containerStatuses"]:
        cs["restartCount"] = 2
    op.core.replace_namespaced_pod_status(worker, op.namespace, body)
    op.condition("Restarting", "Restarting", f"PyTorchJob {op.name} is restarting because 1 Worker replica(s) failed.")
    assert (status().phase, status().message) == ("Running", "Restarting (2 of 3)")
    op.condition("Running", "Running", f"PyTorchJob {op.name} is running.")
    op.condition("Succeeded", "Succeeded", f"PyTorchJob {op.name} is successfully completed.")
    op.delete_pods()
    s = status()
    assert s.phase == "Succeeded" and [r.phase for r in s.ranks] == ["Succeeded"] * 3


@pytest.mark.integration
@pytest.mark.parametrize("framework", ["tensorflow", "pytorch"])
def test_failed_by_deadline_with_the_pods_deleted_keeps_a_final_record(
        kubeflow_crds: Any, make_job: Any, kube: kubernetes.client.ApiClient, framework: str) -> None:  # noqa: F811
    status, op = make_job(JobSpec(name="slow", framework=framework, module="pkg.train", workers=2),
                          max_runtime_seconds=60)
    op.condition("Created", "Created", f"{op.kind} {op.name} is created.")
    op.create_pods()
    wait_running(op, 2)
    op.condition("Running", "Running", f"{op.kind} {op.name} is running.")
    assert status().phase == "Running"
    # job.go: past activeDeadlineSeconds, Failed first, then cleanPodPolicy All deletes the pods.
    op.condition("Failed", "Failed", f"Job {op.name} has failed because it was active longer than specified deadline")
    op.delete_pods()
    s = status()
    assert (s.phase, s.message, s.failed_rank) == ("Failed", "Failed: deadline exceeded", None)
    assert [r.phase for r in s.ranks] == ["Failed", "Failed"]
    # The reconciler's record, written into the real parent: it says why, though no pod is left.
    record = failure_record(s, first_failed(s.ranks, {}), [], now())
    core = kubernetes.client.CoreV1Api(kube)
    core.patch_namespaced_config_map(job_id("alice", "slow"), op.namespace, {"data": {"status.json": json.dumps(record)}})
    final = status()
    assert (final.phase, final.message) == ("Failed", "Failed: deadline exceeded") and final.finished


def workload_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / "kueue/kueue.x-k8s.io_workloads.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    return version["schema"]["openAPIV3Schema"]


def workload(job: dict[str, Any], *conditions: dict[str, Any], admission: dict | None = None) -> dict[str, Any]:
    """The Workload Kueue makes for a PyTorchJob (owned by it), validated against the v0.19.2 CRD."""
    wl = {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
        "metadata": {"name": f"pytorchjob-{job['metadata']['name']}-1a2b3", "namespace": job["metadata"]["namespace"],
                     "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                          "name": job["metadata"]["name"], "uid": job["metadata"]["uid"],
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"queueName": "team-a", "podSets": [{"name": "master", "count": 1,
                                                     "template": {"spec": {"containers": [{"name": "pytorch"}]}}}]},
        "status": {"conditions": [{**c, "lastTransitionTime": now(), "observedGeneration": 1} for c in conditions]},
    }
    if admission:
        wl["status"]["admission"] = admission
    jsonschema.Draft4Validator(workload_schema()).validate(wl)
    return wl


@pytest.mark.integration
def test_kueue_suspended_then_admitted_then_preempted(kubeflow_crds: Any, make_job: Any) -> None:  # noqa: F811
    status, op = make_job(JobSpec(name="queued", module="pkg.train", workers=2), queue="team-a")
    job = op.get()
    assert job["spec"]["runPolicy"]["suspend"] is True
    op.condition("Created", "Created", f"PyTorchJob {op.name} is created.")
    op.condition("Suspended", "Suspended", f"PyTorchJob {op.name} is suspended.")
    assert (status().phase, status().message) == ("Queued", "Queued in team-a")
    pending = workload(job, {"type": "QuotaReserved", "status": "False", "reason": "Pending",
                             "message": "couldn't assign flavors to pod set master: insufficient quota"})
    s = status(workload=pending, queue_position=0)
    assert (s.phase, s.message) == ("Queued", "Queued in team-a, position 1")
    # Admitted: Kueue reserves quota, admits, and unsuspends the job; the operator resumes it.
    admitted = workload(job, {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved",
                              "message": "Quota reserved in ClusterQueue lab"},
                        {"type": "Admitted", "status": "True", "reason": "Admitted",
                         "message": "The workload is admitted"},
                        admission={"clusterQueue": "lab", "podSetAssignments": [{"name": "master", "count": 1}]})
    op.custom.patch_namespaced_custom_object(GROUP, VERSION, op.namespace, op.plural, op.name,
                                             {"spec": {"runPolicy": {"suspend": False}}})
    op.condition("Suspended", "Resumed", f"PyTorchJob {op.name} is resumed.", status="False")
    op.create_pods()
    wait_running(op, 2)
    op.condition("Running", "Running", f"PyTorchJob {op.name} is running.")
    s = status(workload=admitted)
    assert (s.phase, s.message) == ("Running", "")
    # Preempted: Kueue evicts the workload and suspends the job; the operator deletes its pods.
    message = ("Preempted to accommodate a workload (UID: 1f, JobUID: 2e) due to prioritization in the "
               "ClusterQueue; preemptor path: /lab; preemptee path: /lab")
    preempted = workload(job, {"type": "Evicted", "status": "True", "reason": "Preempted", "message": message},
                         {"type": "Preempted", "status": "True", "reason": "InClusterQueue", "message": message},
                         {"type": "QuotaReserved", "status": "False", "reason": "Preempted", "message": message},
                         {"type": "Admitted", "status": "False", "reason": "NoReservation",
                          "message": "The workload has no reservation"})
    op.custom.patch_namespaced_custom_object(GROUP, VERSION, op.namespace, op.plural, op.name,
                                             {"spec": {"runPolicy": {"suspend": True}}})
    op.delete_pods()
    op.condition("Running", "Suspended", f"PyTorchJob {op.name} is suspended.", status="False")
    op.condition("Suspended", "Suspended", f"PyTorchJob {op.name} is suspended.")
    s = status(workload=preempted)
    assert (s.phase, s.message) == ("Queued", "Preempted: prioritization in the ClusterQueue")
    assert [r.phase for r in s.ranks] == ["Queued", "Queued"]


def jobset_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / "jobset/jobset.x-k8s.io_jobsets.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["schema"]["openAPIV3Schema"]


JOBSET_STEPS = [
    # (what the JobSet controller wrote, suspend, phase, message)
    pytest.param([{"type": "Suspended", "status": "True", "reason": "SuspendedJobs", "message": "jobset is suspended"}],
                 0, True, "Queued", "Queued in team-a", id="suspended-by-kueue"),
    pytest.param([{"type": "Suspended", "status": "False", "reason": "ResumeJobs", "message": "jobset is resumed"}],
                 1, False, "Pending", "Restarting (1 of 2)", id="restarted-once"),
    pytest.param([{"type": "Completed", "status": "True", "reason": "AllJobsCompleted",
                   "message": "jobset completed successfully"}], 1, False, "Succeeded", "", id="completed"),
    pytest.param([{"type": "Failed", "status": "True", "reason": "ReachedMaxRestarts",
                   "message": "jobset failed due to reaching max number of restarts"}], 2, False, "Failed",
                 "Failed: restarted the most times allowed (2)", id="failed-max-restarts"),
]


@pytest.mark.parametrize(("conditions", "restarts", "suspend", "phase", "message"), JOBSET_STEPS)
def test_jobset_transitions_offline(conditions: list[dict], restarts: int, suspend: bool, phase: str,
                                    message: str) -> None:
    c = BuildContext(user="alice", namespace="jobs", image="img", home=HomeStorage(), queue="team-a")
    spec = JobSpec(name="js", module="pkg.train", workers=2, retries=2)
    obj = jobset.make_jobset(spec, c)
    obj["metadata"]["uid"] = "u-js"
    obj["spec"]["suspend"] = suspend
    obj["status"] = {"restarts": restarts, "conditions": [{**cd, "lastTransitionTime": now()} for cd in conditions]}
    jsonschema.Draft4Validator(jobset_schema()).validate(obj)
    parent = make_parent(spec, c, "jobset")
    s = build_status(parent, [], [], {}, engine_object=obj)
    assert (s.phase, s.message) == (phase, message)
