"""``make demo``'s runner: up on the real path, a usable login page, Ctrl-C stops what it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from kubelab.hub_config.provider import load_users
from tests.hub.hubtools import free_port

pytestmark = pytest.mark.integration


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def test_demo_runs_and_ctrl_c_stops_it(cluster: Any, provider_installed: Path, tmp_path: Path) -> None:
    port, provider_port, hub_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "kubelab.hub_config.demo", f"--port={port}", f"--provider-port={provider_port}",
           f"--hub-port={hub_port}", f"--state={tmp_path}"]
    started = time.monotonic()
    # SIGINT back to its default in the child: a shell's background job (`make test &`) starts
    # with it ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "KUBECONFIG": ""},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "kubelab is ready" in line or proc.poll() is not None:
                break
        ready = time.monotonic() - started
        text = "".join(lines)
        assert "kubelab is ready" in text and f"open http://127.0.0.1:{port}" in text, text
        print(f"\ndemo: usable login page {ready:.1f} s after `python -m kubelab.hub_config.demo` (devcluster already up)")
        # The banner lists the demo accounts with their groups.
        for _ in range(4):
            lines.append(proc.stdout.readline())
        banner = "".join(lines)
        for user in load_users():
            assert re.search(rf"{user.name}\s+password {re.escape(user.password)}\s+groups: {', '.join(user.groups)}", banner)
        r = requests.get(f"http://127.0.0.1:{port}/hub/login", timeout=10)
        assert r.ok and "Sign in with Lab SSO" in r.text
        assert port_open(provider_port)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the demo's SIGTERM teardown, so the failure leaves no hub behind
            out, _ = proc.communicate(timeout=90)
            raise AssertionError(f"Ctrl-C did not stop the demo within 90 s:\n{out[-3000:]}") from None
    assert proc.returncode == 0, out
    assert "stopped everything this demo started" in out
    # Nothing it started is left: hub, proxy and provider ports are closed.
    for p in (port, provider_port):
        assert not port_open(p), f"port {p} still open after Ctrl-C"
    assert not port_open(hub_port, cluster.host_ip)
    # It reused the running devcluster, so it must not have stopped it.
    assert "stopping the devcluster" not in out
