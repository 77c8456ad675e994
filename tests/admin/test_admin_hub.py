"""GPU accounting in a real hub on the devcluster, on SQLite and on a real PostgreSQL.

A GPU server runs for a time the test measures itself, from the moment it sees the pod bound to
the GPU node to the moment it sees it gone (or ended): the hub's usage API must report that many
GPU-seconds within 2 s. Then a server runs while the hub goes down (``cleanup_servers = False``,
as on z2jh), stops by itself while the hub is down (its command ends after a set time, as a
server shut down from JupyterLab does), and the hub, started again on the same database, must
close its interval at the pod's own end. Totals per group add up to the total; the CSV parses.
"""

from __future__ import annotations

import csv
import io
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import requests
from labhub import make_namespace, start_hub, uname  # tests/spawner is on sys.path (conftest)
from prometheus_client.parser import text_string_to_metric_families

from kubelab.core.naming import LABEL_SERVER, LABEL_USER, server_label, user_label
from kubelab.hub_config.culling import CULLER_SCOPES

pytestmark = pytest.mark.integration

#: Every server's command ends after this many seconds (restartPolicy Never: the pod ends and stays).
SERVER_LIFETIME = 45
CULLER_TOKEN = secrets.token_hex(16)


class PodClock(threading.Thread):
    """Polls the API for a user's server pod: when it was first seen bound, and first seen not holding."""

    def __init__(self, core: kubernetes.client.CoreV1Api, namespace: str, user: str, server: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = core, namespace
        self.selector = f"{LABEL_USER}={user_label(user)},{LABEL_SERVER}={server_label(server)}"
        self.bound: float | None = None
        self.ended: float | None = None
        self.stop_flag = threading.Event()

    def run(self) -> None:  # noqa: D102 - a test thread
        while not self.stop_flag.is_set() and self.ended is None:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
            now = time.time()
            holding = [p for p in pods if p.spec.node_name and p.status.phase not in ("Succeeded", "Failed")]
            if holding and self.bound is None:
                self.bound = now
            elif self.bound is not None and not holding:
                self.ended = now
            time.sleep(0.1)

    def wait_ended(self, timeout: float) -> float:
        self.join(timeout)
        assert self.bound is not None and self.ended is not None, "the test never saw the pod bound and then end"
        return self.ended - self.bound


@pytest.fixture(scope="module")
def core(cluster: Any) -> Iterator[kubernetes.client.CoreV1Api]:
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"], scope="module")
def hub_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('hubdb') / 'jupyterhub.sqlite'}"
    return request.getfixturevalue("postgres_url")


def scrape_culls(hub: Any) -> float:
    """``kubelab_culls_total{profile="a100"}`` from ``/hub/metrics``, parsed by prometheus_client."""
    text = requests.get(f"{hub.url}/hub/metrics", timeout=30).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "kubelab_culls_total" and s.labels.get("profile") == "a100")


def usage(hub: Any, by: str) -> dict[str, float]:
    r = hub.api("GET", "/kubelab/admin/usage", params={"by": by})
    assert r.status_code == 200, r.text
    return {t["key"]: t["gpu_seconds"] for t in r.json()["totals"]}


def wait_usage(hub: Any, user: str, at_least: float, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while True:
        got = usage(hub, "user").get(user, 0.0)
        if got >= at_least or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_gpu_seconds_are_measured_and_survive_a_restart(cluster: Any, core: kubernetes.client.CoreV1Api, hub_db: str,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    ns = make_namespace(core, "kl-admin")
    alice = uname(f"alice{hub_db[:2]}")
    extra = f"""
c.JupyterHub.db_url = {hub_db!r}
c.JupyterHub.cleanup_servers = False
c.KubelabAdmin.heartbeat_seconds = 1
c.JupyterHub.load_roles.append({{"name": "harness-kubelab-admin", "scopes": ["custom:kubelab:admin"],
                                "services": ["kubelab-harness"]}})
c.JupyterHub.authenticate_prometheus = False
# the idle culler's service and role, as kubelab.hub_config.culling defines them (without its process)
c.JupyterHub.services.append({{"name": "idle-culler", "api_token": {CULLER_TOKEN!r}}})
c.JupyterHub.load_roles.append({{"name": "idle-culler", "scopes": {list(CULLER_SCOPES)!r}, "services": ["idle-culler"]}})
c.LabSpawner.cmd = ["timeout", "-s", "TERM", "{SERVER_LIFETIME}", "jupyterhub-singleuser"]
c.LabSpawner.extra_pod_config = {{"restartPolicy": "Never"}}
"""
    hub = start_hub(cluster, ns, tmp_path_factory.mktemp("adminhub"), extra=extra)
    try:
        hub.ensure_user(alice, ["gpu-users"])
        # 1. a server run for a measured time
        clock = PodClock(core, ns, alice, "")
        clock.start()
        r = hub.api("POST", f"/users/{alice}/server", json={"profile": "a100", "gpus": 1}, timeout=120)
        assert r.status_code in (201, 202), r.text
        hub.wait_server(alice, timeout=120)
        time.sleep(3)
        culls = scrape_culls(hub)
        # stopped the way the culler stops it: DELETE with the culler's service token
        r = hub.api("DELETE", f"/users/{alice}/server", token=CULLER_TOKEN)
        assert r.status_code in (202, 204), r.text
        measured = clock.wait_ended(30)
        first = wait_usage(hub, alice, measured - 2)
        assert abs(first - measured) <= 2, (first, measured)
        assert scrape_culls(hub) == culls + 1

        # 2. a server that stops by itself while the hub is down
        clock = PodClock(core, ns, alice, "")
        clock.start()
        r = hub.api("POST", f"/users/{alice}/server", json={"profile": "a100", "gpus": 1}, timeout=120)
        assert r.status_code in (201, 202), r.text
        hub.wait_server(alice, timeout=120)
        hub.proc.send_signal(signal.SIGTERM)  # the hub goes down; the server keeps running
        hub.proc.wait(30)
        second = clock.wait_ended(SERVER_LIFETIME + 30)  # its command ends: the pod Succeeded
        hub._log_file.close()
        hub.start(timeout=90)
        total = wait_usage(hub, alice, first + second - 2)
        assert abs(total - (first + second)) <= 2, (total, first, second)

        # 3. every breakdown adds up to the same total; the CSV holds the same rows
        by_user = usage(hub, "user")
        for by in ("group", "class", "kind", "month"):
            assert sum(usage(hub, by).values()) == pytest.approx(sum(by_user.values()), abs=0.5), by
        assert usage(hub, "group")["gpu-users"] >= total - 0.5
        r = hub.api("GET", "/kubelab/admin/usage.csv")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text
        rows = [row for row in csv.DictReader(io.StringIO(r.text)) if row["user"] == alice]
        assert sum(float(row["gpu_seconds"]) for row in rows) == pytest.approx(total, abs=0.5)
        assert {(row["gpu_class"], row["kind"], row["group"]) for row in rows} == {("a100", "server", "gpu-users")}
        # bad input: 400 naming the field
        r = hub.api("GET", "/kubelab/admin/usage", params={"by": "pod"})
        assert r.status_code == 400 and r.json()["field"] == "by", r.text
        r = hub.api("GET", "/kubelab/admin/usage.csv", params={"from": "2026-13"})
        assert r.status_code == 400 and r.json()["field"] == "from", r.text
        # without the admin scope: 403
        r = hub.api("GET", "/kubelab/admin/usage", token=hub.user_token(alice))
        assert r.status_code == 403, r.text
    finally:
        hub.stop()
        core.delete_namespace(ns)
