"""A submit finds the user's home in the jobs cache, and reads the API only for a claim it has not seen.

The jobs cache (``kubelab.jobs.kube.JobCache``) watches the namespace's claims, so a submit sends
no ``GET persistentvolumeclaims/<home>`` (issue 10: a submit sent 5 requests against the floor's
4). A claim the cache lacks is read from the API: one made a moment ago may not have reached the
cache yet, and a user without a home is told to start their server first. The hub reaches the real
API server through ``tests/faults.py``'s proxy, used here only to record requests (no fault).
"""

from __future__ import annotations

from pathlib import Path

import kubernetes
import pytest

from kubelab.core.naming import home_claim_name
from tests.faults import FaultProxy
from tests.jobs.helpers import make_jobs_namespace, write_scripts_home
from tests.jobs.test_resilience import core, start_hub  # noqa: F401 - the module fixture, shared by import

pytestmark = pytest.mark.integration

JOB = {"framework": "replicas", "script": "fail_rank.py", "workers": 1, "env": {"FAIL_RANK": "none", "SLEEP": "1"}}


def claim_reads(proxy: FaultProxy, namespace: str, claim: str) -> int:
    with proxy._lock:
        return sum(1 for method, path in proxy.requests
                   if method == "GET" and path.split("?")[0] == f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")


def test_a_submit_reads_the_home_from_the_cache_and_the_api_only_on_a_miss(
        cluster, core: kubernetes.client.CoreV1Api, tmp_path: Path) -> None:  # noqa: F811 - the fixture above
    ns = make_jobs_namespace(core, "kl-homelookup")
    try:
        alice_home = write_scripts_home(core, ns, "alice")
        assert alice_home == home_claim_name("alice")
        with FaultProxy(cluster.kubeconfig) as proxy:
            hub = start_hub(cluster, ns, tmp_path / "hub", kubeconfig=proxy.kubeconfig)
            try:
                r = hub.api("POST", "/kubelab/jobs", token=hub.user_token("alice"), json={"name": "one", **JOB})
                assert r.status_code == 201, r.text
                assert claim_reads(proxy, ns, alice_home) == 0, "the submit read a home the cache holds"

                # bob has no home: the cache misses, the API is read, and he is told what to do.
                hub.ensure_user("bob", [])
                bob_home = home_claim_name("bob")
                token = hub.user_token("bob")
                r = hub.api("POST", "/kubelab/jobs", token=token, json={"name": "two", **JOB})
                assert r.status_code == 400 and r.json()["field"] == "script", r.text
                assert "does not exist yet" in r.json()["message"], r.text
                assert claim_reads(proxy, ns, bob_home) >= 1, "a miss in the cache must be read from the API"

                # His home is made (his first server start would make it): the very next submit finds it,
                # whether or not the watch has brought it yet.
                core.create_namespaced_persistent_volume_claim(ns, {
                    "metadata": {"name": bob_home},
                    "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
                })
                r = hub.api("POST", "/kubelab/jobs", token=token, json={"name": "two", **JOB})
                assert r.status_code == 201, r.text
                claims = {v["persistent_volume_claim"]["claim_name"]
                          for j in kubernetes.client.BatchV1Api(core.api_client).list_namespaced_job(
                              ns, label_selector="kubelab.io/job=two").items
                          for v in j.to_dict()["spec"]["template"]["spec"]["volumes"] or []
                          if v.get("persistent_volume_claim")}
                assert claims == {bob_home}, claims
            finally:
                hub.stop()
    finally:
        core.delete_namespace(ns)
