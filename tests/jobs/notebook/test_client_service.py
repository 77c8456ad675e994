"""JobClient against the real jobs service in a real hub, on the devcluster's process node.

The test acts as a notebook: it holds only a JupyterHub API token (no Kubernetes credentials)
and uses ``JobClient("hub")``. Homes are ReadWriteOnce and there is no shared volume in this
catalogue, so the client ships the script's folder with the job (``files``), as from a notebook
whose home the job pods cannot mount.
"""

from __future__ import annotations

import re
import secrets
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from harness import HubProcess  # tests/ is on sys.path: its conftest.py puts it there

from kubelab.devcluster.testing import bound_claim
from kubelab.jobs import JobClient, JobSpec, JobSpecError

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).parents[1] / "scripts"  # the server side's DDP script, shared on purpose
FINAL = re.compile(r"rank=(\d+) world_size=(\d+) .*final_loss=([0-9.eE+-]+)")

CATALOGUE: dict[str, Any] = {
    "platform": {"name": "kubelab-notebook-test"},
    "gpuClasses": {
        "a100": {"displayName": "NVIDIA A100 80GB",
                 "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    },
    "images": {"cpu": {"displayName": "PyTorch (CPU)", "image": "ghcr.io/kubelab/notebook-cpu:0.1.0"}},
    "profiles": [
        {"slug": "cpu", "name": "CPU", "images": ["cpu"], "default": True},
        {"slug": "a100", "name": "A100", "images": ["cpu"], "gpu": {"class": "a100", "counts": [1, 2]},
         "groups": ["gpu-users"]},
    ],
    "storage": {"home": {"size": "1Gi", "accessMode": "ReadWriteOnce", "mountPath": "/home/jovyan"}},
    "quotas": {"perUser": {"maxGpus": 2}},
    "jobs": {"engine": "plain", "maxWorkers": 4, "maxRuntimeSeconds": 900},
}


@pytest.fixture(scope="module")
def jobs_hub(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, str]]:
    """A hub with LabSpawner and the jobs service, in a fresh namespace; yields (hub, namespace)."""
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
    namespace = f"kl-nb-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubelab.io/test": "true"}}})
    # alice's home, as her first server start makes it: the job's collector mounts it (RWO homes).
    bound_claim(core, namespace, "home-alice", "ReadWriteOnce")
    workdir = tmp_path_factory.mktemp("jobs-hub")
    catalogue = workdir / "catalogue.yaml"
    catalogue.write_text(yaml.safe_dump(CATALOGUE))
    config = textwrap.dedent(f"""
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        c.KubeSpawner.namespace = {namespace!r}
        configure_platform(c, load_catalogue({str(catalogue)!r}), jobs_namespace={namespace!r},
                           rendezvous_timeout=60)
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
    """)
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=workdir, env={"KUBECONFIG": str(cluster.kubeconfig)})
    try:
        hub.start(timeout=90)
        hub.ensure_user("alice", groups=["gpu-users"])
        hub.ensure_user("bob")
        yield hub, namespace
    finally:
        hub.stop()
        core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice's notebook home: the DDP script in a folder of its own."""
    home = tmp_path_factory.mktemp("home-alice")
    (home / "ddp").mkdir()
    shutil.copy(SCRIPTS / "ddp_linreg.py", home / "ddp" / "ddp_linreg.py")
    return home


def notebook_api_url(hub: HubProcess) -> str:
    """What a notebook's JUPYTERHUB_API_URL is: the hub's own address (hub_connect_url), not the proxy."""
    return f"http://{hub.connect_ip}:{hub.hub_port}/hub/api"


@pytest.fixture(scope="module")
def alice(jobs_hub: tuple[HubProcess, str], home: Path) -> JobClient:
    hub, _ = jobs_hub
    return JobClient("hub", api_url=notebook_api_url(hub), token=hub.user_token("alice"), home=home)


def losses(client: JobClient, name: str, workers: int) -> list[float]:
    found = []
    for rank in range(workers):
        lines = list(client.logs(name, rank=rank))
        match = next((m for m in map(FINAL.search, lines) if m), None)
        assert match, (rank, lines[-20:])
        assert (int(match[1]), int(match[2])) == (rank, workers)
        found.append(float(match[3]))
    return found


