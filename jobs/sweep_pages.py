"""The hub's sweep pages: ``/hub/kubelab/sweeps`` (your sweeps; everyone's for admins) and one sweep's page.

Server-rendered like the jobs pages (the hub's own templates, readable without JavaScript, usable
with the keyboard, one column on a phone): a sweep's page shows its trials sorted by objective
(each linking to its job's page), a chart of the objective per trial and of the best so far
(:func:`sweep_chart_svg`, inline SVG), the warnings, and a Cancel button. While the sweep runs the
page reloads itself every :data:`REFRESH_SECONDS`. The same 404 rule as for jobs: another user's
sweep does not exist for you unless you are a jobs admin.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from tornado import web

from kubelab.core.platform import PlatformUnavailable
from kubelab.jobs.pages import PageBase
from kubelab.jobs.service import JobsService
from kubelab.jobs.sweep_reconciler import SweepNotFound, SweepService
from kubelab.jobs.sweeps import SweepStatus, TrialStatus, better, format_value

SWEEPS_PREFIX = "/kubelab/sweeps"
REFRESH_SECONDS = 5
TRIAL_COLOUR, BEST_COLOUR = "#0072B2", "#D55E00"


def best_so_far(trials: Sequence[TrialStatus], goal: str) -> list[tuple[int, float]]:
    """``(trial index, best objective among trials 0..index)`` for every trial with an objective."""
    out: list[tuple[int, float]] = []
    best: float | None = None
    for t in sorted(trials, key=lambda t: t.index):
        if t.objective is None:
            continue
        if best is None or better(t.objective, best, goal):
            best = t.objective
        out.append((t.index, best))
    return out


def sweep_chart_svg(status: SweepStatus, width: int = 600, height: int = 240) -> str:
    """The objective of each trial (dots) and the best so far (a step line), as an accessible SVG."""
    scored = [t for t in sorted(status.trials, key=lambda t: t.index) if t.objective is not None
              and math.isfinite(t.objective)]
    metric = status.objective.get("metric", "objective")
    if not scored:
        return f"<p class='kubelab-no-metrics'>No trial has reported {html.escape(metric)} yet.</p>"
    left, right, top, bottom = 64, 12, 26, 30
    w, h = width - left - right, height - top - bottom
    x1 = max(status.trials_total - 1, scored[-1].index, 1)
    ys = [t.objective for t in scored if t.objective is not None]
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1

    def px(x: float) -> float:
        return left + x / x1 * w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * h

    best = best_so_far(scored, status.objective.get("goal", "minimize"))
    best_text = f"{best[-1][1]:.4g} (trial {status.best})" if status.best is not None else ""
    parts = [f"<svg class='kubelab-sweep-chart' viewBox='0 0 {width} {height}' role='img' "
             f"aria-label='{html.escape(metric)} per trial: {len(scored)} of {status.trials_total} trials; "
             f"best {html.escape(best_text)}' preserveAspectRatio='xMidYMid meet'>",
             f"<text x='{left}' y='16' class='kubelab-chart-title'>{html.escape(metric)} per trial</text>",
             f"<line x1='{left}' y1='{top + h}' x2='{left + w}' y2='{top + h}' class='kubelab-axis'/>",
             f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + h}' class='kubelab-axis'/>",
             f"<text x='{left - 4}' y='{top + 4}' text-anchor='end' class='kubelab-tick'>{y1:.4g}</text>",
             f"<text x='{left - 4}' y='{top + h}' text-anchor='end' class='kubelab-tick'>{y0:.4g}</text>",
             f"<text x='{left}' y='{height - 8}' class='kubelab-tick'>trial 0</text>",
             f"<text x='{left + w}' y='{height - 8}' text-anchor='end' class='kubelab-tick'>{x1}</text>"]
    steps: list[tuple[int, float]] = []
    for i, v in best:  # a step line: the best holds until a trial beats it
        if steps:
            steps.append((i, steps[-1][1]))
        steps.append((i, v))
    points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in steps)
    parts.append(f"<polyline fill='none' stroke='{BEST_COLOUR}' stroke-width='1.5' class='kubelab-best' "
                 f"data-points='{len(best)}' points='{points}'/>")
    for t in scored:
        assert t.objective is not None
        parts.append(f"<circle cx='{px(t.index):.1f}' cy='{py(t.objective):.1f}' r='4' fill='{TRIAL_COLOUR}' "
                     f"class='kubelab-trial' data-trial='{t.index}'><title>trial {t.index}: {t.objective:.6g}"
                     "</title></circle>")
    parts.append(f"<text x='{left + w - 4}' y='{top + 14}' text-anchor='end' fill='{BEST_COLOUR}' "
                 f"class='kubelab-legend'>best so far{': ' + html.escape(best_text) if best_text else ''}</text>")
    parts.append("</svg>")
    return "".join(parts)


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))


class SweepPageBase(PageBase):
    sweeps: SweepService

    def initialize(self, service: JobsService, sweeps: SweepService) -> None:  # type: ignore[override]
        super().initialize(service)
        self.sweeps = sweeps

    async def ready(self) -> None:
        await super().ready()
        if not self.sweeps.ready:
            try:
                await self.service.platform.ready(timeout=5)
            except PlatformUnavailable as e:
                raise web.HTTPError(503, f"the sweeps service cannot reach the cluster: {e}") from e

    def sweep(self, owner: str, name: str) -> SweepStatus:
        if owner != self.current_user.name and not self.is_jobs_admin:
            raise web.HTTPError(404, f"no sweep '{name}'")
        try:
            return self.sweeps.get(owner, name)
        except SweepNotFound as e:
            raise web.HTTPError(404, f"no sweep '{name}'") from e

    def sweep_url(self, s: SweepStatus) -> str:
        return f"{self.hub.base_url}{SWEEPS_PREFIX.lstrip('/')}/{quote(s.user, safe='')}/{quote(s.name, safe='')}"

    def trial_url(self, s: SweepStatus, trial: TrialStatus) -> str:
        return f"{self.hub.base_url}kubelab/jobs/{quote(s.user, safe='')}/{quote(trial.name, safe='')}"


class SweepsListPage(SweepPageBase):
    """``GET /hub/kubelab/sweeps``."""

    @web.authenticated
    async def get(self) -> None:
        await self.ready()
        everyone = self.is_jobs_admin
        rows = [{"sweep": s, "url": self.sweep_url(s), "best": s.best_trial}
                for s in self.sweeps.list(self.current_user.name, all_users=everyone)]
        self.finish(await self.render_template("kubelab_sweeps.html", rows=rows, everyone=everyone))


class SweepPage(SweepPageBase):
    """``GET /hub/kubelab/sweeps/<user>/<name>``: trials by objective, the chart, Cancel."""

    @web.authenticated
    async def get(self, owner: str, name: str) -> None:
        await self.ready()
        s = self.sweep(owner, name)
        rows = [{"trial": t, "url": self.trial_url(s, t), "params": params_text(t.params)} for t in s.ranked()]
        self.finish(await self.render_template(
            "kubelab_sweep.html", sweep=s, rows=rows, chart=sweep_chart_svg(s), url=self.sweep_url(s),
            refresh=REFRESH_SECONDS))


class SweepCancelPage(SweepPageBase):
    """``POST /hub/kubelab/sweeps/<user>/<name>/cancel``: stop it, then back to its page."""

    @web.authenticated
    async def post(self, owner: str, name: str) -> None:
        await self.ready()
        s = self.sweep(owner, name)
        try:
            await self.sweeps.cancel(owner, name)
        except RuntimeError as e:
            raise web.HTTPError(503, str(e)) from e
        self.redirect(self.sweep_url(s))


def sweep_page_handlers(service: JobsService, sweeps: SweepService) -> list[tuple[str, type, dict]]:
    kwargs = {"service": service, "sweeps": sweeps}
    name = r"([^/]+)"
    return [
        (rf"{SWEEPS_PREFIX}/?", SweepsListPage, kwargs),
        (rf"{SWEEPS_PREFIX}/{name}/([a-z0-9-]+)/?", SweepPage, kwargs),
        (rf"{SWEEPS_PREFIX}/{name}/([a-z0-9-]+)/cancel", SweepCancelPage, kwargs),
    ]
