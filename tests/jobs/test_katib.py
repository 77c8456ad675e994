"""A sweep as a Katib Experiment whose trial template is kubelab's own job, one test per algorithm.

Checked offline against the ``kubeflow-katib`` SDK's models (v0.19.0, ``tests/jobs/katib_sdk.py``:
every field kubelab writes is one the models know, nothing is dropped), against the newer Kubeflow
SDK's Katib models (``kubeflow_katib_api``, pydantic, strict types), against the Experiment CRD in
``tests/data/crds/katib`` and against the rules of Katib's admission webhook that apply
(katib v0.19.0 ``pkg/webhook/v1beta1/experiment/validator/validator.go``: ``validateParameters``,
``validateTrialTemplate``, ``validateObjective``, ``validateAlgorithm``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml
from kubeflow_katib_api.models import V1beta1Experiment

from kubelab.jobs import sweeps
from kubelab.jobs.builders import plain
from kubelab.jobs.builders.common import BuildContext, job_id
from tests.jobs.katib_sdk import SDK, round_trip
from tests.paths import DATA

CTX = BuildContext(user="alice", namespace="jobs", image="ghcr.io/kubelab/notebook-cpu:0.1.0")
TEMPLATE = {"framework": "replicas", "script": "train.py", "args": ["--epochs", "3"], "env": {"SEED": "1"}}
LABELS = {"app.kubernetes.io/managed-by": "kubelab", "kubelab.io/user": "alice", "kubelab.io/sweep": "lr"}


def experiment(**kw: Any) -> dict[str, Any]:
    sweep = sweeps.SweepSpec(**{"name": "lr", "job": TEMPLATE, "objective": "loss", "trials": 6, "parallel": 2, **kw})
    trial_job = plain.make_rank_job(sweeps.trial_template_spec(sweep), CTX, 0)
    return sweeps.make_experiment(sweep, trial_job, name=job_id("alice", "lr"), namespace="jobs", labels=LABELS,
                                  owner={"apiVersion": "v1", "kind": "ConfigMap", "name": "lr-3f2a1c-sweep",
                                         "uid": "0f6b"})


GRID = {"space": {"lr": sweeps.grid(0.1, 0.01, 0.001), "optimizer": sweeps.grid("sgd", "adam"),
                  "batch": sweeps.uniform(16, 64, integer=True, step=16)}, "trials": 24}
RANDOM = {"space": {"lr": sweeps.loguniform(1e-4, 1e-1), "WARMUP": sweeps.env(sweeps.uniform(0, 10, integer=True)),
                    "dropout": sweeps.uniform(0.0, 0.5), "optimizer": sweeps.choice("sgd", "adam")},
          "seed": 7, "early_stopping": {"rule": "median"}}


def katib_rules(exp: dict[str, Any]) -> list[str]:
    """The admission webhook's checks that kubelab's objects can meet or miss (its error words)."""
    errors = []
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", exp["metadata"]["name"]) or len(exp["metadata"]["name"]) > 40:
        errors.append("name must consist of lower case alphanumeric characters or '-', at most 40 characters")
    spec = exp["spec"]
    if spec["objective"]["type"] not in ("minimize", "maximize"):
        errors.append("objective.type must be minimize or maximize")
    if not spec["objective"].get("objectiveMetricName"):
        errors.append("objective.objectiveMetricName must be specified")
    if spec["algorithm"]["algorithmName"] not in ("random", "grid"):
        errors.append("unsupported algorithm")
    for i, p in enumerate(spec["parameters"]):
        space = p["feasibleSpace"]
        if p["parameterType"] not in ("int", "double", "categorical", "discrete"):
            errors.append(f"parameters[{i}].parameterType: {p['parameterType']} is not supported")
        if space.get("distribution", "uniform") not in ("uniform", "logUniform", "normal", "logNormal"):
            errors.append(f"parameters[{i}].feasibleSpace.distribution is not supported")
        if p["parameterType"] in ("int", "double"):
            if space.get("list") or not space.get("min") or not space.get("max"):
                errors.append(f"parameters[{i}]: min and max, no list, for {p['parameterType']}")
            if spec["algorithm"]["algorithmName"] == "grid" and p["parameterType"] == "double" and not space.get("step"):
                errors.append(f"parameters[{i}]: grid needs a step for double parameters")
        elif any(k in space for k in ("min", "max", "step")) or not space.get("list"):
            errors.append(f"parameters[{i}]: a list, no min/max/step, for {p['parameterType']}")
    template = spec["trialTemplate"]
    if not template.get("primaryContainerName") or not template.get("successCondition") \
            or not template.get("failureCondition"):
        errors.append("trialTemplate: primaryContainerName, successCondition and failureCondition must be specified")
    text = json.dumps(template["trialSpec"])
    used = set(re.findall(r"\$\{trialParameters\.([^}]+)\}", text))
    declared = {t["name"] for t in template["trialParameters"]}
    if used != declared:
        errors.append(f"trialParameters {sorted(declared)} and the placeholders {sorted(used)} differ")
    if {t["reference"] for t in template["trialParameters"]} != {p["name"] for p in spec["parameters"]}:
        errors.append("every trialParameter references a parameter")
    containers = template["trialSpec"]["spec"]["template"]["spec"]["containers"]
    if template["primaryContainerName"] not in [c["name"] for c in containers]:
        errors.append("primaryContainerName names no container of the trial")
    return errors


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((DATA / "crds" / "katib" / "experiment.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == sweeps.KATIB_VERSION)
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("kw", [GRID, RANDOM], ids=["grid", "random"])
def test_the_experiment_passes_the_katib_sdk_models_crd_and_webhook(kw: dict[str, Any]) -> None:
    exp = experiment(**kw)
    assert exp["spec"]["algorithm"]["algorithmName"] == ("grid" if kw is GRID else "random")
    (answer,) = round_trip(("V1beta1Experiment", exp))
    assert answer["model"] == "V1beta1Experiment" and answer["spec"] == "V1beta1ExperimentSpec"
    assert answer["back"] == exp, "the Katib SDK's models dropped or changed a field kubelab wrote"
    assert (SDK / "kubeflow_katib-0.19.0.dist-info").is_dir()
    strict = V1beta1Experiment.from_dict(exp)  # pydantic: StrictInt/StrictStr, unknown keys kept apart
    assert strict.spec is not None and strict.spec.parallel_trial_count == 2
    assert json.loads(strict.to_json()) == exp
    jsonschema.validate(exp, crd_schema())
    assert katib_rules(exp) == []


def test_grid_experiment_lists_the_axes_in_katibs_words() -> None:
    exp = experiment(**GRID)
    params = {p["name"]: p for p in exp["spec"]["parameters"]}
    assert params["lr"] == {"name": "lr", "parameterType": "discrete", "feasibleSpace": {"list": ["0.1", "0.01", "0.001"]}}
    assert params["optimizer"]["parameterType"] == "categorical"
    assert params["batch"] == {"name": "batch", "parameterType": "int",
                               "feasibleSpace": {"min": "16", "max": "64", "step": "16", "distribution": "uniform"}}
    assert exp["spec"]["maxTrialCount"] == 24 and exp["spec"]["parallelTrialCount"] == 2


def test_random_experiment_samples_like_the_hub_would() -> None:
    exp = experiment(**RANDOM)
    params = {p["name"]: p for p in exp["spec"]["parameters"]}
    assert params["lr"]["feasibleSpace"] == {"min": "0.0001", "max": "0.1", "distribution": "logUniform"}
    assert params["WARMUP"]["parameterType"] == "int"
    assert exp["spec"]["algorithm"]["algorithmSettings"] == [{"name": "random_state", "value": "7"}]
    assert exp["spec"]["earlyStopping"]["algorithmName"] == "medianstop"


def test_the_trial_template_is_kubelabs_own_rank_job() -> None:
    exp = experiment(**RANDOM)
    trial = exp["spec"]["trialTemplate"]["trialSpec"]
    built = plain.make_rank_job(sweeps.trial_template_spec(sweeps.SweepSpec(
        name="lr", job=TEMPLATE, objective="loss", trials=6, parallel=2, **RANDOM)), CTX, 0)
    container = trial["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    # Katib fills placeholders in the manifest: the env parameter is a literal, the template's own
    # env stays in the job's Secret.
    assert env["WARMUP"] == {"name": "WARMUP", "value": "${trialParameters.WARMUP}"}
    assert env["SEED"]["valueFrom"]["secretKeyRef"] == {"name": f"{job_id('alice', 'lr')}-env", "key": "SEED"}
    built_container = built["spec"]["template"]["spec"]["containers"][0]
    built_container["env"] = container["env"]
    assert trial == built
    assert container["command"] == ["python", "-m", "kubelab.jobs.entrypoint"]
    assert container["args"][-3:] == ["--dropout=${trialParameters.dropout}", "--lr=${trialParameters.lr}",
                                      "--optimizer=${trialParameters.optimizer}"]
    assert trial["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert exp["metadata"]["ownerReferences"][0]["kind"] == "ConfigMap"  # the sweep's record owns it
