"""LabSpawner against the devcluster with a real JupyterHub, proxy and the process node."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
from collections.abc import Iterator

import kubernetes
import pytest
import requests
from kubernetes.client.rest import ApiException
from labhub import CATALOGUE, GPU_CLASS, gpu_free_from_api, make_namespace, start_hub, uname

pytestmark = pytest.mark.integration

ALICE, CAROL, GINA, DORA, QA, BOSS, MALLORY, EVE, NOBODY = (
    uname(n) for n in ("alice", "carol", "gina", "dora", "qa", "boss", "mallory", "eve", "nobody")
)
USERS = {
    ALICE: ["gpu-users"], CAROL: ["gpu-users"], GINA: ["gpu-users"], DORA: [], QA: ["gpu-users"],
    BOSS: ["gpu-users"], MALLORY: ["students"], EVE: ["gpu-users"], NOBODY: [],
}


@pytest.fixture(scope="module")
def core(cluster) -> Iterator[kubernetes.client.CoreV1Api]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def hub_ns(core) -> Iterator[str]:
    name = make_namespace(core)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def hub(cluster, hub_ns, tmp_path_factory):
    h = start_hub(cluster, hub_ns, tmp_path_factory.mktemp("labhub"))
    for user, groups in USERS.items():
        h.ensure_user(user, groups)
    yield h
    h.stop()


def pods_of(core, ns: str, user: str) -> list:
    return core.list_namespaced_pod(ns, label_selector=f"kubelab.io/user={user}").items


def pvc_exists(core, ns: str, name: str) -> bool:
    try:
        core.read_namespaced_persistent_volume_claim(name, ns)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def wait_no_pods(core, ns: str, user: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while pods_of(core, ns, user):
        assert time.monotonic() < deadline, f"pods of {user} still present"
        time.sleep(0.3)


def spawn(hub, user: str, server: str, options: dict, timeout: float = 120) -> dict:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    r = hub.api("POST", path, json=options, timeout=timeout)
    assert r.status_code in (201, 202), (r.status_code, r.text)
    return hub.wait_server(user, server, timeout=timeout)


def spawn_watching_progress(hub, user: str, options: dict) -> tuple[dict, list[str]]:
    """Spawn the default server while reading the hub's progress event stream; return (model, messages)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        post = pool.submit(hub.api, "POST", f"/users/{user}/server", json=options, timeout=120)
        time.sleep(0.3)  # let the hub register the pending spawn
        messages: list[str] = []
        # straight to the hub: the Python proxy buffers event streams until they end
        with requests.get(f"{hub.hub_api_url}/users/{user}/server/progress", headers={"Authorization": f"token {hub.token}"},
                          stream=True, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    messages.append(event.get("message", ""))
                    if event.get("ready") or event.get("failed"):
                        break
        assert post.result().status_code in (201, 202)
    return hub.wait_server(user), messages


def test_rest_spawns_cpu_and_gpu(hub, hub_ns, core):
    cpu = spawn(hub, ALICE, "", {"profile": "cpu-small"})
    gpu = spawn(hub, CAROL, "g", {"profile": "a100", "gpus": 1})
    (cpu_pod,) = pods_of(core, hub_ns, ALICE)
    (gpu_pod,) = pods_of(core, hub_ns, CAROL)

    c = gpu_pod.spec.containers[0]
    assert c.resources.requests["nvidia.com/gpu"] == "1" and c.resources.limits["nvidia.com/gpu"] == "1"
    assert gpu_pod.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in [
        {k: v for k, v in t.to_dict().items() if v is not None} for t in gpu_pod.spec.tolerations
    ]
    assert gpu_pod.spec.node_name == "kubelab-gpu-a100"
    labels = gpu_pod.metadata.labels
    assert (labels["kubelab.io/user"], labels["kubelab.io/profile"], labels["kubelab.io/server"]) == (CAROL, "a100", "g")
    assert labels["app.kubernetes.io/managed-by"] == "kubelab"
    env = {e.name: e.value for e in c.env}
    assert (env["KUBELAB_PROFILE"], env["HOME"]) == ("a100", "/home/jovyan")
    assert c.working_dir == "/home/jovyan"
    assert gpu_pod.spec.automount_service_account_token is False
    assert {v.persistent_volume_claim.claim_name for v in gpu_pod.spec.volumes if v.persistent_volume_claim} == {f"home-{CAROL}", "lab-shared"}
    assert "--allow-root" in c.args or "--allow-root" in (c.command or [])

    cc = cpu_pod.spec.containers[0]
    assert "nvidia.com/gpu" not in (cc.resources.limits or {}) and "nvidia.com/gpu" not in (cc.resources.requests or {})
    assert not cpu_pod.spec.node_selector
    assert cc.resources.limits["cpu"] == "1" and cc.resources.requests["memory"] == str(256 * 2**20)
    assert cpu_pod.metadata.labels["kubelab.io/profile"] == "cpu-small"

    # the notebook servers answer through the hub's proxy
    for user, model in ((ALICE, cpu), (CAROL, gpu)):
        token = hub.user_token(user)
        r = requests.get(f"{hub.url}{model['url']}api/status", headers={"Authorization": f"token {token}"}, timeout=30)
        assert r.status_code == 200, (user, r.status_code, r.text[:300])

    hub.stop_server(ALICE)
    hub.stop_server(CAROL, "g")
    wait_no_pods(core, hub_ns, ALICE)
    assert pvc_exists(core, hub_ns, f"home-{ALICE}") and pvc_exists(core, hub_ns, f"home-{CAROL}")


# (id, user, options, status, message regex): users are eve (gpu-users), mallory (students), nobody (no group)
TAMPERED = [
    ("gpu-profile-outside-group", MALLORY, {"profile": "a100", "gpus": 1}, 403, r"profile 'a100' is only for members of gpu-users; you are in: students"),
    ("gpu-profile-no-group", NOBODY, {"profile": "a100"}, 403, r"only for members of gpu-users; you are in: \(none\)"),
    ("unknown-key", EVE, {"profile": "cpu-small", "cpu_limit": 64}, 400, r"unknown option 'cpu_limit'; allowed keys: gpus, image, profile"),
    ("unknown-keys", EVE, {"node_selector": {"a": "b"}, "tolerations": []}, 400, r"unknown options 'node_selector', 'tolerations'; allowed keys"),
    ("kubespawner-override", EVE, {"profile": "a100", "kubespawner_override": {"image": "x"}}, 400, r"unknown option 'kubespawner_override'"),
    ("kubespawner-profile-option", EVE, {"profile": "a100", "profile-option-a100--image": "x"}, 400, r"allowed keys: gpus, image, profile"),
    ("raw-image-ref", EVE, {"profile": "cpu-small", "image": "evil/miner:latest"}, 400, r"image 'evil/miner:latest' is not offered with profile 'cpu-small'; allowed: scipy"),
    ("gpu-image-on-cpu-profile", EVE, {"profile": "cpu-small", "image": "torch-gpu"}, 400, r"image 'torch-gpu' is not offered with profile 'cpu-small'"),
    ("gpu-image-outside-group", MALLORY, {"profile": "cpu-small", "image": "torch-gpu"}, 403, r"image 'torch-gpu' is only offered with profiles you may not use \(a100\)"),
    ("unknown-profile", EVE, {"profile": "h100"}, 400, r"unknown profile 'h100'; allowed: cpu-small, a100"),
    ("unknown-profile-student", MALLORY, {"profile": "h100"}, 400, r"unknown profile 'h100'; allowed: cpu-small$|allowed: cpu-small\""),
    ("profile-not-string", EVE, {"profile": {"slug": "a100"}}, 400, r"profile must be a string"),
    ("gpus-not-allowed", EVE, {"profile": "a100", "gpus": 3}, 400, r"gpus 3 is not allowed with profile 'a100'; allowed: 1, 2, 4, 8"),
    ("gpus-huge", EVE, {"profile": "a100", "gpus": 10**6}, 400, r"gpus 1000000 is not allowed"),
    ("gpus-negative", EVE, {"profile": "a100", "gpus": -1}, 400, r"gpus -1 is not allowed"),
    ("gpus-float", EVE, {"profile": "a100", "gpus": 1.5}, 400, r"gpus 1.5 is not allowed"),
    ("gpus-bool", EVE, {"profile": "a100", "gpus": True}, 400, r"gpus True is not allowed"),
    ("gpus-string-junk", EVE, {"profile": "a100", "gpus": "1 OR 1=1"}, 400, r"gpus '1 OR 1=1' is not allowed"),
    ("gpus-zero-on-gpu-profile", EVE, {"profile": "a100", "gpus": 0}, 400, r"gpus 0 is not allowed"),
    ("gpus-on-cpu-profile", EVE, {"profile": "cpu-small", "gpus": 1}, 400, r"profile 'cpu-small' has no GPU"),
    ("gpus-on-default-profile", MALLORY, {"gpus": "1"}, 400, r"profile 'cpu-small' has no GPU"),
    ("image-not-string", EVE, {"profile": "cpu-small", "image": ["scipy"]}, 400, r"image must be a string"),
    ("gpu-count-over-user-quota", EVE, {"profile": "a100", "gpus": 4}, 403, r"GPU quota: server 't\d+' asks for 4 GPUs but the limit is 2"),
    ("student-group-quota", MALLORY, {"profile": "cpu-small"}, None, None),  # allowed: a CPU server is fine
]
TAMPERED = [t for t in TAMPERED if t[3] is not None]


def test_tampered_requests_create_nothing(hub, hub_ns, core):
    assert len(TAMPERED) >= 20
    failures = []
    for i, (case, user, options, status, message) in enumerate(TAMPERED):
        token = hub.user_token(user)
        r = hub.api("POST", f"/users/{user}/servers/t{i}", json=options, token=token)
        text = r.json().get("message", "") if r.headers.get("content-type", "").startswith("application/json") else r.text
        if r.status_code != status or not re.search(message, text):
            failures.append((case, r.status_code, text[:200]))
    assert not failures, failures
    for user in (MALLORY, EVE, NOBODY):
        assert pods_of(core, hub_ns, user) == []
        assert not pvc_exists(core, hub_ns, f"home-{user}")


def test_form_applies_the_same_rules(hub, hub_ns, core):
    s = requests.Session()
    s.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf")
    r = s.post(f"{hub.url}/hub/login", data={"username": MALLORY, "password": "pw", "_xsrf": xsrf}, timeout=30)
    assert r.ok, r.status_code
    xsrf = s.cookies.get("_xsrf")
    for fields, words in (
        ({"profile": "a100", "gpus--a100": "1"}, "profile &#39;a100&#39; is only for members of gpu-users"),
        ({"profile": "cpu-small", "cpu_limit": "64"}, "unknown option &#39;cpu_limit&#39;"),
    ):
        r = s.post(f"{hub.url}/hub/spawn/{MALLORY}/f", data={**fields, "_xsrf": xsrf}, timeout=30)
        assert words in r.text or words.replace("&#39;", "'") in r.text, r.text[-2000:]
    assert pods_of(core, hub_ns, MALLORY) == []


def test_concurrent_quota_admits_exactly_one(hub, hub_ns, core):
    token = hub.user_token(QA)
    # a serving hub has its cluster cache filled already (any page view starts it); do the same here
    assert hub.api("GET", "/kubelab/availability/summary").ok

    def one(i: int) -> tuple[int, float, str]:
        t = time.monotonic()
        r = hub.api("POST", f"/users/{QA}/servers/q{i}", json={"profile": "a100", "gpus": 1}, token=token, timeout=120)
        return r.status_code, time.monotonic() - t, r.text

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    ok = [r for r in results if r[0] in (201, 202)]
    refused = [r for r in results if r[0] == 429]
    assert len(ok) == 1, results
    assert len(refused) == 9, results
    for _, seconds, text in refused:
        assert "GPU quota: you use 1 of 1 GPU" in text, text  # JSON-escaped body; ASCII message
        assert seconds < 2.0, f"refusal took {seconds:.2f} s"
    print("quota refusals (s):", sorted(round(r[1], 3) for r in refused))
    started = [i for i in range(10) if results[i][0] in (201, 202)][0]
    hub.wait_server(QA, f"q{started}")
    assert len(pods_of(core, hub_ns, QA)) == 1
    hub.stop_server(QA, f"q{started}")


def test_unschedulable_fails_fast_and_keeps_pvc(hub, hub_ns, core):
    # take a GPU first, so the request below is for GPUs that exist but are not free
    spawn(hub, CAROL, "hold", {"profile": "a100", "gpus": 1})
    try:
        free, total = gpu_free_from_api(core)
        want = min(c for c in (1, 2, 4, 8) if c > free)
        t = time.monotonic()
        r = hub.api("POST", f"/users/{BOSS}/servers/huge", json={"profile": "a100", "gpus": want}, timeout=60)
        seconds = time.monotonic() - t
        print(f"unschedulable spawn ({want} asked, {free} of {total} free) failed in {seconds:.2f} s: {r.status_code} {r.text[:300]}")
        assert r.status_code == 409, r.text
        assert f"Not enough free {GPU_CLASS} GPUs: you asked for {want}" in r.json()["message"]
        assert seconds < 15
        wait_no_pods(core, hub_ns, BOSS, timeout=10)
        assert pvc_exists(core, hub_ns, f"home-{BOSS}")
    finally:
        hub.stop_server(CAROL, "hold")


def test_home_persists_and_no_gpu_leak(hub, hub_ns, core):
    # GPU first, then CPU for the same user and server: the CPU pod must carry nothing of the GPU spawn
    model, progress = spawn_watching_progress(hub, GINA, {"profile": "a100", "gpus": 2})
    print("progress:", progress)
    assert "Checking quota for A100 GPU (2 × NVIDIA A100 80GB, PyTorch (CUDA))" in progress
    assert f"Creating your server (2 × NVIDIA A100 80GB, home volume home-{GINA})" in progress
    assert "Placed on node kubelab-gpu-a100" in progress
    token = hub.user_token(GINA)
    base = f"{hub.url}{model['url']}api/contents/kept.txt"
    auth = {"Authorization": f"token {token}"}
    r = requests.put(base, json={"type": "file", "format": "text", "content": "still here"}, headers=auth, timeout=30)
    assert r.status_code in (200, 201), r.text
    hub.stop_server(GINA)
    wait_no_pods(core, hub_ns, GINA)
    assert pvc_exists(core, hub_ns, f"home-{GINA}")

    model = spawn(hub, GINA, "", {"profile": "cpu-small"})
    (p,) = pods_of(core, hub_ns, GINA)
    c = p.spec.containers[0]
    assert "nvidia.com/gpu" not in (c.resources.limits or {}) and "nvidia.com/gpu" not in (c.resources.requests or {})
    assert not p.spec.node_selector
    assert not any(t.key == "nvidia.com/gpu" for t in p.spec.tolerations or [])
    assert p.spec.node_name == "kubelab-cpu"
    assert "KUBELAB_GPU_CLASS" not in {e.name for e in c.env}
    r = requests.get(f"{hub.url}{model['url']}api/contents/kept.txt", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["content"] == "still here"
    hub.stop_server(GINA)
    wait_no_pods(core, hub_ns, GINA)
    assert pvc_exists(core, hub_ns, f"home-{GINA}")


def test_resource_quota_refusal_names_gpu_class(cluster, namespace, core, tmp_path):
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "lab-shared"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    })
    core.create_namespaced_resource_quota(namespace, {
        "metadata": {"name": "gpu-quota"}, "spec": {"hard": {"requests.nvidia.com/gpu": "0"}},
    })
    hub = start_hub(cluster, namespace, tmp_path / "hub")
    try:
        hub.ensure_user(ALICE, ["gpu-users"])
        t = time.monotonic()
        r = hub.api("POST", f"/users/{ALICE}/server", json={"profile": "a100", "gpus": 1}, timeout=60)
        seconds = time.monotonic() - t
        print(f"ResourceQuota refusal in {seconds:.2f} s: {r.status_code} {r.text[:300]}")
        assert r.status_code == 429, r.text
        assert "resource quota 'gpu-quota' refuses 1 × NVIDIA A100 80GB" in r.json()["message"]
        assert seconds < 15
        assert pods_of(core, namespace, ALICE) == []
        assert pvc_exists(core, namespace, f"home-{ALICE}")
    finally:
        hub.stop()


