"""``make demo``: the whole platform on one machine, on the real path.

``python -m kubelab.hub_config.demo`` brings up (or reuses) the devcluster, starts the local
OIDC provider and the hub with its proxy, waits until the login page answers, then prints the
URL and the demo accounts. Notebook servers are real processes on the process node, started by
LabSpawner through the Kubernetes API. Ctrl-C stops everything this run started, in reverse
order: the hub (which stops the users' servers), the provider, then the devcluster if this run
brought it up.

It installs nothing: ``make demo`` runs the install steps first (Debian packages, the venv,
``hub_config/oidc/install.sh``, the control-plane binaries).

**Its catalogue** is the shipped example with the storage labs run (:func:`demo_catalogue`):
ReadWriteMany homes, which job pods mount, and a shared ReadWriteMany volume under every home
(``~/shared``, so JupyterLab's file browser shows it), whose claim the demo creates. The
devcluster's provisioner backs RWX claims. ``--config`` (or ``$KUBELAB_CONFIG``) runs another
catalogue instead, as is.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from kubelab.core.catalogue import EXAMPLE_PATH, Catalogue, CatalogueError, load_catalogue
from kubelab.devcluster import DevclusterError, down, ensure_cluster, status
from kubelab.hub_config.provider import (
    DEFAULT_USERS_FILE,
    OidcProvider,
    ProviderError,
    cache_dir,
    ensure_client_secret,
    installed_prefix,
    load_users,
)

HUB_CONFIG = Path(__file__).with_name("jupyterhub_config.py")
#: The demo's shared volume: an RWX claim in the servers' and jobs' namespace, under every home.
DEMO_SHARED_CLAIM = "kubelab-shared"
DEMO_SHARED_SIZE = "5Gi"

Say = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot start; the message says what to do."""


