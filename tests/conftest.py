"""Session fixtures for tests that talk to Kubernetes: ``cluster``, ``kube`` and ``namespace``.

``cluster`` uses ``$KUBECONFIG`` when it points at another cluster, else brings up
(or reuses) the local devcluster and leaves it running for the next session (other
sessions may be using it by then). With ``KUBELAB_STOP_CLUSTER=1`` a devcluster that
this session started is stopped at the end; one that was already running never is.
Namespaces are deleted after each test unless ``KUBELAB_TEST_KEEP=1``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from kubelab.devcluster import ClusterInfo, DevclusterError, down, ensure_cluster
from kubelab.devcluster.testing import wait_for


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``integration`` marker (also declared in pyproject, harmless twice)."""
    config.addinivalue_line("markers", "integration: needs the local Kubernetes control plane (devcluster)")


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterInfo]:
    """The cluster under test; exports ``KUBECONFIG`` and loads it as the client's default config."""
    try:
        info = ensure_cluster(say=lambda line: print(f"[devcluster] {line}", flush=True))
    except DevclusterError as e:
        pytest.fail(f"cannot bring up the devcluster: {e}", pytrace=False)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    kubernetes.config.load_kube_config(config_file=str(info.kubeconfig))
    yield info
    if previous is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = previous
    if info.started and not info.external and os.environ.get("KUBELAB_STOP_CLUSTER") == "1":
        down(info.state, say=lambda line: print(f"[devcluster] {line}", flush=True))


@pytest.fixture(scope="session")
def kube(cluster: ClusterInfo) -> Iterator[kubernetes.client.ApiClient]:
    """An API client for the cluster."""
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def namespace(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    """A fresh ``kl-test-<random>`` namespace whose ``default`` ServiceAccount (and its token) exists."""
    core = kubernetes.client.CoreV1Api(kube)
    name = f"kl-test-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"kubelab.io/test": "true"}}})

    def has_default_sa() -> bool:
        # v1.20's ServiceAccount admission refuses pods until the SA's token secret exists too.
        try:
            return bool(core.read_namespaced_service_account("default", name).secrets)
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    wait_for(has_default_sa, 30, f"ServiceAccount {name}/default")
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") == "1":
        print(f"keeping namespace {name} (KUBELAB_TEST_KEEP=1)")
        return
    try:
        core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise
