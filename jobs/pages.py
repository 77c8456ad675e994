"""The hub's jobs pages: ``/hub/kubelab/jobs`` (your jobs; everyone's for admins) and one job's page.

Server-rendered like the picker: every page is complete HTML from the hub's own templates
(``jobs/templates/``, extending the hub's ``page.html``), readable without JavaScript, usable with
the keyboard alone (links, a rank ``<select>``, real buttons; visible focus) and on a phone-sized
screen (one column under 40 rem, charts as scalable SVG). A few lines of script make it live:
while the job runs, the status, timeline and charts are refetched as server-rendered fragments
(``?fragment=1``, JSON of HTML strings) every :data:`REFRESH_SECONDS`, and the chosen rank's log
is followed through ``.../logs?follow=1``.

A job's page is ``/hub/kubelab/jobs/<user>/<name>``: the owner sees it, an admin (scope
``custom:kubelab:jobs-admin``) sees everyone's, anyone else gets 404, exactly as for a job that
does not exist. Cancel is a POST form (with the hub's XSRF token) that stops the job and comes
back to its page; the job stays listed until deleted.

The pure parts (:func:`rank_sentence`, :func:`timeline`, :func:`svg_chart`) are tested alone.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado import web
from tornado.iostream import StreamClosedError

from kubelab.core.naming import JOBS_ADMIN_SCOPE, JOBS_SCOPE
from kubelab.core.platform import PlatformUnavailable
from kubelab.jobs.builders.common import job_id
from kubelab.jobs.explain import explain, user_lines
from kubelab.jobs.service import JobsService
from kubelab.jobs.spec import JobStatus
from kubelab.jobs.tensorboard import tensorboard_link

log = logging.getLogger("kubelab.jobs.pages")

#: kubelab's job page templates (added to ``c.JupyterHub.template_paths``).
TEMPLATES_DIR = Path(__file__).with_name("templates")
#: Below the hub's base URL.
PAGES_PREFIX = "/kubelab/jobs"
#: Seconds between refreshes of a running job's page (one small request each).
REFRESH_SECONDS = 2
#: Log lines shown when the page is first rendered.
LOG_TAIL = 200
RANK_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8a6d00", "#000000")


# -- pure renderers --------------------------------------------------------------------------


def rank_sentence(rank: Any) -> str:
    """The state of one rank in words: ``Rank 0 is running on cpu-0.``"""
    r, phase = rank.rank, rank.phase
    where = f" on {rank.node}" if rank.node and rank.node != "localhost" else ""
    why = f": {rank.message}" if rank.message else ""
    if phase == "Running":
        return f"Rank {r} is running{where}."
    if phase == "Succeeded":
        return f"Rank {r} finished successfully{where}."
    if phase == "Failed":
        code = f" with exit code {rank.exit_code}" if rank.exit_code is not None else ""
        return f"Rank {r} failed{code}{why}."
    if phase == "Cancelled":
        return f"Rank {r} was stopped{why}."
    if phase == "Queued":
        return f"Rank {r} is queued, waiting for the cluster's queue to admit the job{why}."
    if rank.pod:
        return f"Rank {r} is starting{where}{why}."
    return f"Rank {r} is waiting for a node{why}."


def timeline(job: JobStatus) -> list[tuple[str, str]]:
    """The job's events in order as (when, what): created, the cluster's events per rank, the end."""
    out = [(job.created or "", f"Submitted: {job.workers} worker(s), {job.framework}, engine {job.engine}.")]
    out += [("", event) for event in job.events]
    if job.finished:
        out.append((job.finished, f"Ended: {job.phase}." + (f" {job.message}" if job.message else "")))
    return out


def _nice(value: float) -> str:
    return f"{value:.4g}"


def svg_chart(name: str, series: Sequence[Mapping[str, Any]], width: int = 600, height: int = 220) -> str:
    """One scalar's curves, one polyline per rank, as an accessible, scalable inline SVG.

    Args:
        name: The scalar (the chart's title).
        series: ``GET .../metrics`` series of this scalar (``rank``, ``steps``, ``values``).
    """
    lines = [s for s in series if s.get("steps")]
    left, right, top, bottom = 56, 12, 26, 28
    if not lines:
        return ""
    xs = [x for s in lines for x in s["steps"]]
    ys = [y for s in lines for y in s["values"] if math.isfinite(y)]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    w, h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * h

    described = "; ".join(f"rank {s['rank']}: {len(s['steps'])} points, last {_nice(s['values'][-1])} at step "
                          f"{s['steps'][-1]}" for s in lines)
    parts = [f"<svg class='kubelab-chart' data-metric='{html.escape(name)}' viewBox='0 0 {width} {height}' "
             f"role='img' aria-label='{html.escape(name)} per rank: {html.escape(described)}' "
             "preserveAspectRatio='xMidYMid meet'>",
             f"<text x='{left}' y='16' class='kubelab-chart-title'>{html.escape(name)}</text>",
             f"<line x1='{left}' y1='{top + h}' x2='{left + w}' y2='{top + h}' class='kubelab-axis'/>",
             f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + h}' class='kubelab-axis'/>",
             f"<text x='{left - 4}' y='{top + 4}' text-anchor='end' class='kubelab-tick'>{_nice(y1)}</text>",
             f"<text x='{left - 4}' y='{top + h}' text-anchor='end' class='kubelab-tick'>{_nice(y0)}</text>",
             f"<text x='{left}' y='{height - 8}' class='kubelab-tick'>step {x0}</text>",
             f"<text x='{left + w}' y='{height - 8}' text-anchor='end' class='kubelab-tick'>{x1}</text>"]
    for i, s in enumerate(sorted(lines, key=lambda s: s["rank"])):
        colour = RANK_COLOURS[int(s["rank"]) % len(RANK_COLOURS)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s["steps"], s["values"], strict=False)
                          if math.isfinite(y))
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' data-rank='{s['rank']}' "
                     f"data-points='{len(s['steps'])}' points='{points}'/>")
        parts.append(f"<text x='{left + w - 4}' y='{top + 14 + 14 * i}' text-anchor='end' fill='{colour}' "
                     f"class='kubelab-legend'>rank {s['rank']}: {_nice(s['values'][-1])}</text>")
    parts.append("</svg>")
    return "".join(parts)


def charts_html(metrics: Mapping[str, Any] | None, message: str = "") -> str:
    """Every scalar's chart, or the sentence saying the job logged none."""
    series = list((metrics or {}).get("series") or [])
    if not series:
        text = message or "This job has reported no metrics; call kubelab.jobs.metrics.log(step, loss=...) in " \
                          "the script to see curves here."
        return f"<p class='kubelab-no-metrics'>{html.escape(text)}</p>"
    names = sorted({s["name"] for s in series}, key=lambda n: (n != "loss", n))
    return "".join(svg_chart(n, [s for s in series if s["name"] == n]) for n in names)


def status_html(job: JobStatus) -> str:
    """The job's phase, the plain sentence for a failure, and every rank in words."""
    why = explain(job)
    parts = [f"<p class='kubelab-phase' data-phase='{html.escape(job.phase)}'><strong>{html.escape(job.phase)}"
             "</strong></p>"]
    if why is not None:
        parts.append(f"<p class='kubelab-explain' role='alert' data-kind='{html.escape(why.kind)}'>"
                     f"{html.escape(why.sentence)}</p>")
    elif job.message:
        parts.append(f"<p class='kubelab-message'>{html.escape(job.message)}</p>")
    parts.append("<ul class='kubelab-ranks'>" + "".join(
        f"<li data-rank='{r.rank}' data-phase='{html.escape(r.phase)}'>{html.escape(rank_sentence(r))}</li>"
        for r in job.ranks) + "</ul>")
    if job.failed_rank is not None and job.last_logs:
        parts.append(f"<details><summary>Rank {job.failed_rank}'s last lines</summary><pre class='kubelab-last-logs'>"
                     f"{html.escape(chr(10).join(job.last_logs))}</pre></details>")
    return "".join(parts)


def timeline_html(job: JobStatus) -> str:
    items = "".join(f"<li><time>{html.escape(when)}</time> {html.escape(what)}</li>" for when, what in timeline(job))
    return f"<ol class='kubelab-timeline'>{items}</ol>"


# -- handlers ------------------------------------------------------------------------------------

try:
    from jupyterhub.handlers.base import BaseHandler
except ImportError:  # pragma: no cover - the pages only run inside a hub
    BaseHandler = web.RequestHandler  # type: ignore[misc,assignment]


class PageBase(BaseHandler):
    """A logged-in hub page over the jobs service; answers 404 for jobs the user may not see."""

    service: JobsService

    def initialize(self, service: JobsService) -> None:
        self.service = service

    @property
    def is_jobs_admin(self) -> bool:
        return JOBS_ADMIN_SCOPE in (getattr(self, "parsed_scopes", {}) or {})

    async def ready(self) -> None:
        scopes = getattr(self, "parsed_scopes", {}) or {}
        if JOBS_SCOPE not in scopes:
            raise web.HTTPError(403, f"your account lacks the scope {JOBS_SCOPE}")
        if not self.service.ready:
            try:
                await self.service.platform.ready(timeout=5)
            except PlatformUnavailable as e:
                raise web.HTTPError(503, f"the jobs service cannot reach the cluster: {e}") from e

    def job(self, owner: str, name: str) -> JobStatus:
        """``owner``'s job ``name``, when the caller may see it.

        Raises:
            HTTPError: 404 for another user's job (unless admin) or a job that does not exist.
        """
        me = self.current_user.name
        if owner != me and not self.is_jobs_admin:
            raise web.HTTPError(404, f"no job '{name}'")
        try:
            return self.service.get(owner, name)
        except KeyError as e:
            raise web.HTTPError(404, f"no job '{name}'") from e

    async def job_metrics(self, job: JobStatus) -> dict[str, Any] | None:
        return await self.service.metrics.snapshot(job_id(job.user, job.name), job.user)

    def job_url(self, job: JobStatus) -> str:
        return f"{self.hub.base_url}{PAGES_PREFIX.lstrip('/')}/{quote(job.user, safe='')}/{quote(job.name, safe='')}"


class JobsListPage(PageBase):
    """``GET /hub/kubelab/jobs``: your jobs, newest first; every user's for admins."""

    @web.authenticated
    async def get(self) -> None:
        await self.ready()
        everyone = self.is_jobs_admin
        jobs = self.service.list(self.current_user.name, all_users=everyone)
        rows = [{"job": j, "url": self.job_url(j), "why": explain(j)} for j in jobs]
        self.finish(await self.render_template("kubelab_jobs.html", rows=rows, everyone=everyone))


class JobPage(PageBase):
    """``GET /hub/kubelab/jobs/<user>/<name>``: one job; ``?fragment=1`` for the live parts as JSON."""

    @web.authenticated
    async def get(self, owner: str, name: str) -> None:
        await self.ready()
        job = self.job(owner, name)
        metrics = await self.job_metrics(job)
        parts = {"status": status_html(job), "timeline": timeline_html(job), "charts": charts_html(metrics),
                 "done": job.done, "phase": job.phase}
        if self.get_argument("fragment", "0") == "1":
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(parts))
            return
        rank = _rank_arg(self.get_argument("rank", "0"), job.workers)
        lines: list[str] = []
        try:
            async for line in _take(self.service.logs(owner, name, rank, follow=False, tail=LOG_TAIL)):
                lines.append(line)
        except KeyError:
            lines = [f"(rank {rank} has no log: its pod is gone)"]
        self.finish(await self.render_template(
            "kubelab_job.html", job=job, parts=parts, rank=rank, own_lines="\n".join(user_lines(lines)),
            all_lines="\n".join(lines), url=self.job_url(job), refresh=REFRESH_SECONDS,
            tensorboard=self.tensorboard_url(job),
        ))

    def tensorboard_url(self, job: JobStatus) -> str | None:
        """``Open TensorBoard`` in the owner's own server, when job pods write where it can read."""
        return tensorboard_link(self.hub.base_url, job, getattr(self.service, "catalogue", None),
                                viewer=self.current_user.name)


