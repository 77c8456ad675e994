"""REST routes of sweeps (``docs/jobs.md``, Sweeps), authenticated like every jobs route.

=========================================  ===========================================================
route                                      does
=========================================  ===========================================================
``GET  /hub/api/kubelab/sweeps``           your sweeps (``?all=1``: everyone's, admin scope)
``POST /hub/api/kubelab/sweeps``           create one (a :class:`~kubelab.jobs.sweeps.SweepSpec`) → 201
``GET  /hub/api/kubelab/sweeps/<name>``    its status: trials, objectives, best (``?wait=<s>``: long poll)
``POST /hub/api/kubelab/sweeps/<name>/cancel``  stop it; every trial's objects go, the results stay
``DELETE /hub/api/kubelab/sweeps/<name>``  remove it with everything it made
=========================================  ===========================================================

Errors are the jobs API's: 400 naming the field (``space.lr.min``, ``job.script``), 403, 404 (also for
another user's sweep), 409 (the name, or a job with a trial's name, is taken), 503.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado import web

from kubelab.core.naming import JOBS_ADMIN_SCOPE
from kubelab.core.platform import PlatformUnavailable
from kubelab.core.quota import QuotaExceeded
from kubelab.jobs.handlers import API_PREFIX, MAX_WAIT_SECONDS, JobsHandlerBase, parse_uint
from kubelab.jobs.service import JobsService
from kubelab.jobs.spec import MAX_BODY_BYTES, JobSpecError
from kubelab.jobs.sweep_reconciler import SweepExists, SweepNotFound, SweepService

_NAME = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"


class SweepsHandlerBase(JobsHandlerBase):
    """The jobs routes' authentication and errors, over the sweeps service."""

    sweeps: SweepService

    def initialize(self, service: JobsService, sweeps: SweepService) -> None:  # type: ignore[override]
        super().initialize(service)
        self.sweeps = sweeps

    async def who(self, *, admin_param: str | None = None) -> tuple[str, list[str], bool] | None:
        who = await super().who(admin_param=admin_param)
        if who and not self.sweeps.ready:
            try:
                await self.service.platform.ready(timeout=5)
            except PlatformUnavailable as e:
                self.fail(503, f"the sweeps service cannot reach the cluster: {e}")
                return None
        return who

    def sweep_error(self, e: Exception, name: str) -> None:
        if isinstance(e, SweepNotFound):
            self.fail(404, f"no sweep '{name}'")
        elif isinstance(e, SweepExists):
            self.fail(409, str(e))
        elif not self.job_error(e, name):
            raise e


class SweepsHandler(SweepsHandlerBase):
    async def get(self) -> None:
        who = await self.who()
        if not who:
            return
        all_users = self.get_argument("all", "0") in ("1", "true")
        if all_users and not who[2]:
            self.fail(403, f"?all=1 needs the scope {JOBS_ADMIN_SCOPE}")
            return
        self.finish({"sweeps": [s.to_dict() for s in self.sweeps.list(who[0], all_users)]})

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
        name = str(body.get("name", "")) if isinstance(body, dict) else ""
        try:
            status = await self.sweeps.create(who[0], who[1], body, hub_api_url=self.hub.api_url)
        except (JobSpecError, QuotaExceeded, PermissionError, SweepExists, RuntimeError) as e:
            self.sweep_error(e, name)
            return
        self.set_status(201)
        self.set_header("Location", f"{self.hub.base_url}api/kubelab/sweeps/{status.name}")
        self.finish(status.to_dict())


class SweepHandler(SweepsHandlerBase):
    async def get(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            wait = self.get_argument("wait", None)
            status = self.sweeps.get(who[0], name)
            if wait is not None:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + parse_uint(wait, "wait", MAX_WAIT_SECONDS)
                while not status.done and loop.time() < deadline:
                    assert self.sweeps.records is not None
                    try:
                        await asyncio.wait_for(asyncio.shield(self.sweeps.records.changed()), deadline - loop.time())
                    except TimeoutError:
                        pass
                    status = self.sweeps.get(who[0], name)
        except (JobSpecError, SweepNotFound) as e:
            self.sweep_error(e, name)
            return
        self.finish(status.to_dict())

    async def delete(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            status = await self.sweeps.delete(who[0], name)
        except (SweepNotFound, RuntimeError) as e:
            self.sweep_error(e, name)
            return
        self.finish(status.to_dict())


class SweepCancelHandler(SweepsHandlerBase):
    async def post(self, name: str) -> None:
        who = await self.who(admin_param=self.get_argument("user", None))
        if not who:
            return
        try:
            status = await self.sweeps.cancel(who[0], name)
        except (SweepNotFound, RuntimeError) as e:
            self.sweep_error(e, name)
            return
        self.finish(status.to_dict())


def sweep_handlers(service: JobsService, sweeps: SweepService) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    """The sweeps' routes (JupyterHub adds the hub prefix)."""
    kwargs = {"service": service, "sweeps": sweeps}
    return [
        (rf"{API_PREFIX}/sweeps", SweepsHandler, kwargs),
        (rf"{API_PREFIX}/sweeps/({_NAME})", SweepHandler, kwargs),
        (rf"{API_PREFIX}/sweeps/({_NAME})/cancel", SweepCancelHandler, kwargs),
    ]
