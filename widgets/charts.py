"""Live training curves: one chart per scalar, one line per rank (bqplot, ipywidgets-native).

:class:`MetricSeries` accumulates what :meth:`JobClient.follow_metrics` yields (whole snapshots
and the points after them) into bounded series, downsampling like the service does, so an open
view never holds more than ``max_points`` per line. :class:`MetricCharts` draws them with
bqplot: each scalar is a ``Figure`` with one ``Lines`` mark per rank, and a redraw replaces
the marks' ``x``/``y`` at most once per ``redraw_seconds``.

Why bqplot (``docs/widgets.md``): its marks *are* ipywidgets, so new points reach the browser as
trait updates over the kernel's comm, with no image re-rendering (matplotlib/ipympl) and no
HTML re-injection (plotly's FigureWidget needs its own large front-end bundle); it ships a
prebuilt JupyterLab extension with the wheel (nothing to build), and it is maintained under
the Jupyter umbrella (``bqplot/bqplot``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

#: Points kept per (rank, name) in a view; beyond it the line is thinned to half, keeping the ends.
MAX_POINTS = 2000
#: Line colours per rank (colour-blind safe, Okabe-Ito), cycling.
RANK_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


class MetricSeries:
    """The series of one job as a view has them: ``{(rank, name): ([steps], [values])}``."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self.max_points = max_points
        self.series: dict[tuple[int, str], tuple[list[int], list[float]]] = {}
        self.seq = 0
        self.done = False
        self.message = ""

    def apply(self, item: Mapping[str, Any]) -> bool:
        """Take one item of ``follow_metrics`` (or a ``metrics()`` answer); True when anything changed."""
        changed = False
        if "series" in item:
            self.series = {
                (int(s["rank"]), str(s["name"])): (list(s.get("steps") or []), list(s.get("values") or []))
                for s in item.get("series") or []
            }
            for key in self.series:
                self._bound(key)
            self.message = str(item.get("message") or "")
            changed = True
        for rank, name, step, value in item.get("points") or []:
            steps, values = self.series.setdefault((int(rank), str(name)), ([], []))
            steps.append(step)
            values.append(value)
            if len(steps) > self.max_points:
                self._bound((int(rank), str(name)))
            changed = True
        if item.get("done"):
            self.done = True
        self.seq = max(self.seq, int(item.get("seq") or 0))
        return changed

    def _bound(self, key: tuple[int, str]) -> None:
        steps, values = self.series[key]
        while len(steps) > self.max_points:
            last = (steps[-1], values[-1])
            steps, values = steps[::2], values[::2]
            if steps[-1] != last[0]:
                steps.append(last[0])
                values.append(last[1])
        self.series[key] = (steps, values)

    def names(self) -> list[str]:
        return sorted({name for _, name in self.series})

    def ranks(self, name: str) -> list[int]:
        return sorted(rank for rank, n in self.series if n == name)

    def points(self, name: str, rank: int) -> int:
        return len(self.series.get((rank, name), ([], []))[0])

    def latest(self) -> dict[str, float]:
        """Each scalar's newest value on its lowest rank (what a job list shows)."""
        out: dict[str, float] = {}
        for (_rank, name), (_, values) in sorted(self.series.items()):
            if values and name not in out:
                out[name] = values[-1]
        return out


def latest_text(latest: Mapping[str, float], limit: int = 3) -> str:
    """``loss 0.0312 · acc 0.91`` (the first ``limit`` scalars, loss first)."""
    names = sorted(latest, key=lambda n: (n != "loss", n))[:limit]
    return " · ".join(f"{n} {latest[n]:.4g}" for n in names)


class MetricCharts:
    """A box of bqplot figures, one per scalar, redrawn from a :class:`MetricSeries`.

    Args:
        widgets: The ``ipywidgets`` module.
        redraw_seconds: Least time between two redraws (points arriving faster are batched).
    """

    def __init__(self, widgets: Any, redraw_seconds: float = 1.0) -> None:
        import bqplot

        self._bq = bqplot
        self._widgets = widgets
        self.redraw_seconds = redraw_seconds
        self.figures: dict[str, Any] = {}
        self.lines: dict[str, Any] = {}
        self.note = widgets.HTML()
        self.box = widgets.VBox([self.note])
        self.box.add_class("kubelab-charts")
        self._last = 0.0
        self._lock = threading.Lock()

    def clear(self, note: str = "") -> None:
        with self._lock:
            self.figures.clear()
            self.lines.clear()
            self.note.value = note
            self.box.children = [self.note]

    def _figure(self, name: str) -> Any:
        bq = self._bq
        x, y = bq.LinearScale(), bq.LinearScale()
        figure = bq.Figure(
            marks=[], title=name, animation_duration=0,
            axes=[bq.Axis(scale=x, label="step", grid_lines="dashed"),
                  bq.Axis(scale=y, side="left", grid_lines="dashed", tick_format=".3g")],
            layout=self._widgets.Layout(width="30em", height="16em"),
            fig_margin={"top": 40, "bottom": 40, "left": 60, "right": 20},
            legend_location="top-right",
        )
        figure.add_class("kubelab-chart")
        figure.add_class(f"kubelab-chart-{_css(name)}")
        figure.scales_xy = (x, y)  # type: ignore[attr-defined]
        self.figures[name] = figure
        self.lines[name] = {}
        return figure

    def _line(self, name: str, rank: int) -> Any:
        """The ``Lines`` mark of one rank (ragged series cannot share one mark)."""
        lines = self.lines[name]
        if rank not in lines:
            x, y = self.figures[name].scales_xy
            lines[rank] = self._bq.Lines(x=[0.0], y=[0.0], scales={"x": x, "y": y}, display_legend=True,
                                         labels=[f"rank {rank}"], colors=[RANK_COLOURS[rank % len(RANK_COLOURS)]],
                                         stroke_width=1.5)
            self.figures[name].marks = [lines[r] for r in sorted(lines)]
        return lines[rank]

    def draw(self, series: MetricSeries, *, force: bool = False) -> bool:
        """Redraw from ``series``, unless the last redraw was under ``redraw_seconds`` ago."""
        now = time.monotonic()
        if not force and now - self._last < self.redraw_seconds:
            return False
        with self._lock:
            self._last = now
            names = series.names()
            added = False
            for name in names:
                if name not in self.figures:
                    self._figure(name)
                    added = True
                for rank in series.ranks(name):
                    steps, values = series.series[(rank, name)]
                    if not steps:
                        continue
                    line = self._line(name, rank)
                    with line.hold_sync():
                        line.x, line.y = list(steps), list(values)
            if added:
                grid = self._widgets.Box([self.figures[n] for n in names],
                                         layout=self._widgets.Layout(flex_flow="row wrap"))
                self.box.children = [self.note, grid]
            self.note.value = _note(series)
        return True


def _css(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _note(series: MetricSeries) -> str:
    if not series.series:
        return f"<i>{series.message or 'No metrics yet.'}</i>"
    counts = ", ".join(f"rank {r}: {series.points(n, r)} points" for n in series.names()[:1] for r in series.ranks(n))
    state = "final" if series.done else "live"
    return f"<span class='kubelab-charts-note' style='color:#555'>{state}; {counts}</span>"

