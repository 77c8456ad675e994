"""``up``/``down``/``status`` of a devcluster instance, and :func:`ensure_cluster` for Python callers."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from kubelab.devcluster import pidfile, preflight
from kubelab.devcluster.controlplane import (
    COMPONENTS,
    Layout,
    Say,
    component_commands,
    etcd_binary,
    prepare_state,
    running_components,
    start_daemon,
    wait_for,
)
from kubelab.devcluster.netns import cleanup_pod_sandboxes, delete_bridge
from kubelab.devcluster.settings import (
    Instance,
    binaries_dir,
    cache_dir,
    load_instance,
    save_instance,
    state_dir,
)

BUILD_SCRIPT = Path(__file__).with_name("build_k8s.sh")
READY_TIMEOUT = 120.0


class DevclusterError(RuntimeError):
    """A condition ``up`` cannot proceed with; the message is one line naming what is missing."""


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """How to reach the cluster that tests and the demo use.

    Attributes:
        kubeconfig: The kubeconfig file.
        host_ip: The address pods use to reach processes on this host (the bridge gateway).
        external: True when ``KUBECONFIG`` pointed at some other cluster and nothing was started.
        state: The devcluster's state folder (None for an external cluster).
        started: True when this call started the whole devcluster (not when it only restarted a
            daemon that had died): the one who started it may stop it.
    """

    kubeconfig: Path
    host_ip: str
    external: bool
    state: Path | None = None
    started: bool = False


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    """Serialise ``up``/``down`` of one instance (two test sessions may start it at once)."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def external_kubeconfig(layout: Layout) -> Path | None:
    """The ``KUBECONFIG`` file when it is set and is not this devcluster's own kubeconfig."""
    value = os.environ.get("KUBECONFIG", "")
    if not value:
        return None
    first = Path(value.split(os.pathsep)[0]).expanduser()
    if first.resolve() == layout.kubeconfig.resolve():
        return None
    return first


def external_host_ip() -> str:
    """Where pods of an external cluster reach this host: ``$KUBELAB_HOST_IP`` or this host's name."""
    return os.environ.get("KUBELAB_HOST_IP") or socket.gethostbyname(socket.gethostname())


def _apiserver_ready(instance: Instance, layout: Layout) -> bool:
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", instance.apiserver_port, context=ctx, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _etcd_ready(instance: Instance) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", instance.etcd_client_port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _get_json(instance: Instance, layout: Layout, path: str) -> dict | None:
    """GET ``path`` from the apiserver as admin; None on any failure (the caller polls)."""
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", instance.apiserver_port, context=ctx, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return json.loads(body) if resp.status == 200 else None
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


def _cluster_ready(instance: Instance, layout: Layout, node_names: list[str]) -> bool:
    """Nodes Ready without the not-ready taint, and the ``default`` ServiceAccount has its token.

    Plain HTTPS rather than the Kubernetes client: importing that client costs seconds on a
    busy machine, and ``up``/``status`` should stay quick.
    """
    nodes = _get_json(instance, layout, "/api/v1/nodes")
    if nodes is None:
        return False
    by_name = {n["metadata"]["name"]: n for n in nodes.get("items", [])}
    for name in node_names:
        node = by_name.get(name)
        if node is None:
            return False
        conditions = (node.get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return False
        if any(t["key"].startswith("node.kubernetes.io/not-ready") for t in node["spec"].get("taints") or []):
            return False
    account = _get_json(instance, layout, "/api/v1/namespaces/default/serviceaccounts/default")
    # v1.20 admission refuses pods until the ServiceAccount's token secret exists.
    return bool(account and account.get("secrets"))


def _preflight_binaries(cache: Path, bins: Path, say: Say) -> None:
    """Build the Kubernetes binaries into the cache and install etcd when missing."""
    apt_get = shutil.which("apt-get")
    if etcd_binary() is None:
        if msg := preflight.check_apt(apt_get, "install etcd (Debian package etcd-server), which is missing"):
            raise DevclusterError(msg)
        say("installing etcd-server with apt-get")
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "etcd-server"],
            check=True, stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if all((bins / b).exists() for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")):
        return
    if msg := preflight.check_apt(apt_get, f"build the Kubernetes v1.20.2 binaries, which are not in {bins}"):
        raise DevclusterError(msg)
    free = preflight.free_bytes(cache)
    if msg := preflight.check_disk(cache, free, preflight.BUILD_DISK_BYTES, "building Kubernetes v1.20.2"):
        raise DevclusterError(msg)
    say(f"building Kubernetes v1.20.2 into {bins} (about 7-10 minutes, once)")
    started = time.monotonic()
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), str(bins)], text=True, check=False)
    if proc.returncode != 0:
        raise DevclusterError(f"building Kubernetes failed (exit {proc.returncode}); see the output above")
    say(f"built Kubernetes in {time.monotonic() - started:.0f}s")


