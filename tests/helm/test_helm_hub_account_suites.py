"""The spawner's and the jobs service's real-hub integration tests pass under the chart's hub account.

They run in a child pytest with ``hub_sa_plugin``, which gives every hub they start a kubeconfig
for the ServiceAccount ``hub`` bound to the rendered roles instead of the admin's. The selection
below is the part of those suites that exercises each API the roles grant: spawning CPU and GPU
servers (pods, PVCs, events, nodes and pods cluster-wide), fail-fast on Unschedulable (pod delete,
PVC kept), a 2-worker DDP job (Jobs, Services, pod logs) and cancel (deletes).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SUITES = [
    "tests/spawner/test_integration.py::test_rest_spawns_cpu_and_gpu",
    "tests/spawner/test_integration.py::test_unschedulable_fails_fast_and_keeps_pvc",
    "tests/jobs/test_service_integration.py::test_two_worker_ddp_through_jobclient",
    "tests/jobs/test_service_integration.py::test_cancel_removes_every_object_and_stops_the_processes",
]


def run_under_account(cluster, tmp_path: Path, suites: list[str], without: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``suites`` in a child pytest whose hubs use the chart's hub account."""
    missing = [s for s in suites if not (REPO / s.split("::")[0]).is_file()]
    if missing:
        pytest.skip(f"suites not in the tree yet: {', '.join(missing)}")
    env = {**os.environ, "KUBELAB_HUB_SA_REPORT": str(tmp_path / "report.json"), "KUBECONFIG": str(cluster.kubeconfig),
           "KUBELAB_HUB_SA_WITHOUT": without,
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "helm"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "hub_sa_plugin", "-x", *suites],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, check=False,
    )


def test_spawner_and_jobs_suites_pass_under_the_hub_account(cluster, tmp_path: Path) -> None:
    result = run_under_account(cluster, tmp_path, SUITES)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    report = tmp_path / "report.json"
    ran = json.loads(report.read_text())
    assert ran["user"] == "system:serviceaccount:" + ran["user"].split(":")[2] + ":hub"
    assert ran["hubs"] >= 2, "the suites started no hub under the account"


def test_a_missing_rule_makes_the_suite_fail(cluster, tmp_path: Path) -> None:
    """Negative control: without PVC rights in the Role the CPU spawn is refused with Kubernetes'
    403, so the hubs above really ran under the account and its roles are what made them pass."""
    result = run_under_account(cluster, tmp_path, [SUITES[0]], without="persistentvolumeclaims")
    assert result.returncode != 0
    assert re.search(r"Forbidden.*persistentvolumeclaims", result.stdout), result.stdout[-4000:]
