"""A rank cannot fill the node's disk: past its scratch's sizeLimit the kubelet evicts it, and the
job says so in plain words (the devcluster emulates the kubelet's eviction manager).

The rank is built as the service builds it (RWO home, the script shipped, a 4Mi scratch from the
catalogue's ``storage.scratch``) and writes 32 MB to ``/tmp``.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from kubelab.core.catalogue import HomeStorage, ScratchStorage
from kubelab.devcluster.testing import wait_for
from kubelab.jobs.builders import BuildContext, make_children, make_parent
from kubelab.jobs.explain import explain
from kubelab.jobs.kube import event_record
from kubelab.jobs.spec import JobSpec
from kubelab.jobs.status import build_status

FILL_TMP = b"""import os, time
with open('/tmp/fill.bin', 'wb') as f:
    for _ in range(32):
        f.write(os.urandom(1 << 20))
        f.flush()
time.sleep(30)  # evicted before this ends
"""


@pytest.mark.integration
def test_a_rank_over_its_scratch_is_evicted_and_the_job_says_why(kube: kubernetes.client.ApiClient,
                                                                 namespace: str) -> None:
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    ctx = BuildContext(user="alice", namespace=namespace, image="img", home=HomeStorage(access_mode="ReadWriteOnce"),
                       files={"fill.py": FILL_TMP}, scratch=ScratchStorage(size_bytes=4 * 2**20))
    spec = JobSpec(name="fill", framework="replicas", script="fill.py", workers=1)
    calls: dict[str, Any] = {"ConfigMap": core.create_namespaced_config_map, "Service": core.create_namespaced_service,
                             "Secret": core.create_namespaced_secret, "Job": batch.create_namespaced_job}
    parent = core.create_namespaced_config_map(namespace, make_parent(spec, ctx, "plain"))
    for obj in make_children(spec, ctx, "plain", (parent.metadata.name, parent.metadata.uid)):
        calls[obj["kind"]](namespace, obj)

    def evicted() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector="kubelab.io/job=fill").items
        return pods if pods and pods[0].status.phase == "Failed" else None

    (pod,) = wait_for(evicted, 120, "the rank to be evicted")
    assert pod.status.reason == "Evicted" and 'EmptyDir volume "scratch"' in pod.status.message, pod.status
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}").items
    texts = [event_record(kube.sanitize_for_serialization(e)).text for e in events]
    raw = kube.sanitize_for_serialization
    status = build_status(raw(core.read_namespaced_config_map(parent.metadata.name, namespace)), [raw(pod)],
                          [raw(j) for j in batch.list_namespaced_job(namespace).items], {pod.metadata.name: texts})
    why = explain(status)
    assert why is not None and why.kind == "scratch-full", (why, texts)
    assert why.sentence.startswith("Rank 0 filled its scratch space (4Mi: /tmp"), why.sentence