def up(
    state: Path | None = None,
    cache: Path | None = None,
    nodes: Path | None = None,
    say: Say = _quiet,
) -> ClusterInfo:
    """Bring the devcluster up, or find it running (idempotent).

    Args:
        state: State folder; default ``$KUBELAB_STATE``.
        cache: Cache folder; default ``$KUBELAB_CACHE``.
        nodes: Node layout file; default ``$KUBELAB_DEVCLUSTER_NODES`` or the built-in layout.
        say: Receives one progress line per step.

    Returns:
        How to reach the cluster.

    Raises:
        DevclusterError: A prerequisite is missing (root, apt-get, disk, a free port).
        StartError: A daemon did not come up.
    """
    state = state or state_dir()
    cache = cache or cache_dir()
    layout = Layout(state)
    if (external := external_kubeconfig(layout)) is not None:
        say(f"KUBECONFIG points at {external}: using that cluster, starting nothing")
        return ClusterInfo(kubeconfig=external, host_ip=external_host_ip(), external=True)
    if msg := preflight.check_root(os.geteuid()):
        raise DevclusterError(msg)
    with _locked(state):
        return _up_locked(state, cache, nodes, layout, say)


def _up_locked(state: Path, cache: Path, nodes: Path | None, layout: Layout, say: Say) -> ClusterInfo:
    instance = load_instance(state)
    running = running_components(layout)
    missing = [name for name in COMPONENTS if running[name] is None]
    info = ClusterInfo(layout.kubeconfig, instance.gateway, external=False, state=state, started=len(missing) == len(COMPONENTS))
    if not missing:
        say(f"devcluster already running (state {state}); nothing changed")
        return info

    t0 = time.monotonic()
    bins = binaries_dir(cache)
    _preflight_binaries(cache, bins, say)
    if msg := preflight.check_tool("ip", "iproute2"):
        raise DevclusterError(msg)
    if msg := preflight.check_disk(
        state, preflight.free_bytes(state), preflight.STATE_DISK_BYTES, "the devcluster's state"
    ):
        raise DevclusterError(msg)
    ports = {
        "etcd": [instance.etcd_client_port, instance.etcd_peer_port],
        "kube-apiserver": [instance.apiserver_port],
        "kube-controller-manager": [instance.controller_manager_port],
        "kube-scheduler": [instance.scheduler_port],
    }
    for name in missing:
        for port in ports.get(name, []):
            if preflight.port_in_use(port):
                raise DevclusterError(
                    f"port {port} (for {name}) is taken by another process; stop it or pick another "
                    f"instance with KUBELAB_DEVCLUSTER_INSTANCE=1..9 and its own KUBELAB_STATE"
                )

    save_instance(state, instance)
    pki, specs = prepare_state(instance, layout, nodes)
    say(f"PKI and kubeconfig ready in {state}")
    commands = component_commands(instance, layout, bins, pki, etcd_binary() or "etcd")
    checks = {
        "etcd": lambda: _etcd_ready(instance),
        "kube-apiserver": lambda: _apiserver_ready(instance, layout),
    }
    # etcd first; then the apiserver and, at once, the agent, which retries until the apiserver
    # answers (its Python imports take seconds, so they overlap the apiserver's start-up); the
    # controller-manager and scheduler exit if the apiserver is not there, so they come after it.
    waits = {"etcd": "etcd", "node-agent": "kube-apiserver"}  # after starting X, wait for Y
    for name in ("etcd", "kube-apiserver", "node-agent", "kube-controller-manager", "kube-scheduler"):
        if name not in missing:
            say(f"{name} already running (pid {running[name]})")
        else:
            pid = start_daemon(commands[name], layout.log(name), layout.pid(name))
            say(f"{name} started (pid {pid}, {time.monotonic() - t0:.1f}s)")
        if name in waits:
            ready = waits[name]
            wait_for(ready, checks[ready], READY_TIMEOUT, layout.pid(ready), layout.log(ready))
    names = [s.name for s in specs]
    everyone = tuple((layout.pid(n), layout.log(n)) for n in COMPONENTS)
    if "node-agent" in missing:
        agent_pid = str(pidfile.alive(layout.pid("node-agent")))
        ready_file = layout.agent_state / "ready"
        wait_for(
            "node-agent serving",
            lambda: ready_file.exists() and ready_file.read_text().strip() == agent_pid,
            READY_TIMEOUT, layout.pid("node-agent"), layout.log("node-agent"), also=everyone,
        )
        say(f"node-agent serving ({time.monotonic() - t0:.1f}s)")
    wait_for(
        "nodes Ready and default ServiceAccount",
        lambda: _cluster_ready(instance, layout, names),
        READY_TIMEOUT, layout.pid("node-agent"), layout.log("node-agent"), also=everyone,
    )
    say(f"devcluster ready in {time.monotonic() - t0:.1f}s: nodes {', '.join(names)}; "
        f"export KUBECONFIG={layout.kubeconfig}")
    return info


