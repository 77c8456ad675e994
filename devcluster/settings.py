"""Where a devcluster instance keeps its files, and which ports and network it uses.

An *instance* is one control plane plus its process node. The default instance uses
fixed ports and the ``kubelab0`` bridge; other instances (for destructive tests) pick
an instance number with ``KUBELAB_DEVCLUSTER_INSTANCE=N`` which shifts every port by
``100 * N`` and uses bridge ``kubelab<N>`` with subnet ``10.(244+N).0.0/16``. The
choice is written to ``<state>/instance.json`` on first ``up`` so later commands
(``down``, ``status``, the agent) agree with it without the variable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from pathlib import Path

K8S_VERSION = "v1.20.2"
INSTANCE_FILE = "instance.json"


def cache_dir() -> Path:
    """Return ``$KUBELAB_CACHE`` (default ``~/.cache/kubelab``)."""
    return Path(os.environ.get("KUBELAB_CACHE") or Path.home() / ".cache" / "kubelab")


def state_dir() -> Path:
    """Return ``$KUBELAB_STATE`` (default ``~/.cache/kubelab/devcluster``)."""
    return Path(os.environ.get("KUBELAB_STATE") or Path.home() / ".cache" / "kubelab" / "devcluster")


def binaries_dir(cache: Path | None = None) -> Path:
    """Return the folder holding the cached Kubernetes binaries for :data:`K8S_VERSION`."""
    return (cache or cache_dir()) / f"k8s-{K8S_VERSION}" / "bin"


@dataclasses.dataclass(frozen=True)
class Instance:
    """Ports and network of one devcluster instance.

    Attributes:
        number: Instance number; 0 is the default, shared instance.
        etcd_client_port: etcd client port on 127.0.0.1.
        etcd_peer_port: etcd peer port on 127.0.0.1.
        apiserver_port: kube-apiserver secure port on 127.0.0.1.
        controller_manager_port: kube-controller-manager secure port.
        scheduler_port: kube-scheduler secure port.
        kubelet_base_port: The first node's kubelet API port; node ``i`` gets ``base + i``.
        bridge: Linux bridge that joins the pods' veths.
        pod_network: The bridge's subnet; the gateway is its first address.
    """

    number: int = 0
    etcd_client_port: int = 2379
    etcd_peer_port: int = 2380
    apiserver_port: int = 6443
    controller_manager_port: int = 10257
    scheduler_port: int = 10259
    kubelet_base_port: int = 11250
    bridge: str = "kubelab0"
    pod_network: str = "10.244.0.0/16"

    @classmethod
    def numbered(cls, number: int) -> Instance:
        """Build instance ``number``: ports shifted by ``100 * number``, its own bridge and subnet.

        Args:
            number: 0 to 9.

        Raises:
            ValueError: For numbers outside 0..9 (the subnet would leave 10.244-10.253).
        """
        if not 0 <= number <= 9:
            raise ValueError(f"KUBELAB_DEVCLUSTER_INSTANCE must be 0..9, got {number}")
        shift = 100 * number
        base = cls()
        return cls(
            number=number,
            etcd_client_port=base.etcd_client_port + shift,
            etcd_peer_port=base.etcd_peer_port + shift,
            apiserver_port=base.apiserver_port + shift,
            controller_manager_port=base.controller_manager_port + shift,
            scheduler_port=base.scheduler_port + shift,
            kubelet_base_port=base.kubelet_base_port + shift,
            bridge=f"kubelab{number}",
            pod_network=f"10.{244 + number}.0.0/16",
        )

    @property
    def gateway(self) -> str:
        """The bridge's own address: where pods reach processes on the host (e.g. the hub)."""
        return str(next(ipaddress.ip_network(self.pod_network).hosts()))

    @property
    def gateway_cidr(self) -> str:
        """The gateway with the subnet's prefix length, as ``ip addr add`` wants it."""
        return f"{self.gateway}/{ipaddress.ip_network(self.pod_network).prefixlen}"


DEFAULT_INSTANCE = Instance()
#: The address pods use to reach processes on the host, for the default instance.
HOST_GATEWAY = DEFAULT_INSTANCE.gateway


def load_instance(state: Path) -> Instance:
    """Read the instance recorded in ``state``, or choose one from the environment.

    Args:
        state: The instance's state folder.

    Returns:
        The recorded instance when ``state/instance.json`` exists, else the one named by
        ``KUBELAB_DEVCLUSTER_INSTANCE`` (default 0).
    """
    path = state / INSTANCE_FILE
    if path.exists():
        return Instance(**json.loads(path.read_text()))
    return Instance.numbered(int(os.environ.get("KUBELAB_DEVCLUSTER_INSTANCE", "0")))


def save_instance(state: Path, instance: Instance) -> None:
    """Record ``instance`` in ``state`` so later commands use the same ports."""
    state.mkdir(parents=True, exist_ok=True)
    (state / INSTANCE_FILE).write_text(json.dumps(dataclasses.asdict(instance), indent=2) + "\n")
