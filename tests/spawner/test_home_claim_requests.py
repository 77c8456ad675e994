"""A start reads the user's home claim and POSTs it only when it is missing (a real hub, real API).

``LabSpawner`` sets ``remember_pvc_name = False`` (the claim's name is derived anew each time), so
KubeSpawner would POST the claim at every start and get a 409 for an existing one. The spawner
reads the claim anyway (``kubelab.core.home.find_home_claim``, the naming-upgrade rule) and
tells KubeSpawner what it found. The hub reaches the API server through ``tests/faults.py``'s
proxy, used here only to record requests (no fault is injected), so every POST is counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml
from faults import FaultProxy
from harness import HubProcess
from kubernetes.client.rest import ApiException
from labhub import CATALOGUE, hub_config, make_namespace, uname

from kubelab.core.naming import home_claim_name

pytestmark = pytest.mark.integration

USER = uname("rhea")


@pytest.fixture(scope="module")
def core(cluster) -> Iterator[kubernetes.client.CoreV1Api]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


def claim_posts(proxy: FaultProxy, namespace: str) -> int:
    with proxy._lock:
        return sum(1 for method, path in proxy.requests
                   if method == "POST" and path.endswith(f"/namespaces/{namespace}/persistentvolumeclaims"))


def wait_claim_gone(core: kubernetes.client.CoreV1Api, namespace: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_persistent_volume_claim(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        assert time.monotonic() < deadline, f"claim {namespace}/{name} still there"
        time.sleep(0.3)


def start(hub: HubProcess) -> None:
    r = hub.api("POST", f"/users/{USER}/server", json={"profile": "cpu-small"}, timeout=120)
    assert r.status_code in (201, 202), (r.status_code, r.text)
    hub.wait_server(USER, timeout=120)


def test_a_restart_posts_no_claim_and_a_deleted_claim_is_made_again(cluster, core, tmp_path: Path) -> None:
    namespace = make_namespace(core)
    claim = home_claim_name(USER)
    try:
        with FaultProxy(cluster.kubeconfig) as proxy:
            (tmp_path / "catalogue.yaml").write_text(yaml.safe_dump(CATALOGUE))
            hub = HubProcess(hub_config(tmp_path / "catalogue.yaml", namespace), connect_ip=cluster.host_ip,
                             workdir=tmp_path, env={"KUBECONFIG": str(proxy.kubeconfig)}).start(timeout=90)
            try:
                hub.ensure_user(USER, ["gpu-users"])
                start(hub)
                assert claim_posts(proxy, namespace) == 1, "the first start creates the home claim"
                hub.stop_server(USER)

                start(hub)
                assert claim_posts(proxy, namespace) == 1, "a restart POSTed the existing claim again"
                hub.stop_server(USER)

                # An admin deletes the claim between two starts: the next start must make it again,
                # not trust what it knew before.
                core.delete_namespaced_persistent_volume_claim(claim, namespace)
                wait_claim_gone(core, namespace, claim)
                start(hub)
                assert claim_posts(proxy, namespace) == 2
                assert core.read_namespaced_persistent_volume_claim(claim, namespace).metadata.name == claim
            finally:
                hub.stop()
    finally:
        core.delete_namespace(namespace)
