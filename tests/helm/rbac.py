"""Run code under the hub's ServiceAccount bound to the chart's rendered roles, not ``system:masters``.

The spawner's and the jobs service's integration tests can run the hub with this kubeconfig
to prove that the chart grants enough::

    from rbac import hub_account          # tests/helm is on sys.path in tests/helm; see below

    with hub_account(kube, namespace, tmp_path) as account:
        hub = HubProcess(config=..., env={"KUBECONFIG": str(account.kubeconfig)})

``hub_account`` renders the chart (real Helm) for ``namespace``, creates the ServiceAccount,
applies the rendered Role, RoleBinding, ClusterRole and ClusterRoleBinding, obtains a token
for the account and writes a kubeconfig that authenticates with it. The cluster-scoped
objects (their names carry the namespace) are deleted on exit; the namespaced ones go with
the test namespace.

From another test folder, import it by path (test folders are not packages)::

    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location("kubelab_rbac", pathlib.Path(__file__).parents[1] / "helm" / "rbac.py")
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client.rest import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kubelab_chart import Manifest, render  # noqa: E402  (after the path tweak above, for imports by path)

RBAC_KINDS = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding")


@dataclass(frozen=True)
class HubAccount:
    """The hub's ServiceAccount as set up by :func:`hub_account`.

    Attributes:
        kubeconfig: A kubeconfig file that authenticates as the account (bearer token).
        namespace: The namespace of the account (the release namespace).
        name: The ServiceAccount's name.
        objects: The rendered chart objects that were applied.
    """

    kubeconfig: Path
    namespace: str
    name: str
    objects: tuple[Manifest, ...]

    @property
    def username(self) -> str:
        """The user name the API server sees, for ``kubectl auth can-i --as``."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def _create(api: kubernetes.client.ApiClient, obj: Manifest) -> None:
    """Create one built-in object; an existing one is replaced (a re-run after a kept namespace)."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    kind, name, ns = obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")
    create, delete = {
        "Role": (lambda: rbac.create_namespaced_role(ns, obj), lambda: rbac.delete_namespaced_role(name, ns)),
        "RoleBinding": (lambda: rbac.create_namespaced_role_binding(ns, obj),
                        lambda: rbac.delete_namespaced_role_binding(name, ns)),
        "ClusterRole": (lambda: rbac.create_cluster_role(obj), lambda: rbac.delete_cluster_role(name)),
        "ClusterRoleBinding": (lambda: rbac.create_cluster_role_binding(obj),
                               lambda: rbac.delete_cluster_role_binding(name)),
        "ServiceAccount": (lambda: core.create_namespaced_service_account(ns, obj),
                           lambda: core.delete_namespaced_service_account(name, ns)),
    }[kind]
    try:
        create()
    except ApiException as e:
        if e.status != 409:
            raise
        delete()
        create()


def _token(api: kubernetes.client.ApiClient, namespace: str, name: str, timeout: float = 30) -> str:
    """A bearer token for the ServiceAccount.

    The TokenRequest API is used when the API server is set up for it; otherwise (a 1.20
    control plane without a token issuer) the legacy token Secret that the token controller
    creates for every account is read.

    Raises:
        TimeoutError: No token appeared within ``timeout`` seconds.
    """
    core = kubernetes.client.CoreV1Api(api)
    try:
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": 3600}}
        return core.create_namespaced_service_account_token(name, namespace, request).status.token
    except ApiException as e:
        if e.status not in (400, 404, 405, 422, 500):
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        account = core.read_namespaced_service_account(name, namespace)
        for ref in account.secrets or []:
            secret = core.read_namespaced_secret(ref.name, namespace)
            if secret.type == "kubernetes.io/service-account-token" and (secret.data or {}).get("token"):
                return base64.b64decode(secret.data["token"]).decode()
        time.sleep(0.2)
    raise TimeoutError(f"no token for ServiceAccount {namespace}/{name} after {timeout:.0f} s")


def write_token_kubeconfig(api: kubernetes.client.ApiClient, token: str, path: Path, user: str) -> Path:
    """Write a kubeconfig for the same API server as ``api`` that authenticates with ``token``."""
    cfg = api.configuration
    cluster: dict[str, Any] = {"server": cfg.host}
    if cfg.ssl_ca_cert:
        cluster["certificate-authority-data"] = base64.b64encode(Path(cfg.ssl_ca_cert).read_bytes()).decode()
    elif not cfg.verify_ssl:
        cluster["insecure-skip-tls-verify"] = True
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "cluster", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def _cluster_wide_copies(objects: list[Manifest], namespace: str, service_account: str) -> list[Manifest]:
    """A ClusterRole with the rendered Role's rules, bound to the account cluster-wide."""
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == namespace)
    name = f"{role['metadata']['name']}-{namespace}-all-namespaces"
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name, "labels": role["metadata"]["labels"]}, "rules": role["rules"]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name, "labels": role["metadata"]["labels"]},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]},
    ]


