"""With Katib installed, a sweep is a Katib Experiment, for real on the devcluster's API server.

Katib's CRDs (``tests/data/crds/katib``, v0.19.0) are installed for the module and removed after it
if it installed them (they share ``kubeflow.org`` with the training operator: left behind, engine
discovery elsewhere would see the group). The hub's discovery finds ``experiments``; a sweep of
one-worker plain jobs becomes an Experiment owned by the sweep's record, whose trial template is
kubelab's rank Job; the API server stores it, and the stored object still round-trips through the
Katib SDK's models. No Katib controller runs here: its status transitions are written on the real
Experiment and Trial objects as Katib's controllers write them (katib v0.19.0
``pkg/controller.v1beta1/experiment/util/status_util.go`` ``UpdateExperimentStatusCondition``,
``pkg/controller.v1beta1/trial/trial_controller_util.go`` ``UpdateTrialStatusCondition`` and
``UpdateTrialStatusObservation``), and the sweep's status follows them. Cancelling removes the
Experiment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from kubelab.jobs.builders import job_id
from tests.harness import HubProcess
from tests.jobs.helpers import BASE, make_jobs_namespace, wait_until, write_scripts_home
from tests.jobs.katib_sdk import round_trip
from tests.paths import CRDS

pytestmark = pytest.mark.integration

KUBECTL = Path(sys.executable).parent / "kubectl"
KATIB_CRDS = ("experiments", "trials", "suggestions")
GROUP, VERSION = "kubeflow.org", "v1beta1"


@pytest.fixture(scope="module")
def katib_crds(kube: kubernetes.client.ApiClient) -> Iterator[None]:
    ext = kubernetes.client.ApiextensionsV1Api(kube)

    def state(name: str) -> str:
        try:
            crd = ext.read_custom_resource_definition(name)
        except ApiException as e:
            if e.status == 404:
                return "absent"
            raise
        return "terminating" if crd.metadata.deletion_timestamp else "present"

    installed = []
    for plural in KATIB_CRDS:
        name = f"{plural}.{GROUP}"
        deadline = time.monotonic() + 120
        while state(name) == "terminating":
            assert time.monotonic() < deadline, f"CRD {name} still terminating"
            time.sleep(1)
        if state(name) == "absent":
            out = subprocess.run([str(KUBECTL), "create", "--validate=false", "-f",
                                  str(CRDS / "katib" / f"{plural[:-1]}.yaml")], capture_output=True, text=True,
                                 timeout=120, env={**os.environ})
            assert out.returncode == 0, out.stderr
            installed.append(name)
    for plural in KATIB_CRDS:
        wait_until(lambda p=plural: any(c.type == "Established" and c.status == "True" for c in
                                        ext.read_custom_resource_definition(f"{p}.{GROUP}").status.conditions or []),
                   60, f"CRD {plural} Established")
    yield
    for name in installed:
        ext.delete_custom_resource_definition(name)
    deadline = time.monotonic() + 120
    for name in installed:
        while state(name) != "absent" and time.monotonic() < deadline:
            time.sleep(1)


@pytest.fixture(scope="module")
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)


@pytest.fixture(scope="module")
def ns(core: kubernetes.client.CoreV1Api) -> Iterator[str]:
    name = make_jobs_namespace(core, "kl-katib")
    write_scripts_home(core, name, "alice")
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def hub(cluster: Any, katib_crds: None, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("hub")
    raw = json.loads(json.dumps(BASE))
    raw["jobs"].update(namespace=ns, kueue={"enabled": False})  # engine: plain (BASE pins it)
    (workdir / "catalogue.yaml").write_text(yaml.safe_dump(raw))
    config = textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "dummy"
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        configure_platform(c, load_catalogue({str(workdir / "catalogue.yaml")!r}))
    """)
    hub = HubProcess(config, connect_ip=cluster.host_ip, workdir=workdir, env={"KUBECONFIG": str(cluster.kubeconfig)})
    hub.start(timeout=90)
    hub.ensure_user("alice", [])
    yield hub
    hub.stop()


