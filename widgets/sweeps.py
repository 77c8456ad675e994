"""The launcher's Sweep tab: define a search space, start a sweep, watch its trials and its best.

A view over :meth:`kubelab.jobs.JobClient.sweep` and :meth:`~kubelab.jobs.JobClient.get_sweep`:

- **the form**: the space, one parameter per line (:func:`parse_space`), the objective (a metric
  the script logs with ``kubelab.jobs.metrics.log``, minimised or maximised), trials, how many at
  once, and the median early-stopping rule. Every trial runs the job the Jobs tab describes;
- **the table** of trials sorted by objective, best first (:func:`trials_table_html`, pure);
- **the chart**: the objective of each trial (dots) and the best so far (a line), drawn with
  bqplot like the job curves (:mod:`kubelab.widgets.charts`), so points reach the browser as
  trait updates and nothing is re-rendered.

The chosen sweep is polled in a thread every ``refresh_interval`` seconds (at most one request a
second) until it ends.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import Any

from kubelab.jobs.client import JobClient
from kubelab.jobs.spec import JobSpec, JobSpecError
from kubelab.jobs.sweeps import PARAM_TYPES, SweepStatus, format_value
from kubelab.widgets.views import phase_badge

#: What the space box shows before anything is typed.
SPACE_PLACEHOLDER = "lr loguniform 1e-4 1e-1\nbatch grid 16 32 64\nWARMUP env uniform 0 10 int"
SPACE_HELP = ("One parameter per line: <code>name type values</code>. Types: <code>grid a b c</code> (every value "
              "is tried), <code>choice a b c</code>, <code>uniform min max [int]</code>, <code>loguniform min max</code>; "
              "write <code>env</code> after the name to set an environment variable instead of "
              "<code>--name=value</code>.")


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_space(text: str) -> dict[str, Any]:
    """The Sweep tab's space box as a sweep's ``space`` (the service checks ranges and names).

    ``lr loguniform 1e-4 1e-1``, ``batch grid 16 32 64``, ``WARMUP env uniform 0 10 int``.

    Raises:
        JobSpecError: On ``space``, naming the line.
    """
    space: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        name, rest = words[0], words[1:]
        target = "args"
        if rest and rest[0] == "env":
            target, rest = "env", rest[1:]
        if not rest or rest[0] not in PARAM_TYPES:
            raise JobSpecError("space", f"line {number} {raw.strip()!r}: expected 'name [env] type values' with type "
                               f"one of {', '.join(PARAM_TYPES)}")
        kind, values = rest[0], rest[1:]
        param: dict[str, Any] = {"type": kind, "in": target}
        if kind in ("grid", "choice"):
            param["values"] = [_value(v) for v in values]
        else:
            integer = values[-1:] == ["int"]
            bounds = values[:-1] if integer else values
            if len(bounds) != 2:
                raise JobSpecError("space", f"line {number} {raw.strip()!r}: {kind} needs min and max")
            param.update({"min": _value(bounds[0]), "max": _value(bounds[1])})
            if integer:
                param["int"] = True
        if name in space:
            raise JobSpecError("space", f"line {number}: {name} is given twice")
        space[name] = param
    return space


def trials_table_html(status: SweepStatus | None) -> str:
    """The trials of a sweep sorted by objective, best first, with their parameters and phase."""
    if status is None:
        return "<i>No sweep chosen.</i>"
    metric = status.objective.get("metric", "objective")
    head = (f"<tr><th style='text-align:left;padding:2px 8px'>Trial</th><th style='text-align:left;padding:2px 8px'>"
            f"{html.escape(metric)}</th><th style='text-align:left;padding:2px 8px'>Phase</th>"
            "<th style='text-align:left;padding:2px 8px'>Parameters</th></tr>")
    rows = []
    for t in status.ranked():
        best = " <b>(best)</b>" if t.index == status.best else ""
        value = "-" if t.objective is None else f"{t.objective:.6g}"
        params = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(t.params.items()))
        note = f" <span style='color:#777'>{html.escape(t.message)}</span>" if t.message else ""
        rows.append(f"<tr class='kubelab-trial' data-trial='{t.index}'><td style='padding:2px 8px'>"
                    f"{html.escape(t.name)}{best}</td><td style='padding:2px 8px'>{value}</td>"
                    f"<td style='padding:2px 8px'>{phase_badge(t.phase)}{note}</td>"
                    f"<td style='padding:2px 8px'><code>{html.escape(params)}</code></td></tr>")
    summary = (f"<div class='kubelab-sweep-summary'><b>{html.escape(status.name)}</b> {phase_badge(status.phase)} "
               f"{status.algorithm}, {html.escape(status.objective.get('goal', ''))} {html.escape(metric)}, "
               f"{status.parallel} at a time</div>")
    message = f"<div class='kubelab-message'>{html.escape(status.message)}</div>" if status.message else ""
    warnings = "".join(f"<div class='kubelab-error' style='color:#b00020'>&#9888; {html.escape(w)}</div>"
                       for w in status.warnings)
    return (f"{summary}{message}{warnings}<table class='kubelab-sweep-trials'><thead>{head}</thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def chart_points(status: SweepStatus) -> tuple[list[int], list[float], list[int], list[float]]:
    """(trial x, objective y) of every scored trial, and the best-so-far line's (x, y)."""
    scored = sorted((t for t in status.trials if t.objective is not None), key=lambda t: t.index)
    xs = [t.index for t in scored]
    ys = [float(t.objective) for t in scored if t.objective is not None]
    best_x: list[int] = []
    best_y: list[float] = []
    minimize = status.objective.get("goal", "minimize") == "minimize"
    for x, y in zip(xs, ys, strict=True):
        if not best_y or (y < best_y[-1] if minimize else y > best_y[-1]):
            best_x.append(x)
            best_y.append(y)
        else:
            best_x.append(x)
            best_y.append(best_y[-1])
    return xs, ys, best_x, best_y