def say(line: str) -> None:
    """Print one progress line, prefixed so it stands out from the daemons' output.

    A terminal closed under the demo must not stop its teardown half-way: a line that cannot be
    written is dropped (BrokenPipeError), and the hub and the provider are still stopped.
    """
    try:
        print(f"[demo] {line}", flush=True)
    except OSError:
        pass


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_http(url: str, timeout: float, alive: Callable[[], bool]) -> None:
    """Wait until ``url`` answers 200.

    Raises:
        DemoError: ``alive()`` turns false, or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise DemoError(f"the process behind {url} exited")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback URL built here)
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not up yet
        time.sleep(0.2)
    raise DemoError(f"{url} did not answer within {timeout:.0f} s")


class HubRunner:
    """``jupyterhub -f hub_config/jupyterhub_config.py`` with the demo's addresses.

    Args:
        state: Folder for the database, cookie secret and log (the hub's working directory).
        public_port: Port of the proxy on 127.0.0.1 (the URL users open).
        hub_ip: Address the hub API binds to; pods reach the hub there.
        hub_port: Port of the hub API.
        env: Extra environment (issuer, secret file, kubeconfig...).
    """

    def __init__(self, *, state: Path, public_port: int, hub_ip: str, hub_port: int, env: dict[str, str]) -> None:
        self.state = state
        self.public_url = f"http://127.0.0.1:{public_port}"
        self.hub_ip = hub_ip
        self.hub_port = hub_port
        self.public_port = public_port
        self.env = env
        self.log_path = state / "hub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        """The hub's command line: the platform config, plus this machine's addresses."""
        bin_dir = Path(sys.executable).parent
        return [
            str(bin_dir / "jupyterhub"),
            "-f",
            str(HUB_CONFIG),
            f"--JupyterHub.bind_url={self.public_url}",
            f"--JupyterHub.hub_bind_url=http://{self.hub_ip}:{self.hub_port}",
            f"--JupyterHub.hub_connect_url=http://{self.hub_ip}:{self.hub_port}",
            f"--JupyterHub.db_url=sqlite:///{self.state / 'jupyterhub.sqlite'}",
            f"--JupyterHub.cookie_secret_file={self.state / 'jupyterhub_cookie_secret'}",
            f"--ConfigurableHTTPProxy.pid_file={self.state / 'proxy.pid'}",
        ]

    def start(self) -> None:
        """Start the hub (its own session, so a terminal's Ctrl-C reaches only the runner)."""
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, **self.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            self.command(), cwd=self.state, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether the hub process is running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM the hub; it stops the users' servers and its proxy. SIGKILL after ``timeout``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._stop_proxy()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _stop_proxy(self) -> None:
        # The hub stops its proxy on a clean exit; after a SIGKILL the pid file says which to stop.
        pid_file = self.state / "proxy.pid"
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass  # no pid file, or already gone

    def last_error(self) -> str:
        """The start-up failure line, or the log's tail."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        lines = [ln for ln in text.splitlines() if "hub start-up failed" in ln]
        return lines[-1] if lines else "\n".join(text.splitlines()[-20:])


def demo_catalogue() -> dict:
    """The demo's catalogue: the example, with RWX homes and a shared RWX volume at ``~/shared``."""
    doc = yaml.safe_load(EXAMPLE_PATH.read_text())
    storage = doc.setdefault("storage", {})
    home = storage.setdefault("home", {})
    home["accessMode"] = "ReadWriteMany"
    storage["shared"] = {"claimName": DEMO_SHARED_CLAIM,
                         "mountPath": f"{home.get('mountPath', '/home/jovyan').rstrip('/')}/shared"}
    return doc


def write_demo_catalogue(state: Path) -> Path:
    """Write :func:`demo_catalogue` into the demo's state folder; return its path."""
    path = state / "catalogue.yaml"
    path.write_text("# Written by `make demo`: the example catalogue, with RWX homes and a shared volume.\n"
                    + yaml.safe_dump(demo_catalogue(), sort_keys=False))
    return path


def ensure_shared_claim(kubeconfig: Path, catalogue: Catalogue, namespace: str = "default") -> str | None:
    """Create the catalogue's shared claim (ReadWriteMany) where servers and jobs run, unless it exists.

    Returns:
        What was done, for the progress line; None without a shared volume.

    Raises:
        DemoError: The API server refused it.
    """
    if catalogue.shared is None:
        return None
    namespace = catalogue.jobs.namespace or namespace
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))
    claim = {"metadata": {"name": catalogue.shared.claim_name, "labels": {"app.kubernetes.io/part-of": "kubelab"}},
             "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": DEMO_SHARED_SIZE}}}}
    try:
        core.create_namespaced_persistent_volume_claim(namespace, claim)
    except ApiException as e:
        if e.status == 409:
            return f"shared volume {namespace}/{catalogue.shared.claim_name} exists"
        raise DemoError(f"cannot create the shared claim {namespace}/{catalogue.shared.claim_name}: "
                        f"{e.status} {e.reason}") from e
    return f"created the shared volume {namespace}/{catalogue.shared.claim_name} (ReadWriteMany, {DEMO_SHARED_SIZE})"


def print_ready(url: str, elapsed: float, state: Path, users_file: Path) -> None:
    """The banner: where to go and who to be."""
    users = load_users(users_file)
    width = max(len(u.name) for u in users) if users else 5
    print(flush=True)
    print(f"  kubelab is ready ({elapsed:.1f} s): open {url}", flush=True)
    print("  Sign in with one of the demo accounts:", flush=True)
    for u in users:
        print(f"    {u.name:<{width}}  password {u.password:<12}  groups: {', '.join(u.groups) or '-'}", flush=True)
    print(f"  Logs: {state / 'hub.log'}, {state / 'provider.log'}", flush=True)
    print("  Press Ctrl-C to stop everything this demo started.", flush=True)
    print(flush=True)