def call(hub: HubProcess, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    r = hub.api(method, path, token=hub.user_token("alice"), **kw)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def condition(kind: str, reason: str) -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": f"{kind} by the test (Katib's words)",
            "lastUpdateTime": stamp(), "lastTransitionTime": stamp()}


def test_a_sweep_is_a_katib_experiment_whose_status_the_sweep_follows(
        hub: HubProcess, kube: kubernetes.client.ApiClient, core: kubernetes.client.CoreV1Api, ns: str) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube)
    created = call(hub, "POST", "/kubelab/sweeps", 201, json={
        "name": "kat", "job": {"framework": "replicas", "script": "sweep_trial.py", "env": {"SEED": "1"}},
        "space": {"lr": {"type": "loguniform", "min": 1e-4, "max": 1e-1}, "width": {"type": "grid", "values": [8, 16]}},
        "objective": "loss", "trials": 4, "parallel": 2, "seed": 3})
    assert created["engine"] == "katib"
    name = job_id("alice", "kat")
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "experiments", name)
    record = core.read_namespaced_config_map(f"{name}-sweep", ns)
    assert stored["metadata"]["ownerReferences"][0]["uid"] == record.metadata.uid
    trial_job = stored["spec"]["trialTemplate"]["trialSpec"]
    assert trial_job["kind"] == "Job" and trial_job["spec"]["template"]["metadata"]["labels"]["kubelab.io/job"] == "kat"
    assert "--lr=${trialParameters.lr}" in trial_job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert stored["spec"]["algorithm"] == {"algorithmName": "random",
                                           "algorithmSettings": [{"name": "random_state", "value": "3"}]}
    # The template's own env value is in a Secret the record owns, never in the Experiment.
    env = {e["name"]: e for e in trial_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SEED"] == {"name": "SEED", "valueFrom": {"secretKeyRef": {"name": f"{name}-env", "key": "SEED"}}}
    secret = core.read_namespaced_secret(f"{name}-env", ns)
    assert secret.metadata.owner_references[0].uid == record.metadata.uid
    # What the API server stored is still what the Katib SDK's models read.
    spec_only = {k: stored[k] for k in ("apiVersion", "kind", "spec")}
    (answer,) = round_trip(("V1beta1Experiment", spec_only))
    assert answer["back"] == spec_only
    assert not core.list_namespaced_config_map(ns, label_selector="kubelab.io/component=job").items, \
        "Katib runs the trials: the hub made no job of its own"

    # Katib's controllers: the Experiment runs, two Trials report their metrics, it succeeds.
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "experiments", name, {"status": {
        "conditions": [condition("Created", "ExperimentCreated"), condition("Running", "ExperimentRunning")],
        "startTime": stamp()}})
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Experiment", "name": name, "uid": stored["metadata"]["uid"],
             "controller": True}
    for suffix, lr, loss in (("x7k2p9qa", "0.003", "0.08"), ("b4n8m1zc", "0.04", "1.3")):
        trial = custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trials", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Trial",
            "metadata": {"name": f"{name}-{suffix}", "ownerReferences": [owner],
                         "labels": {"katib.kubeflow.org/experiment": name}},
            "spec": {"objective": stored["spec"]["objective"],
                     "parameterAssignments": [{"name": "lr", "value": lr}, {"name": "width", "value": "16"}]}})
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "trials", trial["metadata"]["name"], {
            "status": {"conditions": [condition("Created", "TrialCreated"), condition("Succeeded", "TrialSucceeded")],
                       "observation": {"metrics": [{"name": "loss", "min": loss, "max": "2.0", "latest": loss}]}}})
        time.sleep(1.1)  # distinct creation times: Katib's order
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "experiments", name, {"status": {
        "conditions": [condition("Created", "ExperimentCreated"), condition("Succeeded", "ExperimentGoalReached")],
        "trials": 2, "trialsSucceeded": 2, "completionTime": stamp(),
        "currentOptimalTrial": {"bestTrialName": f"{name}-x7k2p9qa",
                                "parameterAssignments": [{"name": "lr", "value": "0.003"}],
                                "observation": {"metrics": [{"name": "loss", "min": "0.08", "latest": "0.08"}]}}}})

    status = wait_until(lambda: (s := call(hub, "GET", "/kubelab/sweeps/kat"))["phase"] == "Succeeded"
                        and len(s["trials"]) == 2 and s, 60, "the sweep to follow the Experiment")
    assert status["best"] == 0 and status["trials"][0]["objective"] == 0.08
    assert status["trials"][0]["params"] == {"lr": "0.003", "width": "16"}
    assert status["message"] == "2 of 4 trials succeeded (Katib)"

    # Cancel removes the Experiment (Katib's Trials go with it); the record keeps what they said.
    call(hub, "POST", "/kubelab/sweeps/kat/cancel")
    wait_until(lambda: not [e for e in custom.list_namespaced_custom_object(GROUP, VERSION, ns, "experiments")["items"]
                            if e["metadata"]["name"] == name], 60, "the Experiment gone")
    after = call(hub, "GET", "/kubelab/sweeps/kat")
    assert after["phase"] == "Succeeded" and after["best"] == 0 and len(after["trials"]) == 2, after
    call(hub, "DELETE", "/kubelab/sweeps/kat")
    wait_until(lambda: not core.list_namespaced_secret(ns, label_selector="kubelab.io/sweep=kat").items
               and not core.list_namespaced_config_map(ns, label_selector="kubelab.io/sweep=kat").items, 60,
               "the record and its Secret gone")
