"""A real MPI job on the devcluster: plain engine, ``framework: mpi``, 2 ranks, mpi4py allreduce.

Open MPI (``openmpi-bin``) and ``openssh-server`` come from Debian (Makefile APT_PACKAGES). The
job's SSH key is a Secret the job owns (the MPI Operator's way, ``jobs/sshkeys.py``); rank 1 runs
its own sshd on its pod's address, rank 0 runs mpirun over it. The pods are processes in their
own network namespaces on this machine (devcluster/runtime.py, netns.py), so every sshd is the
pod's own and the machine's sshd configuration is never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from kubelab.core.catalogue import HomeStorage
from kubelab.devcluster.testing import wait_for
from kubelab.jobs.builders import BuildContext, job_id, make_children, make_parent
from kubelab.jobs.spec import JobSpec
from kubelab.jobs.sshkeys import new_ssh_auth
from kubelab.jobs.status import build_status

SCRIPT = Path(__file__).parent / "scripts" / "mpi_allreduce.py"
TOOLS = ("mpirun", "orted", "/usr/sbin/sshd", "ssh", "ssh-keygen")



@pytest.fixture(autouse=True)
def _mpi_tools() -> None:
    """Fail, not skip, without the Debian packages: `make setup` installs them."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"{missing} not found: apt-get install openmpi-bin openssh-server (make setup does)"


def create(kube: kubernetes.client.ApiClient, namespace: str, obj: dict[str, Any]) -> Any:
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    calls = {"ConfigMap": core.create_namespaced_config_map, "Service": core.create_namespaced_service,
             "Secret": core.create_namespaced_secret, "Job": batch.create_namespaced_job}
    return calls[obj["kind"]](namespace, obj)


def run_job(kube: kubernetes.client.ApiClient, namespace: str, args: list[str]) -> tuple[Any, dict[str, str]]:
    """Submit the 2-rank MPI job as the service would, wait for both ranks to end, return (status, logs)."""
    ctx = BuildContext(user="alice", namespace=namespace, image="img", home=HomeStorage(access_mode="ReadWriteOnce"),
                       files={"mpi_allreduce.py": SCRIPT.read_bytes()}, ssh_auth=new_ssh_auth(),
                       rendezvous_timeout=120)
    spec = JobSpec(name="mpi", framework="mpi", script="mpi_allreduce.py", workers=2, args=args)
    parent = create(kube, namespace, make_parent(spec, ctx, "plain"))
    children = make_children(spec, ctx, "plain", (parent.metadata.name, parent.metadata.uid))
    assert [o["kind"] for o in children] == ["ConfigMap", "Service", "Secret", "Job", "Job"]
    for obj in children:
        create(kube, namespace, obj)
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    selector = f"kubelab.io/job={spec.name}"

    def ended() -> list[Any] | None:
        jobs = batch.list_namespaced_job(namespace, label_selector=selector).items
        done = [j for j in jobs if any(c.type in ("Complete", "Failed") and c.status == "True"
                                       for c in j.status.conditions or [])]
        return jobs if len(done) == 2 else None

    jobs = wait_for(ended, 240, "both MPI ranks to end")
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    logs = {p.metadata.labels["kubelab.io/rank"]: core.read_namespaced_pod_log(p.metadata.name, namespace)
            for p in pods}
    raw = kube.sanitize_for_serialization
    status = build_status(raw(core.read_namespaced_config_map(job_id("alice", "mpi"), namespace)),
                          [raw(p) for p in pods], [raw(j) for j in jobs], {})
    return status, logs


@pytest.mark.integration
def test_two_rank_mpi_allreduce(kube: kubernetes.client.ApiClient, namespace: str) -> None:
    status, logs = run_job(kube, namespace, [])
    jid = job_id("alice", "mpi")
    assert status.phase == "Succeeded", (status.message, logs)
    # mpirun gathers every rank's output on rank 0; each MPI rank ran in its own pod (its hostname).
    assert f"mpi rank 0 of 2 on {jid}-0: allreduce sum = 3" in logs["0"], logs
    assert f"mpi rank 1 of 2 on {jid}-1: allreduce sum = 3" in logs["0"], logs


@pytest.mark.integration
def test_a_rank_that_exits_1_fails_the_job_naming_it(kube: kubernetes.client.ApiClient, namespace: str) -> None:
    status, logs = run_job(kube, namespace, ["--fail-rank", "1"])
    assert status.phase == "Failed", (status.message, logs)
    assert status.failed_rank == 1 and status.message.startswith("rank 1 failed"), (status.message, logs)
    assert [r.phase for r in status.ranks] == ["Succeeded", "Failed"]
    assert "MPI rank 1 on this worker exited with code 1" in logs["1"], logs
