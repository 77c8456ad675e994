"""helm/z2jh-values.yaml is valid for z2jh 4.4.0 and agrees with the kubelab chart and hub config.

z2jh's chart cannot be downloaded here, so its values file is checked against z2jh's real
values schema (tests/data/schemas). That schema describes the *merged* values (z2jh's defaults
plus ours), so its ``required`` lists name keys z2jh's own values.yaml supplies; this test
therefore checks every other keyword (types, enums, unknown keys) on our file, which is
what catches a typo or a wrong type before an admin's `helm upgrade` does.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jsonschema
import pytest
import yaml
from kubelab_chart import PROVENANCE, REPO, Z2JH_SCHEMA, Z2JH_VALUES, load_values, one, render

import kubelab.hub_config

# A draft-07 validator without `required`: the file is an override, merged over z2jh's defaults.
OverrideValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"required": lambda validator, required, instance, schema: iter(())}
)


def _z2jh_schema() -> dict[str, Any]:
    return yaml.safe_load(Z2JH_SCHEMA.read_text())


def _errors(values: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in OverrideValidator(_z2jh_schema()).iter_errors(values)]


def test_z2jh_values_validate_against_the_real_schema() -> None:
    assert _errors(yaml.safe_load(Z2JH_VALUES.read_text())) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hub": {"extraEnvv": {}}}, r"hub: Additional properties are not allowed \('extraEnvv'"),
        ({"singleuser": {"storage": {"type": "ceph", "homeMountPath": "/home/jovyan"}}}, r"singleuser\.storage\.type: 'ceph'"),
        ({"cull": {"enabled": "no"}}, r"cull\.enabled: 'no' is not of type 'boolean'"),
        ({"hub": {"image": {"name": "x", "tag": 1}}}, r"hub\.image\.tag: 1 is not of type 'string'"),
    ],
    ids=["unknown-key", "bad-enum", "bad-type", "tag-not-string"],
)
def test_the_schema_check_catches_mistakes(change: dict[str, Any], message: str) -> None:
    """The relaxed validator still rejects unknown keys and wrong types, so the test above can fail."""
    errors = "\n".join(_errors(change))
    assert re.search(message, errors), errors


def test_schema_is_z2jh_4_4_0() -> None:
    """The schema file is the one docs/install.md's `--version 4.4.0` installs."""
    readme = PROVENANCE.read_text()
    assert re.search(r"z2jh-values\.schema\.yaml \| jupyterhub/zero-to-jupyterhub-k8s \| 4\.4\.0", readme)


def test_names_match_the_kubelab_chart() -> None:
    """The ConfigMap, ServiceAccounts and the hub SA name in z2jh's values are the chart's objects."""
    z2jh = yaml.safe_load(Z2JH_VALUES.read_text())
    objects = render(release="kubelab", namespace="jhub")
    volumes = {v["name"]: v for v in z2jh["hub"]["extraVolumes"]}
    one(objects, "ConfigMap", volumes["kubelab-platform"]["configMap"]["name"], "jhub")
    one(objects, "ServiceAccount", z2jh["singleuser"]["serviceAccountName"], "jhub")
    binding = one(objects, "RoleBinding", "kubelab-hub", "jhub")
    assert binding["subjects"][0]["name"] == z2jh["hub"]["serviceAccount"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in z2jh["hub"]["extraVolumeMounts"]}
    assert z2jh["hub"]["extraEnv"]["KUBELAB_CONFIG"] == f"{mounts['kubelab-platform']}/platform.yaml"
    assert z2jh["hub"]["extraEnv"]["KUBELAB_OIDC_CLIENT_SECRET_FILE"].startswith(mounts["kubelab-oidc"] + "/")
    # The ConfigMap key the hub reads is the one the chart writes.
    assert "platform.yaml" in one(objects, "ConfigMap", "kubelab-platform", "jhub")["data"]


def test_every_env_var_is_one_kubelab_reads() -> None:
    """A KUBELAB_* variable that the hub config never reads is a typo or a stale setting."""
    sources = "\n".join(p.read_text() for p in (REPO / "hub_config").glob("*.py"))
    for name in yaml.safe_load(Z2JH_VALUES.read_text())["hub"]["extraEnv"]:
        assert name.startswith("KUBELAB_") and f'"{name}"' in sources, name


def test_extra_config_loads_the_installed_kubelab_config() -> None:
    """The snippet finds jupyterhub_config.py inside the installed kubelab.hub_config package."""
    snippet = yaml.safe_load(Z2JH_VALUES.read_text())["hub"]["extraConfig"]["10-kubelab"]
    assert 'kubelab.hub_config.__path__[0], "jupyterhub_config.py"' in snippet
    path = os.path.join(kubelab.hub_config.__path__[0], "jupyterhub_config.py")
    assert os.path.isfile(path)
    compile(snippet, "extraConfig/10-kubelab", "exec")  # valid Python


def test_notebooks_get_no_token_and_kubelab_owns_their_policy() -> None:
    z2jh = yaml.safe_load(Z2JH_VALUES.read_text())
    assert z2jh["singleuser"]["networkPolicy"]["enabled"] is False
    assert z2jh["cull"]["enabled"] is False
    objects = render(release="kubelab", namespace="jhub")
    account = one(objects, "ServiceAccount", z2jh["singleuser"]["serviceAccountName"], "jhub")
    assert account["automountServiceAccountToken"] is False
    one(objects, "NetworkPolicy", "kubelab-notebooks", "jhub")


def test_values_file_reads_with_helms_parser() -> None:
    """Helm's own YAML reader takes the file (what `--values` does)."""
    assert load_values(Z2JH_VALUES)["singleuser"]["storage"]["type"] == "none"
