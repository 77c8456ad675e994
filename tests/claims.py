"""Files into a PersistentVolumeClaim through a pod that mounts it, as a notebook would write them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from kubelab.devcluster.testing import wait_for


def exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def write_into_claim(core: kubernetes.client.CoreV1Api, namespace: str, claim: str, files: dict[str, str],
                     pod: str) -> None:
    """Write ``files`` into the claim through a pod that mounts it (as a notebook would have)."""
    code = ("import base64, json, os\n"
            "for n, b in json.loads(os.environ['FILES']).items():\n"
            "    open('/home/jovyan/' + n, 'wb').write(base64.b64decode(b))\n"
            "print(sorted(os.listdir('/home/jovyan')))\n")
    payload = json.dumps({n: base64.b64encode(t.encode()).decode() for n, t in files.items()})
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": pod},
        "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                 "containers": [{"name": "w", "image": "python", "command": ["python", "-c", code],
                                 "env": [{"name": "FILES", "value": payload}],
                                 "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}]}],
                 "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}]},
    })

    def done() -> str | None:
        phase = core.read_namespaced_pod(pod, namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(done, 120, f"the writer pod {pod}")
    log = core.read_namespaced_pod_log(pod, namespace, _preload_content=False).data.decode()
    assert phase == "Succeeded", log
    core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
    wait_for(lambda: not exists(lambda: core.read_namespaced_pod(pod, namespace)), 60, f"{pod} to go")
