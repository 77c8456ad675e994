"""The jobs service's REST API: tornado handlers under ``/hub/api/kubelab/`` (docs/jobs.md).

Handlers only authenticate (JupyterHub's own tokens and scopes), parse strictly, call
:class:`~kubelab.jobs.service.JobsService` and turn its exceptions into JSON answers:

======================  =====  ===========================================================
exception               code   body
======================  =====  ===========================================================
JobSpecError            400    ``field`` names the JobSpec field (``(body)`` for the body)
PermissionError         403    policy, scope, or the cluster refused
QuotaExceeded           429    full now (with ``Retry-After``); 403 when it can never fit
TooManyStreams          429    over the per-user or global cap of followed streams
JobNotFound             404    also for another user's job: names never leak
JobExists               409
PlatformUnavailable     503    the cluster cannot be reached; nothing was created
RuntimeError            503    the cluster failed; nothing is left behind
======================  =====  ===========================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from kubelab.core.home import HomeClaimError
from kubelab.core.metrics import count_quota_refusal
from kubelab.core.naming import JOBS_ADMIN_SCOPE, JOBS_SCOPE
from kubelab.core.platform import PlatformUnavailable
from kubelab.core.quota import QuotaExceeded
from kubelab.jobs.service import JobExists, JobNotFound, JobsService, TooManyStreams
from kubelab.jobs.spec import MAX_BODY_BYTES, JobSpecError

log = logging.getLogger("kubelab.jobs.handlers")

API_PREFIX = "/api/kubelab"
#: Longest long-poll of ``GET jobs/<name>?wait=<s>``.
MAX_WAIT_SECONDS = 60
#: Largest ``tail`` of a log request.
MAX_TAIL_LINES = 100_000
_UINT = re.compile(r"[0-9]{1,9}")
_NAME = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"


def parse_uint(value: str, field: str, maximum: int) -> int:
    """Parse a non-negative decimal integer strictly (no sign, blanks or other digits).

    Raises:
        JobSpecError: Not such a number, or over ``maximum`` (names the field and the range).
    """
    if not _UINT.fullmatch(value) or int(value) > maximum:
        raise JobSpecError(field, f"{value!r} is not allowed; allowed: an integer 0..{maximum}")
    return int(value)


class JobsHandlerBase(APIHandler):
    """Authenticates with JupyterHub (tokens and scopes) and answers errors as JSON."""

    service: JobsService

    def initialize(self, service: JobsService) -> None:
        self.service = service

    def fail(self, status: int, message: str, field: str | None = None, retry_after: int | None = None) -> None:
        """Finish with a JSON error body naming ``field`` (400s)."""
        body: dict[str, Any] = {"status": status, "message": message}
        if field is not None:
            body["field"] = field
        self.set_status(status)
        if retry_after is not None:
            self.set_header("Retry-After", str(retry_after))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def who(self, *, admin_param: str | None = None) -> tuple[str, list[str], bool] | None:
        """(user name, groups, is jobs-admin) of the caller; answers 403/503 and returns None if not allowed.

        Args:
            admin_param: ``?user=`` value: an admin acts on that user's jobs.
        """
        user = self.current_user
        scopes = getattr(self, "parsed_scopes", {}) or {}
        if user is None:
            self.fail(403, "Missing or invalid credentials.")
            return None
        if JOBS_SCOPE not in scopes:
            self.fail(403, f"this token lacks the scope {JOBS_SCOPE}")
            return None
        is_admin = JOBS_ADMIN_SCOPE in scopes
        name = user.name
        groups = [g.name for g in getattr(user, "groups", []) or []]
        if admin_param:
            if not is_admin:
                self.fail(403, f"?user= needs the scope {JOBS_ADMIN_SCOPE}")
                return None
            name, groups = admin_param, []
        if not self.service.ready:
            try:
                await self.service.platform.ready(timeout=5)
            except PlatformUnavailable as e:
                self.fail(503, f"the jobs service cannot reach the cluster: {e}")
                return None
        return name, groups, is_admin

    def job_error(self, e: Exception, name: str) -> bool:
        """Answer the service's exception ``e``; False when it is not one of the service's."""
        if isinstance(e, JobSpecError):
            self.fail(400, str(e), field=e.field)
        elif isinstance(e, QuotaExceeded):
            count_quota_refusal("job", e)
            self.fail(e.status, e.message, retry_after=e.retry_after)
        elif isinstance(e, TooManyStreams):
            self.fail(429, str(e), retry_after=5)
        elif isinstance(e, PermissionError):
            self.fail(403, str(e))
        elif isinstance(e, JobNotFound):
            self.fail(404, f"no job '{name}'")
        elif isinstance(e, JobExists):
            self.fail(409, str(e))
        elif isinstance(e, HomeClaimError):
            self.fail(e.status, e.message)
        elif isinstance(e, RuntimeError):
            log.error("request by %s failed: %s", self.current_user.name if self.current_user else "?", e)
            self.fail(503, str(e))
        else:
            return False
        return True


class OptionsHandler(JobsHandlerBase):
    async def get(self) -> None:
        who = await self.who()
        if who:
            self.finish(self.service.options(*who))


class JobsHandler(JobsHandlerBase):
    async def get(self) -> None:
        all_users = self.get_argument("all", "0") in ("1", "true")
        who = await self.who()
        if not who:
            return
        if all_users and not who[2]:
            self.fail(403, f"?all=1 needs the scope {JOBS_ADMIN_SCOPE}")
            return
        self.finish({"jobs": [s.to_dict() for s in self.service.list(who[0], all_users)]})

    async def post(self) -> None:
        who = await self.who()
        if not who:
            return
        if len(self.request.body) > MAX_BODY_BYTES:
            self.fail(413, f"the body holds {len(self.request.body)} bytes; allowed: at most {MAX_BODY_BYTES}",
                      field="(body)")
            return
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            self.fail(400, "the body is not valid JSON", field="(body)")
            return
        try:
            # Ranks send their metrics to the hub as notebooks reach it (its API URL).
            status = await self.service.submit(who[0], who[1], body, metrics_api_url=self.hub.api_url)
        except (JobSpecError, QuotaExceeded, PermissionError, JobExists, RuntimeError) as e:
            self.job_error(e, str(body.get("name", "")) if isinstance(body, dict) else "")
            return
        self.set_status(201)
        self.set_header("Location", f"{self.hub.base_url}api/kubelab/jobs/{status.name}")
        self.finish(status.to_dict())


class JobHandler(JobsHandlerBase):
    async def get(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            wait = self.get_argument("wait", None)
            if wait is None:
                status = self.service.get(who[0], name)
            else:
                status = await self.service.wait(who[0], name, parse_uint(wait, "wait", MAX_WAIT_SECONDS))
        except (JobSpecError, JobNotFound) as e:
            self.job_error(e, name)
            return
        self.finish(status.to_dict())

    async def delete(self, name: str) -> None:
        """Delete the job with everything it made (a running job is stopped by this too)."""
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            status = await self.service.delete(who[0], name)
        except (JobNotFound, RuntimeError) as e:
            self.job_error(e, name)
            return
        self.finish(status.to_dict())


class CancelHandler(JobsHandlerBase):
    async def post(self, name: str) -> None:
        """Stop the job; its record, logs and metrics stay until it is deleted."""
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            status = await self.service.cancel(who[0], name)
        except (JobNotFound, RuntimeError) as e:
            self.job_error(e, name)
            return
        self.finish(status.to_dict())


class LogsHandler(JobsHandlerBase):
    """A rank's log; ``follow=1`` streams it and holds one of the user's stream slots meanwhile.

    A client that goes away ends the stream at once (:meth:`on_connection_close` cancels it),
    even while the container prints nothing, so its slot and its connection are freed.
    """

    _stream: asyncio.Task[None] | None = None

    async def get(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            rank = parse_uint(self.get_argument("rank", "0"), "rank", 100_000)
            tail_arg = self.get_argument("tail", "")
            tail = parse_uint(tail_arg, "tail", MAX_TAIL_LINES) if tail_arg else None
            status = self.service.get(who[0], name)
            if rank >= status.workers:
                raise JobSpecError("rank", f"{rank} is not allowed; allowed: 0..{status.workers - 1}")
        except (JobSpecError, JobNotFound) as e:
            self.job_error(e, name)
            return
        follow = self.get_argument("follow", "0") in ("1", "true")
        if not follow:
            await self._send(who[0], name, rank, tail, follow=False)
            return
        try:
            with self.service.streams.hold(who[0]):
                # Send the headers now: proxies in between give up on a response that has not
                # started, and a followed rank may print nothing for a long time.
                self.set_header("Content-Type", "text/plain; charset=utf-8")
                await self.flush()
                self._stream = asyncio.ensure_future(self._send(who[0], name, rank, tail, follow=True))
                try:
                    await self._stream
                except asyncio.CancelledError:
                    return  # the client went away
        except TooManyStreams as e:
            self.job_error(e, name)

    async def _send(self, user: str, name: str, rank: int, tail: int | None, *, follow: bool) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        lines = self.service.logs(user, name, rank, follow=follow, tail=tail)
        try:
            async for line in lines:
                self.write(line + "\n")
                if follow:
                    await self.flush()
        except JobNotFound as e:
            if not follow:
                self.fail(404, str(e.args[0]) if e.args else f"no job '{name}'")
                return
        except StreamClosedError:
            return  # the client went away
        finally:
            await lines.aclose()
        self.finish()

    def on_connection_close(self) -> None:
        if self._stream is not None and not self._stream.done():
            self._stream.cancel()
        super().on_connection_close()


def handlers(service: JobsService) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    """The jobs service's routes (JupyterHub adds the hub prefix)."""
    kwargs = {"service": service}
    return [
        (rf"{API_PREFIX}/options", OptionsHandler, kwargs),
        (rf"{API_PREFIX}/jobs", JobsHandler, kwargs),
        (rf"{API_PREFIX}/jobs/({_NAME})", JobHandler, kwargs),
        (rf"{API_PREFIX}/jobs/({_NAME})/logs", LogsHandler, kwargs),
        (rf"{API_PREFIX}/jobs/({_NAME})/cancel", CancelHandler, kwargs),
    ]
