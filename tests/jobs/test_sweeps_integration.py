"""Sweeps for real on the devcluster (issue 14): a 6-trial random sweep, 2 at a time under a quota of 2.

Each trial is a 1-GPU job (``tests/jobs/scripts/sweep_trial.py``, real processes on the A100 node)
that logs ``loss`` with ``kubelab.jobs.metrics``; alice's quota is 2 GPUs (``quotas.perUser``). At
first alice's GPU notebook (a pod labelled as LabSpawner labels servers) holds one GPU, so only one
trial fits: the next waits ("waiting for quota"), it does not fail, and starts once the notebook
stops. The sweep ends Succeeded; its best trial is the one whose metrics, read back through the jobs
API, have the lowest loss; never more than 2 trials ran at once. Cancelling another sweep removes
every object of every trial. Bad input is refused with a 400 naming the field, and nothing is made.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from kubelab.jobs.builders import job_id
from tests.harness import HubProcess
from tests.jobs.helpers import BASE, make_jobs_namespace, wait_until, write_scripts_home

pytestmark = pytest.mark.integration

TRIAL = {"framework": "replicas", "script": "sweep_trial.py", "workers": 1, "gpus_per_worker": 1,
         "gpu_class": "a100", "env": {"STEPS": "10", "SLEEP": "0.3"}}
SPACE = {"lr": {"type": "loguniform", "min": 1e-4, "max": 1e-1},
         "width": {"type": "uniform", "min": 8, "max": 32, "int": True}}


@pytest.fixture(scope="module")
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)


@pytest.fixture(scope="module")
def ns(core: kubernetes.client.CoreV1Api) -> Iterator[str]:
    name = make_jobs_namespace(core, "kl-sweeps")
    write_scripts_home(core, name, "alice")
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def hub(cluster: Any, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("hub")
    raw = json.loads(json.dumps(BASE))
    raw["jobs"].update(namespace=ns, kueue={"enabled": False})
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(raw))
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        configure_platform(c, load_catalogue({str(workdir / "catalogue.yaml")!r}), rendezvous_timeout=120)
    """)
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=workdir, env={"KUBECONFIG": str(cluster.kubeconfig)})
    hub.start(timeout=90)
    hub.ensure_user("alice", ["gpu-users"])
    yield hub
    hub.stop()


