"""REST routes of job metrics (``docs/jobs.md``): read and follow for users, ingest for rank pods.

``GET /hub/api/kubelab/jobs/<name>/metrics[?follow=1&since=N&user=<name>]`` is authenticated like
every jobs route (JupyterHub token with ``custom:kubelab:jobs``; another user's job is 404).
``POST .../metrics/ingest`` is :class:`~kubelab.jobs.metrics_service.IngestHandler`, authenticated
by the job's own ingest token only.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado import web
from tornado.iostream import StreamClosedError

from kubelab.jobs.builders.common import job_id
from kubelab.jobs.handlers import API_PREFIX, JobsHandlerBase, parse_uint
from kubelab.jobs.metrics_service import IngestHandler, MetricsHub
from kubelab.jobs.metricstore import no_metrics
from kubelab.jobs.service import JobNotFound, JobsService
from kubelab.jobs.spec import JobSpecError

_NAME = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
#: Followed metric streams one user may hold open (each is one idle connection most of the time).
MAX_FOLLOWERS_PER_USER = 20


class MetricsHandler(JobsHandlerBase):
    """A job's series; ``follow=1`` streams new points as JSON lines until the job ends."""

    _stream: asyncio.Task[None] | None = None
    _open: dict[str, int] = {}

    async def get(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        user = who[0]
        try:
            status = self.service.get(user, name)
            since = parse_uint(self.get_argument("since", "0"), "since", 2**53)
        except (JobSpecError, JobNotFound) as e:
            self.job_error(e, name)
            return
        hub: MetricsHub = self.service.metrics
        jid = job_id(status.user, name)
        follow = self.get_argument("follow", "0") in ("1", "true")
        self.set_header("Cache-Control", "no-store")
        if not follow:
            snapshot = await hub.snapshot(jid, status.user)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(snapshot if snapshot is not None else no_metrics(name)))
            return
        if self._open.get(user, 0) >= MAX_FOLLOWERS_PER_USER:
            self.fail(429, f"you already follow the metrics of {MAX_FOLLOWERS_PER_USER} jobs; close one first",
                      retry_after=5)
            return
        self._open[user] = self._open.get(user, 0) + 1
        try:
            self.set_header("Content-Type", "application/x-ndjson")
            first = await hub.snapshot(jid, status.user) if not since else None
            if first is not None or not since:
                body = first if first is not None else no_metrics(name)
                self.write(json.dumps(body) + "\n")
                since = int(body.get("seq") or 0)
            await self.flush()
            self._stream = asyncio.ensure_future(self._send(hub, jid, status.user, name, since))
            try:
                await self._stream
            except asyncio.CancelledError:
                return  # the client went away
        except StreamClosedError:
            return
        finally:
            self._open[user] -= 1
            if not self._open[user]:
                del self._open[user]

    def _done(self, user: str, name: str) -> bool:
        try:
            return self.service.get(user, name).done
        except JobNotFound:
            return True  # deleted meanwhile

    async def _send(self, hub: MetricsHub, jid: str, owner: str, name: str, since: int) -> None:
        async for item in hub.follow(jid, owner, since, lambda: self._done(owner, name)):
            self.write(json.dumps(item) + "\n")
            await self.flush()
        self.finish()

    def on_connection_close(self) -> None:
        if self._stream is not None and not self._stream.done():
            self._stream.cancel()
        super().on_connection_close()


def metrics_handlers(service: JobsService) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    """The metrics routes; ``service.metrics`` is the hub's :class:`MetricsHub`."""
    return [
        (rf"{API_PREFIX}/jobs/({_NAME})/metrics", MetricsHandler, {"service": service}),
        (rf"{API_PREFIX}/jobs/({_NAME})/metrics/ingest", IngestHandler, {"service": service}),
    ]