class JobLogsPage(PageBase):
    """``GET /hub/kubelab/jobs/<user>/<name>/logs?rank=R&follow=1``: the rank's log as text."""

    @web.authenticated
    async def get(self, owner: str, name: str) -> None:
        await self.ready()
        job = self.job(owner, name)
        rank = _rank_arg(self.get_argument("rank", "0"), job.workers)
        follow = self.get_argument("follow", "0") == "1"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        if follow:
            await self.flush()
        lines = self.service.logs(owner, name, rank, follow=follow, tail=LOG_TAIL if not follow else None)
        try:
            async for line in lines:
                self.write(line + "\n")
                if follow:
                    await self.flush()
        except KeyError:
            pass  # the rank's pod is gone: the stream simply ends
        except StreamClosedError:
            return
        finally:
            await lines.aclose()
        self.finish()


class JobCancelPage(PageBase):
    """``POST /hub/kubelab/jobs/<user>/<name>/cancel``: stop the job, then back to its page."""

    @web.authenticated
    async def post(self, owner: str, name: str) -> None:
        await self.ready()
        job = self.job(owner, name)
        try:
            await self.service.cancel(owner, name)
        except KeyError as e:
            raise web.HTTPError(404, f"no job '{name}'") from e
        except RuntimeError as e:
            raise web.HTTPError(503, str(e)) from e
        self.redirect(self.job_url(job))


