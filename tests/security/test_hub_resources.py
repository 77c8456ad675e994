"""Hub resources per user, and quota from what exists (issue 9, classes 3 and 4), on a real hub.

* One user opens 200 followed log streams on a job that prints nothing: past the per-user cap
  they are refused with 429 at once; meanwhile another user's submit answers in under 2 s and
  creates exactly one job; when the client closes its streams, the slots and the hub's
  connections to the API server are freed within 5 s, although the container printed nothing.
* Stop a GPU server, then start it again at once: this works (no reservation lingers).
* A finished job frees its GPUs for the next submit at once.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes
import pytest
import requests
import yaml

from kubelab.core.naming import user_label
from kubelab.devcluster.testing import wait_for
from tests.claims import write_into_claim
from tests.harness import HubProcess
from tests.jobs.helpers import make_jobs_namespace
from tests.security.attacks import TALLY

pytestmark = pytest.mark.integration

RUN = secrets.token_hex(2)
ALICE, BOB = f"streamer-{RUN}", f"bystander-{RUN}"
QUIET = "import time\nprint('started', flush=True)\ntime.sleep(600)\n"
QUICK = "print('done', flush=True)\n"
#: The per-user cap of followed streams (jobs.service.MAX_STREAMS_PER_USER).
PER_USER = 8


@pytest.fixture(scope="module")
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)


@pytest.fixture(scope="module")
def ns(core: kubernetes.client.CoreV1Api) -> Iterator[str]:
    name = make_jobs_namespace(core, "kl-resources")
    for user in (ALICE, BOB):
        claim = f"home-{user}"
        core.create_namespaced_persistent_volume_claim(name, {
            "metadata": {"name": claim, "annotations": {"kubelab.io/username": user}},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
        })
        write_into_claim(core, name, claim, {"quiet.py": QUIET, "quick.py": QUICK}, pod=f"write-{user}")
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def hub(cluster: Any, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    work = tmp_path_factory.mktemp("resources")
    catalogue = {
        "gpuClasses": {"a100": {
            "displayName": "NVIDIA A100", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}},
        "images": {"scipy": {"displayName": "SciPy", "image": "quay.io/jupyter/scipy-notebook:2025-10-20"}},
        "profiles": [
            {"slug": "cpu", "name": "CPU", "images": ["scipy"], "default": True},
            {"slug": "a100", "name": "A100", "images": ["scipy"], "gpu": {"class": "a100", "counts": [1]}},
        ],
        "storage": {"home": {"size": "1Gi", "accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"}},
        "quotas": {"perUser": {"maxGpus": 1, "maxServers": 2}},
        "jobs": {"engine": "plain", "namespace": ns, "maxWorkers": 2, "kueue": {"enabled": False}},
    }
    (work / "catalogue.yaml").write_text(yaml.safe_dump(catalogue))
    config = textwrap.dedent(f"""
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        c.KubeSpawner.namespace = {ns!r}
        configure_platform(c, load_catalogue({str(work / "catalogue.yaml")!r}), jobs_namespace={ns!r},
                           rendezvous_timeout=60)
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.LabSpawner.start_timeout = 120
        c.LabSpawner.http_timeout = 90
        c.LabSpawner.delete_grace_period = 1
    """)
    h = HubProcess(config, connect_ip=cluster.host_ip, workdir=work, env={"KUBECONFIG": str(cluster.kubeconfig)})
    h.start(timeout=90)
    try:
        for user in (ALICE, BOB):
            h.ensure_user(user)
        yield h
    finally:
        h.stop()


def jobs_url(hub: HubProcess, path: str) -> str:
    return f"{hub.api_url}/kubelab/{path}"


def submit(hub: HubProcess, token: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(jobs_url(hub, "jobs"), json=body, headers={"Authorization": f"token {token}"}, timeout=30)


def wait_phase(hub: HubProcess, token: str, name: str, phases: tuple[str, ...], timeout: float = 120) -> dict:
    def check() -> dict | None:
        body = requests.get(jobs_url(hub, f"jobs/{name}"), headers={"Authorization": f"token {token}"},
                            timeout=10).json()
        return body if body.get("phase") in phases else None

    return wait_for(check, timeout, f"job {name} to reach {phases}", interval=0.3)


def hub_pid(hub: HubProcess) -> int:
    return int((hub.workdir / "hub.pid").read_text().strip())


def connections_to(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to ``port`` on loopback (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


def test_many_followed_streams_stall_no_one_and_are_freed_when_closed(hub: HubProcess, cluster: Any,
                                                                      kube: Any, ns: str) -> None:
    alice, bob = hub.user_token(ALICE), hub.user_token(BOB)
    r = submit(hub, alice, {"name": "quiet", "framework": "replicas", "script": "quiet.py"})
    assert r.status_code == 201, r.text
    wait_phase(hub, alice, "quiet", ("Running",))
    apiserver_port = urlparse(yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
                              ["server"]).port
    baseline = connections_to(hub_pid(hub), apiserver_port)

    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=250))

    def follow(_: int) -> requests.Response:
        return session.get(jobs_url(hub, "jobs/quiet/logs?follow=1"), headers={"Authorization": f"token {alice}"},
                           stream=True, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(follow, range(200)))
    held = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    for a in answers:
        TALLY.count("hub resources", refused=a.status_code == 429, created=0)
    for a in refused:
        assert "you already follow 8 log streams" in a.json()["message"], a.text
        assert a.headers.get("Retry-After"), a.headers
    assert (len(held), len(refused)) == (PER_USER, 200 - PER_USER), [a.status_code for a in answers]
    assert connections_to(hub_pid(hub), apiserver_port) >= baseline + PER_USER, "the held follows reach the API"

    # Another user is not delayed: the submit answers quickly and creates exactly one job.
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    t0 = time.monotonic()
    r = submit(hub, bob, {"name": "other", "framework": "replicas", "script": "quick.py"})
    elapsed = time.monotonic() - t0
    assert r.status_code == 201, r.text
    assert elapsed < 2, f"bob's submit took {elapsed:.2f} s while alice held {PER_USER} streams"
    label = f"kubelab.io/user={user_label(BOB)},kubelab.io/job=other"
    parents = [c for c in core.list_namespaced_config_map(ns, label_selector=label).items
               if (c.metadata.labels or {}).get("kubelab.io/component") == "job"]
    assert len(parents) == 1 and len(batch.list_namespaced_job(ns, label_selector=label).items) == 1

    # The client goes away: within 5 s the slots and the API connections are free again,
    # although the followed container printed nothing more.
    for a in held:
        a.close()
    closed = time.monotonic()
    wait_for(lambda: connections_to(hub_pid(hub), apiserver_port) <= baseline, 5,
             "the hub's follows of the API server to close")

    def can_follow_again() -> bool:
        again = follow(0)
        try:
            return again.status_code == 200
        finally:
            again.close()

    wait_for(can_follow_again, max(0.1, 5 - (time.monotonic() - closed)), "a freed stream slot")


def test_stop_then_start_at_once_succeeds(hub: HubProcess, core: Any, ns: str) -> None:
    token = hub.user_token(ALICE)
    path = f"/users/{ALICE}/servers/gpu"
    r = hub.api("POST", path, json={"profile": "a100", "gpus": 1}, token=token, timeout=120)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(ALICE, "gpu", timeout=120)
    hub.stop_server(ALICE, "gpu")
    # At once: no reservation of the stopped server holds the user's one GPU any more.
    r = hub.api("POST", path, json={"profile": "a100", "gpus": 1}, token=token, timeout=120)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(ALICE, "gpu", timeout=120)
    hub.stop_server(ALICE, "gpu")


def test_a_finished_job_frees_its_gpus_for_the_next_submit(hub: HubProcess) -> None:
    token = hub.user_token(BOB)
    body = {"framework": "replicas", "script": "quick.py", "gpus_per_worker": 1, "gpu_class": "a100"}
    r = submit(hub, token, {"name": "first", **body})
    assert r.status_code == 201, r.text
    wait_phase(hub, token, "first", ("Succeeded", "Failed"))
    # At once: the ended job holds nothing, whether or not its record is written yet.
    r = submit(hub, token, {"name": "second", **body})
    assert r.status_code == 201, r.text
