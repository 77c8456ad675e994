"""The chart renders through real Helm, and what it renders is valid for Kubernetes 1.28 and 1.32.

kubernetes-validate 1.37.0 ships schemas for 1.25 to 1.37, so 1.28 and 1.32 are checked
exactly. Kueue objects are custom resources that it has no schema for; they are checked
against the upstream Kueue v0.19.2 CRD schemas in tests/data/crds instead.
"""

from __future__ import annotations

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubelab_chart import CHART_DIR, FULL_VALUES, Manifest, by_kind, crd_schema, load_values, one, render

from kubelab.core.catalogue import parse_catalogue

KUBE_VERSIONS = ["1.28", "1.32"]
KUEUE_CRDS = {
    "ResourceFlavor": "kueue/kueue.x-k8s.io_resourceflavors.yaml",
    "ClusterQueue": "kueue/kueue.x-k8s.io_clusterqueues.yaml",
    "LocalQueue": "kueue/kueue.x-k8s.io_localqueues.yaml",
}


def test_kubernetes_validate_ships_the_versions_we_check() -> None:
    """The exact minor versions exist, so no silent fallback to an older schema happens."""
    shipped = {v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()}
    assert set(KUBE_VERSIONS) <= shipped


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_validates_upstream(rendered: tuple[str, list[Manifest]], version: str) -> None:
    """Every built-in object passes the strict upstream schema (unknown fields fail too)."""
    name, objects = rendered
    assert objects, f"{name}: the chart rendered nothing"
    checked = 0
    for obj in objects:
        if obj["kind"] in KUEUE_CRDS:
            continue  # custom resources: see test_kueue_objects_validate_against_crds
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 5


def test_validation_catches_a_broken_object() -> None:
    """The validator really rejects a bad object, so the loop above can fail."""
    bad = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "x"},
        "spec": {"podSelector": {}, "policyTypes": ["Sideways"], "ingres": []},
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="ingres|Sideways"):
        kubernetes_validate.validate(bad, "1.32", strict=True)


def test_kueue_objects_validate_against_crds(full_objects: list[Manifest]) -> None:
    """ResourceFlavors, the ClusterQueue and LocalQueues match the Kueue CRD schemas."""
    kueue = [o for o in full_objects if o["kind"] in KUEUE_CRDS]
    assert {o["kind"] for o in kueue} == set(KUEUE_CRDS)
    for obj in kueue:
        version = obj["apiVersion"].split("/")[1]
        jsonschema.validate(obj, crd_schema(KUEUE_CRDS[obj["kind"]], version))


def test_kueue_v1beta2_also_validates() -> None:
    """kueue.apiVersion v1beta2 (cohortName instead of cohort) matches the v1beta2 schemas."""
    values = load_values(FULL_VALUES)
    values["kueue"]["apiVersion"] = "kueue.x-k8s.io/v1beta2"
    values["kueue"]["clusterQueue"]["cohort"] = "lab"
    objects = render(values)
    queue = one(objects, "ClusterQueue", "kubelab")
    assert queue["spec"]["cohortName"] == "lab"
    for obj in objects:
        if obj["kind"] in KUEUE_CRDS:
            jsonschema.validate(obj, crd_schema(KUEUE_CRDS[obj["kind"]], "v1beta2"))


def test_kueue_flavors_follow_gpu_classes(full_objects: list[Manifest]) -> None:
    """One flavor per GPU class with its node labels; CPU flavor first with no GPU quota."""
    catalogue = load_values(FULL_VALUES)["catalogue"]
    flavors = {f["metadata"]["name"]: f for f in by_kind(full_objects, "ResourceFlavor")}
    assert set(flavors) == {"cpu", *catalogue["gpuClasses"]}
    for key, gpu_class in catalogue["gpuClasses"].items():
        assert flavors[key]["spec"]["nodeLabels"] == gpu_class["nodeSelector"]
        assert flavors[key]["spec"]["tolerations"] == gpu_class["tolerations"]

    group = one(full_objects, "ClusterQueue", "kubelab")["spec"]["resourceGroups"][0]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]
    quotas = {f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in group["flavors"]}
    assert group["flavors"][0]["name"] == "cpu"
    assert quotas["cpu"]["nvidia.com/gpu"] == 0 and quotas["cpu"]["nvidia.com/mig-1g.10gb"] == 0
    assert quotas["a100"]["nvidia.com/gpu"] == 16 and quotas["a100"]["nvidia.com/mig-1g.10gb"] == 0
    assert quotas["h100-mig"]["nvidia.com/mig-1g.10gb"] == 14 and quotas["h100-mig"]["nvidia.com/gpu"] == 0

    local = by_kind(full_objects, "LocalQueue")
    assert sorted(q["metadata"]["name"] for q in local) == ["default", "long"]
    assert {q["metadata"]["namespace"] for q in local} == {"kubelab-jobs"}
    assert {q["spec"]["clusterQueue"] for q in local} == {"kubelab"}