def run(args: argparse.Namespace) -> int:
    """Bring everything up, wait for Ctrl-C, tear down what was started."""
    start = time.monotonic()
    try:
        installed_prefix()
    except ProviderError as e:
        say(f"error: {e}")
        return 1
    for port in (args.port, args.provider_port):
        if not port_is_free("127.0.0.1", port):
            say(f"error: port {port} on 127.0.0.1 is in use; stop what uses it or pass --port/--provider-port")
            return 1

    state = Path(args.state or cache_dir() / "demo")
    state.mkdir(parents=True, exist_ok=True)
    config = Path(args.config).resolve() if args.config else write_demo_catalogue(state)
    secret_file = ensure_client_secret(state / "oidc-client-secret")

    stop = threading.Event()
    # SIGTERM (e.g. from a supervisor) tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    cleanups: list[tuple[str, Callable[[], None]]] = []
    try:
        say("starting the devcluster (control plane + process node)...")
        was_running, _ = status()
        try:
            cluster = ensure_cluster(say=lambda line: say(f"devcluster: {line}"))
        except DevclusterError as e:
            say(f"error: cannot bring up the devcluster: {e}")
            return 1
        except KeyboardInterrupt:
            # Ctrl-C while it was starting: stop the daemons this run had started so far.
            if not was_running:
                say("stopping the devcluster...")
                down(say=lambda line: say(f"devcluster: {line}"))
            raise
        if cluster.started and not cluster.external:
            cleanups.append(("devcluster", lambda: down(cluster.state, say=lambda line: say(f"devcluster: {line}"))))
        try:
            done = ensure_shared_claim(cluster.kubeconfig, load_catalogue(config))
        except (DemoError, CatalogueError) as e:
            say(f"error: {e}")
            return 1
        if done:
            say(done)
        if not port_is_free(cluster.host_ip, args.hub_port):
            say(f"error: port {args.hub_port} on {cluster.host_ip} is in use; pass --hub-port")
            return 1

        public_url = f"http://127.0.0.1:{args.port}"
        provider = OidcProvider(
            port=args.provider_port,
            client_secret_file=secret_file,
            redirect_uris=[f"{public_url}/hub/oauth_callback"],
            post_logout_redirect_uris=[f"{public_url}/hub/login"],
            log_path=state / "provider.log",
            users_file=Path(args.users),
        )
        say(f"starting the OIDC provider at {provider.issuer}...")
        provider.start()
        cleanups.append(("OIDC provider", provider.stop))

        hub = HubRunner(
            state=state,
            public_port=args.port,
            hub_ip=cluster.host_ip,
            hub_port=args.hub_port,
            env={
                "KUBECONFIG": str(cluster.kubeconfig),
                "KUBELAB_CONFIG": str(config),
                "KUBELAB_OIDC_ISSUER": provider.issuer,
                "KUBELAB_OIDC_CLIENT_SECRET_FILE": str(secret_file),
                "KUBELAB_PUBLIC_URL": public_url,
            },
        )
        say(f"starting the hub and its proxy at {public_url} (log: {hub.log_path})...")
        hub.start()
        cleanups.append(("hub", hub.stop))
        try:
            wait_http(f"{public_url}/hub/login", timeout=120, alive=hub.alive)
        except DemoError as e:
            say(f"error: {e}: {hub.last_error()}")
            return 1

        print_ready(public_url, time.monotonic() - start, state, Path(args.users))
        while not stop.wait(1.0):
            if not hub.alive():
                say(f"the hub exited unexpectedly: {hub.last_error()}")
                return 1
        return 0
    except KeyboardInterrupt:
        print(flush=True)
        return 0
    finally:
        # Ctrl-C again during teardown must not leave half of it behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name, cleanup in reversed(cleanups):
            say(f"stopping the {name}...")
            cleanup()
        if cleanups:
            say("stopped everything this demo started")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (the defaults are what the README shows)."""
    p = argparse.ArgumentParser(prog="python -m kubelab.hub_config.demo", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("KUBELAB_DEMO_PORT", 8000)), help="public port on 127.0.0.1 (default 8000)")
    p.add_argument("--provider-port", type=int, default=int(os.environ.get("KUBELAB_DEMO_OIDC_PORT", 9000)), help="OIDC provider port on 127.0.0.1 (default 9000)")
    p.add_argument("--hub-port", type=int, default=int(os.environ.get("KUBELAB_DEMO_HUB_PORT", 8081)), help="hub API port on the pod bridge address (default 8081)")
    p.add_argument("--config", default=os.environ.get("KUBELAB_CONFIG") or None,
                   help="platform catalogue (default: $KUBELAB_CONFIG, else the example with RWX homes and a shared volume)")
    p.add_argument("--users", default=str(DEFAULT_USERS_FILE), help="the provider's accounts (default: hub_config/oidc/users.yaml)")
    p.add_argument("--state", default=os.environ.get("KUBELAB_DEMO_STATE"), help="folder for the hub's database and logs (default $KUBELAB_CACHE/demo)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``make demo``."""
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
