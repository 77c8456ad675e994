"""Render the kubelab chart with real Helm (helm-python-sdk, Helm v4 as a library) and read it back.

Shared by the chart tests, the RBAC helper and the install-doc test, so that every one of them
checks the same objects Helm would install.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.paths import CRDS, PROVENANCE, Z2JH_SCHEMA  # noqa: F401 - re-exported for the chart tests

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "kubelab"
FULL_VALUES = REPO / "helm" / "examples" / "full-values.yaml"
Z2JH_VALUES = REPO / "helm" / "z2jh-values.yaml"
CRD_DIR = CRDS
RELEASE = "kubelab"
NAMESPACE = "jhub"

Manifest = dict[str, Any]


def load_values(path: Path) -> dict[str, Any]:
    """Read a values file the way ``helm -f`` does (through Helm's own YAML reader)."""
    return helm.values_from_yaml(path.read_text())


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart_dir: Path = CHART_DIR,
) -> list[Manifest]:
    """Render the chart and return its objects, in template order.

    Args:
        values: User values (as ``-f``/``--set`` would give), merged over the chart defaults.
        release: Release name.
        namespace: Release namespace.
        chart_dir: The chart to render.

    Returns:
        Every non-empty YAML document of every template.

    Raises:
        helm_python.HelmValuesError: The values break ``values.schema.json``.
        helm_python.HelmRenderError: A template failed (e.g. a ``fail`` on inconsistent values).
    """
    with helm.Chart.load(chart_dir) as chart:
        rendered = chart.render(dict(values or {}), name=release, namespace=namespace, is_install=True)
    objects: list[Manifest] = []
    for template in sorted(rendered):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt and helpers render to text, not objects
        objects.extend(doc for doc in yaml.safe_load_all(rendered[template]) if doc)
    return objects


def by_kind(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    """The objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def one(objects: Iterable[Manifest], kind: str, name: str, namespace: str | None = None) -> Manifest:
    """The single object with this kind, name (and namespace, when given).

    Raises:
        LookupError: None or several match.
    """
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    if len(found) != 1:
        raise LookupError(f"{len(found)} objects {kind}/{name} (namespace {namespace}) in the rendered chart")
    return found[0]


def crd_schema(group_file: str, version: str) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one served version of an upstream CRD in ``tests/data/crds``.

    Args:
        group_file: Path below the CRD folder, e.g. ``kueue/kueue.x-k8s.io_clusterqueues.yaml``.
        version: The API version name, e.g. ``v1beta1``.
    """
    crd = yaml.safe_load((CRD_DIR / group_file).read_text())
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return served["schema"]["openAPIV3Schema"]
    raise LookupError(f"{group_file} serves no version {version}")