def test_default_values_create_no_kueue_objects(default_objects: list[Manifest]) -> None:
    assert not [o for o in default_objects if o["kind"] in KUEUE_CRDS]


def test_platform_configmap_is_a_valid_catalogue(rendered: tuple[str, list[Manifest]]) -> None:
    """The ConfigMap content passes kubelab's own catalogue model, as the hub will load it."""
    name, objects = rendered
    config_map = one(objects, "ConfigMap", "kubelab-platform", "jhub")
    raw = yaml.safe_load(config_map["data"]["platform.yaml"])
    catalogue = parse_catalogue(raw, source=f"ConfigMap kubelab-platform ({name})")
    assert catalogue.profiles


def test_platform_configmap_keeps_the_full_catalogue(full_objects: list[Manifest]) -> None:
    """Nothing of the admin's catalogue is lost or reshaped on the way into the ConfigMap."""
    config_map = one(full_objects, "ConfigMap", "kubelab-platform", "jhub")
    assert yaml.safe_load(config_map["data"]["platform.yaml"]) == load_values(FULL_VALUES)["catalogue"]
    catalogue = parse_catalogue(yaml.safe_load(config_map["data"]["platform.yaml"]), "full")
    assert set(catalogue.gpu_classes) == {"a100", "v100", "h100-mig"}


def test_separate_jobs_namespace_gets_rbac_policies_and_sa(full_objects: list[Manifest]) -> None:
    """catalogue.jobs.namespace gets its own Role, NetworkPolicies and notebook/job SA."""
    for kind, name in [
        ("Role", "kubelab-hub"),
        ("RoleBinding", "kubelab-hub"),
        ("NetworkPolicy", "kubelab-notebooks"),
        ("NetworkPolicy", "kubelab-jobs"),
        ("ServiceAccount", "kubelab-singleuser"),
    ]:
        for namespace in ("jhub", "kubelab-jobs"):
            one(full_objects, kind, name, namespace)
    binding = one(full_objects, "RoleBinding", "kubelab-hub", "kubelab-jobs")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub", "namespace": "jhub"}]


def test_every_object_is_labelled_managed_by_kubelab(rendered: tuple[str, list[Manifest]]) -> None:
    _, objects = rendered
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubelab", obj["metadata"]["name"]


def test_notebook_service_account_has_no_token(rendered: tuple[str, list[Manifest]]) -> None:
    _, objects = rendered
    for account in by_kind(objects, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_release_name_and_namespace_shape_names() -> None:
    """Another release name prefixes the objects; cluster-scoped names carry the namespace."""
    objects = render(release="lab2", namespace="other")
    one(objects, "ConfigMap", "lab2-kubelab-platform", "other")
    one(objects, "ClusterRole", "lab2-kubelab-other-hub")


@pytest.mark.parametrize("values_name", ["default", "full"])
@pytest.mark.parametrize("kube_version", ["v1.20.0", "v1.28.0", "v1.32.0"])
def test_helm_lint_is_clean(values_name: str, kube_version: str) -> None:
    """`helm lint --strict` finds nothing, for the devcluster's 1.20 and the z2jh-supported versions."""
    values = load_values(FULL_VALUES) if values_name == "full" else None
    report = helm.lint(CHART_DIR, values, strict=True, kube_version=kube_version)
    findings = [m for m in report["messages"] if m["severity"] >= 1] + report["errors"]
    assert findings == [], findings


def test_notes_name_the_objects() -> None:
    """NOTES.txt renders and tells the admin what was created and what comes next."""
    with helm.Chart.load(CHART_DIR) as chart:
        notes = chart.render(load_values(FULL_VALUES), name="kubelab", namespace="jhub")["kubelab/templates/NOTES.txt"]
    assert "ConfigMap kubelab-platform" in notes and "ClusterQueue kubelab" in notes
    assert "rollout restart deployment/hub" in notes
