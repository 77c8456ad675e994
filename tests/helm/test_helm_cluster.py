"""The rendered chart against a real API server (the 1.20 devcluster, or $KUBECONFIG's cluster).

* every object whose API exists in 1.20 passes server-side dry-run (admission, validation);
* the hub's ServiceAccount, bound to the rendered roles, can do exactly what LabSpawner and
  the jobs service need (``kubectl auth can-i``), and its token works for those calls only;
* the notebook pods' ServiceAccount can do nothing.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml
from kubelab_chart import FULL_VALUES, Manifest, load_values, render
from kubernetes.client.rest import ApiException
from rbac import HubAccount, hub_account

pytestmark = pytest.mark.integration

KUBECTL = str(Path(sys.executable).with_name("kubectl"))
KUEUE_KINDS = {"ResourceFlavor", "ClusterQueue", "LocalQueue"}


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl 1.37 against the cluster (the version-skew warning goes to stderr)."""
    return subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": str(kubeconfig)}, check=False)


def served_kinds(api: kubernetes.client.ApiClient) -> set[str]:
    """Kinds of the Kueue group the server offers (none unless someone installed Kueue's CRDs)."""
    try:
        resources = kubernetes.client.CustomObjectsApi(api).get_api_resources("kueue.x-k8s.io", "v1beta1")
    except ApiException as e:
        if e.status == 404:
            return set()
        raise
    return {r.kind for r in resources.resources}


@pytest.fixture
def second_namespace(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    """A second namespace, playing catalogue.jobs.namespace in the full example."""
    core = kubernetes.client.CoreV1Api(kube)
    name = f"kl-test-jobs-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"kubelab.io/test": "true"}}})
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


@pytest.mark.parametrize("values_name", ["default", "full"])
def test_server_side_dry_run(cluster, kube, namespace: str, second_namespace: str, values_name: str) -> None:
    """Every object whose API the server has is accepted by `kubectl apply --dry-run=server`."""
    values = load_values(FULL_VALUES) if values_name == "full" else {}
    if values_name == "full":
        values["catalogue"]["jobs"]["namespace"] = second_namespace
    objects = render(values, namespace=namespace)
    kueue_served = served_kinds(kube)
    to_apply = [o for o in objects if o["kind"] not in KUEUE_KINDS or o["kind"] in kueue_served]
    skipped = sorted({o["kind"] for o in objects} - {o["kind"] for o in to_apply})
    # Kueue's CRDs are not installed by default (the jobs engine would discover them); its
    # objects are checked offline against the CRD schemas in test_helm_render.
    assert set(skipped) <= KUEUE_KINDS
    result = kubectl(cluster.kubeconfig, "apply", "--dry-run=server", "-f", "-",
                     stdin=yaml.safe_dump_all(to_apply))
    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(to_apply), result.stdout


def test_dry_run_rejects_a_broken_object(cluster, namespace: str) -> None:
    """The server really validates, so the dry run above can fail."""
    bad = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "bad", "namespace": namespace},
           "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}}
    result = kubectl(cluster.kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bad))
    assert result.returncode != 0
    assert re.search(r"port|65535", result.stderr), result.stderr


@pytest.fixture
def account(kube, namespace: str, tmp_path: Path) -> Iterator[HubAccount]:
    """The hub's ServiceAccount bound to the chart's roles (every optional engine on)."""
    values = {"rbac": {"engines": {"jobset": True, "kubeflowTrainingV1": True, "kubeflowTrainerV2": True,
                                   "kueue": True}}}
    with hub_account(kube, namespace, tmp_path, values=values) as hub:
        yield hub


