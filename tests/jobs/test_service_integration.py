"""The jobs service inside a real JupyterHub, against the devcluster and its process node.

Each test acts as a notebook: it talks to the hub's REST API with a user's hub token (through
``JobClient`` where that is the natural client). Where the script lives for the pods: the test
catalogue has ReadWriteMany homes, so job pods mount the user's home claim, and the test writes
the scripts into ``home-alice`` through a pod that mounts it, as a notebook would have.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests
import yaml

from kubelab.jobs import JobClient
from kubelab.jobs.builders import job_id
from tests.harness import HubProcess
from tests.jobs.helpers import BASE, make_jobs_namespace, wait_until, write_scripts_home

pytestmark = pytest.mark.integration

FINAL = re.compile(r"rank=(\d+) world_size=(\d+) all_reduce=2 final_loss=([0-9.eE+-]+)")


@pytest.fixture(scope="module")
def jobs_ns(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    """A namespace for this module's jobs (deleted afterwards unless KUBELAB_TEST_KEEP=1)."""
    core = kubernetes.client.CoreV1Api(kube)
    name = make_jobs_namespace(core)
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def hub(cluster: Any, jobs_ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A real hub running the jobs service; alice is in gpu-users, bob in no group, admin is an admin."""
    raw = json.loads(json.dumps(BASE))
    raw["jobs"]["namespace"] = jobs_ns
    raw["jobs"]["kueue"] = {"enabled": False}
    path = tmp_path_factory.mktemp("catalogue") / "catalogue.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = f"""
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.admin_users = {{"admin"}}
from kubelab.core.catalogue import load_catalogue
from kubelab.hub_config.wiring import configure_platform
configure_platform(c, load_catalogue({str(path)!r}), rendezvous_timeout=120)
"""
    h = HubProcess(config=config, connect_ip=cluster.host_ip, env={"KUBECONFIG": str(cluster.kubeconfig)})
    h.start()
    try:
        h.ensure_user("alice", ["gpu-users"])
        h.ensure_user("bob")
        h.ensure_user("admin")
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def tokens(hub: HubProcess) -> dict[str, str]:
    return {u: hub.user_token(u) for u in ("alice", "bob", "admin")}


@pytest.fixture(scope="module")
def alice_home(kube: kubernetes.client.ApiClient, jobs_ns: str) -> str:
    """alice's RWX home claim holding the test scripts (written by a pod, as from her notebook)."""
    return write_scripts_home(kubernetes.client.CoreV1Api(kube), jobs_ns, "alice")


def api(hub: HubProcess, method: str, path: str, token: str, **kw: Any) -> Any:
    return hub.api(method, f"/kubelab/{path}", token=token, **kw)


def wait_phase(hub: HubProcess, token: str, name: str, phases: tuple[str, ...], timeout: float = 240) -> dict:
    def check() -> dict | None:
        r = api(hub, "GET", f"jobs/{name}", token)
        assert r.status_code == 200, r.text
        body = r.json()
        return body if body["phase"] in phases else None

    try:
        return wait_until(check, timeout, f"job {name} to reach {phases}", sleep=1)
    except TimeoutError:
        print(api(hub, "GET", f"jobs/{name}", token).text)
        raise


def objects_of(kube: kubernetes.client.ApiClient, ns: str, name: str) -> list[str]:
    """Every object in ``ns`` carrying ``kubelab.io/job=name`` (pods still terminating included)."""
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    sel = f"kubelab.io/job={name}"
    out = [f"ConfigMap/{o.metadata.name}" for o in core.list_namespaced_config_map(ns, label_selector=sel).items]
    out += [f"Service/{o.metadata.name}" for o in core.list_namespaced_service(ns, label_selector=sel).items]
    out += [f"Job/{o.metadata.name}" for o in batch.list_namespaced_job(ns, label_selector=sel).items]
    out += [f"Pod/{o.metadata.name}" for o in core.list_namespaced_pod(ns, label_selector=sel).items]
    return out


def all_kubelab_objects(kube: kubernetes.client.ApiClient, ns: str) -> list[str]:
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    sel = "app.kubernetes.io/managed-by=kubelab"
    return sorted(
        [f"ConfigMap/{o.metadata.name}" for o in core.list_namespaced_config_map(ns, label_selector=sel).items]
        + [f"Service/{o.metadata.name}" for o in core.list_namespaced_service(ns, label_selector=sel).items]
        + [f"Job/{o.metadata.name}" for o in batch.list_namespaced_job(ns, label_selector=sel).items]
        + [f"Pod/{o.metadata.name}" for o in core.list_namespaced_pod(ns, label_selector=sel).items])


def processes_with(marker: str) -> list[int]:
    """PIDs on this machine whose command line holds ``marker`` (the process node runs pods as processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def test_two_worker_ddp_through_jobclient(hub: HubProcess, tokens: dict[str, str], alice_home: str) -> None:
    client = JobClient(backend="hub", api_url=hub.api_url, token=tokens["alice"])
    status = client.submit(name="ddp", framework="pytorch", script="ddp_linreg.py", workers=2)
    assert status.phase in ("Pending", "Running") and status.engine == "plain"
    assert status.events[0] == "files: home claim home-alice mounted at /home/jovyan"
    final = client.wait("ddp", timeout=240)
    assert final.phase == "Succeeded", final.message + "\n" + "\n".join(final.last_logs)
    logs = {r: list(client.logs("ddp", rank=r)) for r in range(2)}
    assert [r.exit_code for r in final.ranks] == [0, 0]
    losses = {}
    for rank, lines in logs.items():
        match = next((m for m in map(FINAL.search, lines) if m), None)
        assert match, lines
        assert (int(match[1]), int(match[2])) == (rank, 2)
        losses[rank] = float(match[3])
    assert losses[0] == losses[1] and losses[0] < 1e-3
    print(f"DDP final loss on the devcluster: {losses[0]:.8f}")


def test_tf_config_per_rank_on_the_cluster(hub: HubProcess, tokens: dict[str, str], alice_home: str) -> None:
    r = api(hub, "POST", "jobs", tokens["alice"],
            json={"name": "tfcfg", "framework": "tensorflow", "script": "print_tf_config.py", "workers": 2,
                  "args": ["--handshake"]})
    assert r.status_code == 201, r.text
    done = wait_phase(hub, tokens["alice"], "tfcfg", ("Succeeded", "Failed"))
    assert done["phase"] == "Succeeded", (done["message"], done["last_logs"])
    jid = job_id("alice", "tfcfg")
    for rank in range(2):
        text = api(hub, "GET", f"jobs/tfcfg/logs?rank={rank}", tokens["alice"]).text
        line = next(x for x in text.splitlines() if x.startswith("TF_CONFIG="))
        assert json.loads(line.removeprefix("TF_CONFIG=")) == {
            "cluster": {"worker": [f"{jid}-0.{jid}:2222", f"{jid}-1.{jid}:2222"]},
            "task": {"index": rank, "type": "worker"}}
    assert api(hub, "DELETE", "jobs/tfcfg", tokens["alice"]).status_code == 200


def test_cancel_removes_every_object_and_stops_the_processes(
        hub: HubProcess, tokens: dict[str, str], alice_home: str, kube: kubernetes.client.ApiClient,
        jobs_ns: str) -> None:
    marker = f"cancel-me-{secrets.token_hex(4)}"
    r = api(hub, "POST", "jobs", tokens["alice"], json={
        "name": "sleepy", "framework": "replicas", "script": "fail_rank.py", "args": [marker], "workers": 2,
        "env": {"FAIL_RANK": "none"}})
    assert r.status_code == 201, r.text
    status = wait_phase(hub, tokens["alice"], "sleepy", ("Running", "Failed", "Succeeded"), 120)
    assert status["phase"] == "Running"
    wait_until(lambda: len(processes_with(marker)) >= 2, 60, "both ranks' processes")
    before = objects_of(kube, jobs_ns, "sleepy")
    assert {o.split("/")[0] for o in before} == {"ConfigMap", "Service", "Job", "Pod"}
    # Follow rank 0's log as a stream: its lines arrive, and the stream ends when the job is cancelled.
    # Straight to the hub, as a notebook's JUPYTERHUB_API_URL does (not through the public proxy).
    direct = f"http://{hub.connect_ip}:{hub.hub_port}/hub/api"
    stream = requests.get(f"{direct}/kubelab/jobs/sleepy/logs", params={"rank": 0, "follow": 1},
                          headers={"Authorization": f"token {tokens['alice']}"}, stream=True, timeout=60)
    assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/plain"), stream.text
    lines = stream.iter_lines(decode_unicode=True)
    seen = []
    for line in lines:
        seen.append(line)
        if line == "rank 0: step 29":
            break
    assert "rank 0: step 0" in seen

    r = api(hub, "DELETE", "jobs/sleepy", tokens["alice"])
    assert r.status_code == 200 and r.json()["phase"] == "Cancelled"
    assert api(hub, "GET", "jobs/sleepy", tokens["alice"]).status_code == 404
    wait_until(lambda: not objects_of(kube, jobs_ns, "sleepy"), 90, "every object labelled with the job to go")
    wait_until(lambda: not processes_with(marker), 60, "the ranks' processes to stop")
    for _ in lines:  # drains until the server ends the stream; a hang fails on the 60 s read timeout
        pass
    stream.close()


def test_failing_rank_fails_the_job_and_tears_down_the_others(
        hub: HubProcess, tokens: dict[str, str], alice_home: str, kube: kubernetes.client.ApiClient,
        jobs_ns: str) -> None:
    marker = f"fail-{secrets.token_hex(4)}"
    r = api(hub, "POST", "jobs", tokens["alice"], json={
        "name": "failing", "framework": "replicas", "script": "fail_rank.py", "args": [marker], "workers": 2})
    assert r.status_code == 201, r.text
    status = wait_phase(hub, tokens["alice"], "failing", ("Failed", "Succeeded"), 180)
    assert status["phase"] == "Failed"
    assert status["failed_rank"] == 1
    assert "rank 1 failed" in status["message"]
    assert status["last_logs"][-1] == "rank 1: failing on purpose"
    assert "rank 1: step 29" in status["last_logs"]
    jid = job_id("alice", "failing")
    # Rank 0 is torn down: its Job, its pod and its process go; rank 1's Job stays for post-mortem.
    wait_until(lambda: f"Job/{jid}-0" not in objects_of(kube, jobs_ns, "failing")
               and not any(o.startswith(f"Pod/{jid}-0") for o in objects_of(kube, jobs_ns, "failing")),
               60, "rank 0 to be torn down")
    wait_until(lambda: not processes_with(marker), 60, "rank 0's process to stop")
    assert f"Job/{jid}-1" in objects_of(kube, jobs_ns, "failing")
    logs = api(hub, "GET", "jobs/failing/logs?rank=1&tail=1", tokens["alice"])
    assert logs.status_code == 200 and logs.text == "rank 1: failing on purpose\n"
    assert api(hub, "DELETE", "jobs/failing", tokens["alice"]).status_code == 200


def test_isolation_scopes_and_bad_input_create_nothing(
        hub: HubProcess, tokens: dict[str, str], alice_home: str, kube: kubernetes.client.ApiClient,
        jobs_ns: str) -> None:
    r = api(hub, "POST", "jobs", tokens["alice"], json={
        "name": "private", "framework": "replicas", "script": "fail_rank.py", "workers": 1,
        "env": {"FAIL_RANK": "none", "SLEEP": "120"}})
    assert r.status_code == 201, r.text
    wait_phase(hub, tokens["alice"], "private", ("Running",), 120)
    baseline = all_kubelab_objects(kube, jobs_ns)
    bob = tokens["bob"]
    # bob sees nothing of alice's, and cannot tell her job from one that does not exist.
    assert api(hub, "GET", "jobs", bob).json() == {"jobs": []}
    for method, path in [("GET", "jobs/private"), ("GET", "jobs/private/logs?rank=0"), ("DELETE", "jobs/private")]:
        r = api(hub, method, path, bob)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["message"] == "no job 'private'"
    for path in ["jobs?all=1", "jobs/private?user=alice"]:
        assert api(hub, "GET", path, bob).status_code == 403
    assert api(hub, "DELETE", "jobs/private?user=alice", bob).status_code == 403
    assert api(hub, "GET", "jobs/private", tokens["alice"]).json()["phase"] == "Running"
    # The admin scope sees everyone's jobs.
    every = api(hub, "GET", "jobs?all=1", tokens["admin"]).json()["jobs"]
    assert ("alice", "private") in {(j["user"], j["name"]) for j in every}
    assert api(hub, "GET", "jobs/private?user=alice", tokens["admin"]).status_code == 200

    # A token without the jobs scope gets 403 everywhere, and creates nothing.
    scopeless = hub.user_token("alice", scopes=["read:users:name!user=alice"])
    for method, path in [("GET", "options"), ("GET", "jobs"), ("POST", "jobs"), ("GET", "jobs/private"),
                         ("DELETE", "jobs/private")]:
        kw = {"json": {"name": "x", "script": "t.py"}} if method == "POST" else {}
        r = api(hub, method, path, scopeless, **kw)
        assert r.status_code == 403, (method, path, r.text)
        assert "custom:kubelab:jobs" in r.json()["message"]

    bad = [
        ({"image": "docker.io/evil:latest"}, "image"),
        ({"gpus_per_worker": 99, "gpu_class": "a100"}, "gpus_per_worker"),
        ({"colour": "red"}, "colour"),
        ({"workers": 50}, "workers"),
        ({"framework": "jax"}, "framework"),
    ]
    for extra, field in bad:
        r = api(hub, "POST", "jobs", tokens["alice"], json={"name": "bad", "script": "t.py", **extra})
        assert r.status_code == 400, (extra, r.text)
        assert r.json()["field"] == field, r.json()
        assert field in r.json()["message"]
    # bob has no home claim yet (never started a server): refused at once instead of Pending forever.
    r = api(hub, "POST", "jobs", bob, json={"name": "nohome", "script": "t.py"})
    assert r.status_code == 400 and r.json()["field"] == "script", r.text
    assert "home-bob, which does not exist yet" in r.json()["message"]
    r = api(hub, "POST", "jobs", tokens["alice"], data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "(body)"
    for name in ("bad", "x", "nohome"):
        assert objects_of(kube, jobs_ns, name) == []
    assert set(all_kubelab_objects(kube, jobs_ns)) <= set(baseline)
    assert api(hub, "DELETE", "jobs/private", tokens["alice"]).status_code == 200


def test_shared_quota_counts_the_running_gpu_notebook(
        hub: HubProcess, tokens: dict[str, str], alice_home: str, kube: kubernetes.client.ApiClient,
        jobs_ns: str) -> None:
    core = kubernetes.client.CoreV1Api(kube)
    # alice's running 1-GPU notebook server, labelled as LabSpawner labels it (simulated: no process).
    core.create_namespaced_pod(jobs_ns, {
        "metadata": {"name": "jupyter-alice-gpu",
                     "labels": {"app.kubernetes.io/managed-by": "kubelab", "kubelab.io/user": "alice",
                                "kubelab.io/server": "gpu", "component": "singleuser-server"},
                     "annotations": {"kubelab.io/servername": "gpu", "kubelab.io/simulate": "true"}},
        "spec": {"automountServiceAccountToken": False,
                 "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                 "containers": [{"name": "notebook", "image": "notebook-gpu", "command": ["jupyterhub-singleuser"],
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    })
    try:
        wait_until(lambda: core.read_namespaced_pod("jupyter-alice-gpu", jobs_ns).status.phase == "Running", 60,
                   "alice's GPU notebook pod")
        quota = wait_until(lambda: (q := api(hub, "GET", "options", tokens["alice"]).json()["quota"])["used_gpus"] == 1
                           and q, 30, "the options to count the notebook")
        assert quota["max_gpus"] == 2 and quota["remaining_gpus"] == 1
        # the options publish live availability: the A100 node's GPUs, one of them held by the notebook
        (a100,) = [g for g in api(hub, "GET", "options", tokens["alice"]).json()["gpu_classes"] if g["key"] == "a100"]
        assert a100["allocatable"] >= 1 and a100["free"] <= a100["allocatable"] - 1, a100
        baseline = all_kubelab_objects(kube, jobs_ns)
        t0 = time.monotonic()
        r = api(hub, "POST", "jobs", tokens["alice"], json={
            "name": "big", "framework": "replicas", "script": "show_gpu.py", "workers": 2, "gpus_per_worker": 1,
            "gpu_class": "a100"})
        elapsed = time.monotonic() - t0
        # Full now, not forever: 429 with Retry-After, the way a spawn over quota answers (issue 10).
        assert r.status_code == 429 and r.headers["Retry-After"] == "30", (r.status_code, r.headers, r.text)
        message = r.json()["message"]
        assert "GPU quota: you use 1 of 2 GPUs" in message and "server 'gpu'" in message, message
        assert elapsed < 2, elapsed
        # Nothing created (objects of earlier tests' cancelled jobs may still be going away).
        assert objects_of(kube, jobs_ns, "big") == []
        assert set(all_kubelab_objects(kube, jobs_ns)) <= set(baseline)

        # One GPU still fits: the job lands on the GPU node and its process sees a GPU.
        r = api(hub, "POST", "jobs", tokens["alice"], json={
            "name": "small", "framework": "replicas", "script": "show_gpu.py", "workers": 1, "gpus_per_worker": 1,
            "gpu_class": "a100"})
        assert r.status_code == 201, r.text
        done = wait_phase(hub, tokens["alice"], "small", ("Succeeded", "Failed"), 120)
        assert done["phase"] == "Succeeded", (done["message"], done["last_logs"])
        assert done["ranks"][0]["node"] == "kubelab-gpu-a100"
        text = api(hub, "GET", "jobs/small/logs?rank=0", tokens["alice"]).text
        assert re.search(r"rank=0 CUDA_VISIBLE_DEVICES=\S+", text), text
        assert api(hub, "DELETE", "jobs/small", tokens["alice"]).status_code == 200
    finally:
        core.delete_namespaced_pod("jupyter-alice-gpu", jobs_ns)


def test_a_create_refused_half_way_leaves_nothing_behind(
        hub: HubProcess, tokens: dict[str, str], alice_home: str, kube: kubernetes.client.ApiClient,
        jobs_ns: str) -> None:
    """A ResourceQuota lets the first rank Job in and refuses the second (a real 403 from the API
    server): the service must delete what it created and answer 403 naming the cluster's reason."""
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    # Count first with room to spare, then leave room for exactly one more Job. Earlier tests' Jobs
    # may still be going away; counting them would leave room for both ranks.
    core.create_namespaced_resource_quota(jobs_ns, {
        "metadata": {"name": "one-more-job"}, "spec": {"hard": {"count/jobs.batch": "1000"}}})
    try:
        def settled_count() -> tuple[int] | None:
            jobs = batch.list_namespaced_job(jobs_ns).items
            used = (core.read_namespaced_resource_quota("one-more-job", jobs_ns).status.used or {}).get(
                "count/jobs.batch")
            if used is None or any(j.metadata.deletion_timestamp for j in jobs) or int(used) != len(jobs):
                return None
            return (len(jobs),)

        (existing,) = wait_until(settled_count, 120, "Jobs of earlier tests to settle and be counted")
        core.patch_namespaced_resource_quota("one-more-job", jobs_ns, {"spec": {"hard": {
            "count/jobs.batch": str(existing + 1)}}})
        wait_until(lambda: (core.read_namespaced_resource_quota("one-more-job", jobs_ns).status.hard or {})
                   .get("count/jobs.batch") == str(existing + 1), 60, "the quota controller to apply the limit")
        baseline = all_kubelab_objects(kube, jobs_ns)
        r = api(hub, "POST", "jobs", tokens["alice"], json={
            "name": "halfway", "framework": "replicas", "script": "fail_rank.py", "workers": 2})
        assert r.status_code == 403, r.text
        assert "the cluster refused job 'halfway'" in r.json()["message"]
        assert "exceeded quota" in r.json()["message"]
        wait_until(lambda: not objects_of(kube, jobs_ns, "halfway"), 60, "the half-created job to be removed")
        # Nothing new beside what was there (objects of earlier tests' jobs may still be going away).
        assert set(all_kubelab_objects(kube, jobs_ns)) <= set(baseline)
        assert api(hub, "GET", "jobs/halfway", tokens["alice"]).status_code == 404
    finally:
        core.delete_namespaced_resource_quota("one-more-job", jobs_ns)


def test_jobs_outlive_the_hub_that_started_them(
        cluster: Any, hub: HubProcess, tokens: dict[str, str], alice_home: str, kube: kubernetes.client.ApiClient,
        jobs_ns: str) -> None:
    """A hub going away interrupts only the API: the job keeps running, and another hub process
    (fresh caches, as after a restart) reports it and can cancel it."""
    marker = f"outlive-{secrets.token_hex(4)}"
    with HubProcess(config=hub.config, connect_ip=cluster.host_ip,
                    env={"KUBECONFIG": str(cluster.kubeconfig)}) as first:
        first.ensure_user("alice", ["gpu-users"])
        token = first.user_token("alice")
        r = api(first, "POST", "jobs", token, json={
            "name": "outlive", "framework": "replicas", "script": "fail_rank.py", "args": [marker], "workers": 2,
            "env": {"FAIL_RANK": "none"}})
        assert r.status_code == 201, r.text
        assert wait_phase(first, token, "outlive", ("Running",), 120)["phase"] == "Running"
        wait_until(lambda: len(processes_with(marker)) >= 2, 60, "both ranks' processes")
    assert first.proc is None  # that hub is gone
    time.sleep(3)
    assert len(processes_with(marker)) >= 2
    status = api(hub, "GET", "jobs/outlive", tokens["alice"]).json()
    assert status["phase"] == "Running" and [r["phase"] for r in status["ranks"]] == ["Running", "Running"]
    assert api(hub, "DELETE", "jobs/outlive", tokens["alice"]).status_code == 200
    wait_until(lambda: not objects_of(kube, jobs_ns, "outlive"), 90, "the job's objects to go")
    wait_until(lambda: not processes_with(marker), 60, "the ranks' processes to stop")


def test_jobclient_wait_returns_within_a_second_of_the_end(hub: HubProcess, tokens: dict[str, str],
                                                           alice_home: str, kube: kubernetes.client.ApiClient,
                                                           jobs_ns: str) -> None:
    """Issue 10: wait() was about 10 s late (it polled with a growing interval); it long-polls now."""
    client = JobClient(backend="hub", api_url=hub.api_url, token=tokens["alice"])
    client.submit(name="brief", framework="replicas", script="fail_rank.py",
                  env={"FAIL_RANK": "none", "SLEEP": "4"})
    core = kubernetes.client.CoreV1Api(kube)
    ended: list[float] = []

    def watch_pod() -> None:
        # The cluster's own view, polled fast and independently of the hub: when the rank's pod ended.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(jobs_ns, label_selector="kubelab.io/job=brief").items
            if pods and all(p.status.phase == "Succeeded" for p in pods):
                ended.append(time.monotonic())
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_pod)
    watcher.start()
    final = client.wait("brief", timeout=120)
    returned = time.monotonic()
    watcher.join(5)
    assert final.phase == "Succeeded", final
    assert ended, "the pod never read Succeeded"
    assert returned - ended[0] < 1.0, f"wait() returned {returned - ended[0]:.2f} s after the pod ended"
