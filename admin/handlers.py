"""The admin page and the GPU-hour API, served by the hub (``c.JupyterHub.extra_handlers``).

* ``GET /hub/kubelab/admin``: the page (server-rendered from ``admin/templates``, extending the
  hub's ``page.html``; every control is a link, a field or a button, so it works from the
  keyboard alone). ``?idle_minutes=N`` (0 to 10080) sets the idle threshold for one view.
* ``POST /hub/kubelab/admin/stop``: stop one server (form fields ``user`` and ``server``, with the
  hub's XSRF token), through JupyterHub's own ``stop_single_user``, then back to the page.
* ``GET /hub/api/kubelab/admin/usage?by=user|group|class|kind|month&from=YYYY-MM&to=YYYY-MM``:
  GPU-seconds and GPU-hours per key in the months ``from``..``to`` (default: this month).
* ``GET /hub/api/kubelab/admin/usage.csv?from=...&to=...``: the rows every total sums, as CSV.

Every route needs the scope ``custom:kubelab:admin`` (the ``kubelab-admin`` role: the hub's admin
users and admin groups); anyone else gets 403. Bad parameters get 400 naming the field.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from sqlalchemy.exc import SQLAlchemyError
from tornado import web

from kubelab.core.naming import ADMIN_SCOPE
from kubelab.core.platform import PlatformUnavailable

from .accountant import utcnow
from .accounting import BREAKDOWNS, UsageQueryError, csv_text, hours, month_label, next_month, parse_month, totals
from .console import AdminConsole
from .overview import ServerActivity

PAGE_PATH = "/kubelab/admin"
STOP_PATH = "/kubelab/admin/stop"
USAGE_PATH = "/api/kubelab/admin/usage"
USAGE_CSV_PATH = "/api/kubelab/admin/usage.csv"
#: Largest ``?idle_minutes=`` (a week).
MAX_IDLE_MINUTES = 7 * 24 * 60
#: Most months one usage request may span (a bound on its work).
MAX_MONTHS = 120


def parse_idle_minutes(raw: str | None, default: int) -> int:
    """``?idle_minutes=``: an integer 0..10080, strictly (no sign, no blanks).

    Raises:
        UsageQueryError: Anything else.
    """
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or int(raw) > MAX_IDLE_MINUTES:
        raise UsageQueryError("idle_minutes", f"{raw!r} is not allowed; allowed: an integer 0..{MAX_IDLE_MINUTES}")
    return int(raw)


def usage_window(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """``[since, until)`` for ``?from=&to=`` months (default: the month of ``now``).

    Raises:
        UsageQueryError: A month is not ``YYYY-MM``, ``to`` is before ``from``, or over 120 months.
    """
    since = parse_month(start, "from") if start is not None else parse_month(month_label(now), "from")
    last = parse_month(end, "to") if end is not None else max(since, parse_month(month_label(now), "to"))
    if last < since:
        raise UsageQueryError("to", f"{end!r} is before from={start or month_label(since)!r}; allowed: a month "
                                    "from 'from' on")
    span = (last.year - since.year) * 12 + last.month - since.month + 1
    if span > MAX_MONTHS:
        raise UsageQueryError("to", f"the window spans {span} months; allowed: at most {MAX_MONTHS}")
    return since, next_month(last)


def active_servers(db: Any) -> list[ServerActivity]:
    """Every server the hub's database holds as running, with its last activity and options."""
    rows = db.query(orm.Spawner).filter(orm.Spawner.server_id.isnot(None)).all()
    return [ServerActivity(user=s.user.name, name=s.name or "", user_options=dict(s.user_options or {}),
                           last_activity=s.last_activity.replace(tzinfo=utcnow().tzinfo) if s.last_activity else None)
            for s in rows]


class _AdminMixin:
    """Checks the admin scope; holds the console."""

    console: AdminConsole

    def initialize(self, console: AdminConsole) -> None:
        self.console = console

    def require_admin(self) -> None:
        if ADMIN_SCOPE not in (getattr(self, "parsed_scopes", {}) or {}):
            raise web.HTTPError(403, f"the kubelab admin page needs the scope {ADMIN_SCOPE}")

    async def wait_ready(self) -> None:
        try:
            await self.console.platform.cluster_ready(timeout=10)  # type: ignore[attr-defined]
        except PlatformUnavailable as e:
            raise web.HTTPError(503, f"kubelab cannot reach the cluster: {e}") from e


