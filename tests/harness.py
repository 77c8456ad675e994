"""Run a real JupyterHub (with the npm configurable-http-proxy) as a subprocess for integration tests.

Usage::

    from tests.harness import HubProcess

    hub = HubProcess(
        config='c.JupyterHub.authenticator_class = "dummy"\\n',
        connect_ip=cluster.host_ip,          # pods reach the hub here
        env={"KUBECONFIG": str(cluster.kubeconfig)},
    )
    hub.start()                              # returns once the REST API answers
    try:
        r = hub.api("POST", "/users/alice/server", json={"profile": "cpu-small"})
        token = hub.user_token("alice")      # a token acting as alice
        r = hub.api("GET", "/user", token=token)
    finally:
        hub.stop()                           # stops every server first, then the hub

or ``with HubProcess(config=...) as hub: ...``.

What the harness sets (before your config text, so your text may override any of it):
    * free ports for the public proxy (``hub.url``, on 127.0.0.1), the proxy API and the hub;
    * the hub binds to ``connect_ip`` (default 127.0.0.1) and advertises
      ``hub_connect_url=http://<connect_ip>:<port>`` so that pods on the process node reach it;
    * sqlite database, cookie secret and pid files in ``workdir`` (a fresh temp dir by default);
    * the npm ``configurable-http-proxy`` that ``make proxy`` (``hub_config/chp/install.sh``)
      installs, the proxy z2jh runs; it streams event streams (spawn progress) as they happen.

What it adds after your config text (appended, so it never replaces your lists):
    * a service ``kubelab-harness`` whose token (``hub.token``) holds admin scopes, via the role
      ``kubelab-harness``. ``hub.api()`` uses it unless another token is passed.

The hub's stdout and stderr go to ``hub.log_path``; :meth:`HubProcess.log_text` reads it and
:meth:`HubProcess.start` includes its tail in the error when the hub fails to come up. The
proxy's output goes to ``hub.proxy_log_path`` (:meth:`HubProcess.proxy_log_text`).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from kubelab.hub_config.proxy import chp_command

HARNESS_SERVICE = "kubelab-harness"
#: Where the browser tests save their screenshots: ``build/screenshots`` (ignored by git), so a
#: test run leaves the tree clean; ``make screenshots`` sets ``KUBELAB_SCREENSHOTS`` to
#: ``docs/screenshots`` to refresh the documentation's.
SCREENSHOTS = Path(os.environ.get("KUBELAB_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "build" / "screenshots")
_ADMIN_SCOPES = [
    "admin:users",
    "admin:servers",
    "admin:groups",
    "tokens",
    "read:hub",
    "access:servers",
    "proxy",
    "read:roles",
]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, read from ``/proc``.

    JupyterHub starts its managed services (the idle culler) in sessions of their own, so a
    SIGKILL of the hub's process group misses them; a crash test kills these too, as the end of
    a hub's container would.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class HubProcess:
    """A JupyterHub subprocess with its proxy, driven through its REST API.

    Args:
        config: Text of a ``jupyterhub_config.py`` (use ``c``), run after the harness defaults.
        connect_ip: Address the hub binds to and advertises to pods (``cluster.host_ip``).
        workdir: Folder for the database, secrets and log; a fresh temp dir when None.
        env: Extra environment for the hub (e.g. ``KUBECONFIG``).
        python: Interpreter that runs ``-m jupyterhub``; default ``sys.executable``.

    Attributes:
        url: Public URL of the proxy, e.g. ``http://127.0.0.1:41234`` (the browser's entry).
        api_url: ``<url>/hub/api``.
        hub_api_url: The hub's own API URL, not through the proxy (``http://<connect_ip>:<port>/hub/api``).
        token: Admin API token (service ``kubelab-harness``).
        log_path: File receiving the hub's output.
        proxy_log_path: File receiving the proxy's output.
    """

    def __init__(
        self,
        config: str = "",
        *,
        connect_ip: str = "127.0.0.1",
        workdir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.config = config
        self.connect_ip = connect_ip
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubelab-hub-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.python = python
        self.port = free_port()
        self.proxy_api_port = free_port()
        self.hub_port = free_port(connect_ip)
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/hub/api"
        self.hub_api_url = f"http://{connect_ip}:{self.hub_port}/hub/api"
        self.token = secrets.token_hex(24)
        self.log_path = self.workdir / "hub.log"
        self.proxy_log_path = self.workdir / "proxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def config_text(self) -> str:
        """The full config file the hub runs: harness defaults, your text, then the admin service."""
        # The hub appends the proxy's arguments; sh hands them on and sends its output to its own log.
        proxy = ["/bin/sh", "-c", f'exec "$0" "$@" >>"{self.proxy_log_path}" 2>&1', *chp_command()]
        w = self.workdir
        head = f"""
