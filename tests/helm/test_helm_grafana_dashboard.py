"""kubelab's Grafana dashboard: a valid dashboard model over kubelab's own metrics, rendered by the chart.

The schema below is the part of Grafana's dashboard JSON model (grafana.com/docs/grafana/latest/
dashboards/build-dashboards/view-dashboard-json-model/) that Grafana needs to import a dashboard:
``title``, ``uid``, ``schemaVersion``, panels with ``type``, ``gridPos`` and Prometheus ``targets``,
and ``templating`` variables. Grafana's own schema is CUE (kinds/dashboard), which no Python
validator reads; this one is checked with ``jsonschema`` like every other schema in the project.
"""

from __future__ import annotations

import json
import re

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
from kubelab_chart import CHART_DIR, render

from kubelab.admin.metrics import CULLS
from kubelab.admin.overview import GAUGES
from kubelab.core.metrics import QUOTA_REFUSALS, SPAWNS_ENDED_EARLY

DASHBOARD = CHART_DIR / "dashboards" / "kubelab-gpus.json"
GRID = {"type": "object", "required": ["h", "w", "x", "y"],
        "properties": {k: {"type": "integer", "minimum": 0} for k in ("h", "w", "x", "y")}}
TARGET = {"type": "object", "required": ["refId", "expr"],
          "properties": {"refId": {"type": "string", "minLength": 1}, "expr": {"type": "string", "minLength": 1},
                         "legendFormat": {"type": "string"}}}
SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 16},
        "tags": {"type": "array", "items": {"type": "string"}},
        "time": {"type": "object", "required": ["from", "to"]},
        "refresh": {"type": "string"},
        "templating": {"type": "object", "required": ["list"], "properties": {"list": {"type": "array", "items": {
            "type": "object", "required": ["name", "type"],
            "properties": {"name": {"type": "string"}, "type": {"enum": ["datasource", "query", "custom", "constant",
                                                                          "interval", "textbox", "adhoc"]}}}}}},
        "panels": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["id", "type", "title", "gridPos", "targets"],
            "properties": {"id": {"type": "integer"}, "type": {"enum": ["timeseries", "stat", "table", "bargauge", "gauge"]},
                           "title": {"type": "string", "minLength": 1}, "gridPos": GRID,
                           "targets": {"type": "array", "minItems": 1, "items": TARGET}}}},
    },
}
#: Every series kubelab exports (a counter's samples end in ``_total``).
EXPORTED = set(GAUGES) | {f"{c._name}_total" for c in (QUOTA_REFUSALS, SPAWNS_ENDED_EARLY, CULLS)}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_the_dashboard_is_a_valid_grafana_dashboard_model() -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(dashboard())
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_the_schema_check_can_fail() -> None:
    broken = dashboard()
    del broken["panels"][0]["gridPos"]
    with pytest.raises(jsonschema.ValidationError, match="'gridPos' is a required property"):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)


def test_every_query_uses_only_metrics_kubelab_exports_and_every_kind_is_charted() -> None:
    used = {name for p in dashboard()["panels"] for t in p["targets"] for name in re.findall(r"kubelab_[a-z_]+", t["expr"])}
    assert used <= EXPORTED, used - EXPORTED
    assert {"kubelab_gpus_allocated", "kubelab_group_gpus", "kubelab_jobs", "kubelab_quota_refusals_total",
            "kubelab_spawns_ended_early_total", "kubelab_culls_total"} <= used


def test_the_chart_installs_it_for_the_grafana_sidecar() -> None:
    assert not [o for o in render() if o["metadata"]["name"].endswith("grafana-dashboard")], "off by default"
    objects = render({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "kubelab"}}})
    (cm,) = [o for o in objects if o["metadata"]["name"] == "kubelab-grafana-dashboard"]
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["namespace"] == "jhub"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "kubelab"}
    assert json.loads(cm["data"]["kubelab-gpus.json"]) == dashboard()
    kubernetes_validate.validate(cm, "1.28", strict=True)


@pytest.mark.parametrize(
    ("values", "match"),
    [({"grafanaDashboard": {"enabled": "yes"}}, "enabled"),
     ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "grafana_dashboard"),
     ({"grafanaDashboard": {"namespace": "Monitoring"}}, "namespace"),
     ({"grafanaDashboard": {"folder": "x"}}, "folder")],
    ids=["enabled-not-boolean", "label-not-string", "namespace-not-dns", "unknown-key"],
)
def test_bad_dashboard_values_are_refused_by_the_schema(values: dict, match: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=match):
        render(values)
