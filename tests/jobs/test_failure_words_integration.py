"""Each failure kind produced for real on the devcluster, and the one plain sentence it gets.

A real hub runs the jobs service; jobs are submitted with alice's token and fail for real: the
scheduler finds no node for a GPU class, the Job controller enforces the time limit, a rank waits
for a peer the scheduler never placed, the script does not exist, the script raises, the kernel
OOM-kills a rank over its memory limit (the process node's memory cgroups), the rank's image lives
on a registry no node can reach (``registry.invalid``: the process node fails its pull as a
kubelet does; docs/devcluster.md, Image pulls). The sentence is
:func:`kubelab.jobs.explain.explain` of the status the service reports, and the hub's jobs page
shows it above the raw log.

Where the process node has no writable memory cgroup, the OOM case skips with that reason.
"""

from __future__ import annotations

import base64
import html
import json
import os
import secrets
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import requests
import yaml
from harness import HubProcess  # tests/ is on sys.path: its conftest.py puts it there

from kubelab.devcluster.testing import UNPULLABLE_IMAGE, memory_limits_unenforced, require_image_pull_failures
from kubelab.jobs import JobClient
from kubelab.jobs.explain import explain
from kubelab.jobs.spec import JobStatus

pytestmark = pytest.mark.integration

CATALOGUE: dict[str, Any] = {
    "gpuClasses": {
        "a100": {"displayName": "NVIDIA A100", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        "h999": {"displayName": "A GPU no node has", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H999"}},
    },
    "images": {"cpu": {"displayName": "CPU", "image": "ghcr.io/kubelab/notebook-cpu:0.1.0"},
               "unreachable": {"displayName": "On a registry no node reaches", "image": UNPULLABLE_IMAGE}},
    "profiles": [
        {"slug": "cpu", "name": "CPU", "images": ["cpu", "unreachable"], "default": True},
        {"slug": "a100", "name": "A100", "images": ["cpu"], "gpu": {"class": "a100", "counts": [3]}},
        {"slug": "h999", "name": "H999", "images": ["cpu"], "gpu": {"class": "h999", "counts": [1]}},
    ],
    "storage": {"home": {"accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"}},
    "quotas": {"perUser": {"maxGpus": 8}},
    "jobs": {"engine": "plain", "maxWorkers": 4, "maxRuntimeSeconds": 3600, "kueue": {"enabled": False}},
}
SCRIPTS = {
    "raises.py": "print('loading data', flush=True)\nraise ValueError('batch size 0 is not allowed')\n",
    "sleeps.py": "import time\nprint('working', flush=True)\ntime.sleep(600)\n",
    # Touches 8 MiB at a time, up to 1 GiB: far past the job's memory limit.
    "hog.py": "chunks = []\nfor i in range(128):\n    chunks.append(bytearray(b'x') * (8 << 20))\n"
              "    print(f'{(i + 1) * 8} MiB', flush=True)\n",
}


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(1)


@pytest.fixture(scope="module")
def hub(cluster: Any, kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    core = kubernetes.client.CoreV1Api(kube)
    ns = f"kl-fail-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns, "labels": {"kubelab.io/test": "true"}}})
    wait_until(lambda: _sa_ready(core, ns), 30, "the default ServiceAccount")
    raw = json.loads(json.dumps(CATALOGUE))
    raw["jobs"]["namespace"] = ns
    path = tmp_path_factory.mktemp("fail-catalogue") / "catalogue.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = "pw"
        c.Authenticator.allow_all = True
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        configure_platform(c, load_catalogue({str(path)!r}), rendezvous_timeout=20)
    """)
    hub = HubProcess(config=config, connect_ip=cluster.host_ip, env={"KUBECONFIG": str(cluster.kubeconfig)})
    hub.start()
    try:
        hub.ensure_user("alice")
        write_home(core, ns)
        yield hub
    finally:
        hub.stop()
        if os.environ.get("KUBELAB_TEST_KEEP") != "1":
            core.delete_namespace(ns)


@pytest.fixture(scope="module")
def token(hub: HubProcess) -> str:
    return hub.user_token("alice")


@pytest.fixture(scope="module")
def client(hub: HubProcess, token: str) -> JobClient:
    return JobClient("hub", api_url=hub.api_url, token=token)


def _sa_ready(core: Any, ns: str) -> bool:
    try:
        return bool(core.read_namespaced_service_account("default", ns).secrets)
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return False
        raise


def write_home(core: Any, ns: str) -> None:
    """alice's RWX home with the scripts, written by a pod as her notebook would."""
    core.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": "home-alice", "labels": {"kubelab.io/user": "alice"}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    files = {n: base64.b64encode(t.encode()).decode() for n, t in SCRIPTS.items()}
    code = ("import base64, json, os\nfor n, b in json.loads(os.environ['FILES']).items():\n"
            "    open('/home/jovyan/' + n, 'wb').write(base64.b64decode(b))\n")
    core.create_namespaced_pod(ns, {"metadata": {"name": "write-home"}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "containers": [{"name": "w", "image": "python", "command": ["python", "-c", code],
                        "env": [{"name": "FILES", "value": json.dumps(files)}],
                        "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}]}],
        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "home-alice"}}]}})
    phase = wait_until(lambda: core.read_namespaced_pod("write-home", ns).status.phase in ("Succeeded", "Failed")
                       and core.read_namespaced_pod("write-home", ns).status.phase, 120, "the home writer")
    assert phase == "Succeeded", core.read_namespaced_pod_log("write-home", ns)


def sentence_of(client: JobClient, name: str, kind: str, timeout: float = 240) -> tuple[str, JobStatus]:
    """Wait until the job's status explains itself as ``kind``; return the sentence."""
    last: list[Any] = [None]

    def check() -> str | None:
        status = client.get(name)
        found = explain(status)
        last[0] = (status.phase, status.message, [r.message for r in status.ranks], status.last_logs, found)
        if found is not None and found.kind == kind:
            return found.sentence
        if status.done and status.finished:  # its final record says otherwise: no point waiting
            raise AssertionError(f"job {name} ended as {status.phase}, explained as {found}")
        return None

    try:
        sentence = wait_until(check, timeout, f"job {name} to be explained as {kind}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {last[0]}") from None
    return sentence, client.get(name)


@pytest.mark.parametrize(
    ("name", "fields", "kind", "words"),
    [
        ("no-node", {"script": "sleeps.py", "gpus_per_worker": 1, "gpu_class": "h999"}, "unschedulable",
         "Rank 0 cannot be placed on any node"),
        ("too-long", {"script": "sleeps.py", "framework": "replicas", "max_runtime_seconds": 5}, "deadline",
         "ran past its time limit"),
        ("no-script", {"script": "nope.py"}, "missing-script",
         "could not start your script: can't open file '/home/jovyan/nope.py'"),
        ("raises", {"script": "raises.py"}, "user-error",
         "Rank 0 failed in your code: ValueError: batch size 0 is not allowed"),
    ],
    ids=["unschedulable", "deadline", "missing-script", "user-error"],
)
def test_a_real_failure_gets_its_sentence(client: JobClient, name: str, fields: dict[str, Any], kind: str,
                                          words: str) -> None:
    client.submit(name=name, **fields)
    sentence, status = sentence_of(client, name, kind)
    assert words in sentence, sentence
    assert "BackoffLimitExceeded" not in sentence and "ChildFailedError" not in sentence
    if kind == "unschedulable":
        assert not status.done  # it waits; the sentence says why
    client.cancel(name)


def test_a_peer_that_never_came(client: JobClient) -> None:
    """Two ranks of 3 GPUs on a 4-GPU node: the scheduler places rank 0 and never rank 1, so
    rank 0 gives up waiting for its peer after the rendezvous timeout (20 s here)."""
    client.submit(name="lonely", script="sleeps.py", workers=2, gpus_per_worker=3, gpu_class="a100")
    sentence, status = sentence_of(client, "lonely", "rendezvous", timeout=300)
    assert "gave up waiting for its peer lonely-" in sentence and "within 20 s" in sentence
    assert status.phase == "Failed" and status.failed_rank == 0
    client.cancel("lonely")


def assert_above_the_raw_log(hub: HubProcess, name: str, sentence: str) -> None:
    """The hub's page of the job, as alice's browser gets it, shows the sentence above the rank's raw log."""
    s = requests.Session()
    s.get(f"{hub.url}/hub/login", timeout=30)
    r = s.post(f"{hub.url}/hub/login", data={"username": "alice", "password": "pw", "_xsrf": s.cookies.get("_xsrf")},
               timeout=30)
    assert r.ok, r.status_code
    r = s.get(f"{hub.url}/hub/kubelab/jobs/alice/{name}", timeout=30, allow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    page = r.text
    shown = page.find(html.escape(sentence, quote=True))
    assert shown != -1, f"the page does not show {sentence!r}"
    assert shown < page.index('id="kubelab-log"'), "the sentence is not above the raw log"


def test_a_rank_over_its_memory_limit_is_said_to_be_out_of_memory(hub: HubProcess, client: JobClient,
                                                                   kube: Any) -> None:
    reason = memory_limits_unenforced(kubernetes.client.CoreV1Api(kube))
    if reason:
        pytest.skip(reason)
    client.submit(name="hog", script="hog.py", framework="replicas", memory="256Mi")
    sentence, status = sentence_of(client, "hog", "oom")
    assert sentence.startswith("Rank 0 ran out of memory (OOMKilled): it used more than its memory limit"), sentence
    assert status.phase == "Failed"
    assert_above_the_raw_log(hub, "hog", sentence)
    client.cancel("hog")


def test_an_image_no_node_can_pull_is_said_so(hub: HubProcess, client: JobClient, kube: Any) -> None:
    require_image_pull_failures(kubernetes.client.CoreV1Api(kube))
    client.submit(name="no-image", script="sleeps.py", image="unreachable")
    sentence, status = sentence_of(client, "no-image", "image", timeout=120)
    assert sentence == (f"Rank 0 cannot start: the image {UNPULLABLE_IMAGE} could not be pulled; check the image "
                        "name, or ask your admin whether the cluster can reach its registry."), sentence
    assert not status.done  # the kubelet keeps retrying the pull: the job waits, and the sentence says why
    assert any(r.message.startswith(("ErrImagePull", "ImagePullBackOff")) for r in status.ranks), status.ranks
    assert_above_the_raw_log(hub, "no-image", sentence)
    client.cancel("no-image")
