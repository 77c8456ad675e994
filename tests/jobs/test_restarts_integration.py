"""Resume instead of fail, for real on the devcluster (issue 14).

A deterministic 2-worker DDP run (gloo on CPU, ``tests/jobs/scripts/ddp_resume.py``) checkpoints
every 20 steps into ``checkpoint_dir`` on the RWX home. Mid-run one rank's pod is deleted:

* as kube-scheduler (≥ 1.26) preempts a pod: it writes the ``DisruptionTarget`` condition with
  reason ``PreemptionByScheduler`` and then deletes the pod (kubernetes ``pkg/scheduler/framework/
  preemption/preemption.go``, ``prepareCandidate``); the v1.20 scheduler here does not write the
  condition, so the test writes it on the real pod, then deletes the pod through the API;
* and again with the hub killed while the restart is under way (its ranks deleted, none created
  yet) and started again on the same workdir.

Each time the job resumes from its latest checkpoint, finishes, and ends with the same final loss as
an uninterrupted run of the same spec. Tolerance: |a - b| <= 1e-6 * |b| (a resumed run takes the
very same steps; in practice the losses are equal to the last printed digit).
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from kubelab.jobs.builders import job_id
from tests.harness import HubProcess
from tests.jobs.helpers import BASE, make_jobs_namespace, wait_until, write_scripts_home

pytestmark = pytest.mark.integration

#: Relative tolerance between the resumed run's final loss and the uninterrupted run's.
TOLERANCE = 1e-6
ENV = {"STEPS": "200", "EVERY": "20", "SLEEP": "0.1"}
_FINAL = re.compile(r"rank=(?P<rank>\d+) final_loss=(?P<loss>\S+) resumed_from=(?P<start>\d+)")


@pytest.fixture(scope="module")
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)


@pytest.fixture(scope="module")
def batch(kube: kubernetes.client.ApiClient) -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(kube)


@pytest.fixture(scope="module")
def ns(core: kubernetes.client.CoreV1Api) -> Iterator[str]:
    name = make_jobs_namespace(core, "kl-resume")
    write_scripts_home(core, name, "alice")
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


def start_hub(cluster: Any, ns: str, workdir: Path) -> HubProcess:
    raw = json.loads(json.dumps(BASE))
    raw["jobs"].update(namespace=ns, kueue={"enabled": False}, maxRestarts=3)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(raw))
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        configure_platform(c, load_catalogue({str(workdir / "catalogue.yaml")!r}), rendezvous_timeout=120)
    """)
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=workdir, env={"KUBECONFIG": str(cluster.kubeconfig)})
    hub.start(timeout=90)
    try:
        hub.ensure_user("alice", [])
    except BaseException:
        hub.stop()  # a hub that answered but could not be set up must not outlive the test
        raise
    return hub


@pytest.fixture(scope="module")
def hub(cluster: Any, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = start_hub(cluster, ns, tmp_path_factory.mktemp("hub"))
    yield hub
    hub.stop()


def body(name: str) -> dict[str, Any]:
    return {"name": name, "framework": "pytorch", "script": "ddp_resume.py", "workers": 2, "restarts": 2,
            "checkpoint_dir": f"~/kubelab-runs/{name}/checkpoints", "env": ENV}


def api(hub: HubProcess, method: str, path: str, **kw: Any) -> Any:
    r = hub.api(method, path, token=hub.user_token("alice"), **kw)
    assert r.ok, f"{method} {path}: {r.status_code} {r.text}"
    return r.json() if r.headers.get("Content-Type", "").startswith("application/json") else r.text


def wait_done(hub: HubProcess, name: str, timeout: float) -> dict[str, Any]:
    status = wait_until(lambda: (s := api(hub, "GET", f"/kubelab/jobs/{name}?wait=20", timeout=60)) and s["phase"] in (
        "Succeeded", "Failed", "Cancelled") and s, timeout, f"job {name} to end", sleep=0.1)
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    return status


def final_losses(hub: HubProcess, name: str) -> dict[int, tuple[float, int]]:
    """rank → (final loss, the step it resumed from), from each rank's log through the jobs API."""
    out = {}
    for rank in (0, 1):
        text = api(hub, "GET", f"/kubelab/jobs/{name}/logs", params={"rank": str(rank)})
        found = [m for m in _FINAL.finditer(text)]
        assert found, f"rank {rank} printed no final loss:\n{text[-3000:]}"
        out[rank] = (float(found[-1].group("loss")), int(found[-1].group("start")))
    return out


def reached(hub: HubProcess, name: str, step: int) -> bool:
    series = api(hub, "GET", f"/kubelab/jobs/{name}/metrics").get("series") or []
    return any(s["name"] == "loss" and s["steps"] and s["steps"][-1] >= step for s in series)


def rank_pod(core: kubernetes.client.CoreV1Api, ns: str, name: str, rank: int) -> Any:
    pods = core.list_namespaced_pod(ns, label_selector=f"kubelab.io/job={name},kubelab.io/rank={rank}").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]
    return live[0] if live else None


