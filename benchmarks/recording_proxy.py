"""A recording loopback proxy in front of the devcluster's API server, for the benchmarks.

A hub under test gets :meth:`RecordingProxy.kubeconfig` (plain HTTP on 127.0.0.1); the proxy
forwards every request to the real API server over mTLS and records its time, method, path and
whether it is a watch. The count of Kubernetes API requests a hub makes is read from here, so no
counter lives in kubelab's own code.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import tempfile
import threading
import time
from pathlib import Path

import yaml

#: One recorded request: (monotonic time, method, path, is a watch).
Request = tuple[float, str, str, bool]


class RecordingProxy:
    """Plain HTTP on 127.0.0.1 → the API server of ``kubeconfig`` over mTLS, recording every request.

    Args:
        kubeconfig: The devcluster's admin kubeconfig (certificates inline, as it writes them).
    """

    def __init__(self, kubeconfig: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        self.upstream = cfg["clusters"][0]["cluster"]["server"]
        self.dir = Path(tempfile.mkdtemp(prefix="kl-proxy-"))
        user = cfg["users"][0]["user"]
        for name, key in (("ca.crt", cfg["clusters"][0]["cluster"]["certificate-authority-data"]),
                          ("client.crt", user["client-certificate-data"]), ("client.key", user["client-key-data"])):
            (self.dir / name).write_bytes(base64.b64decode(key))
        self.requests: list[Request] = []
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name="recording-proxy").start()
        if not self._ready.wait(10):
            raise RuntimeError("the recording proxy did not start")

    def kubeconfig(self) -> Path:
        """A kubeconfig that sends a client through this proxy."""
        path = self.dir / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "p",
            "clusters": [{"name": "p", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "p", "user": {}}],
            "contexts": [{"name": "p", "context": {"cluster": "p", "user": "p"}}],
        }))
        return path

    def _serve(self) -> None:
        from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

        async def main() -> None:
            ctx = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
            ctx.load_cert_chain(str(self.dir / "client.crt"), str(self.dir / "client.key"))
            session = ClientSession(connector=TCPConnector(ssl=ctx, limit=0), timeout=ClientTimeout(total=None),
                                    auto_decompress=False)

            async def handle(request: web.Request) -> web.StreamResponse:
                watch = request.query.get("watch", "").lower() in ("true", "1")
                self.requests.append((time.monotonic(), request.method, request.path, watch))
                headers = {k: v for k, v in request.headers.items()
                           if k.lower() not in ("host", "content-length", "transfer-encoding")}
                async with session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                           data=await request.read()) as up:
                    resp = web.StreamResponse(status=up.status, headers={
                        k: v for k, v in up.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection")})
                    await resp.prepare(request)
                    try:
                        async for chunk in up.content.iter_any():
                            await resp.write(chunk)
                        await resp.write_eof()
                    except (ConnectionError, ClientError):
                        pass  # the client closed a watch; nothing to relay
                    return resp

            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())

    def between(self, t0: float, t1: float | None = None) -> list[tuple[str, str, bool]]:
        """(method, path, watch) of the requests made from ``t0`` (monotonic) until ``t1``."""
        return [(m, p, w) for t, m, p, w in list(self.requests) if t >= t0 and (t1 is None or t <= t1)]


def normalise(method: str, path: str, watch: bool) -> str:
    """``POST /api/v1/namespaces/{ns}/pods``: a request with its namespace and object name folded."""
    path = re.sub(r"/namespaces/[^/]+", "/namespaces/{ns}", path)
    path = re.sub(r"/(pods|persistentvolumeclaims|events|nodes|configmaps|secrets|services|jobs)/[^/]+",
                  r"/\1/{name}", path)
    return f"{method} {path}{' (watch)' if watch else ''}"


def is_cache_feed(key: str) -> bool:
    """Whether a normalised request is a LIST or WATCH of a collection (feeding a watch cache)."""
    method, path = key.split(" ")[:2]
    return method == "GET" and not path.endswith(("{name}", "{ns}")) and "{name}/" not in path