# (verb, resource, flags, expected) for the hub's ServiceAccount. `-n` is the test namespace
# unless the flags name another; "--all-namespaces" means cluster-wide.
HUB_CAN_I = [
    ("create", "pods", (), True),
    ("delete", "pods", (), True),
    ("watch", "pods", (), True),
    ("get", "pods", ("--subresource=log",), True),
    ("list", "pods", ("--all-namespaces",), True),
    ("list", "nodes", (), True),
    ("watch", "nodes", (), True),
    ("create", "persistentvolumeclaims", (), True),
    ("get", "persistentvolumeclaims", (), True),
    ("create", "services", (), True),
    ("delete", "services", (), True),
    ("create", "configmaps", (), True),
    ("patch", "configmaps", (), True),       # the jobs service records a job's final status
    ("patch", "services", (), False),
    ("watch", "events", (), True),
    ("create", "secrets", (), True),   # a job's env values; never read back
    ("delete", "secrets", (), True),
    ("create", "jobs.batch", (), True),
    ("delete", "jobs.batch", (), True),
    ("create", "jobsets.jobset.x-k8s.io", (), True),
    ("create", "pytorchjobs.kubeflow.org", (), True),
    ("create", "trainjobs.trainer.kubeflow.org", (), True),
    ("list", "localqueues.kueue.x-k8s.io", (), True),
    ("watch", "workloads.kueue.x-k8s.io", (), True),
    # Not needed, so not granted.
    ("delete", "persistentvolumeclaims", (), False),   # homes outlive servers
    ("patch", "pods", (), False),
    ("create", "pods", ("--subresource=exec",), False),
    ("get", "secrets", (), False),
    ("list", "secrets", ("--all-namespaces",), False),
    ("create", "pods", ("-n", "kube-system"), False),
    ("delete", "pods", ("-n", "kube-system"), False),
    ("delete", "nodes", (), False),
    ("patch", "nodes", (), False),
    ("create", "namespaces", (), False),
    ("create", "roles.rbac.authorization.k8s.io", (), False),
    ("create", "rolebindings.rbac.authorization.k8s.io", (), False),
    ("create", "networkpolicies.networking.k8s.io", (), False),
    ("create", "deployments.apps", (), False),
    ("create", "workloads.kueue.x-k8s.io", (), False),
    ("impersonate", "users", (), False),
    ("create", "serviceaccounts", ("--subresource=token",), False),
]


# API groups of custom resources; the devcluster does not serve them (installing their CRDs
# would change what the jobs engine discovers for everyone), and `kubectl auth can-i` cannot
# map a type the server does not know to its group. For those, the same question goes to the
# server as a SubjectAccessReview with the group spelled out, which is what can-i sends.
CUSTOM_GROUPS = ("jobset.x-k8s.io", "kubeflow.org", "trainer.kubeflow.org", "kueue.x-k8s.io")


def _review(kube, user: str, namespace: str | None, verb: str, resource: str, subresource: str = "") -> bool:
    plural, _, group = resource.partition(".")
    sa_namespace = user.split(":")[2] if user.startswith("system:serviceaccount:") else ""
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}", "system:authenticated"]
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "groups": groups,
                       "resourceAttributes": {"namespace": namespace or "", "verb": verb, "group": group,
                                              "resource": plural, "subresource": subresource}}}
    return bool(kubernetes.client.AuthorizationV1Api(kube).create_subject_access_review(review).status.allowed)


def _can_i(cluster, kube, user: str, namespace: str, verb: str, resource: str, flags: tuple[str, ...]) -> bool:
    """Ask the API server whether ``user`` may ``verb resource`` (kubectl auth can-i --as)."""
    if resource.endswith(CUSTOM_GROUPS):
        return _review(kube, user, namespace, verb, resource)
    ns_flags = () if "-n" in flags or "--all-namespaces" in flags else ("-n", namespace)
    result = kubectl(cluster.kubeconfig, "auth", "can-i", verb, resource, f"--as={user}", *ns_flags, *flags)
    answer = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert answer in ("yes", "no"), f"kubectl auth can-i: {result.stdout} {result.stderr}"
    return answer == "yes"


