"""Jobs are driven to their end whatever happens to the hub or the API server (issue 10).

* The hub is SIGKILLed while a 2-rank plain job runs; rank 1 fails while the hub is down; the
  hub restarts. With no API call at all, the reconciler (started with the hub) marks the job
  Failed, tears rank 0 down and writes the final record.
* A reconcile that meets API 500s (from ``tests/faults.py``, a fault-injecting proxy in front of
  the real API server) is retried and completes.
* A restart of the real kube-apiserver mid-job leaves every status right.

Everything here is checked against the API server directly, never through the hub, so the hub
receives no request that could wake it up.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from kubelab.devcluster import pidfile, up
from kubelab.devcluster.controlplane import Layout
from kubelab.jobs.builders import job_id
from tests.faults import FaultProxy
from tests.harness import HubProcess, descendants
from tests.jobs.helpers import BASE, make_jobs_namespace, wait_until, write_scripts_home

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)


@pytest.fixture(scope="module")
def batch(kube: kubernetes.client.ApiClient) -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(kube)


@pytest.fixture(scope="module")
def ns(core: kubernetes.client.CoreV1Api) -> Iterator[str]:
    name = make_jobs_namespace(core, "kl-resilience")
    write_scripts_home(core, name, "alice")
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


def start_hub(cluster: Any, ns: str, workdir: Path, kubeconfig: Path | None = None) -> HubProcess:
    raw = json.loads(json.dumps(BASE))
    raw["jobs"].update(namespace=ns, kueue={"enabled": False})
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(raw))
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        configure_platform(c, load_catalogue({str(workdir / "catalogue.yaml")!r}), rendezvous_timeout=120)
    """)
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=workdir,
                     env={"KUBECONFIG": str(kubeconfig or cluster.kubeconfig)})
    hub.start(timeout=90)
    try:
        hub.ensure_user("alice", ["gpu-users"])
    except BaseException:
        hub.stop()  # a hub that answered but could not be set up must not outlive the test
        raise
    return hub


def submit(hub: HubProcess, body: dict[str, Any]) -> None:
    r = hub.api("POST", "/kubelab/jobs", token=hub.user_token("alice"), json=body)
    assert r.status_code == 201, r.text


def record(core: kubernetes.client.CoreV1Api, ns: str, name: str) -> dict[str, Any] | None:
    """The job's final record, read from its parent ConfigMap in the API server."""
    data = core.read_namespaced_config_map(job_id("alice", name), ns).data or {}
    return json.loads(data["status.json"]) if "status.json" in data else None


def rank_jobs(batch: kubernetes.client.BatchV1Api, ns: str, name: str) -> dict[int, Any]:
    jobs = batch.list_namespaced_job(ns, label_selector=f"kubelab.io/job={name}").items
    return {int(j.metadata.labels["kubelab.io/rank"]): j for j in jobs}


def failed_for_good(job: Any) -> bool:
    return any(c.type == "Failed" and c.status == "True" for c in (job.status.conditions or []))


def running_pods(core: kubernetes.client.CoreV1Api, ns: str, name: str) -> int:
    pods = core.list_namespaced_pod(ns, label_selector=f"kubelab.io/job={name}").items
    return sum(p.status.phase == "Running" for p in pods)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie not yet reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_hub_killed_mid_job_finishes_the_job_after_restart(cluster, core, batch, ns, tmp_path):
    hub = start_hub(cluster, ns, tmp_path / "hub")
    try:
        submit(hub, {"name": "crash", "framework": "replicas", "script": "fail_rank.py", "workers": 2,
                     "env": {"FAIL_AFTER": "15"}})
        wait_until(lambda: running_pods(core, ns, "crash") == 2, 90, "both ranks Running")
        assert hub.proc is not None
        below = descendants(hub.proc.pid)  # its proxy; services run in sessions of their own
        assert below, "the hub started no process"
        hub.kill()
        wait_until(lambda: not [pid for pid in below if alive(pid)], 10, "the killed hub's processes to end")
        wait_until(lambda: failed_for_good(rank_jobs(batch, ns, "crash")[1]), 120, "rank 1 failing for good")
        # Nobody acted while the hub was down: no record, rank 0 still there.
        assert record(core, ns, "crash") is None
        assert rank_jobs(batch, ns, "crash")[0].metadata.deletion_timestamp is None

        hub.start(timeout=90)  # and then no request to the jobs service at all

        def finished() -> dict[str, Any] | None:
            final = record(core, ns, "crash")
            jobs = rank_jobs(batch, ns, "crash")
            gone = 0 not in jobs or jobs[0].metadata.deletion_timestamp is not None
            return final if final and gone else None

        final = wait_until(finished, 30, "the record and rank 0's teardown, within 30 s of the restart")
        assert final["phase"] == "Failed" and final["failed_rank"] == 1, final
        assert "rank 1: failing on purpose" in final["last_logs"], final
        # Read through the API once all is done: rank 0 reads as stopped, never Running.
        status = hub.api("GET", "/kubelab/jobs/crash", token=hub.user_token("alice")).json()
        assert status["phase"] == "Failed", status
        assert [r["phase"] for r in status["ranks"]] == ["Stopped", "Failed"], status["ranks"]
    finally:
        hub.stop()