@contextmanager
def hub_account(
    api: kubernetes.client.ApiClient,
    namespace: str,
    directory: Path,
    *,
    values: Mapping[str, Any] | None = None,
    release: str = "kubelab",
    service_account: str = "hub",
    all_namespaces: bool = False,
    without: frozenset[str] = frozenset(),
) -> Iterator[HubAccount]:
    """Set up the hub's ServiceAccount with the chart's roles in ``namespace``; yield its kubeconfig.

    With ``all_namespaces``, the rendered Role's rules (the same verbs on the same resources) are
    also bound cluster-wide through a ClusterRole, for test suites that create their namespaces
    after the hub's account exists (each test module makes its own). The rules are still
    exactly the chart's; only where they apply is wider.

    Args:
        api: An admin client (the ``kube`` fixture).
        namespace: An existing namespace; it plays the release namespace.
        directory: Where to write the kubeconfig (e.g. ``tmp_path``).
        values: Chart values (e.g. engines to switch on); ``hub.serviceAccountName`` is set here.
        release: Release name to render with.
        service_account: Name of the hub's ServiceAccount.
        all_namespaces: Bind the Role's rules in every namespace (see above).
        without: Resources to strip from the rendered Role, for a negative control showing that
            a suite really runs under this account (it must then fail with 403).

    Yields:
        The :class:`HubAccount`.
    """
    merged: dict[str, Any] = {**dict(values or {}), "hub": {"serviceAccountName": service_account}}
    # Only the release namespace exists in a test; the jobs namespace defaults to it.
    rendered = render(merged, release=release, namespace=namespace)
    objects = [o for o in rendered if o["kind"] in RBAC_KINDS or o["kind"] == "ServiceAccount"]
    for role in (o for o in objects if o["kind"] == "Role"):
        for rule in role["rules"]:
            rule["resources"] = [r for r in rule["resources"] if r not in without]
        role["rules"] = [rule for rule in role["rules"] if rule["resources"]]
    hub_sa: Manifest = {"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": service_account, "namespace": namespace}}
    if all_namespaces:
        objects += _cluster_wide_copies(objects, namespace, service_account)
    applied: list[Manifest] = []
    try:
        for obj in [hub_sa, *objects]:
            _create(api, obj)
            applied.append(obj)
        token = _token(api, namespace, service_account)
        user = f"{namespace}-{service_account}"
        kubeconfig = write_token_kubeconfig(api, token, directory / f"kubeconfig-{user}", user)
        yield HubAccount(kubeconfig=kubeconfig, namespace=namespace, name=service_account, objects=tuple(objects))
    finally:
        rbac = kubernetes.client.RbacAuthorizationV1Api(api)
        for obj in applied:
            try:
                if obj["kind"] == "ClusterRoleBinding":
                    rbac.delete_cluster_role_binding(obj["metadata"]["name"])
                elif obj["kind"] == "ClusterRole":
                    rbac.delete_cluster_role(obj["metadata"]["name"])
            except ApiException as e:
                if e.status != 404:
                    raise