def down(state: Path | None = None, wipe: bool = False, say: Say = _quiet) -> None:
    """Stop exactly the daemons recorded in the state's pid files, then any leftover pod processes.

    Args:
        state: State folder; default ``$KUBELAB_STATE``.
        wipe: Also remove the state folder (PKI, etcd data, volumes, logs).
        say: Receives one progress line per step.
    """
    state = state or state_dir()
    layout = Layout(state)
    if not state.exists():
        say(f"nothing to stop: {state} does not exist")
        return
    with _locked(state):
        _down_locked(state, layout, wipe, say)


def _down_locked(state: Path, layout: Layout, wipe: bool, say: Say) -> None:
    instance = load_instance(state)
    for name in reversed(COMPONENTS):
        # The agent terminates its pods (grace periods included) before exiting; give it time.
        timeout = 30.0 if name == "node-agent" else 10.0
        if pidfile.stop(layout.pid(name), timeout=timeout):
            say(f"stopped {name}")
    leftovers = cleanup_pod_sandboxes(layout.agent_state)
    if leftovers:
        say(f"cleaned up {leftovers} leftover pod sandbox(es)")
    delete_bridge(instance.bridge)
    if wipe:
        shutil.rmtree(state, ignore_errors=True)
        say(f"removed {state}")


def status(state: Path | None = None) -> tuple[bool, list[str]]:
    """Report each daemon and the apiserver's health.

    Returns:
        ``(running, lines)``: running is True when every daemon runs and the apiserver is ready.
    """
    state = state or state_dir()
    layout = Layout(state)
    if (external := external_kubeconfig(layout)) is not None:
        return True, [f"external cluster: KUBECONFIG={external}"]
    if not state.exists():
        return False, [f"devcluster stopped (no state at {state})"]
    instance = load_instance(state)
    running = running_components(layout)
    lines = [f"{name}: {f'running (pid {pid})' if pid else 'stopped'}" for name, pid in running.items()]
    ok = all(running.values()) and _apiserver_ready(instance, layout)
    head = (
        f"devcluster running: https://127.0.0.1:{instance.apiserver_port}, KUBECONFIG={layout.kubeconfig}, "
        f"pods reach the host at {instance.gateway}"
        if ok
        else "devcluster not running"
    )
    return ok, [head, *lines]


def ensure_cluster(state: Path | None = None, say: Say = _quiet) -> ClusterInfo:
    """Return a usable cluster: ``$KUBECONFIG``'s if set, else the devcluster (started if needed).

    This is what the pytest ``cluster`` fixture and ``make demo`` call.

    Raises:
        DevclusterError: A prerequisite is missing.
        StartError: A daemon did not come up.
    """
    return up(state=state, say=say)
