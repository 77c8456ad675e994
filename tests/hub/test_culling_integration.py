"""Idle culling on the real hub: per-profile timeouts, servers stopped, home PVCs kept.

The GPU profile's timeout is set to the schema's minimum (60 s) in a copy of the example
catalogue; the CPU profile keeps the default hour. The culler (started by the hub from
``hub_config/jupyterhub_config.py``) checks every 5 s here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from kubelab.core.catalogue import EXAMPLE_PATH
from kubelab.core.naming import home_claim_name
from tests.hub.platform import Platform, delete_namespace, start_platform

pytestmark = pytest.mark.integration

GPU_TIMEOUT = 60


@pytest.fixture(scope="module")
def core(cluster: Any) -> Iterator[kubernetes.client.CoreV1Api]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def platform(
    cluster: Any, core: kubernetes.client.CoreV1Api, client_secret_file: Path, provider_installed: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    workdir = tmp_path_factory.mktemp("culling")
    doc = yaml.safe_load(EXAMPLE_PATH.read_text())
    for profile in doc["profiles"]:
        if profile["slug"] == "a100":
            profile["idleTimeout"] = GPU_TIMEOUT
    catalogue = workdir / "platform.yaml"
    catalogue.write_text(yaml.safe_dump(doc))
    p = start_platform(
        cluster, core, workdir, client_secret_file,
        env={"KUBELAB_CONFIG": str(catalogue), "KUBELAB_CULL_EVERY": "5"}, namespace_prefix="kl-cull",
    )
    yield p
    p.stop()
    delete_namespace(core, p.namespace)


def pvc_exists(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_persistent_volume_claim(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def server_state(platform: Platform, user: str) -> dict[str, Any] | None:
    """The user's default server model, or None when it is not running."""
    return platform.hub.api("GET", f"/users/{user}").json().get("servers", {}).get("")


def test_gpu_server_culled_sooner_and_pvc_kept(platform: Platform, core: kubernetes.client.CoreV1Api) -> None:
    hub = platform.hub
    # Two users, so that each has their own RWO home and neither waits for the other.
    hub.ensure_user("carol", groups=["gpu-users"])
    hub.ensure_user("dave", groups=["students"])
    r = hub.api("POST", "/users/carol/server", json={"profile": "a100", "image": "pytorch-gpu", "gpus": 1})
    assert r.status_code in (201, 202), r.text
    r = hub.api("POST", "/users/dave/server", json={"profile": "cpu-small", "image": "scipy"})
    assert r.status_code in (201, 202), r.text
    carol = hub.wait_server("carol", timeout=180)
    hub.wait_server("dave", timeout=180)
    started = time.monotonic()
    assert carol["user_options"]["profile"] == "a100"

    # Idle since start: the GPU server must go after ~60 s (+ one check interval), the CPU one stays.
    deadline = started + GPU_TIMEOUT + 60
    while server_state(platform, "carol") is not None:
        assert time.monotonic() < deadline, f"GPU server not culled:\n{hub.log_tail(30)}"
        time.sleep(2)
    # The culler's own line says how long the server had been idle when it was culled.
    match = re.search(r"Culling server carol \(inactive for (\d+):(\d\d):(\d\d)\)", hub.log_text())
    assert match, hub.log_tail(30)
    idle = int(match[1]) * 3600 + int(match[2]) * 60 + int(match[3])
    print(f"\nGPU server culled after {idle} s idle (timeout {GPU_TIMEOUT} s, checked every 5 s)")
    assert GPU_TIMEOUT <= idle <= GPU_TIMEOUT + 15

    # The pod is gone; the home PVC stays.
    deadline = time.monotonic() + 60
    while core.list_namespaced_pod(platform.namespace, label_selector="kubelab.io/user=carol").items:
        assert time.monotonic() < deadline, "carol's pod still exists"
        time.sleep(1)
    assert pvc_exists(core, platform.namespace, home_claim_name("carol"))
    # The user is kept too (--cull-users=false), so the PVC keeps its owner.
    assert hub.api("GET", "/users/carol").status_code == 200

    # The CPU server (1 h timeout) was just as idle, and is still running.
    dave = server_state(platform, "dave")
    assert dave is not None and dave["ready"], dave
    assert "Culling server dave" not in hub.log_text()