# --- kubelab test harness defaults (may be overridden below) ---
c.JupyterHub.bind_url = "http://127.0.0.1:{self.port}"
c.JupyterHub.hub_bind_url = "http://{self.connect_ip}:{self.hub_port}"
c.JupyterHub.hub_connect_url = "http://{self.connect_ip}:{self.hub_port}"
c.JupyterHub.db_url = "sqlite:///{w / "jupyterhub.sqlite"}"
c.JupyterHub.cookie_secret_file = "{w / "cookie_secret"}"
c.JupyterHub.pid_file = "{w / "hub.pid"}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = "{w / "proxy.pid"}"
c.ConfigurableHTTPProxy.command = {proxy!r}
c.ConfigurableHTTPProxy.auth_token = "{secrets.token_hex(16)}"
c.JupyterHub.log_level = "DEBUG"
# --- test config ---
"""
        tail = f"""
# --- kubelab test harness admin service (appended) ---
c.JupyterHub.services.append({{"name": "{HARNESS_SERVICE}", "api_token": "{self.token}"}})
c.JupyterHub.load_roles.append(
    {{"name": "{HARNESS_SERVICE}", "scopes": {_ADMIN_SCOPES!r}, "services": ["{HARNESS_SERVICE}"]}}
)
"""
        return head + self.config + "\n" + tail

    def start(self, timeout: float = 60) -> HubProcess:
        """Write the config, launch the hub and wait until ``GET /hub/api/`` answers.

        Args:
            timeout: Seconds to wait for the API.

        Returns:
            self, for chaining.

        Raises:
            RuntimeError: The hub exited or did not answer in time; the message holds the log tail.
        """
        cfg = self.workdir / "jupyterhub_config.py"
        cfg.write_text(self.config_text())
        env = {**os.environ, **self.env}
        env["PATH"] = f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self.proc = subprocess.Popen(
            [self.python, "-m", "jupyterhub", "-f", str(cfg)],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() can reach the proxy too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()  # closes the log and reaps a proxy the hub may have started
                raise RuntimeError(f"hub exited with {code}:\n{self.log_tail()}\nproxy log:\n{self.proxy_log_text()[-3000:]}")
            try:
                if requests.get(self.api_url + "/", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass  # not listening yet
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"hub did not answer within {timeout} s:\n{self.log_tail()}\n"
                           f"proxy log:\n{self.proxy_log_text()[-3000:]}")

    def stop(self, timeout: float = 60) -> None:
        """Stop every server (so no pod is orphaned), then the hub and its proxy. Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.stop_all_servers(timeout=timeout)
            except (requests.RequestException, TimeoutError) as e:
                print(f"harness: could not stop all servers: {e}", file=sys.stderr)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                below = descendants(self.proc.pid)
                os.killpg(self.proc.pid, signal.SIGKILL)
                _kill_all(below)
                self.proc.wait(timeout=5)
        # the proxy runs in the hub's session; make sure it is gone even if the hub was killed
        proxy_pid = self.workdir / "proxy.pid"
        if proxy_pid.exists():
            try:
                os.kill(int(proxy_pid.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError, PermissionError):
                pass  # already gone
        self._log_file.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the hub and its proxy at once, as a crash would: nothing is stopped or cleaned up.

        Servers and jobs keep running in the cluster; :meth:`start` brings the hub back on the same
        database, ports and secrets.
        """
        if self.proc is None:
            return
        below = descendants(self.proc.pid)  # the services, in sessions of their own
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the proxy runs in the hub's process group
        except ProcessLookupError:
            pass  # already gone
        _kill_all(below)
        self.proc.wait(timeout=10)
        self._log_file.close()
        self.proc = None

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST helpers --------------------------------------------------------------------------

    def api(self, method: str, path: str, *, token: str | None = None, timeout: float = 30, **kw: Any) -> requests.Response:
        """Call the hub REST API: ``hub.api("POST", "/users/alice/server", json={...})``.

        Args:
            method: HTTP method.
            path: Path below ``/hub/api``.
            token: Token to use; the admin token when None.
            timeout: Request timeout in seconds.
            **kw: Passed to ``requests.request`` (``json=``, ``params=``...).
        """
        headers = {"Authorization": f"token {token or self.token}", **kw.pop("headers", {})}
        return requests.request(method, self.api_url + path, headers=headers, timeout=timeout, **kw)

    def ensure_user(self, name: str, groups: list[str] | tuple[str, ...] = ()) -> None:
        """Create user ``name`` (if missing) and add them to ``groups`` (created if missing)."""
        self.api("POST", f"/users/{name}")  # 409 when it exists, fine
        for group in groups:
            self.api("POST", f"/groups/{group}")
            r = self.api("POST", f"/groups/{group}/users", json={"users": [name]})
            r.raise_for_status()

    def user_token(self, name: str, scopes: list[str] | None = None) -> str:
        """Create and return an API token for user ``name`` (default scopes: the user's own)."""
        body: dict[str, Any] = {"note": "kubelab test harness"}
        if scopes is not None:
            body["scopes"] = scopes
        r = self.api("POST", f"/users/{name}/tokens", json=body)
        r.raise_for_status()
        return r.json()["token"]

    def wait_server(self, user: str, server: str = "", timeout: float = 120) -> dict[str, Any]:
        """Wait until ``user``'s server is ready and return its model.

        Raises:
            TimeoutError: It is not ready in time (or stopped: the message holds its state).
        """
        deadline = time.monotonic() + timeout
        model: dict[str, Any] = {}
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json().get("servers", {}).get(server, {})
            if model.get("ready"):
                return model
            time.sleep(0.3)
        raise TimeoutError(f"server {user}/{server!r} not ready in {timeout} s: {model}")

    def stop_server(self, user: str, server: str = "", timeout: float = 60) -> None:
        """Stop one server and wait until the hub reports it gone."""
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        self.api("DELETE", path).raise_for_status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            servers = self.api("GET", f"/users/{user}").json().get("servers", {})
            if server not in servers or not (servers[server].get("ready") or servers[server].get("pending")):
                return
            time.sleep(0.3)
        raise TimeoutError(f"server {user}/{server!r} did not stop in {timeout} s")

    def stop_all_servers(self, timeout: float = 60) -> None:
        """Stop every user's every server and wait until none is left.

        Raises:
            TimeoutError: Some server is still there after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            users = self.api("GET", "/users", params={"state": "active"}).json()
            if isinstance(users, dict):  # paginated form
                users = users.get("items", [])
            live = [(u["name"], s) for u in users for s in (u.get("servers") or {})]
            if not live:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"servers still present: {live}")
            for user, server in live:
                path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
                self.api("DELETE", path)  # 400/202/204 are all fine while it is stopping
            time.sleep(0.5)

    # -- logs ----------------------------------------------------------------------------------

    def log_text(self) -> str:
        """The hub log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def proxy_log_text(self) -> str:
        """The proxy's log so far."""
        return self.proxy_log_path.read_text(errors="replace") if self.proxy_log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the hub log."""
        return "\n".join(self.log_text().splitlines()[-lines:])