def test_two_worker_ddp_on_the_cluster_matches_local_processes(alice: JobClient, home: Path, tmp_path: Path) -> None:
    spec = JobSpec(name="ddp", script="ddp/ddp_linreg.py", workers=2)
    options = alice.options()
    assert options["files"] == "configmap" and options["user"] == "alice"

    status = alice.submit(spec)
    assert status.phase in ("Pending", "Running")
    # Follow rank 1 while it runs: the stream ends when the rank's container ends.
    followed = list(alice.logs("ddp", rank=1, follow=True))
    final = alice.wait("ddp", timeout=240)
    assert final.phase == "Succeeded", (final, followed[-20:])
    assert [r.phase for r in final.ranks] == ["Succeeded", "Succeeded"]
    assert any("final_loss=" in line for line in followed), followed[-20:]
    cluster = losses(alice, "ddp", 2)
    assert cluster[0] == cluster[1]

    local = JobClient("local", root=tmp_path / "local", workdir=home, rendezvous_timeout=60)
    local.submit(spec)
    done = local.wait("ddp", timeout=240)
    assert done.phase == "Succeeded", (done.message, done.last_logs)
    here = losses(local, "ddp", 2)
    # Same script, same torch build and the same two-rank gloo all-reduce (one float32 add, which
    # commutes exactly) on the same CPU: the losses should agree to the bit. 1e-6 relative leaves
    # room only for a different CPU code path (e.g. AVX width) between the pod and this process.
    assert here[0] == pytest.approx(cluster[0], rel=1e-6)
    local.delete("ddp")

    # History: cancelling a job that ended changes nothing; it stays listed until deleted.
    alice.cancel("ddp")
    assert alice.get("ddp").phase == "Succeeded"
    alice.delete("ddp")
    with pytest.raises(KeyError, match="no job 'ddp'"):
        alice.get("ddp")


@pytest.mark.parametrize(
    ("fields", "field", "match"),
    [
        ({"gpus_per_worker": 99, "gpu_class": "a100"}, "gpus_per_worker", "99"),
        ({"image": "evil/miner:latest"}, "image", "evil/miner:latest"),
        ({"workers": 9}, "workers", "9"),
    ],
    ids=["99-gpus", "image-not-allowed", "too-many-workers"],
)
def test_refusals_name_the_field(alice: JobClient, fields: dict, field: str, match: str) -> None:
    with pytest.raises(JobSpecError, match=match) as info:
        alice.submit(name="refused", script="ddp/ddp_linreg.py", **fields)
    assert info.value.field == field
    with pytest.raises(KeyError):
        alice.get("refused")


def test_unknown_field_is_refused_by_the_service(alice: JobClient) -> None:
    backend = alice.backend
    with pytest.raises(JobSpecError, match="unknown field") as info:
        backend._request("POST", "jobs", json={"name": "x", "script": "t.py", "colour": "red"})
    assert info.value.field == "colour"


def test_quota_refusal_is_a_permission_error(alice: JobClient) -> None:
    with pytest.raises(PermissionError, match="GPU quota"):
        alice.submit(name="greedy", script="ddp/ddp_linreg.py", workers=2, gpus_per_worker=2, gpu_class="a100")


def test_other_users_and_scopeless_tokens(jobs_hub: tuple[HubProcess, str], alice: JobClient, home: Path) -> None:
    hub, _ = jobs_hub
    alice.submit(name="mine", script="ddp/ddp_linreg.py", workers=1)
    try:
        bob = JobClient("hub", api_url=notebook_api_url(hub), token=hub.user_token("bob"))
        assert [j.name for j in bob.list()] == []
        with pytest.raises(KeyError, match="no job 'mine'"):
            bob.get("mine")
        with pytest.raises(KeyError, match="no job 'mine'"):
            list(bob.logs("mine"))
        with pytest.raises(KeyError, match="no job 'mine'"):
            bob.cancel("mine")
        scopeless = JobClient("hub", api_url=notebook_api_url(hub), token=hub.user_token("alice", scopes=["read:users:name!user"]))
        with pytest.raises(PermissionError, match="custom:kubelab:jobs"):
            scopeless.list()
        with pytest.raises(PermissionError, match="custom:kubelab:jobs"):
            scopeless.submit(name="sneaky", script="ddp/ddp_linreg.py")
        assert alice.get("mine").name == "mine"
        with pytest.raises(JobSpecError, match="already exists") as info:
            alice.submit(name="mine", script="ddp/ddp_linreg.py", workers=1)
        assert info.value.field == "name"
    finally:
        alice.cancel("mine")
