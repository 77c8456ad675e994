"""Pod network sandboxes: one network namespace per pod, joined by a veth to a local bridge.

Addresses never leave the machine: the bridge has no uplink, there is no NAT and
pods get no default route, only the bridge subnet. The host reaches every pod at
its address over the bridge, and pods reach the host at the bridge's gateway.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from kubelab.devcluster import cgroups, pidfile

log = logging.getLogger(__name__)
NETNS_ETC = Path("/etc/netns")


def allocate_ip(pod_cidr: str, used: Iterable[str], reserved: Iterable[str] = ()) -> str:
    """Pick the lowest free host address of ``pod_cidr``.

    Args:
        pod_cidr: The node's pod range, e.g. ``10.244.16.0/20``.
        used: Addresses already given to pods.
        reserved: Addresses never to hand out (the bridge gateway).

    Returns:
        The address as a string.

    Raises:
        RuntimeError: When the range is full.
    """
    taken = {ipaddress.ip_address(a) for a in (*used, *reserved)}
    for address in ipaddress.ip_network(pod_cidr).hosts():
        if address not in taken:
            return str(address)
    raise RuntimeError(f"pod range {pod_cidr} is full")


def sandbox_names(pod_uid: str) -> tuple[str, str]:
    """Names of a pod's network namespace and host-side veth, derived from its UID.

    UIDs are unique across the cluster, so agents sharing a bridge never clash; the
    veth name must fit Linux's 15-character limit.
    """
    short = pod_uid.replace("-", "")[:10]
    return f"klpod-{short}", f"klv{short}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def ensure_bridge(bridge: str, gateway_cidr: str) -> None:
    """Create the bridge with the gateway address, unless it already exists."""
    if _ip("link", "show", bridge, check=False).returncode != 0:
        _ip("link", "add", bridge, "type", "bridge")
    if gateway_cidr.split("/")[0] not in _ip("-o", "addr", "show", "dev", bridge).stdout:
        _ip("addr", "add", gateway_cidr, "dev", bridge)
    _ip("link", "set", bridge, "up")


def delete_bridge(bridge: str) -> None:
    """Remove the bridge if present."""
    _ip("link", "del", bridge, check=False)


def create_sandbox(pod_uid: str, ip: str, prefixlen: int, bridge: str, hosts: str) -> str:
    """Create the pod's namespace, veth and ``/etc/netns/<ns>/hosts``.

    Args:
        pod_uid: The pod's UID.
        ip: The pod's address.
        prefixlen: The bridge subnet's prefix length (so every pod and the gateway are on-link).
        bridge: Bridge to attach the host side to.
        hosts: Initial content of the pod's hosts file.

    Returns:
        The namespace name.

    Raises:
        subprocess.CalledProcessError: When an ``ip`` command fails.
    """
    netns, veth = sandbox_names(pod_uid)
    delete_sandbox(pod_uid)
    etc = NETNS_ETC / netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(hosts)
    _ip("netns", "add", netns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    _ip("link", "set", veth, "master", bridge, "up")
    _ip("-n", netns, "addr", "add", f"{ip}/{prefixlen}", "dev", "eth0")
    _ip("-n", netns, "link", "set", "eth0", "up")
    _ip("-n", netns, "link", "set", "lo", "up")
    return netns


def delete_sandbox(pod_uid: str) -> None:
    """Remove the pod's namespace (its veth goes with it) and its ``/etc/netns`` folder."""
    netns, veth = sandbox_names(pod_uid)
    _ip("netns", "del", netns, check=False)
    _ip("link", "del", veth, check=False)
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)


def write_in_place(path: Path, content: str) -> None:
    """Rewrite ``path`` keeping its inode: ``ip netns exec`` bind-mounts it, a rename would not show."""
    with open(path, "r+" if path.exists() else "w") as f:
        f.seek(0)
        f.write(content)
        f.truncate()


def kill_process_group(pgid: int, leader_start: int) -> bool:
    """SIGKILL every process in group ``pgid`` that started no earlier than its leader.

    The kernel does not reuse a pid while a group still carries it as its id, so
    members of our group can only be confused with a new group after all of ours
    died; the start-time guard also skips processes older than our leader.

    Returns:
        True if any process was signalled.
    """
    hit = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and int(fields[19]) >= leader_start and fields[0] != "Z":
            try:
                os.kill(pid, 9)
                hit = True
            except ProcessLookupError:
                pass
    return hit


def cleanup_pod_sandboxes(agent_state: Path) -> int:
    """Kill leftover pod process groups and remove leftover namespaces recorded under ``agent_state``.

    Used by ``down`` after the agent stopped, in case it was killed before cleaning up.

    Returns:
        How many pods had something left to clean.
    """
    count = 0
    for pod_dir in sorted((agent_state / "pods").glob("*")):
        cleaned = False
        entry = pidfile.read(pod_dir / "pid")
        if entry is not None:
            cleaned = kill_process_group(*entry) or cleaned
            (pod_dir / "pid").unlink(missing_ok=True)
        cleaned = cgroups.remove_recorded(pod_dir) or cleaned
        uid_file = pod_dir / "uid"
        if (pod_dir / "sandbox").exists() and uid_file.exists():
            delete_sandbox(uid_file.read_text().strip())
            (pod_dir / "sandbox").unlink(missing_ok=True)
            cleaned = True
        count += cleaned
    return count
