"""Under z2jh's common_labels (``app.kubernetes.io/managed-by: kubespawner`` overrides kubelab's),
the notebook pods stay visible: KubeSpawner's start and poll, availability, quota and home
pinning all still see them, because kubelab recognises its pods by ``kubelab.io/user``."""

from __future__ import annotations

import time

import kubernetes
import pytest
from labhub import GPU_CLASS, gpu_free_from_api, make_namespace, start_hub, uname
from test_differential import Z2JH_COMMON_LABELS

pytestmark = pytest.mark.integration

ZOE, YURI = uname("zoe"), uname("yuri")


@pytest.fixture(scope="module")
def core(cluster):
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def hub(cluster, core, tmp_path_factory):
    ns = make_namespace(core, "kl-z2jh")
    # z2jh's hub config sets these before kubelab's extraConfig runs; poll every second so that a
    # pod KubeSpawner's reflector could not see would be reported stopped within the test
    h = start_hub(cluster, ns, tmp_path_factory.mktemp("z2jhhub"),
                  before=f"c.KubeSpawner.common_labels = {Z2JH_COMMON_LABELS!r}\n",
                  extra="c.LabSpawner.poll_interval = 1\n")
    for user in (ZOE, YURI):
        h.ensure_user(user, ["gpu-users"])
    yield h, ns
    for user, server in ((ZOE, ""), (ZOE, "more"), (YURI, "")):
        h.stop_server(user, server)
    h.stop()
    core.delete_namespace(ns)


def pods(core, ns: str, user: str) -> list:
    return core.list_namespaced_pod(ns, label_selector=f"kubelab.io/user={user}").items


def start(h, user: str, server: str, options: dict) -> None:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    r = h.api("POST", path, json=options, timeout=150)
    assert r.status_code in (201, 202), r.text
    h.wait_server(user, server, timeout=150)


def test_pods_carry_z2jh_labels_and_stay_seen(hub, core):
    h, ns = hub
    start(h, ZOE, "", {"profile": "cpu-small"})
    (pod,) = pods(core, ns, ZOE)
    labels = pod.metadata.labels
    # z2jh's common labels won, as in KubeSpawner; kubelab's own label is there beside them
    assert {k: labels[k] for k in Z2JH_COMMON_LABELS} == Z2JH_COMMON_LABELS
    assert labels["kubelab.io/user"] == ZOE and labels["app.kubernetes.io/part-of"] == "kubelab"
    pvc = core.read_namespaced_persistent_volume_claim(f"home-{ZOE}", ns)
    assert pvc.metadata.labels["kubelab.io/user"] == ZOE
    assert pvc.metadata.labels["app.kubernetes.io/managed-by"] == "kubespawner"
    time.sleep(4)  # several polls: KubeSpawner's poll reads the pod from kubelab's cache
    server = h.api("GET", f"/users/{ZOE}").json()["servers"][""]
    assert server["ready"] and not server["pending"], server
    assert "stopped unexpectedly" not in h.log_text()


def test_home_pinning_sees_the_pod(hub, core):
    h, ns = hub
    # zoe's RWO home is in use by her CPU server: a GPU server is refused with the node named,
    # a second CPU server follows the first to its node
    r = h.api("POST", f"/users/{ZOE}/servers/gpu", json={"profile": "a100", "gpus": 1}, timeout=60)
    assert r.status_code == 409, r.text
    assert f"in use by default server on node kubelab-cpu, which has no {GPU_CLASS}" in r.json()["message"]
    start(h, ZOE, "more", {"profile": "cpu-small"})
    (more,) = [p for p in pods(core, ns, ZOE) if p.metadata.labels["kubelab.io/server"] == "more"]
    assert more.spec.node_selector == {"kubernetes.io/hostname": "kubelab-cpu"}


def test_availability_and_quota_see_the_pod(hub, core):
    h, _ = hub
    token = h.user_token(YURI)
    start(h, YURI, "", {"profile": "a100", "gpus": 1})
    detail = h.api("GET", "/kubelab/availability", token=token).json()
    free, total = gpu_free_from_api(core)
    assert (detail["classes"]["a100"]["free"], detail["classes"]["a100"]["allocatable"]) == (free, total)
    assert detail["quota"]["gpus_used"] == 1 and detail["quota"]["gpus_remaining"] == 1
    r = h.api("POST", f"/users/{YURI}/servers/two", json={"profile": "a100", "gpus": 2}, timeout=60)
    assert r.status_code == 429, r.text
    assert "GPU quota" in r.json()["message"] and "default server with 1" in r.json()["message"]
