"""Start, stop and inspect the local control plane (etcd, apiserver, controller-manager, scheduler, node).

Every daemon runs detached in its own session, logs to ``<state>/logs/<name>.log``
and is recorded in ``<state>/run/<name>.pid``; ``down`` stops exactly those.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from kubelab.devcluster import pidfile
from kubelab.devcluster.nodes import NodeSpec, layout_json, load_layout
from kubelab.devcluster.pki import ClusterPki, make_cluster_pki
from kubelab.devcluster.settings import Instance

SERVICE_RANGE = "127.100.0.0/16"
#: Controllers the devcluster runs: what pods, Jobs, PVCs, namespaces and tokens need, nothing cloud.
CONTROLLERS = (
    "job", "garbagecollector", "namespace", "serviceaccount", "serviceaccount-token",
    "persistentvolume-binder", "pvc-protection", "pv-protection", "endpoint", "endpointslice",
    "endpointslicemirroring", "resourcequota", "replicaset", "deployment", "replicationcontroller",
    "statefulset", "cronjob", "ttl-after-finished", "podgc", "nodelifecycle", "root-ca-cert-publisher",
    "clusterrole-aggregation",
)
#: Start order; ``down`` stops in reverse so the node agent cleans up while the apiserver still answers.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node-agent")

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Paths inside one instance's state folder."""

    state: Path

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def nodes_file(self) -> Path:
        return self.state / "nodes.json"

    @property
    def agent_state(self) -> Path:
        return self.state / "agent"

    def pid(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


def first_service_ip(service_range: str = SERVICE_RANGE) -> str:
    """The ClusterIP the apiserver gives the ``kubernetes`` Service (first host of the range)."""
    return str(next(ipaddress.ip_network(service_range).hosts()))


def make_kubeconfig(server: str, ca: Path, cert: Path, key: Path, name: str = "kubelab") -> dict:
    """Build a kubeconfig with the CA and client cert embedded (so it can be copied anywhere)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "admin", "namespace": "default"}}],
        "current-context": name,
    }


def component_commands(
    instance: Instance, layout: Layout, bins: Path, pki: ClusterPki, etcd: str
) -> dict[str, list[str]]:
    """Command lines of every daemon (pure: no files are touched).

    Args:
        instance: Ports and network.
        layout: The state folder's paths.
        bins: Folder with the Kubernetes binaries.
        pki: The cluster PKI.
        etcd: Path of the etcd binary.
    """
    i = instance
    etcd_url = f"http://127.0.0.1:{i.etcd_client_port}"
    peer_url = f"http://127.0.0.1:{i.etcd_peer_port}"
    kubeconfig = str(layout.kubeconfig)
    return {
        "etcd": [
            etcd, "--name", "kubelab", "--data-dir", str(layout.etcd_data),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"kubelab={peer_url}",
            # A throwaway test cluster: durability is worth less than start-up and write speed.
            "--unsafe-no-fsync", "--logger", "zap", "--log-level", "warn",
        ],
        "kube-apiserver": [
            str(bins / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={i.apiserver_port}", "--insecure-port=0",
            f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            f"--service-account-key-file={pki.service_account.cert}",
            f"--service-account-signing-key-file={pki.service_account.key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            # Loopback: a ClusterIP dialled by mistake stays on this machine (there is no kube-proxy).
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={pki.ca.cert}",
            f"--kubelet-client-certificate={pki.kubelet_client.cert}",
            f"--kubelet-client-key={pki.kubelet_client.key}",
            "--authorization-mode=RBAC", "--allow-privileged=true",
            # v1 Endpoints refuse the loopback advertise address; without this it logs an error every 10 s.
            "--endpoint-reconciler-type=none",
            "--feature-gates=TTLAfterFinished=true", "--v=1",
        ],
        "kube-controller-manager": [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={i.controller_manager_port}", "--port=0",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={pki.service_account.key}",
            f"--root-ca-file={pki.ca.cert}", f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--leader-elect=false", "--feature-gates=TTLAfterFinished=true", "--v=1",
        ],
        "kube-scheduler": [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={i.scheduler_port}", "--port=0",
            "--leader-elect=false", "--v=1",
        ],
        "node-agent": [
            sys.executable, "-m", "kubelab.devcluster.agent",
            "--kubeconfig", kubeconfig, "--state", str(layout.agent_state), "--pki", str(layout.pki),
            "--nodes", str(layout.nodes_file), "--bridge", instance.bridge,
            "--pod-network", instance.pod_network,
        ],
    }


def start_daemon(argv: list[str], log: Path, pid: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached (own session, stdin closed), logging to ``log``; record it in ``pid``.

    Returns:
        The new process id.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, close_fds=True,
        )
    pidfile.write(pid, proc.pid)
    return proc.pid


def running_components(layout: Layout) -> dict[str, int | None]:
    """Map each component to its live pid, or None."""
    return {name: pidfile.alive(layout.pid(name)) for name in COMPONENTS}


def tail(path: Path, lines: int = 15) -> str:
    """Last ``lines`` lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


class StartError(RuntimeError):
    """A daemon did not come up; the message names it and ends with its log's tail."""


def prepare_state(instance: Instance, layout: Layout, nodes_path: Path | None) -> tuple[ClusterPki, list[NodeSpec]]:
    """Create the PKI, kubeconfig and resolved node layout in the state folder (idempotent)."""
    for d in (layout.state, layout.logs, layout.run, layout.agent_state):
        d.mkdir(parents=True, exist_ok=True)
    layout.state.chmod(0o700)
    pki = make_cluster_pki(layout.pki, first_service_ip())
    kubeconfig = make_kubeconfig(
        f"https://127.0.0.1:{instance.apiserver_port}", pki.ca.cert, pki.admin.cert, pki.admin.key
    )
    layout.kubeconfig.write_text(yaml.safe_dump(kubeconfig))
    layout.kubeconfig.chmod(0o600)
    specs = load_layout(nodes_path, instance.kubelet_base_port, instance.pod_network)
    layout.nodes_file.write_text(layout_json(specs) + "\n")
    return pki, specs


def wait_for(what: str, check: Callable[[], bool], timeout: float, pid: Path, log: Path,
             also: tuple[tuple[Path, Path], ...] = ()) -> None:
    """Poll ``check`` until it holds; fail early if the daemon behind ``pid`` (or any in ``also``) died.

    Args:
        what: Names the wait in errors.
        check: The readiness test.
        timeout: Seconds before giving up.
        pid: The daemon's pid file.
        log: Its log, whose tail goes into errors.
        also: More ``(pid file, log)`` pairs that must stay alive meanwhile.

    Raises:
        StartError: On death or timeout, with the log's tail.
    """
    deadline = time.monotonic() + timeout
    watched = ((pid, log), *also)
    while time.monotonic() < deadline:
        if check():
            return
        for pid_file, log_file in watched:
            if pidfile.alive(pid_file) is None:
                raise StartError(
                    f"{what}: {pid_file.stem} exited; last lines of {log_file}:\n{tail(log_file)}"
                )
        time.sleep(0.2)
    raise StartError(f"{what}: not ready after {timeout:.0f}s; last lines of {log}:\n{tail(log)}")


def etcd_binary() -> str | None:
    """Path of etcd (Debian's etcd-server installs /usr/bin/etcd)."""
    return shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
