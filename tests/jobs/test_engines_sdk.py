"""The ``kubeflow-training`` SDK's TrainingClient reads kubelab's Kubeflow v1 jobs on the devcluster.

kubelab builds the PyTorchJob; the training-operator's part (its pods, its conditions) is done by
hand the way ``test_engines_status.Operator`` documents, and the pods really run kubelab's
entrypoint on the process node, so the SDK reads real logs through the API server.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubeflow.training import TrainingClient

from kubelab.devcluster import ClusterInfo
from kubelab.devcluster.testing import wait_for
from kubelab.jobs.spec import JobSpec
from tests.jobs.test_engines_crds import kubeflow_crds  # noqa: F401 - the fixture
from tests.jobs.test_engines_status import make_job  # noqa: F401 - the fixture


@pytest.mark.integration
def test_training_client_reads_kubelabs_pytorchjob(
        kubeflow_crds: Any, make_job: Any, cluster: ClusterInfo, namespace: str,  # noqa: F811
        kube: kubernetes.client.ApiClient) -> None:
    # "replicas" runs the module in every rank; `python -m platform` prints one line and exits 0.
    status, op = make_job(JobSpec(name="sdk", framework="replicas", module="platform", workers=2), simulate=False)
    op.condition("Created", "Created", f"PyTorchJob {op.name} is created.")
    pods = op.create_pods()
    wait_for(lambda: all(p["status"].get("phase") == "Succeeded" for p in op.pods()), 120, "both ranks Succeeded")
    op.condition("Running", "Running", f"PyTorchJob {op.name} is running.")
    op.condition("Succeeded", "Succeeded", f"PyTorchJob {op.name} is successfully completed.")

    client = TrainingClient(config_file=str(cluster.kubeconfig), namespace=namespace)
    listed = client.list_jobs(namespace=namespace, job_kind="PyTorchJob")
    assert [j.metadata.name for j in listed] == [op.name]
    job = client.get_job(op.name, namespace=namespace, job_kind="PyTorchJob")
    assert job.metadata.labels["kubelab.io/job"] == "sdk"
    assert job.spec.pytorch_replica_specs["Master"].template.spec.containers[0].name == "pytorch"
    assert [c.type for c in client.get_job_conditions(op.name, namespace=namespace, job_kind="PyTorchJob")] == [
        "Created", "Running", "Succeeded"]
    assert client.is_job_succeeded(op.name, namespace=namespace, job_kind="PyTorchJob")
    assert sorted(client.get_job_pod_names(op.name, namespace=namespace, is_master=False)) == sorted(pods)
    assert client.get_job_pod_names(op.name, namespace=namespace, is_master=True) == [f"{op.name}-master-0"]
    logs, _ = client.get_job_logs(op.name, namespace=namespace, job_kind="PyTorchJob", is_master=False)
    assert set(logs) == set(pods)
    # The entrypoint names each rank's place in the job; the rank came from the operator's index label.
    assert "job sdk rank 0 of 2" in logs[f"{op.name}-master-0"]
    assert "job sdk rank 1 of 2" in logs[f"{op.name}-worker-0"]
    # And kubelab's own status agrees with what the SDK read.
    s = status()
    assert s.phase == "Succeeded" and [r.pod for r in s.ranks] == [f"{op.name}-master-0", f"{op.name}-worker-0"]
