"""values.schema.yaml is the single source of the chart's values schema, and bad values fail with their path.

Three drift checks, as z2jh does it: the committed values.schema.json equals what the generator
makes now (which also catches a change to core/catalogue.schema.yaml that the chart has
not picked up); values.yaml validates; and values.yaml and the schema name the same keys.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from kubelab_chart import CHART_DIR, FULL_VALUES, REPO, load_values, render

GENERATOR = REPO / "helm" / "tools" / "generate_json_schema.py"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_json_schema", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _schema() -> dict[str, Any]:
    return json.loads((CHART_DIR / "values.schema.json").read_text())


def _leaf_paths(node: Any, schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of a values tree, down to where the schema stops naming keys.

    A map whose keys the admin chooses (``kueue.gpuQuotas``, DNS namespace labels) or the
    inlined catalogue counts as one leaf; a key the schema does not name is yielded as is,
    so that the caller sees it as undocumented.
    """
    named = schema.get("properties") or {}
    if not isinstance(node, dict) or not node or not named or prefix == "catalogue":
        yield prefix
        return
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if key in named:
            yield from _leaf_paths(value, named[key], path)
        else:
            yield path


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the named properties in the chart's own part of the schema."""
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{key}" if prefix else key
        if sub.get("properties") and path != "catalogue":
            yield from _schema_paths(sub, path)
        else:
            yield path


def test_generated_json_is_up_to_date() -> None:
    """values.schema.json is exactly what the generator makes from values.schema.yaml now."""
    generator = _generator()
    expected = generator.render(generator.generate(CHART_DIR / "values.schema.yaml"))
    assert (CHART_DIR / "values.schema.json").read_text() == expected, (
        "stale values.schema.json: run python helm/tools/generate_json_schema.py"
    )
    assert generator.main(["--check"]) == 0


def test_drift_check_detects_a_stale_json(tmp_path: Path) -> None:
    """--check fails when the JSON no longer matches its source, so the check above can fail."""
    chart = tmp_path / "kubelab"
    chart.mkdir()
    source = yaml.safe_load((CHART_DIR / "values.schema.yaml").read_text())
    source["properties"].pop("catalogue")  # keep the copy free of the relative file $ref
    (chart / "values.schema.yaml").write_text(yaml.safe_dump(source))
    (chart / "values.schema.json").write_text((CHART_DIR / "values.schema.json").read_text())
    assert _generator().main(["--check", "--chart", str(chart)]) == 1


def test_catalogue_schema_is_inlined_from_core() -> None:
    """The chart checks the catalogue with the hub's own schema, not a copy that can drift."""
    hub = yaml.safe_load((REPO / "core" / "catalogue.schema.yaml").read_text())
    inlined = _schema()["properties"]["catalogue"]
    assert set(inlined["properties"]) == set(hub["properties"])
    assert inlined["required"] == hub["required"]
    for name in hub.get("$defs", {}):
        assert f"catalogue.{name}" in _schema()["definitions"]


@pytest.mark.parametrize("path", [CHART_DIR / "values.yaml", FULL_VALUES], ids=["values.yaml", "full-values.yaml"])
def test_values_files_validate(path: Path) -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        merged = chart.merge_values(load_values(path))
    jsonschema.Draft7Validator(_schema()).validate(merged)


def test_values_yaml_and_schema_name_the_same_keys() -> None:
    """Every key in values.yaml is described in the schema, and every schema key has a default."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    documented = set(_schema_paths(_schema())) - {"global"}
    in_values = set(_leaf_paths(values, _schema()))
    assert in_values - documented == set(), "keys in values.yaml missing from values.schema.yaml"
    assert documented - in_values == set(), "keys in values.schema.yaml without a default in values.yaml"


# Bad values and the path Helm must name in its error.
INVALID_VALUES = [
    pytest.param({"kueue": {"gpuQuotas": {"a100": {"count": "two", "cpu": "8", "memory": "8Gi"}}}},
                 r"/kueue/gpuQuotas/a100/count': got string, want integer", id="gpu-quota-count-two"),
    pytest.param({"catalogue": {"profiles": [{"slug": "g", "name": "G", "images": ["notebook-cpu"],
                                              "gpu": {"class": "a100", "counts": ["two"]}}]}},
                 r"/catalogue/profiles/0/gpu/counts/0': got string, want integer", id="profile-gpu-count-two"),
    pytest.param({"replicas": 2}, r"additional properties 'replicas' not allowed", id="unknown-top-level-key"),
    pytest.param({"networkPolicy": {"notebook": {"port": 8888}}}, r"/networkPolicy'.*additional properties 'notebook'",
                 id="unknown-nested-key"),
    pytest.param({"catalogue": {"profiles": [{"slug": "x", "name": "X", "images": ["notebook-cpu"], "gpus": 1}]}},
                 r"/catalogue/profiles/0'.*additional properties 'gpus'", id="unknown-catalogue-key"),
    pytest.param({"networkPolicy": {"notebooks": {"port": 70000}}}, r"/networkPolicy/notebooks/port'.*maximum",
                 id="port-out-of-range"),
    pytest.param({"networkPolicy": {"apiServerCIDRs": ["api.example.org"]}}, r"/networkPolicy/apiServerCIDRs/0'",
                 id="cidr-not-an-address"),
    pytest.param({"kueue": {"apiVersion": "kueue.x-k8s.io/v1alpha1"}}, r"/kueue/apiVersion'", id="kueue-api-version"),
    pytest.param({"catalogue": {"storage": {"home": {"accessMode": "ReadWriteSometimes"}}}},
                 r"/catalogue/storage/home/accessMode'", id="home-access-mode"),
    pytest.param({"rbac": {"create": "yes"}}, r"/rbac/create': got string, want boolean", id="rbac-create-string"),
]


@pytest.mark.parametrize(("values", "message"), INVALID_VALUES)
def test_invalid_values_fail_naming_the_field(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)


def _full_with(change: dict[str, Any]) -> dict[str, Any]:
    """The full example with ``change`` applied (None deletes a key), for template-level checks."""
    values = copy.deepcopy(load_values(FULL_VALUES))

    def apply(target: dict[str, Any], patch: dict[str, Any]) -> None:
        for key, value in patch.items():
            if value is None:
                target.pop(key, None)
            elif isinstance(value, dict) and isinstance(target.get(key), dict):
                apply(target[key], value)
            else:
                target[key] = value

    apply(values, change)
    return values


# Combinations the schema cannot express; the templates `fail` with the field named.
INCONSISTENT_VALUES = [
    pytest.param({"kueue": {"gpuQuotas": {"v100": None}}}, r"kueue\.gpuQuotas\.v100 is missing", id="class-without-quota"),
    pytest.param({"kueue": {"gpuQuotas": {"t4": {"count": 1, "cpu": "4", "memory": "8Gi"}}}},
                 r"kueue\.gpuQuotas\.t4 names no GPU class", id="quota-without-class"),
    pytest.param({"catalogue": {"jobs": {"kueue": {"queues": [], "defaultQueue": None}}}},
                 r"catalogue\.jobs\.kueue\.queues is empty", id="kueue-without-queues"),
    pytest.param({"catalogue": {"jobs": {"kueue": {"enabled": False}}}},
                 r"catalogue\.jobs\.kueue\.enabled is false", id="kueue-off-in-catalogue"),
]


@pytest.mark.parametrize(("change", "message"), INCONSISTENT_VALUES)
def test_inconsistent_values_fail_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(_full_with(change))
