"""Data in, results out, on the devcluster: a real hub, alice's LabSpawner server, a 2-worker job.

Two platforms, one hub each:

* ``demo``: the catalogue ``make demo`` runs (:func:`kubelab.hub_config.demo.demo_catalogue`):
  RWX homes, which job pods mount at the notebook's path, and a shared RWX volume under the home;
* ``rwo-only``: ReadWriteOnce homes and no shared volume. The job's ranks run on the GPU node
  while alice's server runs on the CPU node, so its outputs can only come back through the
  collector, the one pod that mounts her home, on her server's node.

Either way the job writes a checkpoint and a results file under ``KUBELAB_OUTPUT_DIR``; once it
has ended the test reads both through alice's server's contents API (what JupyterLab's file
browser reads). The job also writes to ``~`` and ``/tmp``: nothing of it lands on the host
outside the devcluster's folders (the snapshot of ``tests/devcluster/test_hygiene.py``). Acting as
the notebook, the test holds only alice's JupyterHub token and uses ``JobClient("hub")`` with her
home's files (read from the devcluster's volume folder, as her server sees them).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import secrets
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests
import torch
import yaml
from harness import HubProcess  # tests/ is on sys.path: its conftest.py puts it there

from kubelab.core.catalogue import parse_catalogue
from kubelab.devcluster.settings import cache_dir
from kubelab.hub_config.demo import demo_catalogue, ensure_shared_claim
from kubelab.jobs import JobClient, JobSpecError
from kubelab.jobs.builders import job_id
from tests.devcluster.test_hygiene import snapshot

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parent / "scripts" / "save_outputs.py"
CPU_NODE, GPU_NODE = "kubelab-cpu", "kubelab-gpu-a100"


def rwo_only() -> dict[str, Any]:
    doc = demo_catalogue()
    doc["storage"]["home"]["accessMode"] = "ReadWriteOnce"
    doc["storage"]["shared"] = None
    doc["storage"]["transfer"] = {"maxOutputSize": "64Mi", "maxInputSize": "16Mi", "maxFiles": 100}
    return doc


PLATFORMS = {"demo": demo_catalogue, "rwo-only": rwo_only}


@dataclass
class Platform:
    name: str
    hub: HubProcess
    namespace: str
    token: str
    home: Path  # alice's home, as the devcluster stores it (what her server sees at /home/jovyan)
    core: kubernetes.client.CoreV1Api

    def client(self) -> JobClient:
        api = f"http://{self.hub.connect_ip}:{self.hub.hub_port}/hub/api"  # a notebook's JUPYTERHUB_API_URL
        return JobClient("hub", api_url=api, token=self.token, home=self.home)

    def contents(self, path: str, fmt: str = "text") -> requests.Response:
        return requests.get(f"{self.hub.url}/user/alice/api/contents/{path}", params={"format": fmt, "type": "file"},
                            headers={"Authorization": f"token {self.token}"}, timeout=60)

    def put(self, path: str, model: dict[str, Any]) -> None:
        r = requests.put(f"{self.hub.url}/user/alice/api/contents/{path}", json=model, timeout=60,
                         headers={"Authorization": f"token {self.token}"})
        assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module", params=sorted(PLATFORMS))
def platform(request: pytest.FixtureRequest, cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    name = request.param
    api = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    namespace = f"kl-files-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubelab.io/test": "true"}}})
    workdir = tmp_path_factory.mktemp(f"files-{name}")
    doc = copy.deepcopy(PLATFORMS[name]())
    doc["jobs"]["maxRuntimeSeconds"] = 900
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(doc))
    ensure_shared_claim(cluster.kubeconfig, parse_catalogue(doc), namespace)  # what `make demo` does
    config = textwrap.dedent(f"""
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        c.KubeSpawner.namespace = {namespace!r}
        configure_platform(c, load_catalogue({str(workdir / "catalogue.yaml")!r}), jobs_namespace={namespace!r},
                           rendezvous_timeout=120)
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.LabSpawner.start_timeout = 180
        c.LabSpawner.http_timeout = 150
        c.LabSpawner.delete_grace_period = 1
    """)
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=workdir, env={"KUBECONFIG": str(cluster.kubeconfig)})
    try:
        hub.start(timeout=90)
        hub.ensure_user("alice", groups=["gpu-users"])
        r = hub.api("POST", "/users/alice/server", json={"profile": "cpu-small"}, timeout=180)
        assert r.status_code in (201, 202), r.text
        hub.wait_server("alice", timeout=240)
        claim = core.read_namespaced_persistent_volume_claim("home-alice", namespace)
        home = Path(core.read_persistent_volume(claim.spec.volume_name).spec.host_path.path)
        yield Platform(name, hub, namespace, hub.user_token("alice"), home, core)
    finally:
        hub.stop()
        core.delete_namespace(namespace)


def wait_outputs(client: JobClient, name: str, states: tuple[str, ...], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(name)
        if status.outputs.get("state") in states:
            return status
        assert time.monotonic() < deadline, status.outputs
        time.sleep(1)


def test_a_two_worker_job_leaves_its_checkpoint_and_results_in_alices_files(platform: Platform, cluster: Any) -> None:
    token = f"kl-esc-{secrets.token_hex(4)}"
    platform.put("proj", {"type": "directory"})
    platform.put("proj/save_outputs.py", {"type": "file", "format": "text", "content": SCRIPT.read_text()})
    dataset = os.urandom(3 * 1024 * 1024)  # over the 1 MiB a shipped folder may hold
    platform.put("data", {"type": "directory"})
    platform.put("data/train.bin", {"type": "file", "format": "base64", "content": base64.b64encode(dataset).decode()})
    client = platform.client()
    rwo = platform.name == "rwo-only"
    # On the RWO platform the ranks go to the GPU node, away from alice's server on the CPU node.
    gpu = {"gpus_per_worker": 1, "gpu_class": "a100"} if rwo else {}
    skip = tuple(p for p in (cluster.state, cache_dir()) if p is not None)
    before = snapshot(skip)

    status = client.submit(name="save", script="proj/save_outputs.py", workers=2, args=[token],
                           inputs=["data"], **gpu)
    assert status.outputs["dir"] == "/home/jovyan/kubelab-runs/save"
    assert status.outputs["route"] == ("collect" if rwo else "direct")
    # Every pod that mounts alice's home, and where each rank runs, watched while the job runs.
    holders: dict[str, str] = {}
    ranks: dict[str, str] = {}
    deadline = time.monotonic() + 420
    while not client.get("save").done:
        assert time.monotonic() < deadline, client.get("save")
        for p in platform.core.list_namespaced_pod(platform.namespace).items:
            if not p.spec.node_name:
                continue
            if any(v.persistent_volume_claim and v.persistent_volume_claim.claim_name == "home-alice"
                   for v in p.spec.volumes or []):
                holders[p.metadata.name] = p.spec.node_name
            if (p.metadata.labels or {}).get("kubelab.io/rank"):
                ranks[p.metadata.name] = p.spec.node_name
        time.sleep(1)
    final = client.get("save")
    assert final.phase == "Succeeded", (final.message, [list(client.logs("save", rank=r))[-15:] for r in range(2)])
    done = wait_outputs(client, "save", ("collected",) if rwo else ("written",))
    print(f"\n[{platform.name}] outputs: {done.outputs['message']}")

    # Both files, read through alice's server as JupyterLab reads them.
    r = platform.contents("kubelab-runs/save/results.json")
    assert r.status_code == 200, r.text
    results = json.loads(r.json()["content"])
    assert results["world"] == 2 and results["home"] == "/home/jovyan" and results["cwd"] == "/home/jovyan"
    # The dataset reached every rank intact: mounted with the home, or fetched from it by the collector.
    assert results["inputs"] == {"data/train.bin": hashlib.sha256(dataset).hexdigest()}
    r = platform.contents("kubelab-runs/save/checkpoints/last.pt", fmt="base64")
    assert r.status_code == 200, r.text
    checkpoint = torch.load(io.BytesIO(base64.b64decode(r.json()["content"])), weights_only=True)
    assert set(checkpoint["model"]) == {"weight", "bias"} and checkpoint["loss"] == pytest.approx(results["loss"])
    for rank in (0, 1):
        assert platform.contents(f"kubelab-runs/save/rank-{rank}.txt").json()["content"] == f"rank {rank} of 2\n"

    # ~ in the job is alice's home where pods mount it, else the rank's scratch: never the host's.
    in_home = platform.contents(f"{token}-home.txt")
    assert in_home.status_code == (404 if rwo else 200), in_home.text
    appeared = sorted(p for p in snapshot(skip) - before if token in p)
    assert appeared == [], f"the job wrote these on the host: {appeared}"
    for path in (f"/root/{token}-home.txt", f"/tmp/{token}-tmp.txt"):
        assert not os.path.lexists(path)

    if rwo:
        # No pod of another node ever mounted the home: its only holders are the server and the
        # collector, both on the server's node; the ranks ran on the GPU node.
        assert set(holders.values()) == {CPU_NODE}, holders
        assert sorted(n.rsplit("-", 1)[0] for n in holders) == ["jupyter-alice", f"{job_id('alice', 'save')}-collector"]
        assert set(ranks.values()) == {GPU_NODE}, ranks
    else:
        assert set(ranks) <= set(holders), "RWX homes: the ranks mount alice's home themselves"
    client.delete("save")


def test_bad_input_is_refused_naming_the_route(platform: Platform) -> None:
    client = platform.client()
    where = "/home/jovyan"
    with pytest.raises(JobSpecError, match=rf"outside your files.*under your home {where}") as err:
        client.submit(name="bad-out", script="proj/save_outputs.py", output_dir="/etc/kubelab-out")
    assert err.value.field == "output_dir"
    with pytest.raises(JobSpecError, match="inputs.*outside your files") as err:
        client.submit(name="bad-in", script="proj/save_outputs.py", inputs=["/datasets/imagenet"])
    assert err.value.field == "inputs"
    if platform.name == "rwo-only":
        # A dataset inside the script's folder cannot be shipped: the refusal names 'inputs'.
        platform.put("bigproj", {"type": "directory"})
        platform.put("bigproj/train.py", {"type": "file", "format": "text", "content": "print(1)"})
        platform.put("bigproj/blob.bin", {"type": "file", "format": "base64",
                                          "content": base64.b64encode(b"x" * (2 * 1024 * 1024)).decode()})
        with pytest.raises(JobSpecError, match=r"more than 1 MiB.*inputs=\[\.\.\.\]"):
            client.submit(name="big", script="bigproj/train.py")
    for name in ("bad-out", "bad-in", "big"):
        with pytest.raises(KeyError):
            client.get(name)
