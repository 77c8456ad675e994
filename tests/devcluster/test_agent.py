"""The process node agent on its own: stopping it leaves no pod process and no sandbox behind."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from kubelab.devcluster import pidfile
from kubelab.devcluster.netns import sandbox_names
from kubelab.devcluster.settings import load_instance
from kubelab.devcluster.testing import python_pod, wait_for, wait_pod_phase

pytestmark = pytest.mark.integration
TAINT = {"key": "kubelab.io/agent-test", "value": "true", "effect": "NoSchedule"}


def test_stopping_the_agent_kills_its_pod_processes(cluster, kube, namespace, tmp_path):
    if cluster.external:
        pytest.skip("KUBECONFIG points at an external cluster: no process node of ours to stop")
    core = kubernetes.client.CoreV1Api(kube)
    node = f"kl-agent-test-{secrets.token_hex(3)}"
    # Its own node (tainted, so no other test's pods land there), pod range and port; the shared bridge.
    instance = load_instance(cluster.state)
    pod_cidr = str(list(ipaddress.ip_network(instance.pod_network).subnets(new_prefix=20))[-1])
    layout = {"nodes": [{"name": node, "pod_cidr": pod_cidr, "kubelet_port": instance.kubelet_base_port + 49,
                         "taints": [TAINT]}]}
    (tmp_path / "nodes.json").write_text(json.dumps(layout))
    agent = subprocess.Popen(
        [sys.executable, "-m", "kubelab.devcluster.agent", "--kubeconfig", str(cluster.kubeconfig),
         "--state", str(tmp_path / "agent"), "--pki", str(cluster.state / "pki"), "--nodes", str(tmp_path / "nodes.json"),
         "--bridge", instance.bridge, "--pod-network", instance.pod_network, "--no-provisioner"],
        stdout=open(tmp_path / "agent.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def node_ready() -> bool:
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()
            return _exists(core, node) and any(
                c.type == "Ready" and c.status == "True" for c in core.read_node(node).status.conditions or []
            )

        wait_for(node_ready, 30, f"node {node} Ready")
        token = f"kubelab-orphan-token-{secrets.token_hex(4)}"
        # restartPolicy Always: the agent must not restart what it just stopped while shutting down.
        pod = python_pod("orphan-candidate", f"import time; print('up', flush=True); time.sleep(600)  # {token}",
                         restart_policy="Always", nodeSelector={"kubernetes.io/hostname": node},
                         tolerations=[{**TAINT, "operator": "Equal"}])
        created = core.create_namespaced_pod(namespace, pod)
        running = wait_pod_phase(core, namespace, "orphan-candidate", ("Running",))
        assert running.spec.node_name == node
        assert ipaddress.ip_address(running.status.pod_ip) in ipaddress.ip_network(pod_cidr)
        pid_file = tmp_path / "agent" / "pods" / f"{namespace}_orphan-candidate_{created.metadata.uid}" / "pid"
        pid, start = pidfile.read(pid_file)
        assert pidfile.process_start_time(pid) == start

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
        assert pidfile.process_start_time(pid) != start, "the pod process outlived its agent"
        time.sleep(1)
        assert _processes_with(token) == [], "a pod process was (re)started after the agent stopped"
        netns_name, veth = sandbox_names(created.metadata.uid)
        assert netns_name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        try:
            core.delete_node(node)
        except ApiException as e:
            if e.status != 404:
                raise


def _processes_with(token: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if token.encode() in (entry / "cmdline").read_bytes() and pidfile.process_start_time(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _exists(core: kubernetes.client.CoreV1Api, node: str) -> bool:
    try:
        core.read_node(node)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True