def test_bad_catalogue_stops_hub_with_one_error(cluster, namespace, tmp_path):
    bad = {**CATALOGUE, "profiles": [dict(CATALOGUE["profiles"][1], gpu={"class": "h100", "counts": [1]})]}
    with pytest.raises(RuntimeError, match="hub exited with 1") as info:
        start_hub(cluster, namespace, tmp_path / "hub", catalogue=bad)
    errors = [line for line in str(info.value).splitlines() if "kubelab: invalid catalogue" in line]
    assert errors == [
        f"kubelab: invalid catalogue: {tmp_path / 'hub' / 'catalogue.yaml'}: profiles[0].gpu.class: "
        "unknown GPU class 'h100'; allowed: a100"
    ]
    assert "Traceback" not in str(info.value)


def test_rwo_home_in_use_on_another_node_is_refused_before_any_pod(hub, hub_ns, core):
    # alice's home is ReadWriteOnce and mounted by her CPU server on the CPU node; a GPU server would
    # need it on the GPU node (Multi-Attach on a real cluster), so it is refused with the reason
    spawn(hub, DORA, "", {"profile": "cpu-small"})
    hub.api("POST", "/groups/gpu-users/users", json={"users": [DORA]}).raise_for_status()
    try:
        r = hub.api("POST", f"/users/{DORA}/servers/gpu", json={"profile": "a100", "gpus": 1}, timeout=60)
        assert r.status_code == 409, r.text
        assert re.search(r"home volume is ReadWriteOnce and in use by default server on node kubelab-cpu, "
                         r"which has no NVIDIA A100 80GB; stop it first", r.json()["message"])
        assert len(pods_of(core, hub_ns, DORA)) == 1
        # a second CPU server shares the node and the volume instead
        spawn(hub, DORA, "more", {"profile": "cpu-small"})
        pods = pods_of(core, hub_ns, DORA)
        assert {p.spec.node_name for p in pods} == {"kubelab-cpu"}
        assert [p.spec.node_selector for p in pods if p.metadata.labels["kubelab.io/server"] == "more"] == [
            {"kubernetes.io/hostname": "kubelab-cpu"}
        ]
    finally:
        hub.api("DELETE", "/groups/gpu-users/users", json={"users": [DORA]})
        hub.stop_server(DORA, "more")
        hub.stop_server(DORA)
