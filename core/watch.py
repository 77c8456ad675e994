"""LIST-then-WATCH plumbing shared by the cluster cache and the jobs cache.

Both caches read raw JSON (``_preload_content=False``) so that thousands of pods are not turned
into client models on every event; these helpers hold what raw reads need: status checks, line
splitting that survives large objects, ERROR events, and the relist-on-410 retry loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("kubelab.watch")


async def raise_for_status(resp: Any) -> Any:
    """Return a raw (``_preload_content=False``) response, or raise :class:`ApiException` for non-2xx.

    kubernetes_asyncio raises for status codes only when it preloads the body; a raw 403 or 410
    would otherwise be read as an empty list, and a cache would look valid while it is not.
    """
    status = getattr(resp, "status", 200)
    if 200 <= status <= 299:
        return resp
    try:
        body = await resp.read()
    finally:
        resp.release()
    err = ApiException(status=status, reason=getattr(resp, "reason", "") or "")
    err.body = body.decode("utf-8", "replace")
    raise err


async def watch_events(resp: Any) -> AsyncIterator[Mapping[str, Any]]:
    """Yield the events of a raw watch response until the server ends it.

    Raises:
        ApiException: The server answered non-2xx, or sent an ERROR event (410 Gone among them).
    """
    await raise_for_status(resp)
    try:
        # Split lines ourselves: aiohttp's line iterator refuses lines over 128 KiB, and one object
        # with a large annotation or data (a job's files ConfigMap) would stall the watch forever.
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    obj = event.get("object") or {}
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message", "watch error"))
                yield event
    finally:
        resp.release()


async def keep_watching(
    kind: str,
    list_once: Callable[[], Awaitable[str]],
    watch_once: Callable[[str], Awaitable[str]],
) -> None:
    """LIST, then WATCH from the returned resourceVersion, forever.

    Args:
        kind: Name for log lines (``pods``).
        list_once: Replaces the cache's content; returns the list's resourceVersion.
        watch_once: Follows one watch from a resourceVersion; returns the last one seen.

    A 410 (history compacted) starts over with a LIST; other failures retry the watch with
    exponential backoff and jitter, so a restarting API server is not hammered.
    """
    resource_version: str | None = None
    delay = 0.2
    while True:
        try:
            if resource_version is None:
                resource_version = await list_once()
            resource_version = await watch_once(resource_version)
            delay = 0.2
            continue
        except ApiException as e:
            if e.status == 410:
                resource_version = None
                continue
            log.warning("watch %s failed (%s %s); retrying in %.1f s", kind, e.status, e.reason, delay)
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as e:
            log.warning("watch %s interrupted (%s); retrying in %.1f s", kind, e, delay)
        await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not crypto
        delay = min(delay * 2, 10)