def _rank_arg(raw: str, workers: int) -> int:
    try:
        rank = int(raw)
    except ValueError:
        raise web.HTTPError(400, f"rank: {raw!r} is not allowed; allowed: 0..{workers - 1}") from None
    if not 0 <= rank < workers:
        raise web.HTTPError(400, f"rank: {rank} is not allowed; allowed: 0..{workers - 1}")
    return rank


async def _take(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for line in lines:
            yield line
    finally:
        await lines.aclose()  # type: ignore[attr-defined]


def page_handlers(service: JobsService) -> list[tuple[str, type, dict]]:
    """The pages' routes (JupyterHub adds the hub prefix)."""
    kwargs = {"service": service}
    name = r"([^/]+)"
    return [
        (rf"{PAGES_PREFIX}/?", JobsListPage, kwargs),
        (rf"{PAGES_PREFIX}/{name}/([a-z0-9-]+)/?", JobPage, kwargs),
        (rf"{PAGES_PREFIX}/{name}/([a-z0-9-]+)/logs", JobLogsPage, kwargs),
        (rf"{PAGES_PREFIX}/{name}/([a-z0-9-]+)/cancel", JobCancelPage, kwargs),
    ]


def template_paths(existing: Iterable[str]) -> list[str]:
    """``c.JupyterHub.template_paths`` with the jobs pages' folder added (kept after the hub's own
    kubelab templates, which override ``page.html``)."""
    paths = list(existing)
    if str(TEMPLATES_DIR) not in paths:
        paths.append(str(TEMPLATES_DIR))
    return paths