def call(hub: HubProcess, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    r = hub.api(method, path, token=hub.user_token("alice"), **kw)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def trial_pods(core: kubernetes.client.CoreV1Api, ns: str, sweep: str) -> list[Any]:
    pods = core.list_namespaced_pod(ns, label_selector="kubelab.io/component=rank").items
    return [p for p in pods if p.metadata.labels.get("kubelab.io/job", "").startswith(f"{sweep}-")
            and p.status.phase in ("Pending", "Running") and p.metadata.deletion_timestamp is None]


def gpu_notebook(core: kubernetes.client.CoreV1Api, ns: str) -> str:
    """alice's running 1-GPU notebook server, labelled as LabSpawner labels it (simulated: no process)."""
    core.create_namespaced_pod(ns, {
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
    wait_until(lambda: core.read_namespaced_pod("jupyter-alice-gpu", ns).status.phase == "Running", 60,
               "alice's GPU notebook pod")
    return "jupyter-alice-gpu"


def everything_of(kube: kubernetes.client.ApiClient, ns: str, jobs: set[str]) -> list[str]:
    """Every object of the jobs ``jobs``: labelled with one, or named after one's id (its metrics)."""
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    prefixes = tuple(f"{job_id('alice', j)}" for j in jobs)
    found = []
    for kind, items in (("ConfigMap", core.list_namespaced_config_map(ns).items),
                        ("Secret", core.list_namespaced_secret(ns).items),
                        ("Service", core.list_namespaced_service(ns).items),
                        ("Job", batch.list_namespaced_job(ns).items), ("Pod", core.list_namespaced_pod(ns).items)):
        for obj in items:
            if (obj.metadata.labels or {}).get("kubelab.io/job") in jobs or obj.metadata.name.startswith(prefixes):
                found.append(f"{kind} {obj.metadata.name}")
    return sorted(found)


def test_a_random_sweep_under_the_quota_finishes_with_the_best_trial_the_metrics_say(
        hub: HubProcess, core: kubernetes.client.CoreV1Api, ns: str) -> None:
    notebook = gpu_notebook(core, ns)
    most = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            most[0] = max(most[0], len(trial_pods(core, ns, "lr")))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        created = call(hub, "POST", "/kubelab/sweeps", 201, json={
            "name": "lr", "job": TRIAL, "space": SPACE, "objective": {"metric": "loss", "goal": "minimize"},
            "trials": 6, "parallel": 2, "seed": 11})
        assert created["algorithm"] == "random" and created["trials_total"] == 6
        # One GPU is the notebook's: the second trial waits for quota instead of failing.
        waiting = wait_until(lambda: (s := call(hub, "GET", "/kubelab/sweeps/lr"))["message"].startswith(
            "waiting for quota") and s, 90, "the second trial waiting for quota")
        assert "GPU quota" in waiting["message"], waiting["message"]
        assert not [t for t in waiting["trials"] if t["phase"] == "Failed"], waiting["trials"]
        assert len(trial_pods(core, ns, "lr")) <= 1
        core.delete_namespaced_pod(notebook, ns, grace_period_seconds=0)  # the notebook stops: room for two
        wait_until(lambda: len(trial_pods(core, ns, "lr")) == 2, 90, "two trials at once")
        final = wait_until(lambda: (s := call(hub, "GET", "/kubelab/sweeps/lr?wait=20", timeout=60))["phase"] in (
            "Succeeded", "Failed", "Cancelled") and s, 600, "the sweep to end", sleep=0.1)
    finally:
        stop.set()
        watcher.join(5)
    assert final["phase"] == "Succeeded", json.dumps(final, indent=1)
    assert most[0] == 2, f"at most the quota's 2 trials run at once, and 2 did: {most[0]}"
    assert [t["phase"] for t in final["trials"]] == ["Succeeded"] * 6
    # The best trial is the one whose own metrics, read back through the jobs API, are lowest.
    mins = {}
    for t in final["trials"]:
        series = call(hub, "GET", f"/kubelab/jobs/{t['name']}/metrics")["series"]
        (loss,) = [s for s in series if s["name"] == "loss"]
        mins[t["index"]] = min(loss["values"])
        assert t["objective"] == pytest.approx(mins[t["index"]], rel=1e-12), t
        assert 1e-4 <= t["params"]["lr"] <= 1e-1 and 8 <= t["params"]["width"] <= 32, t
    assert final["best"] == min(mins, key=mins.get), (final["best"], mins)
    # The trials are jobs: listed with the others, and on the hub's sweep page, best first.
    names = {j["name"] for j in call(hub, "GET", "/kubelab/jobs")["jobs"]}
    assert {f"lr-{i}" for i in range(6)} <= names


def test_cancelling_a_sweep_removes_every_trials_objects(
        hub: HubProcess, core: kubernetes.client.CoreV1Api, kube: kubernetes.client.ApiClient, ns: str) -> None:
    slow = {**TRIAL, "gpus_per_worker": 0, "gpu_class": None, "env": {"STEPS": "200", "SLEEP": "0.5"}}
    call(hub, "POST", "/kubelab/sweeps", 201, json={"name": "stopme", "job": slow, "space": SPACE,
                                                    "objective": "loss", "trials": 6, "parallel": 2})
    wait_until(lambda: len([p for p in trial_pods(core, ns, "stopme") if p.status.phase == "Running"]) == 2, 120,
               "two trials running")
    trials = {f"stopme-{i}" for i in range(6)}
    assert everything_of(kube, ns, trials), "the running trials have objects"
    cancelled = call(hub, "POST", "/kubelab/sweeps/stopme/cancel")
    assert cancelled["phase"] == "Cancelled"
    wait_until(lambda: not everything_of(kube, ns, trials), 120, "every trial's objects gone")
    again = call(hub, "GET", "/kubelab/sweeps/stopme")
    assert again["phase"] == "Cancelled" and len(again["trials"]) == 6  # the record keeps the results
    assert not {j["name"] for j in call(hub, "GET", "/kubelab/jobs")["jobs"]} & trials
    call(hub, "DELETE", "/kubelab/sweeps/stopme")
    call(hub, "GET", "/kubelab/sweeps/stopme", 404)


def bad(**changes: Any) -> dict[str, Any]:
    body = {"name": "bad", "job": dict(TRIAL), "space": dict(SPACE), "objective": "loss", "trials": 6, "parallel": 2}
    for key, value in changes.items():
        if key.startswith("job."):
            body["job"][key[4:]] = value
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(("body", "field", "words"), [
    (bad(space={}), "space", "is empty"),
    (bad(space={"lr": {"type": "uniform", "min": 0.1, "max": 0.001}}), "space.lr.min", "the range is inverted"),
    (bad(**{"job.checkpoint_dir": "/etc/ckpt"}), "job.checkpoint_dir", "outside the files job pods mount"),
    (bad(**{"job.restarts": 9}), "job.restarts", "the catalogue's jobs.maxRestarts"),
    (bad(**{"job.gpus_per_worker": 3}), "job.gpus_per_worker", "allowed: 1, 2"),
    (bad(objective={"metric": "loss", "goal": "lowest"}), "objective.goal", "allowed: minimize, maximize"),
], ids=["empty-space", "inverted-range", "checkpoint-outside", "restarts-over-cap", "gpus-not-allowed", "bad-goal"])
def test_bad_sweeps_get_a_400_naming_the_field_and_create_nothing(
        hub: HubProcess, kube: kubernetes.client.ApiClient, ns: str, body: dict[str, Any], field: str,
        words: str) -> None:
    before = everything_of(kube, ns, {f"bad-{i}" for i in range(6)})
    answer = call(hub, "POST", "/kubelab/sweeps", 400, json=body)
    assert answer["field"] == field and words in answer["message"], answer
    core = kubernetes.client.CoreV1Api(kube)
    assert not core.list_namespaced_config_map(ns, label_selector="kubelab.io/sweep=bad").items
    assert everything_of(kube, ns, {f"bad-{i}" for i in range(6)}) == before == []
    call(hub, "GET", "/kubelab/sweeps/bad", 404)


def test_an_objective_no_script_logs_is_a_warning_after_the_first_trial(hub: HubProcess) -> None:
    cpu = {**TRIAL, "gpus_per_worker": 0, "gpu_class": None, "env": {"STEPS": "3", "SLEEP": "0.1"}}
    call(hub, "POST", "/kubelab/sweeps", 201, json={"name": "typo", "job": cpu, "space": SPACE,
                                                    "objective": "val_loss", "trials": 2, "parallel": 1})
    status = wait_until(lambda: (s := call(hub, "GET", "/kubelab/sweeps/typo"))["warnings"] and s, 180,
                        "the warning after the first trial")
    assert status["warnings"] == [
        "objective metric 'val_loss' was not logged by trial typo-0 (it logged: loss); call "
        "kubelab.jobs.metrics.log(step, val_loss=...) in the script, or fix the objective"]
    assert status["trials"][0]["phase"] == "Succeeded" and status["trials"][0]["objective"] is None
    call(hub, "DELETE", "/kubelab/sweeps/typo")


def test_a_sweep_carries_on_after_the_hub_restarts(hub: HubProcess, core: kubernetes.client.CoreV1Api,
                                                   ns: str) -> None:
    # Trials of about 20 s: the hub is killed and started again while the first one runs.
    cpu = {**TRIAL, "gpus_per_worker": 0, "gpu_class": None, "env": {"STEPS": "40", "SLEEP": "0.5"}}
    call(hub, "POST", "/kubelab/sweeps", 201, json={"name": "durable", "job": cpu, "space": SPACE,
                                                    "objective": "loss", "trials": 2, "parallel": 1})
    wait_until(lambda: [p for p in trial_pods(core, ns, "durable") if p.status.phase == "Running"], 120,
               "the first trial running")
    hub.kill()
    time.sleep(2)
    hub.start(timeout=90)  # the same workdir; the sweep is reconciled at start, no request needed
    assert trial_pods(core, ns, "durable"), "the first trial ran on while the hub was down"
    final = wait_until(lambda: (s := call(hub, "GET", "/kubelab/sweeps/durable?wait=20", timeout=60))["phase"] in (
        "Succeeded", "Failed", "Cancelled") and s, 400, "the sweep to end after the restart", sleep=0.1)
    assert final["phase"] == "Succeeded", json.dumps(final, indent=1)
    assert [t["phase"] for t in final["trials"]] == ["Succeeded"] * 2
    assert all(t["objective"] is not None for t in final["trials"]), final["trials"]
    assert final["best"] in (0, 1)
    call(hub, "DELETE", "/kubelab/sweeps/durable")
