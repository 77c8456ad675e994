"""pytest plugin: run other suites' real hubs under the chart's hub ServiceAccount.

The spawner's and jobs service's integration tests start JupyterHub as a subprocess through
``tests/harness.py`` with ``env={"KUBECONFIG": <admin kubeconfig>}``. Loaded with
``-p hub_sa_plugin`` (``tests/helm`` on ``PYTHONPATH``), this plugin replaces that KUBECONFIG
with one for the ServiceAccount ``hub`` bound to the kubelab chart's rendered roles
(:func:`rbac.hub_account`, all namespaces, since those suites create their namespaces per
module). The suites' own set-up and checks keep the admin kubeconfig they pass explicitly.

``KUBELAB_HUB_SA_WITHOUT`` (comma-separated resources, e.g. ``jobs``) strips those from the
Role, as a negative control. When ``KUBELAB_HUB_SA_REPORT`` names a file, the plugin writes there, as JSON, the account's
namespace (at once, so that a caller can clean up after a killed run), then its user name and
how many hubs it started, so the caller can tell that the swap really happened.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from rbac import hub_account

ENGINES = {"rbac": {"engines": {"jobset": True, "kubeflowTrainingV1": True, "kubeflowTrainerV2": True, "kueue": True}}}


def _harness_classes() -> list[type]:
    """HubProcess as imported under either name (``harness`` or ``tests.harness``)."""
    classes = []
    for name in ("harness", "tests.harness"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "HubProcess") and module.HubProcess not in classes:
            classes.append(module.HubProcess)
    return classes


@pytest.fixture(scope="session", autouse=True)
def _hubs_run_as_hub_service_account(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    admin = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core = kubernetes.client.CoreV1Api(admin)
    namespace = f"kl-hubsa-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"kubelab.io/test": "true"}}})
    started = {"hubs": 0}
    originals: dict[type, Any] = {}
    report = os.environ.get("KUBELAB_HUB_SA_REPORT")
    if report:
        Path(report).write_text(json.dumps({"namespace": namespace}))
    try:
        without = frozenset(filter(None, os.environ.get("KUBELAB_HUB_SA_WITHOUT", "").split(",")))
        with hub_account(admin, namespace, tmp_path_factory.mktemp("hub-sa"), values=ENGINES,
                         all_namespaces=True, without=without) as account:
            for cls in _harness_classes():
                originals[cls] = cls.__init__

                def patched(self: Any, *args: Any, __original: Any = cls.__init__, **kwargs: Any) -> None:
                    env = dict(kwargs.pop("env", None) or {})
                    env["KUBECONFIG"] = str(account.kubeconfig)
                    started["hubs"] += 1
                    __original(self, *args, env=env, **kwargs)

                cls.__init__ = patched
            yield
            if report:
                Path(report).write_text(json.dumps({"namespace": namespace, "user": account.username, **started}))
    finally:
        for cls, original in originals.items():
            cls.__init__ = original
        core.delete_namespace(namespace)
        admin.close()
