"""The jobs service watches the engine's own object and says what its controller says (issue 11).

Where ``test_engines_status.py`` checks ``build_status`` on objects read back by the test, this
runs the real hub: discovery finds the Kubeflow training v1 API (the CRDs installed on the
devcluster), the service creates a PyTorchJob, and its jobs cache watches PyTorchJobs because
discovery found them. The training-operator's documented transitions are written by hand
(``tests.jobs.test_engines_status.Operator``, citing pkg/controller.v1/common/job.go and
pkg/util/status.go of training-operator v1.9.4); the REST API and the final record follow them,
including a job failed at its deadline whose pods the operator deleted (``cleanPodPolicy: All``).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from kubelab.devcluster.testing import wait_for
from kubelab.jobs.builders import job_id
from tests.harness import HubProcess
from tests.jobs.helpers import BASE
from tests.jobs.test_engines_crds import kubeflow_crds  # noqa: F401 - the fixture
from tests.jobs.test_engines_status import Operator, wait_running

pytestmark = pytest.mark.integration


@pytest.fixture
def hub(kubeflow_crds: Any, cluster: Any, namespace: str, tmp_path: Any) -> Iterator[HubProcess]:  # noqa: F811
    raw = json.loads(json.dumps(BASE))
    raw["jobs"].update(namespace=namespace, engine="kubeflow-v1", kueue={"enabled": False})
    (tmp_path / "catalogue.yaml").write_text(yaml.safe_dump(raw))
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        configure_platform(c, load_catalogue({str(tmp_path / "catalogue.yaml")!r}))
    """)
    h = HubProcess(config, connect_ip=cluster.host_ip, workdir=tmp_path / "hub",
                   env={"KUBECONFIG": str(cluster.kubeconfig)})
    h.start(timeout=90)
    try:
        h.ensure_user("alice", ["gpu-users"])
        yield h
    finally:
        h.stop()


def status(hub: HubProcess, token: str, name: str) -> dict[str, Any]:
    r = hub.api("GET", f"/kubelab/jobs/{name}", token=token)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_service_follows_the_operator_to_a_deadline_with_the_pods_deleted(
        hub: HubProcess, kube: kubernetes.client.ApiClient, namespace: str) -> None:
    token = hub.user_token("alice")
    core = kubernetes.client.CoreV1Api(kube)
    core.create_namespaced_persistent_volume_claim(namespace, {  # alice's home, as her notebook made it
        "metadata": {"name": "home-alice", "annotations": {"kubelab.io/username": "alice"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    r = hub.api("POST", "/kubelab/jobs", token=token, json={
        "name": "slow", "framework": "pytorch", "module": "pkg.train", "workers": 2})
    assert r.status_code == 201, r.text
    assert r.json()["engine"] == "kubeflow-v1"
    custom = kubernetes.client.CustomObjectsApi(kube)
    jid = job_id("alice", "slow")
    obj = custom.get_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", jid)
    op = Operator(kube, namespace, obj, simulate=True)
    op.condition("Created", "Created", f"PyTorchJob {jid} is created.")
    op.create_pods()
    wait_running(op, 2)
    op.condition("Running", "Running", f"PyTorchJob {jid} is running.")
    wait_for(lambda: status(hub, token, "slow")["phase"] == "Running", 30, "the service to read Running")
    op.condition("Restarting", "Restarting", f"PyTorchJob {jid} is restarting because 1 Master replica(s) failed.")
    op.condition("Running", "Running", f"PyTorchJob {jid} is running.")
    # job.go: past activeDeadlineSeconds, Failed, then cleanPodPolicy All deletes every pod.
    op.condition("Failed", "Failed", f"Job {jid} has failed because it was active longer than specified deadline")
    op.delete_pods()
    final = wait_for(lambda: (s := status(hub, token, "slow"))["phase"] == "Failed" and s, 30,
                     "the service to read Failed from the PyTorchJob")
    assert final["message"] == "Failed: deadline exceeded", final
    # The reconciler wrote the record without being asked, although no pod is left to blame.
    record = wait_for(lambda: json.loads((core.read_namespaced_config_map(jid, namespace).data or {})
                                         .get("status.json") or "null"), 30, "the final record")
    assert (record["phase"], record["failed_rank"]) == ("Failed", None), record
    assert "deadline exceeded" in record["message"], record