class AdminPage(_AdminMixin, BaseHandler):
    """``GET /hub/kubelab/admin``."""

    @web.authenticated
    async def get(self) -> None:
        self.require_admin()
        await self.wait_ready()
        try:
            idle = parse_idle_minutes(self.get_argument("idle_minutes", None), self.console.settings.idle_minutes)
        except UsageQueryError as e:
            raise web.HTTPError(400, str(e)) from e
        now = utcnow()
        users = [u.name for u in self.db.query(orm.User).all()]
        view = self.console.overview(active_servers(self.db), users, idle_minutes=idle, now=now)
        usage: dict[str, Any] = {"error": None, "months": []}
        this_month = parse_month(month_label(now), "from")
        last_month = parse_month(month_label(this_month - timedelta(days=1)), "from")
        try:
            for since in (this_month, last_month):
                rows = self.console.accountant.usage(since, next_month(since))
                usage["months"].append({
                    "label": month_label(since),
                    **{by: [(k, hours(v)) for k, v in totals(rows, by).items()] for by in ("user", "group", "class")},
                    "total": hours(sum(r["gpu_seconds"] for r in rows)),
                })
        except (RuntimeError, SQLAlchemyError) as e:
            usage["error"] = f"GPU-hours are not available right now: {e}"
        self.finish(await self.render_template(
            "kubelab_admin.html", view=view, usage=usage, stopped=self.get_argument("stopped", ""),
            stop_url=f"{self.hub.base_url}{STOP_PATH.lstrip('/')}",
            usage_url=f"{self.hub.base_url}{USAGE_PATH.lstrip('/')}",
            csv_url=f"{self.hub.base_url}{USAGE_CSV_PATH.lstrip('/')}",
            page_url=f"{self.hub.base_url}{PAGE_PATH.lstrip('/')}",
        ))


class AdminStop(_AdminMixin, BaseHandler):
    """``POST /hub/kubelab/admin/stop`` (form: ``user``, ``server``)."""

    @web.authenticated
    async def post(self) -> None:
        self.require_admin()
        name, server = self.get_body_argument("user", ""), self.get_body_argument("server", "")
        user = self.find_user(name) if name else None
        if user is None:
            raise web.HTTPError(400, f"user: {name!r} is not allowed; allowed: an existing user's name")
        if server not in user.spawners or not user.spawners[server].active:
            raise web.HTTPError(400, f"server: {server!r} is not allowed; allowed: a running server of {name}")
        try:
            await self.stop_single_user(user, server)
        except RuntimeError as e:  # JupyterHub: the server is starting or stopping already
            raise web.HTTPError(409, str(e)) from e
        label = f"{name}/{server}" if server else name
        self.redirect(f"{self.hub.base_url}{PAGE_PATH.lstrip('/')}?stopped={label}")


class UsageAPI(_AdminMixin, APIHandler):
    """``GET /hub/api/kubelab/admin/usage``: totals per ``by`` as JSON."""

    def check_xsrf_cookie(self) -> None:
        return None  # read-only GET

    async def get(self) -> None:
        self.require_admin()
        by = self.get_argument("by", "user")
        window = self._window(by)
        rows = None if window is None else self._rows(*window)
        if window is None or rows is None:
            return
        since, until = window
        table = totals(rows, by)
        total = sum(table.values())
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({
            "by": by, "from": month_label(since), "to": month_label(until - timedelta(seconds=1)),
            "totals": [{"key": k, "gpu_seconds": round(v, 1), "gpu_hours": hours(v)} for k, v in table.items()],
            "total": {"gpu_seconds": round(total, 1), "gpu_hours": hours(total)},
        }))

    def _window(self, by: str = "user") -> tuple[datetime, datetime] | None:
        """``[since, until)`` of ``?from=&to=``; answers 400 naming the field and returns None if bad."""
        try:
            if by not in BREAKDOWNS:
                raise UsageQueryError("by", f"{by!r} is not allowed; allowed: {', '.join(BREAKDOWNS)}")
            return usage_window(self.get_argument("from", None), self.get_argument("to", None), utcnow())
        except UsageQueryError as e:
            self.set_status(400)
            self.finish(json.dumps({"status": 400, "field": e.field, "message": str(e)}))
            return None

    def _rows(self, since: datetime, until: datetime) -> list[dict[str, Any]] | None:
        try:
            return self.console.accountant.usage(since, until)
        except (RuntimeError, SQLAlchemyError) as e:
            self.set_status(503)
            self.finish(json.dumps({"status": 503, "message": f"GPU accounting is not available: {e}"}))
            return None


class UsageCSV(UsageAPI):
    """``GET /hub/api/kubelab/admin/usage.csv``: per month, user, group, class and kind."""

    async def get(self) -> None:
        self.require_admin()
        window = self._window()
        rows = None if window is None else self._rows(*window)
        if window is None or rows is None:
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="kubelab-gpu-usage-{month_label(window[0])}.csv"')
        self.finish(csv_text(rows))


def admin_handlers(console: AdminConsole) -> list[tuple[str, type, dict[str, Any]]]:
    """``(pattern, handler, kwargs)`` for ``c.JupyterHub.extra_handlers`` (paths below ``/hub``)."""
    kwargs = {"console": console}
    return [
        (rf"{PAGE_PATH}/?", AdminPage, kwargs),
        (STOP_PATH, AdminStop, kwargs),
        (USAGE_CSV_PATH.replace(".", r"\."), UsageCSV, kwargs),
        (USAGE_PATH, UsageAPI, kwargs),
    ]