def test_a_reconcile_that_meets_api_500s_is_retried_and_completes(cluster, core, ns, tmp_path):
    with FaultProxy(cluster.kubeconfig) as proxy:
        hub = start_hub(cluster, ns, tmp_path / "hub", kubeconfig=proxy.kubeconfig)
        try:
            # Every write of a job's record fails 8 times: more than one reconcile's own retries (5),
            # so the work queue must retry the reconcile itself with backoff.
            proxy.fail("PATCH", rf"^/api/v1/namespaces/{ns}/configmaps/", status=500, times=8)
            submit(hub, {"name": "quick", "framework": "replicas", "script": "fail_rank.py", "workers": 1,
                         "env": {"FAIL_RANK": "none", "SLEEP": "1"}})
            final = wait_until(lambda: record(core, ns, "quick"), 120, "the record despite the 500s")
            assert final["phase"] == "Succeeded", final
            assert proxy.injected("PATCH") == 8
            assert re.search(r"jobs: reconcile quick-\w+ failed .*; retry 1 in", hub.log_text()), \
                "the work queue retried the reconcile itself"
        finally:
            hub.stop()


def restart_apiserver(state: Path) -> None:
    """Stop the devcluster's kube-apiserver (SIGTERM, SIGKILL after 5 s) and start it again."""
    assert pidfile.stop(Layout(state).pid("kube-apiserver"), timeout=5), "the devcluster's API server is not running"
    up(state)


def test_an_api_server_restart_mid_job_leaves_every_status_right(cluster, core, batch, ns, tmp_path):
    if cluster.external:
        pytest.skip("restarts the devcluster's own API server; KUBECONFIG points at another cluster")
    hub = start_hub(cluster, ns, tmp_path / "hub")
    token = hub.user_token("alice")
    try:
        submit(hub, {"name": "steady", "framework": "replicas", "script": "fail_rank.py", "workers": 2,
                     "env": {"FAIL_RANK": "none", "SLEEP": "25"}})
        submit(hub, {"name": "breaks", "framework": "replicas", "script": "fail_rank.py", "workers": 2,
                     "env": {"FAIL_AFTER": "12"}})
        wait_until(lambda: running_pods(core, ns, "steady") == 2 and running_pods(core, ns, "breaks") == 2, 90,
                   "all four ranks Running")
        restart_apiserver(cluster.state)

        seen: list[Any] = [None]

        def phases() -> dict[str, str] | None:
            jobs = hub.api("GET", "/kubelab/jobs", token=token).json()["jobs"]
            # Only these two: the module's other tests leave their jobs in the same namespace.
            out = {j["name"]: j["phase"] for j in jobs if j["name"] in ("steady", "breaks")}
            seen[0] = (out, {n: rank_jobs(batch, ns, n) and {r: (j.status.succeeded, j.status.failed)
                                                            for r, j in rank_jobs(batch, ns, n).items()}
                             for n in ("steady", "breaks")})
            return out if out == {"steady": "Succeeded", "breaks": "Failed"} else None

        try:
            wait_until(phases, 180, "steady to succeed and breaks to fail, as the cluster says")
        except TimeoutError as e:
            raise AssertionError(f"{e}; last seen (hub's phases, rank Jobs' succeeded/failed): {seen[0]}") from None
        assert record(core, ns, "steady")["phase"] == "Succeeded"
        assert record(core, ns, "breaks")["failed_rank"] == 1
        breaks = hub.api("GET", "/kubelab/jobs/breaks", token=token).json()
        assert [r["phase"] for r in breaks["ranks"]] == ["Stopped", "Failed"], breaks["ranks"]
        jobs = rank_jobs(batch, ns, "breaks")
        assert 0 not in jobs or jobs[0].metadata.deletion_timestamp is not None
    finally:
        hub.stop()