def preempt(core: kubernetes.client.CoreV1Api, ns: str, pod: str) -> None:
    """What kube-scheduler does to a victim: the DisruptionTarget condition first, then the delete."""
    core.patch_namespaced_pod_status(pod, ns, {"status": {"conditions": [{
        "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
        "message": "kube-scheduler: preempting to accommodate a higher priority pod",
        "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}})
    core.delete_namespaced_pod(pod, ns)


def restarts_record(core: kubernetes.client.CoreV1Api, ns: str, name: str) -> dict[str, Any] | None:
    data = core.read_namespaced_config_map(job_id("alice", name), ns).data or {}
    return json.loads(data["restarts.json"]) if "restarts.json" in data else None


def rank_jobs(batch: kubernetes.client.BatchV1Api, ns: str, name: str) -> list[Any]:
    return batch.list_namespaced_job(ns, label_selector=f"kubelab.io/job={name},kubelab.io/component=rank").items


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * abs(b)


@pytest.fixture(scope="module")
def uninterrupted(hub: HubProcess) -> float:
    api(hub, "POST", "/kubelab/jobs", json=body("straight"))
    status = wait_done(hub, "straight", 300)
    assert status["restarts"]["used"] == 0, status["restarts"]
    losses = final_losses(hub, "straight")
    assert losses[0] == losses[1] and losses[0][1] == 0, losses
    return losses[0][0]


def test_a_preempted_rank_resumes_from_its_checkpoint_with_the_same_final_loss(
        hub: HubProcess, core: kubernetes.client.CoreV1Api, ns: str, uninterrupted: float) -> None:
    api(hub, "POST", "/kubelab/jobs", json=body("preempted"))
    wait_until(lambda: reached(hub, "preempted", 70), 240, "step 70 of the first attempt")
    victim = rank_pod(core, ns, "preempted", 1)
    assert victim is not None
    preempt(core, ns, victim.metadata.name)

    status = wait_done(hub, "preempted", 400)
    losses = final_losses(hub, "preempted")
    resumed = losses[0][1] - 1  # the step of the checkpoint read (the run goes on after it)
    assert resumed >= 60 and resumed % 20 == 0, losses
    assert status["restarts"]["used"] == 1, status["restarts"]
    assert status["message"] == f"Restarted 1 of 2: pod deleted (preempted); resumed from step {resumed}", status
    for rank, (loss, _start) in losses.items():
        assert close(loss, uninterrupted), f"rank {rank}: {loss} after the restart, {uninterrupted} without"


def test_a_hub_restarted_during_the_resume_carries_it_through(
        hub: HubProcess, core: kubernetes.client.CoreV1Api, batch: kubernetes.client.BatchV1Api, ns: str,
        uninterrupted: float) -> None:
    api(hub, "POST", "/kubelab/jobs", json=body("hubdown"))
    wait_until(lambda: reached(hub, "hubdown", 70), 240, "step 70 of the first attempt")
    victim = rank_pod(core, ns, "hubdown", 1)
    assert victim is not None
    core.delete_namespaced_pod(victim.metadata.name, ns)

    # The hub has counted the restart and stopped the ranks; then it dies before starting them again.
    wait_until(lambda: (r := restarts_record(core, ns, "hubdown")) and r["state"] == "stopping"
               and not [j for j in rank_jobs(batch, ns, "hubdown") if j.metadata.deletion_timestamp is None],
               60, "the restart under way (ranks deleted)", sleep=0.1)
    hub.kill()
    wait_until(lambda: not core.list_namespaced_pod(ns, label_selector="kubelab.io/job=hubdown,"
                                                    "kubelab.io/component=rank").items, 90, "the old ranks gone")
    time.sleep(5)
    assert rank_jobs(batch, ns, "hubdown") == [], "nothing starts the ranks while the hub is down"
    assert restarts_record(core, ns, "hubdown")["state"] == "stopping"

    hub.start(timeout=90)  # the same workdir; no request needed for the restart to go on
    status = wait_done(hub, "hubdown", 400)
    losses = final_losses(hub, "hubdown")
    resumed = losses[0][1] - 1
    assert resumed >= 60, losses
    assert status["message"] == f"Restarted 1 of 2: pod deleted; resumed from step {resumed}", status
    for rank, (loss, _start) in losses.items():
        assert close(loss, uninterrupted), f"rank {rank}: {loss} after the restart, {uninterrupted} without"