def test_hub_account_can_do_exactly_what_is_needed(cluster, kube, namespace: str, account: HubAccount) -> None:
    """One kubectl per row would take long on 2 cores; the rows run in one test and report together."""
    wrong = [
        f"{verb} {resource} {' '.join(flags)}: expected {'yes' if expected else 'no'}"
        for verb, resource, flags, expected in HUB_CAN_I
        if _can_i(cluster, kube, account.username, namespace, verb, resource, flags) is not expected
    ]
    assert wrong == []


NOTEBOOK_CAN_I = [
    ("get", "pods"), ("list", "pods"), ("create", "pods"), ("get", "pods/log"), ("list", "secrets"),
    ("get", "configmaps"), ("list", "services"), ("list", "nodes"), ("create", "jobs.batch"),
    ("list", "events"), ("create", "persistentvolumeclaims"), ("list", "localqueues.kueue.x-k8s.io"),
]


def test_notebook_account_can_do_nothing(cluster, kube, namespace: str, account: HubAccount) -> None:
    """The notebook pods' ServiceAccount, as the chart creates it, is bound to nothing."""
    user = f"system:serviceaccount:{namespace}:kubelab-singleuser"
    allowed = [f"{verb} {resource}" for verb, resource in NOTEBOOK_CAN_I
               if _can_i(cluster, kube, user, namespace, verb, resource, ())]
    assert allowed == []
    # Beyond the table: what `--list` shows is only what every authenticated user has
    # (self-reviews and discovery), i.e. nothing about objects.
    listing = kubectl(cluster.kubeconfig, "auth", "can-i", "--list", f"--as={user}", "-n", namespace)
    assert listing.returncode == 0, listing.stderr
    resources = [line.split()[0] for line in listing.stdout.splitlines()[1:] if line.strip() and not line.startswith(" ")]
    assert set(resources) <= {"selfsubjectaccessreviews.authorization.k8s.io",
                              "selfsubjectrulesreviews.authorization.k8s.io",
                              "selfsubjectreviews.authentication.k8s.io", "[]"}, listing.stdout


def test_hub_token_kubeconfig_works_within_the_roles(namespace: str, account: HubAccount) -> None:
    """The kubeconfig from rbac.hub_account authenticates as the account: allowed calls pass, others 403."""
    api = kubernetes.config.new_client_from_config(config_file=str(account.kubeconfig))
    try:
        core = kubernetes.client.CoreV1Api(api)
        core.list_namespaced_pod(namespace)
        core.list_node()
        core.list_pod_for_all_namespaces(label_selector="kubelab.io/user")
        claim = {"metadata": {"name": "home-alice", "labels": {"app.kubernetes.io/managed-by": "kubelab"}},
                 "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
        core.create_namespaced_persistent_volume_claim(namespace, claim)
        with pytest.raises(ApiException, match=r"\(403\)"):
            core.delete_namespaced_persistent_volume_claim("home-alice", namespace)
        with pytest.raises(ApiException, match=r"\(403\)"):
            core.list_namespaced_secret(namespace)
        core.list_namespaced_pod("kube-system")  # read anywhere: the quota counts pods in every namespace
        with pytest.raises(ApiException, match=r"\(403\)"):
            core.create_namespaced_config_map("kube-system", {"metadata": {"name": "kubelab-probe"}})
        ok = kubernetes.client.BatchV1Api(api).list_namespaced_job(namespace)
        assert ok.items == []
    finally:
        api.close()


def test_rendered_roles_were_applied(kube, namespace: str, account: HubAccount) -> None:
    """The helper applied the chart's own objects, not a hand-written copy."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube)
    rendered: dict[tuple[str, str], Manifest] = {(o["kind"], o["metadata"]["name"]): o for o in account.objects}
    role = rbac.read_namespaced_role("kubelab-hub", namespace)
    assert len(role.rules) == len(rendered[("Role", "kubelab-hub")]["rules"])
    cluster_role = rbac.read_cluster_role(f"kubelab-{namespace}-hub")
    assert {r for rule in cluster_role.rules for r in rule.resources} >= {"nodes", "pods"}
