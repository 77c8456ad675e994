"""``jobs.retention`` on the devcluster: an ended job stays listed, with its status and logs, until the
catalogue's retention has passed since its end; then the reconciler deletes it (its parent and, by
ownerReferences, every object of it). A job that still runs is never removed, and without a
retention nothing is (the other jobs tests keep their jobs: no retention in their catalogues).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kubernetes
import pytest
import yaml
from harness import HubProcess  # tests/ is on sys.path: its conftest.py puts it there

from kubelab.jobs import JobClient
from tests.jobs.helpers import BASE, make_jobs_namespace, wait_until, write_scripts_home

pytestmark = pytest.mark.integration

RETENTION = 10  # seconds ("10s" in the catalogue): short, so that the test sees jobs go


@pytest.fixture(scope="module")
def jobs_ns(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    core = kubernetes.client.CoreV1Api(kube)
    name = make_jobs_namespace(core, "kl-retain")
    write_scripts_home(core, name, "alice")
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def hub(cluster: Any, jobs_ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    raw = json.loads(json.dumps(BASE))
    raw["jobs"].update({"namespace": jobs_ns, "kueue": {"enabled": False}, "retention": f"{RETENTION}s"})
    path = tmp_path_factory.mktemp("retention") / "catalogue.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = f"""
c.JupyterHub.authenticator_class = "dummy"
from kubelab.core.catalogue import load_catalogue
from kubelab.hub_config.wiring import configure_platform
configure_platform(c, load_catalogue({str(path)!r}), rendezvous_timeout=60)
"""
    h = HubProcess(config=config, connect_ip=cluster.host_ip, env={"KUBECONFIG": str(cluster.kubeconfig)})
    h.start()
    try:
        h.ensure_user("alice")
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def client(hub: HubProcess) -> JobClient:
    return JobClient("hub", api_url=hub.api_url, token=hub.user_token("alice"))


def listed(client: JobClient) -> set[str]:
    return {j.name for j in client.list()}


def parents(kube: kubernetes.client.ApiClient, ns: str, name: str) -> list[str]:
    """The job's objects left in the cluster (its parent ConfigMap, rank Jobs, pods)."""
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    sel = f"kubelab.io/job={name}"
    return ([f"ConfigMap/{o.metadata.name}" for o in core.list_namespaced_config_map(ns, label_selector=sel).items]
            + [f"Job/{o.metadata.name}" for o in batch.list_namespaced_job(ns, label_selector=sel).items]
            + [f"Pod/{o.metadata.name}" for o in core.list_namespaced_pod(ns, label_selector=sel).items])


def ended_at(finished: str) -> float:
    return datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def test_ended_jobs_stay_for_the_retention_then_go(client: JobClient, kube: kubernetes.client.ApiClient,
                                                   jobs_ns: str) -> None:
    common = {"script": "fail_rank.py", "framework": "replicas", "workers": 1}
    client.submit(name="succeeds", script="show_gpu.py", framework="replicas", workers=1)
    client.submit(name="fails", env={"FAIL_RANK": "0"}, **common)
    client.submit(name="cancelled", env={"FAIL_RANK": "none"}, **common)
    client.submit(name="runs", env={"FAIL_RANK": "none"}, **common)
    wait_until(lambda: client.get("cancelled").phase == "Running", 120, "job cancelled to run")
    client.cancel("cancelled")
    ends = {"succeeds": "Succeeded", "fails": "Failed", "cancelled": "Cancelled"}

    def all_ended() -> dict[str, str] | None:
        statuses = {n: client.get(n) for n in ends}
        if any(s.phase != ends[n] or not s.finished for n, s in statuses.items()):
            return None
        return {n: s.finished for n, s in statuses.items() if s.finished}

    finished = wait_until(all_ended, 180, "the three jobs to end")
    # Ended, and still listed with status and logs while the retention runs.
    assert {"succeeds", "fails", "cancelled", "runs"} <= listed(client)
    assert any("failing on purpose" in line for line in client.logs("fails")), "the failed rank's log is gone"
    assert client.get("fails").failed_rank == 0

    gone_at: dict[str, float] = {}

    def all_gone() -> bool:
        now = time.time()
        for name in set(ends) - set(gone_at) - listed(client):
            gone_at[name] = now
        return set(gone_at) == set(ends)

    wait_until(all_gone, RETENTION + 60, f"the ended jobs to be deleted after {RETENTION} s")
    for name, when in gone_at.items():
        # Not before the retention (the stamp has whole seconds; a poll interval of slack).
        assert when - ended_at(finished[name]) >= RETENTION - 1, (name, when - ended_at(finished[name]))
        with pytest.raises(KeyError, match=name):
            client.get(name)
        wait_until(lambda name=name: not parents(kube, jobs_ns, name), 60, f"{name}'s objects to go (cascade)")
    # The job that still runs is never removed.
    assert "runs" in listed(client) and client.get("runs").phase == "Running"
    client.cancel("runs")
