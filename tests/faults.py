"""A FAULT-INJECTING loopback proxy in front of the devcluster's kube-apiserver (a test tool).

The real API server cannot be made to answer 500 on demand, so this proxy stands between a
client (the hub) and it: it forwards every request over TLS with the devcluster's admin
credentials, streams every answer back (watches included), and answers with an injected fault
instead for requests that match a rule. Nothing else is changed; what reaches the client
otherwise is exactly what the API server sent.

Usage::

    with FaultProxy(cluster.kubeconfig) as proxy:
        proxy.fail("PATCH", r"/configmaps/", status=500, times=8)
        hub = HubProcess(..., env={"KUBECONFIG": str(proxy.kubeconfig)})
        ...
        assert proxy.injected("PATCH") == 8

The proxy listens on plain HTTP on 127.0.0.1 only; its kubeconfig has no credentials of its own.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.harness import free_port

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
              "content-length", "proxy-authorization", "proxy-authenticate"}


@dataclass
class Rule:
    """Answer ``status`` to the next ``times`` requests whose method and path match."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int
    hits: list[str] = field(default_factory=list)


class FaultProxy:
    """See the module docs.

    Args:
        kubeconfig: The devcluster's kubeconfig (server, CA and admin client certificate).
    """

    def __init__(self, kubeconfig: str | Path) -> None:
        raw = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = raw["clusters"][0]["cluster"]
        user = raw["users"][0]["user"]
        self.upstream = cluster["server"].rstrip("/")
        self._dir = Path(tempfile.mkdtemp(prefix="kubelab-faults-"))
        files = {"ca.crt": cluster["certificate-authority-data"], "client.crt": user["client-certificate-data"],
                 "client.key": user["client-key-data"]}
        for name, data in files.items():
            (self._dir / name).write_bytes(base64.b64decode(data))
        self.port = free_port()
        self.kubeconfig = self._dir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "faults",
            "clusters": [{"name": "faults", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "none", "user": {}}],
            "contexts": [{"name": "faults", "context": {"cluster": "faults", "user": "none"}}],
        }))
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    # -- faults --------------------------------------------------------------------------------

    def fail(self, method: str, path: str, *, status: int = 500, times: int = 1) -> Rule:
        """Answer ``status`` to the next ``times`` requests of ``method`` whose path matches ``path``."""
        rule = Rule(method.upper(), re.compile(path), status, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def injected(self, method: str | None = None) -> int:
        """How many faults were injected (for ``method``, or all)."""
        with self._lock:
            return sum(len(r.hits) for r in self.rules if method is None or r.method == method.upper())

    def _fault_for(self, method: str, path: str) -> int | None:
        with self._lock:
            self.requests.append((method, path))
            for rule in self.rules:
                if rule.method == method and rule.path.search(path) and len(rule.hits) < rule.times:
                    rule.hits.append(path)
                    return rule.status
        return None

    # -- serving -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        status = self._fault_for(request.method, request.path)
        if status is not None:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                                      "reason": "InternalError", "message": "injected by tests/faults.py"},
                                     status=status)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None, ssl=self._ssl, timeout=aiohttp.ClientTimeout(total=None)
                                         ) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _serve(self) -> None:
        self._ssl = ssl.create_default_context(cafile=str(self._dir / "ca.crt"))
        self._ssl.load_cert_chain(str(self._dir / "client.crt"), str(self._dir / "client.key"))
        self._session: aiohttp.ClientSession | None = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        await self._session.close()

    def start(self) -> FaultProxy:
        """Serve in a background thread; return once listening."""
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
