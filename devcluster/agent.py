"""The process node agent: registers Nodes and runs the pods bound to them as local processes.

``python -m kubelab.devcluster.agent --kubeconfig K --state DIR --pki DIR --nodes FILE``

It watches pods (one watch for all, so ``hostname.subdomain`` peers on any node
are known), Services (headless ones name peers), and PVCs/PVs (the provisioner);
it serves each node's kubelet API for logs and posts each node's status every
10 s so the node lifecycle controller keeps it Ready. SIGTERM stops every pod
process and removes the sandboxes before exiting.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubelab.devcluster import hygiene, images, netns
from kubelab.devcluster.cgroups import MEMORY_ANNOTATION, MemoryCgroups
from kubelab.devcluster.hosts import hosts_content, named_peers
from kubelab.devcluster.informer import Informer
from kubelab.devcluster.kubeletapi import KubeletApiServer, LogNotFound, LogSource, serve_in_thread
from kubelab.devcluster.nodes import NODE_IP, NodeSpec, load_layout, make_node, make_node_status
from kubelab.devcluster.pki import KUBELET_CLIENT_CN, node_serving_cert
from kubelab.devcluster.podstatus import rfc3339
from kubelab.devcluster.provisioner import Provisioner
from kubelab.devcluster.runtime import PodRunner, gpu_request, is_simulated, now, patch_strategic, pod_dir_name

log = logging.getLogger("kubelab.devcluster.agent")
HEARTBEAT_SECONDS = 10.0
SHUTDOWN_GRACE = 5.0
STARTUP_SECONDS = 120.0


class Agent:
    """The process node.

    Args:
        kubeconfig: Admin kubeconfig of the cluster.
        state: The agent's folder (pods, logs, volumes).
        pki: The cluster PKI folder (CA for node serving certs).
        nodes: The nodes to register and serve.
        bridge: Bridge name for pod veths.
        pod_network: The bridge's subnet (its first address is the gateway).
        provision: Run the StorageClass provisioner (only one agent per cluster should).
    """

    def __init__(
        self, kubeconfig: Path, state: Path, pki: Path, nodes: list[NodeSpec], bridge: str, pod_network: str,
        provision: bool = True,
    ) -> None:
        self.api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.state = state
        self.pki = pki
        self.nodes = {n.name: n for n in nodes}
        self.bridge = bridge
        network = ipaddress.ip_network(pod_network)
        self.gateway = str(next(network.hosts()))
        self.prefixlen = network.prefixlen
        self.host_ip = NODE_IP
        self.provision = provision
        self.lock = threading.RLock()
        self.runners: dict[str, PodRunner] = {}
        self.ips: dict[str, str] = {}
        self.gpus: dict[str, dict[str, list[int]]] = {n.name: {} for n in nodes}
        self.hosts_written: dict[str, str] = {}
        self.stop = threading.Event()
        self.ready_since = rfc3339(now())
        self.pods = Informer("pods", self.core.list_pod_for_all_namespaces, self.on_pod)
        self.services = Informer("services", self.core.list_service_for_all_namespaces, self.on_service)
        # Namespaces labelled kubelab.io/simulate=true have every pod simulated (benchmarks).
        self.namespaces = Informer("namespaces", self.core.list_namespace, lambda kind, obj: None)
        self.servers: list[KubeletApiServer] = []
        #: The node's memory cgroups (None: limits.memory is not enforced; why is in memory_limits).
        self.memory: MemoryCgroups | None = None
        self.memory_limits = "not enforced: the agent has not started"
        # Short jobs: simulated pods' set-up and finished pods' final delete.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="pods")

    # ---- allocation -------------------------------------------------------------------------------

    def allocate_ip(self, runner: PodRunner) -> str:
        """An address from the node's pod range; the pod's recorded one when it is still free."""
        with self.lock:
            used = set(self.ips.values())
            recorded = (runner.pod.get("status") or {}).get("podIP")
            cidr = ipaddress.ip_network(runner.node.pod_cidr or "")
            if recorded and recorded not in used and ipaddress.ip_address(recorded) in cidr:
                ip = recorded
            else:
                ip = netns.allocate_ip(str(cidr), used, reserved=[self.gateway])
            self.ips[runner.uid] = ip
            return ip

    def allocate_gpus(self, runner: PodRunner) -> list[int]:
        """Lowest free GPU indices on the node for the pod's ``nvidia.com/gpu`` request."""
        want = gpu_request(runner.pod)
        if not want:
            return []
        with self.lock:
            taken = {i for idx in self.gpus[runner.node.name].values() for i in idx}
            free = [i for i in range(runner.node.gpus) if i not in taken]
            if len(free) < want:
                log.warning("pod %s/%s wants %d GPUs, node %s has %d free", runner.namespace, runner.name, want,
                            runner.node.name, len(free))
            chosen = free[:want]
            self.gpus[runner.node.name][runner.uid] = chosen
            return chosen

    def release_gpus(self, runner: PodRunner) -> None:
        """Return a finished pod's GPUs."""
        with self.lock:
            self.gpus[runner.node.name].pop(runner.uid, None)

    def release(self, runner: PodRunner) -> None:
        """Forget a pod whose object is gone: its address, GPUs and runner."""
        with self.lock:
            self.ips.pop(runner.uid, None)
            self.gpus[runner.node.name].pop(runner.uid, None)
            if self.runners.get(runner.uid) is runner:
                del self.runners[runner.uid]
            self.hosts_written.pop(runner.uid, None)

    # ---- lookups for pods ---------------------------------------------------------------------------

    def _read_raw(self, read: Callable[..., Any], name: str, namespace: str) -> dict[str, Any] | None:
        """Read an object as plain JSON (the generated models mangle base64 fields); None on 404."""
        try:
            resp = read(name, namespace, _preload_content=False)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return json.loads(resp.data)

    def configmap_data(self, namespace: str) -> Callable[[str], Mapping[str, str | bytes] | None]:
        """Name → ConfigMap ``data`` (text) merged with ``binaryData`` (bytes), or None when missing."""

        def lookup(name: str) -> Mapping[str, str | bytes] | None:
            cm = self._read_raw(self.core.read_namespaced_config_map, name, namespace)
            if cm is None:
                return None
            binary = {k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()}
            return {**(cm.get("data") or {}), **binary}

        return lookup

    def secret_data(self, namespace: str) -> Callable[[str], Mapping[str, str] | None]:
        """Name → Secret data (base64 values), or None when missing."""

        def lookup(name: str) -> Mapping[str, str] | None:
            secret = self._read_raw(self.core.read_namespaced_secret, name, namespace)
            return None if secret is None else dict(secret.get("data") or {})

        return lookup

    def claim_path(self, namespace: str) -> Callable[[str], str | None]:
        """PVC name → host folder of its bound PV, or None while unbound or missing."""

        def lookup(name: str) -> str | None:
            try:
                pvc = self.core.read_namespaced_persistent_volume_claim(name, namespace)
                if not pvc.spec.volume_name or (pvc.status and pvc.status.phase) != "Bound":
                    return None
                pv = self.core.read_persistent_volume(pvc.spec.volume_name)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
            if pv.spec.host_path:
                return pv.spec.host_path.path
            if pv.spec.local:
                return pv.spec.local.path
            return None

        return lookup

    def simulates(self, pod: dict[str, Any]) -> bool:
        """Whether to run ``pod`` simulated: by its own annotation or its namespace's label.

        The namespace cache answers "yes" at once. Otherwise the namespace is read, because its
        watch may not have delivered a label set just before the pod was created; that read costs
        one request per pod that runs a real process, which starts a process anyway.
        """
        name = pod["metadata"]["namespace"]
        if is_simulated(pod, self.namespaces.get(name)):
            return True
        try:
            namespace = json.loads(self.core.read_namespace(name, _preload_content=False).data)
        except (ApiException, urllib3.exceptions.HTTPError) as e:
            log.warning("namespace %s unreadable (%s): pod %s runs as a process", name, e, pod["metadata"]["name"])
            return False
        return is_simulated(pod, namespace)

    # ---- hosts files ----------------------------------------------------------------------------------

    def hosts_for(self, runner: PodRunner) -> str:
        """The hosts file content of ``runner``'s pod now."""
        peers = named_peers(self.pods.items(), self.services.items(), runner.namespace)
        return hosts_content(runner.pod, runner.ip or "", peers)

    def refresh_hosts(self, namespace: str) -> None:
        """Rewrite the hosts files of this namespace's running pods whose peers changed."""
        with self.lock:
            local = [r for r in self.runners.values() if r.namespace == namespace and r.netns]
        for runner in local:
            content = self.hosts_for(runner)
            if self.hosts_written.get(runner.uid) == content or not runner.netns:
                continue
            path = netns.NETNS_ETC / runner.netns / "hosts"
            try:
                netns.write_in_place(path, content)
            except FileNotFoundError:
                continue  # the sandbox went away meanwhile
            self.hosts_written[runner.uid] = content

    # ---- informer handlers ------------------------------------------------------------------------------

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        """Start, update or finish the runner of a pod bound to one of our nodes."""
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        uid = pod["metadata"]["uid"]
        if node is not None:
            with self.lock:
                runner = self.runners.get(uid)
            if runner is None and kind != "DELETED":
                # Decided outside the lock (it may read the namespace); only this thread adds runners.
                simulated = self.simulates(pod)
                with self.lock:
                    runner = PodRunner(self, node, pod, simulated=simulated)
                    self.runners[uid] = runner
                    runner.start()
            if runner is not None:
                if kind == "DELETED":
                    runner.object_gone()
                else:
                    runner.update(pod)
        if (pod.get("spec") or {}).get("subdomain") or kind == "DELETED":
            self.refresh_hosts(pod["metadata"]["namespace"])

    def on_service(self, kind: str, service: dict[str, Any]) -> None:
        """A headless Service appearing or going changes which names resolve."""
        if (service.get("spec") or {}).get("clusterIP") == "None" or kind == "DELETED":
            self.refresh_hosts(service["metadata"]["namespace"])

    def log_source(self, namespace: str, pod: str, container: str, previous: bool) -> LogSource:
        """Find a container's log for the kubelet API.

        Raises:
            LogNotFound: When the pod is not on our nodes or has no such log.
        """
        with self.lock:
            runner = next((r for r in self.runners.values() if r.namespace == namespace and r.name == pod), None)
        if runner is not None:
            return runner.log_source(container, previous)
        obj = self.pods.get(f"{namespace}/{pod}")
        if obj is None or obj["spec"].get("nodeName") not in self.nodes:
            raise LogNotFound(f'pods "{pod}" not found')
        logs = sorted((self.state / "pods" / pod_dir_name(obj) / "logs" / container).glob("*.log"),
                      key=lambda p: int(p.stem))
        if len(logs) < (2 if previous else 1):
            raise LogNotFound(f'no logs for container "{container}" in pod "{pod}"', 400)
        return LogSource(logs[-2] if previous else logs[-1], lambda: False)

    # ---- nodes -----------------------------------------------------------------------------------------

    def register_nodes(self) -> None:
        """Create (or update) each Node and post its first status."""
        annotations = {MEMORY_ANNOTATION: self.memory_limits,
                       images.REGISTRY_ANNOTATION: f"*.{images.UNREACHABLE_TLD}"}
        for spec in self.nodes.values():
            body = make_node(spec, annotations)
            try:
                self.core.create_node(body)
            except ApiException as e:
                if e.status != 409:
                    raise
                patch = {"metadata": {"labels": body["metadata"]["labels"], "annotations": annotations},
                         "spec": {"taints": body["spec"]["taints"]}}
                patch_strategic(self.core.patch_node, spec.name, patch)
        self.heartbeat()

    def heartbeat(self) -> None:
        """Post every node's status (Ready, resources, kubelet port) with a fresh heartbeat."""
        stamp = rfc3339(now())
        for spec in self.nodes.values():
            try:
                patch_strategic(self.core.patch_node_status, spec.name,
                                {"status": make_node_status(spec, stamp, self.ready_since)})
            except ApiException as e:
                log.warning("node %s: status update failed: %s %s", spec.name, e.status, e.reason)
            except (urllib3.exceptions.HTTPError, OSError) as e:
                # The apiserver may be restarting; keep serving pods and retry at the next beat.
                log.warning("node %s: status update failed: %s", spec.name, e)

    def start_kubelet_servers(self) -> None:
        """One HTTPS kubelet API per node on 127.0.0.1:<its port>."""
        for spec in self.nodes.values():
            cert = node_serving_cert(self.pki, spec.name, NODE_IP)
            server = KubeletApiServer(
                (NODE_IP, spec.kubelet_port), (cert.cert, cert.key), self.pki / "ca.crt", KUBELET_CLIENT_CN,
                self.log_source,
            )
            self.servers.append(server)
            serve_in_thread(server, f"kubelet-api-{spec.name}")

    # ---- life cycle -------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop every pod process and remove the sandboxes."""
        (self.state / "pods").mkdir(parents=True, exist_ok=True)
        leftovers = netns.cleanup_pod_sandboxes(self.state)
        if leftovers:
            log.info("cleaned up %d sandbox(es) left by a previous agent", leftovers)
        hygiene.remove_legacy_mount_points(self.state, keep=(self.state.parent,))
        self.memory, self.memory_limits = MemoryCgroups.open(self.bridge)
        if self.memory is None:
            log.warning("memory limits: %s; containers run without limits.memory", self.memory_limits)
        else:
            log.info("memory limits: enforced, %s", self.memory_limits)
        netns.ensure_bridge(self.bridge, f"{self.gateway}/{self.prefixlen}")
        self.start_kubelet_servers()
        provisioner = Provisioner(self.core, self.state / "volumes")
        self._until_apiserver_answers(provisioner)
        if self.provision:
            Informer("pvcs", self.core.list_persistent_volume_claim_for_all_namespaces, provisioner.on_claim).start()
            Informer("pvs", self.core.list_persistent_volume, provisioner.on_volume).start()
        self.services.start()
        self.namespaces.start()
        self.services.synced.wait(30)
        self.namespaces.synced.wait(30)
        self.pods.start()
        self.pods.synced.wait(30)
        # Tells `up` that this very agent (not a predecessor's Ready nodes) is serving.
        (self.state / "ready").write_text(f"{os.getpid()}\n")
        log.info("process node serving %s", ", ".join(self.nodes))
        while not self.stop.wait(HEARTBEAT_SECONDS):
            self.heartbeat()
            with self.lock:
                runners = list(self.runners.values())
            for runner in runners:
                runner.retry_status()
        self.shutdown()

    def _until_apiserver_answers(self, provisioner: Provisioner) -> None:
        """Register the nodes (and the StorageClass), retrying while the apiserver is still starting.

        ``up`` starts the agent together with the apiserver so that the agent's imports overlap
        the apiserver's start-up; the first calls may therefore be refused.
        """
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                self.register_nodes()
                if self.provision:
                    provisioner.ensure_storage_class(client.StorageV1Api(self.api))
                return
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
                if time.monotonic() > deadline or self.stop.is_set():
                    raise
                log.info("apiserver not ready yet (%s); retrying", getattr(e, "reason", e))
                time.sleep(0.5)

    def shutdown(self) -> None:
        """Stop all pod processes (SIGTERM, then SIGKILL) in parallel and remove their sandboxes."""
        self.pods.stop()
        self.namespaces.stop()
        with self.lock:
            runners = list(self.runners.values())
        threads = [threading.Thread(target=r.stop_for_shutdown, args=(SHUTDOWN_GRACE,)) for r in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SHUTDOWN_GRACE + 5)
        netns.cleanup_pod_sandboxes(self.state)
        if self.memory is not None:
            self.memory.close()
        for server in self.servers:
            server.shutdown()
        log.info("process node stopped; %d pod(s) terminated", len(runners))


def main(argv: list[str] | None = None) -> int:
    """Run the agent until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m kubelab.devcluster.agent", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True, help="folder for pods, logs and volumes")
    parser.add_argument("--pki", type=Path, required=True, help="cluster PKI folder (ca.crt, ca.key)")
    parser.add_argument("--nodes", type=Path, help="node layout YAML/JSON (default: the built-in layout)")
    parser.add_argument("--bridge", default="kubelab0")
    parser.add_argument("--pod-network", default="10.244.0.0/16")
    parser.add_argument("--kubelet-base-port", type=int, default=11250)
    parser.add_argument("--no-provisioner", action="store_true", help="leave PVCs to another agent")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    nodes = load_layout(args.nodes, args.kubelet_base_port, args.pod_network)
    agent = Agent(args.kubeconfig, args.state, args.pki, nodes, args.bridge, args.pod_network,
                  provision=not args.no_provisioner)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        agent.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