class SweepChart:
    """The objective per trial (a bqplot ``Scatter``) and the best so far (``Lines``)."""

    def __init__(self, widgets: Any) -> None:
        import bqplot

        x, y = bqplot.LinearScale(), bqplot.LinearScale()
        self.trials = bqplot.Scatter(x=[0], y=[0], scales={"x": x, "y": y}, colors=["#0072B2"], default_size=48,
                                     display_legend=True, labels=["trial"], visible=False)
        self.best = bqplot.Lines(x=[0], y=[0], scales={"x": x, "y": y}, colors=["#D55E00"], display_legend=True,
                                 labels=["best so far"], stroke_width=2, visible=False, interpolation="step-after")
        self.x_axis = bqplot.Axis(scale=x, label="trial", tick_format="d")
        self.figure = bqplot.Figure(
            marks=[self.trials, self.best], title="objective per trial", animation_duration=0,
            axes=[self.x_axis,
                  bqplot.Axis(scale=y, side="left", tick_format=".3g", grid_lines="dashed")],
            layout=widgets.Layout(width="34em", height="18em"), legend_location="top-right",
            fig_margin={"top": 40, "bottom": 40, "left": 60, "right": 20})
        self.figure.add_class("kubelab-sweep-chart")

    def draw(self, status: SweepStatus | None) -> int:
        """Redraw from ``status``; the number of trials drawn."""
        if status is None:
            self.trials.visible = self.best.visible = False
            return 0
        xs, ys, bx, by = chart_points(status)
        self.figure.title = f"{status.objective.get('metric', 'objective')} per trial"
        if not xs:
            self.trials.visible = self.best.visible = False
            return 0
        self.x_axis.tick_values = list(range(0, max(xs) + 1, max(1, (max(xs) + 9) // 10)))  # whole trials only
        with self.trials.hold_sync():
            self.trials.x, self.trials.y = xs, ys
        with self.best.hold_sync():
            self.best.x, self.best.y = bx, by
        self.trials.visible = self.best.visible = True
        return len(xs)


class SweepPanel:
    """The Sweep tab of :class:`~kubelab.widgets.launcher.JobLauncher`.

    Args:
        widgets: The ``ipywidgets`` module.
        client: The launcher's client.
        template: Builds the job every trial runs from the Jobs tab's form.
        run: The launcher's action runner (button disabled, errors on the error line).
        refresh_interval: Seconds between polls of the chosen sweep while it runs (>= 1).
        auto_refresh: Poll in a thread; tests turn it off and call :meth:`refresh`.
    """

    def __init__(self, widgets: Any, client: JobClient, template: Callable[[], JobSpec],
                 run: Callable[[Any, Callable[[], None]], None], *, refresh_interval: float = 2.0,
                 auto_refresh: bool = True) -> None:
        self.client = client
        self.template = template
        self._run = run
        self.refresh_interval = max(1.0, refresh_interval)
        self.auto_refresh = auto_refresh
        self.status: SweepStatus | None = None
        self._generation = 0
        self._thread: threading.Thread | None = None
        style, wide = {"description_width": "9em"}, widgets.Layout(width="32em")
        self.intro = widgets.HTML("<div class='kubelab-sweep-intro'>Every trial runs the job of the <b>Jobs</b> "
                                  "tab (script, framework, workers, GPUs, image, env) with its parameters.</div>")
        self.name = widgets.Text(description="Sweep name", value="sweep", style=style, layout=wide)
        self.space = widgets.Textarea(description="Space", placeholder=SPACE_PLACEHOLDER, rows=4, style=style,
                                      layout=wide)
        self.space_help = widgets.HTML(f"<div style='color:#555;max-width:40em'>{SPACE_HELP}</div>")
        self.metric = widgets.Text(description="Objective", value="loss", style=style, layout=wide)
        self.goal = widgets.Dropdown(description="Goal", options=["minimize", "maximize"], value="minimize",
                                     style=style, layout=wide)
        self.trials = widgets.BoundedIntText(description="Trials", value=6, min=1, max=200, style=style, layout=wide)
        self.parallel = widgets.BoundedIntText(description="At once", value=2, min=1, max=50, style=style,
                                               layout=wide)
        self.early_stopping = widgets.Checkbox(description="Stop trials worse than the median (early stopping)",
                                               value=False, indent=True, style={"description_width": "initial"},
                                               layout=wide)
        self.start_button = widgets.Button(description="Start sweep", button_style="primary", icon="search")
        self.sweep_select = widgets.Dropdown(description="Sweep", style=style, layout=wide)
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.cancel_button = widgets.Button(description="Cancel sweep", button_style="danger", icon="stop",
                                            disabled=True)
        self.table = widgets.HTML(trials_table_html(None))
        try:
            self.chart: SweepChart | None = SweepChart(widgets)
        except ImportError:  # no bqplot: the table still shows every objective
            self.chart = None
        self.start_button.on_click(lambda b: self._run(b, self._start))
        self.refresh_button.on_click(lambda b: self._run(b, self.refresh))
        self.cancel_button.on_click(lambda b: self._run(b, self._cancel))
        self.sweep_select.observe(lambda _c: self._run(None, self._show), names="value")
        self.box = widgets.VBox([
            self.intro, self.name, self.space, self.space_help, self.metric, self.goal, self.trials, self.parallel,
            self.early_stopping, widgets.HBox([self.start_button]),
            widgets.HTML("<h4>Sweeps</h4>"), widgets.HBox([self.sweep_select, self.refresh_button, self.cancel_button]),
            *([self.chart.figure] if self.chart is not None else []), self.table,
        ])
        self.box.add_class("kubelab-sweep-tab")

    # -- actions ------------------------------------------------------------------------------

    def _start(self) -> None:
        spec = self.template()
        status = self.client.sweep(
            spec, parse_space(self.space.value), {"metric": self.metric.value.strip(), "goal": self.goal.value},
            trials=int(self.trials.value), parallel=int(self.parallel.value), name=self.name.value.strip(),
            early_stopping={"rule": "median"} if self.early_stopping.value else None)
        print(f"Started sweep {status.name}: {status.trials_total} trials, {status.parallel} at a time")
        self.list_sweeps()
        self.sweep_select.value = status.name

    def _cancel(self) -> None:
        name = self.sweep_select.value
        if not name:
            raise KeyError("no sweep selected")
        self.client.cancel_sweep(name)
        print(f"Cancelled sweep {name}: its trials were stopped and removed")
        self.refresh()

    def list_sweeps(self) -> None:
        """Fill the sweep chooser (newest first)."""
        names = [s.name for s in self.client.sweeps()]
        current = self.sweep_select.value
        self.sweep_select.options = names
        if current in names:
            self.sweep_select.value = current

    def refresh(self) -> None:
        """Fetch the chosen sweep once and redraw the table and the chart."""
        name = self.sweep_select.value
        self.status = self.client.get_sweep(name) if name else None
        self.table.value = trials_table_html(self.status)
        if self.chart is not None:
            self.chart.draw(self.status)
        self.cancel_button.disabled = self.status is None or self.status.done

    def _show(self) -> None:
        self.refresh()
        self._generation += 1
        if self.auto_refresh and self.status is not None and not self.status.done:
            generation = self._generation
            self._thread = threading.Thread(target=self._poll, args=(generation,), name="kubelab-sweep-refresh",
                                            daemon=True)
            self._thread.start()

    def _poll(self, generation: int) -> None:
        stop = threading.Event()
        while generation == self._generation and not stop.wait(self.refresh_interval):
            try:
                self.refresh()
            except (KeyError, RuntimeError, OSError) as e:
                self.table.value = f"<i>sweep unavailable: {html.escape(str(e))}</i>"
                return
            if self.status is None or self.status.done:
                return

    def close(self) -> None:
        self._generation += 1
