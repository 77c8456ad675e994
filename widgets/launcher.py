"""``JobLauncher``: launch, watch and cancel distributed jobs from a notebook cell.

A view over :class:`kubelab.jobs.JobClient`, nothing more: the form is rendered from the
backend's ``options()`` (policy lives in one place, on the server, as with dask-gateway's
``cluster_options()``), and every action is one client call.

- **Callbacks are thin** (ipywidgets ``interaction.py``): disable the button, run inside
  ``with self.out:``, show an expected error in the widget's error line, re-enable in
  ``finally``. Unexpected exceptions are not caught: inside ``with self.out:`` a kernel shows
  their traceback in the widget, so nothing is only logged.
- **Refreshing polls the service with backoff**: every ``refresh_interval`` seconds while a job
  is active, slowing to ``max_refresh_interval`` when nothing changes, and backing off on errors.
  The service answers from its watch-backed cache, so no poll is a LIST against the API server.
- **ipywidgets is imported lazily**; without it the launcher still renders as HTML
  (``_repr_html_``: options and the job list), like dask's ``Cluster``.
- **Curves**: the chosen job's metrics (``kubelab.jobs.metrics.log`` in the script) are followed
  in a thread (one streamed request on the hub; at most one read a second locally) and drawn
  by bqplot (:mod:`kubelab.widgets.charts`) at most once a second; the table shows the latest
  values of every job whose metrics this view has seen.
- **Logs**: the pane shows only the script's own lines by default (the launcher's and torchrun's
  are hidden, :func:`kubelab.jobs.explain.user_lines`); "All lines" shows the raw log.
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from kubelab.jobs.backends.base import JobBackend
from kubelab.jobs.client import JobClient
from kubelab.jobs.explain import user_lines
from kubelab.jobs.spec import FRAMEWORKS, JobSpec, JobSpecError, JobStatus
from kubelab.widgets.charts import MetricCharts, MetricSeries
from kubelab.widgets.sweeps import SweepPanel
from kubelab.widgets.views import (
    default_image_for,
    gpu_class_label,
    job_detail_html,
    jobs_table_html,
    options_html,
    outputs_html,
    quota_text,
    where_outputs_text,
)

#: Errors a user can cause or fix (bad field, policy, quota, unknown job, service down):
#: shown in the widget's error line. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    JobSpecError, PermissionError, KeyError, RuntimeError, TimeoutError, ValueError, OSError,
)
#: Lines of a rank's log kept in the detail view (the full log is ``client.logs``).
LOG_LINES = 500
#: Seconds between redraws of a following log view: one widget update per batch, not per line.
LOG_FLUSH_SECONDS = 0.25


def _error_text(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # str(KeyError) adds quotes
    if isinstance(error, JobSpecError):
        return f"{error.field}: {error.problem}"
    return str(error) or error.__class__.__name__


def parse_env(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (blank lines and ``#`` comments skipped) as a dict.

    Raises:
        JobSpecError: A line without ``=`` (names the ``env`` field and the line).
    """
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise JobSpecError("env", f"line {number} {line!r}: expected KEY=VALUE")
        env[key.strip()] = value.strip()
    return env


class JobLauncher:
    """A form to launch a job, the table of your jobs, and a detail view with logs and Cancel.

    Args:
        client: The ``JobClient`` to use; by default one is made from ``backend``.
        backend: ``"auto"``, ``"hub"``, ``"local"`` or a ``JobBackend`` (when no client is given);
            a unit test passes a ``LocalBackend``.
        refresh_interval: Seconds between polls of the job list while a job is active.
        max_refresh_interval: The slowest poll, reached by backing off while nothing changes or
            while the service fails.
        auto_refresh: Poll in a background thread; tests turn it off and call :meth:`refresh`.
        script: Preset of the form's script (e.g. ``"kubelab-examples/ddp_train.py"``).
        workers: Preset of the form's workers.
        args: Preset of the form's arguments.
        **backend_options: Passed to the backend when one is made from a name.
    """

    def __init__(
        self,
        client: JobClient | None = None,
        *,
        backend: str | JobBackend = "auto",
        refresh_interval: float = 2.0,
        max_refresh_interval: float = 30.0,
        auto_refresh: bool = True,
        script: str | None = None,
        workers: int | None = None,
        args: str | None = None,
        **backend_options: Any,
    ) -> None:
        self.client = client or JobClient(backend, **backend_options)
        self.refresh_interval = refresh_interval
        self.max_refresh_interval = max_refresh_interval
        self._auto_refresh = auto_refresh
        self.options: dict[str, Any] = {}
        self.jobs: list[JobStatus] = []
        self.last_error: str = ""
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._poller: threading.Thread | None = None
        self._log_generation = 0
        self._log_thread: threading.Thread | None = None
        self._log_lines: deque[str] = deque(maxlen=LOG_LINES)
        self._quiet = 0  # > 0 while the launcher itself changes a dropdown; observers then do nothing
        self._presets = {"script": script, "workers": workers, "args": args}
        self._metrics_generation = 0
        self._metrics_thread: threading.Thread | None = None
        self.metric_series = MetricSeries()
        #: Latest metric values per job name, as this view has seen them (the table's last column).
        self.latest: dict[str, dict[str, float]] = {}
        try:
            import ipywidgets as widgets
        except ImportError:
            widgets = None  # type: ignore[assignment]
        self._widgets = widgets
        self._load_options()
        if widgets is not None:
            self._build(widgets)
            for key, value in self._presets.items():
                if value is not None:
                    getattr(self, key).value = value
        self.refresh()
        if auto_refresh and widgets is not None:
            self._poller = threading.Thread(target=self._poll_loop, name="kubelab-launcher-refresh", daemon=True)
            self._poller.start()

    # -- display ------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if self._widgets is not None:
            return self.widget._repr_mimebundle_(**kwargs)
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _repr_html_(self) -> str:
        """The launcher without ipywidgets: what you may choose and your jobs, as HTML."""
        error = f"<div class='kubelab-error' style='color:#b00020'>{html.escape(self.last_error)}</div>" \
            if self.last_error else ""
        return (
            "<div class='kubelab-launcher'><h4>kubelab jobs</h4>"
            f"{error}{options_html(self.options)}{jobs_table_html(self.jobs)}"
            "<p><i>Install ipywidgets for the launch form; meanwhile use "
            "<code>kubelab.jobs.JobClient</code>.</i></p></div>"
        )

    def __repr__(self) -> str:
        return f"JobLauncher({self.client!r}, {len(self.jobs)} job(s))"

    def close(self) -> None:
        """Stop polling and log streaming, and close the widgets."""
        self._closed.set()
        self._wake.set()
        self._log_generation += 1
        self._metrics_generation += 1
        if self._widgets is not None:
            self.sweep_panel.close()
            self.widget.close()

    # -- building the widgets -----------------------------------------------------------------

    def _build(self, widgets: Any) -> None:
        wide = widgets.Layout(width="32em")
        style = {"description_width": "9em"}
        self.header = widgets.HTML()
        self.framework = widgets.Dropdown(description="Framework", style=style, layout=wide)
        self.name = widgets.Text(description="Name", style=style, layout=wide)
        self.script = widgets.Text(description="Script", placeholder="train.py, or -m package.module",
                                   style=style, layout=wide)
        self.args = widgets.Text(description="Arguments", placeholder="--epochs 3", style=style, layout=wide)
        self.workers = widgets.BoundedIntText(description="Workers", value=2, min=1, max=1, style=style, layout=wide)
        self.gpu_class = widgets.Dropdown(description="GPU class", style=style, layout=wide)
        self.gpus = widgets.Dropdown(description="GPUs / worker", style=style, layout=wide)
        self.gpu_note = widgets.HTML()
        self.image = widgets.Dropdown(description="Image", style=style, layout=wide)
        self.env = widgets.Textarea(description="Env", placeholder="KEY=VALUE, one per line", rows=2,
                                    style=style, layout=wide)
        self.where = widgets.HTML()  # where the job's outputs will go
        self.submit_button = widgets.Button(description="Submit", button_style="primary", icon="rocket")
        self.error = widgets.HTML()
        self.out = widgets.Output()
        self.table = widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_note = widgets.HTML()
        self.job_select = widgets.Dropdown(description="Job", style=style, layout=wide)
        self.rank_select = widgets.Dropdown(description="Rank", style=style, layout=widgets.Layout(width="16em"))
        self.cancel_button = widgets.Button(description="Cancel job", button_style="danger", icon="stop",
                                            disabled=True)  # enabled once a job is chosen
        self.delete_button = widgets.Button(description="Delete job", icon="trash", disabled=True,
                                            tooltip="remove the job with its logs and metrics")
        self.detail = widgets.HTML()
        self.log_filter = widgets.ToggleButtons(options=[("Your lines", "own"), ("All lines", "all")], value="own",
                                                tooltips=["only what your script printed",
                                                          "also the launcher's and torchrun's lines"],
                                                style={"button_width": "7em"})
        self.logs_view = widgets.HTML(layout=widgets.Layout(max_height="24em", overflow="auto", border="1px solid #ddd"))
        try:
            self.charts: MetricCharts | None = MetricCharts(widgets)
        except ImportError:  # bqplot missing: the latest values still show in the table
            self.charts = None

        self._fill_form()
        self.framework.observe(self._on_framework, names="value")
        self.gpu_class.observe(self._on_gpu_class, names="value")
        self.gpus.observe(self._on_gpu_count, names="value")
        self.workers.observe(self._on_gpu_count, names="value")
        self.submit_button.on_click(self._on_submit)
        self.refresh_button.on_click(self._on_refresh)
        self.cancel_button.on_click(self._on_cancel)
        self.delete_button.on_click(self._on_delete)
        self.job_select.observe(self._on_job_select, names="value")
        self.rank_select.observe(self._on_rank_select, names="value")
        self.log_filter.observe(lambda _change: self._set_logs(self._log_lines), names="value")
        self.name.observe(lambda _change: self._show_where(), names="value")

        form = widgets.VBox([
            self.header, self.name, self.framework, self.script, self.args, self.workers,
            self.gpu_class, self.gpus, self.gpu_note, self.image, self.env, self.where,
            widgets.HBox([self.submit_button]), self.error, self.out,
        ])
        jobs = widgets.VBox([widgets.HBox([self.refresh_button, self.refresh_note]), self.table])
        detail = widgets.VBox([
            widgets.HBox([self.job_select, self.rank_select, self.cancel_button, self.delete_button]), self.detail,
            *([self.charts.box] if self.charts is not None else []),
            widgets.HBox([widgets.HTML("<b>Log</b>&nbsp;"), self.log_filter]), self.logs_view,
        ])
        jobs_view = widgets.VBox([
            form, widgets.HTML("<h4>Your jobs</h4>"), jobs, widgets.HTML("<h4>Job</h4>"), detail,
        ])
        # The Sweep tab (kubelab.widgets.sweeps): trials of the job this form describes.
        self.sweep_panel = SweepPanel(widgets, self.client, self.spec_from_form, self._run,
                                      auto_refresh=self._auto_refresh)
        self.widget = widgets.Tab(children=[jobs_view, self.sweep_panel.box], titles=("Jobs", "Sweep"))
        self.widget.observe(self._on_tab, names="selected_index")
        self.widget.add_class("kubelab-launcher")

    def _fill_form(self) -> None:
        """Set the form's choices from ``options()``."""
        options = self.options
        user = options.get("user")
        where = f" as {html.escape(str(user))}" if user else ""
        self.header.value = (f"<h3 style='margin:0'>Launch a distributed job{where}</h3>"
                             f"<div class='kubelab-quota'>{html.escape(quota_text(options))}</div>")
        frameworks = list(options.get("frameworks") or FRAMEWORKS)
        current = self.framework.value
        self.framework.options = frameworks
        self.framework.value = current if current in frameworks else frameworks[0]
        self.workers.max = max(1, int(options.get("max_workers") or 1))
        self.workers.value = min(2, self.workers.max)
        # "" rather than None for "no choice": a Dropdown shows value None as an empty box.
        self.gpu_class.options = [("CPU only", "")] + [
            (gpu_class_label(g), g["key"]) for g in options.get("gpu_classes") or []
        ]
        self.gpu_class.value = ""
        self.image.options = [("the notebook's image", "")] + [
            (str(i.get("display_name") or i["key"]), i["key"]) for i in options.get("images") or []
        ]
        self.image.value = default_image_for(self.framework.value, options)
        self._on_gpu_class()
        self._on_framework()
        self._show_where()

    def _show_where(self) -> None:
        text = where_outputs_text(self.options, self.name.value)
        self.where.value = f"<div class='kubelab-where' style='color:#555'>{html.escape(text)}</div>" if text else ""

    def outputs_view(self, job: JobStatus) -> str:
        """The job's outputs as HTML, with links into JupyterLab's file browser once it ended.

        The folder is listed from this kernel's own view of the files, which is the user's server's
        (the same home); the links are relative to the server's root, the home.
        """
        folder = (job.outputs or {}).get("dir")
        files: list[str] | None = None
        if folder and job.done and os.path.isdir(folder):
            found = []
            for top, dirs, names in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.relpath(os.path.join(top, n), folder) for n in sorted(names) if not n.startswith(".")]
                if len(found) > 100:
                    break
            files = found
        base = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        return outputs_html(job, files, root=os.path.expanduser("~"), base_url=base)

    def _new_name(self) -> str:
        return f"{self.framework.value or 'job'}-{secrets.token_hex(2)}"

    # -- form observers -----------------------------------------------------------------------

    def _on_framework(self, change: dict[str, Any] | None = None) -> None:
        # A fresh default name per framework, unless the user typed their own.
        if not self.name.value or (change and self.name.value.startswith(f"{change.get('old')}-")):
            self.name.value = self._new_name()
        if change is not None:
            self.image.value = default_image_for(self.framework.value, self.options)

    def _gpu_class_options(self, key: str | None) -> dict[str, Any]:
        for g in self.options.get("gpu_classes") or []:
            if g.get("key") == key:
                return g
        return {}

    def _on_gpu_class(self, change: dict[str, Any] | None = None) -> None:
        counts = self._gpu_class_options(self.gpu_class.value).get("counts") or []
        if not self.gpu_class.value or not counts:
            self.gpus.options = [("0 (CPU)", 0)]
            self.gpus.value = 0
            self.gpus.disabled = True
        else:
            self.gpus.options = [(str(c), int(c)) for c in counts]
            self.gpus.value = int(counts[0])
            self.gpus.disabled = False
        self._on_gpu_count()

    def _on_gpu_count(self, change: dict[str, Any] | None = None) -> None:
        """Say what the job would take from the quota and the free GPUs before it is submitted."""
        need = (self.gpus.value or 0) * (self.workers.value or 0)
        if not need:
            self.gpu_note.value = ""
            return
        quota = self.options.get("quota") or {}
        remaining = quota.get("remaining_gpus")
        free = self._gpu_class_options(self.gpu_class.value).get("free")
        note = f"This job takes {need} GPU(s)"
        warn = False
        if remaining is not None:
            note += f"; {remaining} left in your quota"
            warn = need > remaining
        if free is not None:
            note += f"; {free} free now"
            if need > free:
                note += " (it will wait for GPUs)"
        colour = "#b00020" if warn else "#555"
        self.gpu_note.value = f"<div class='kubelab-gpu-note' style='color:{colour}'>{html.escape(note)}</div>"

    # -- callbacks: thin, errors shown in the widget --------------------------------------------

    def _run(self, button: Any, action: Callable[[], None]) -> None:
        """Run a user action: button disabled meanwhile, errors on the error line.

        Inside ``with self.out:`` so that whatever the action prints, and the traceback of an
        unexpected exception, appear in the notebook under the widget.
        """
        if button is not None:
            button.disabled = True
        with self.out:
            try:
                self._set_error("")
                action()
            except USER_ERRORS as e:
                self._set_error(_error_text(e))
            finally:
                if button is not None:
                    button.disabled = False

    def _on_submit(self, _button: Any = None) -> None:
        self._run(self.submit_button, self._submit)

    def _on_refresh(self, _button: Any = None) -> None:
        self._run(self.refresh_button, self._refresh_now)

    def _on_cancel(self, _button: Any = None) -> None:
        self._run(self.cancel_button, self._cancel_selected)
        self._update_buttons()

    def _on_delete(self, _button: Any = None) -> None:
        self._run(self.delete_button, self._delete_selected)
        self._update_buttons()

    def _on_tab(self, change: dict[str, Any]) -> None:
        if change.get("new") == 1:  # the Sweep tab: its list of sweeps, fresh
            self._run(None, self.sweep_panel.list_sweeps)

    def _update_buttons(self) -> None:
        """Cancel only a job that still runs; delete any chosen job."""
        name = self.job_select.value
        job = next((j for j in self.jobs if j.name == name), None)
        self.cancel_button.disabled = job is None or job.done
        self.delete_button.disabled = name is None

    def _on_job_select(self, change: dict[str, Any] | None = None) -> None:
        if not self._quiet:
            self._run(None, self._show_selected)

    def _on_rank_select(self, change: dict[str, Any] | None = None) -> None:
        if not self._quiet:
            self._run(None, self._stream_logs)

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """Change dropdowns without their observers reacting (setting options changes the value)."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    # -- actions ------------------------------------------------------------------------------

    def spec_from_form(self) -> JobSpec:
        """The ``JobSpec`` the form describes.

        Raises:
            JobSpecError: A field is invalid (the spec checks itself).
        """
        target = self.script.value.strip()
        script, module = target, None
        if target.startswith("-m "):
            script, module = None, target[3:].strip()
        try:
            args = shlex.split(self.args.value)
        except ValueError as e:
            raise JobSpecError("args", str(e)) from e
        return JobSpec(
            name=self.name.value.strip(),
            framework=self.framework.value,
            script=script or None,
            module=module,
            args=args,
            workers=int(self.workers.value),
            gpus_per_worker=int(self.gpus.value or 0),
            gpu_class=self.gpu_class.value or None,
            image=self.image.value or None,
            env=parse_env(self.env.value),
        )

    def _submit(self) -> None:
        spec = self.spec_from_form()
        status = self.client.submit(spec)
        print(f"Submitted job {status.name}: {status.phase}")
        self.name.value = self._new_name()  # the next submission needs a new name
        self._refresh_now()
        self.select(status.name)

    def _cancel_selected(self) -> None:
        name = self.job_select.value
        if not name:
            raise KeyError("no job selected")
        self.client.cancel(name)
        print(f"Cancelled job {name}")
        self._refresh_now()

    def _delete_selected(self) -> None:
        name = self.job_select.value
        if not name:
            raise KeyError("no job selected")
        self.client.delete(name)
        self.latest.pop(name, None)
        print(f"Deleted job {name}")
        self._refresh_now()

    def _refresh_now(self) -> None:
        self._load_options()
        self.refresh()
        self._wake.set()  # the poller starts again from its fastest interval

    def select(self, name: str) -> None:
        """Show job ``name`` in the detail view and follow rank 0's log."""
        if self._widgets is None:
            return
        if name not in self.job_select.options:
            self._update_job_select()
        self.job_select.value = name

    def _show_selected(self) -> None:
        name = self.job_select.value
        self._update_buttons()
        job = next((j for j in self.jobs if j.name == name), None)
        if job is None:
            self.detail.value = ""
            self.rank_select.options = []
            self._set_logs([])
            self._log_generation += 1
            self._metrics_generation += 1
            if self.charts is not None:
                self.charts.clear()
            return
        self.detail.value = job_detail_html(job) + self.outputs_view(job)
        self._follow_metrics_of(job.name)
        ranks = list(range(job.workers))
        if list(self.rank_select.options) != ranks:
            with self._quietly():
                self.rank_select.options = ranks
                self.rank_select.value = 0
        self._stream_logs()

    # -- refreshing ---------------------------------------------------------------------------

    def _load_options(self) -> None:
        try:
            self.options = self.client.options()
        except USER_ERRORS as e:
            # The form still renders (from defaults); the reason is on the error line.
            self._set_error(f"cannot load the options: {_error_text(e)}")
            return
        if self._widgets is not None and hasattr(self, "header"):
            keep = (self.gpu_class.value, self.gpus.value)
            self._fill_form()
            if keep[0] in [v for _, v in self.gpu_class.options]:
                self.gpu_class.value = keep[0]
                if keep[1] in [v for _, v in self.gpus.options]:
                    self.gpus.value = keep[1]

    def refresh(self) -> bool:
        """Fetch the job list once and redraw; True when something changed.

        Raises:
            Nothing the user can fix: those errors go to the error line and return False.
        """
        try:
            jobs = self.client.list()
        except USER_ERRORS as e:
            self._set_error(f"cannot list jobs: {_error_text(e)}")
            return False
        if self.last_error.startswith("cannot list jobs"):
            self._set_error("")  # the service is back
        with self._lock:
            changed = [j.to_dict() for j in jobs] != [j.to_dict() for j in self.jobs]
            self.jobs = jobs
        for job in jobs:
            latest = getattr(job, "latest", None)  # published by services that keep metrics
            if latest:
                self.latest[job.name] = dict(latest)
        if self._widgets is not None:
            self.table.value = jobs_table_html(jobs, latest=self.latest)
            self._update_job_select()
            name = self.job_select.value
            job = next((j for j in jobs if j.name == name), None)
            if job is not None:
                self.detail.value = job_detail_html(job) + self.outputs_view(job)
            self._update_buttons()
        return changed

    def _update_job_select(self) -> None:
        names = [j.name for j in self.jobs]
        if list(self.job_select.options) != names:
            current = self.job_select.value
            with self._quietly():
                self.job_select.options = names
                self.job_select.value = current if current in names else None
            if self.job_select.value != current:  # the shown job is gone (cancelled elsewhere)
                self._show_selected()

    def _poll_loop(self) -> None:
        """Poll with backoff: fast while a job is active or after an action, slower when idle."""
        interval = self.refresh_interval
        while not self._closed.is_set():
            woken = self._wake.wait(interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            errors_before = self.last_error
            changed = self.refresh()
            failed = self.last_error.startswith("cannot list jobs") and self.last_error != errors_before
            active = any(not j.done for j in self.jobs)
            if woken or ((changed or active) and not failed):
                interval = self.refresh_interval
            else:
                # Idle or failing: each poll waits longer, so a thousand idle notebooks cost little.
                interval = min(self.max_refresh_interval, interval * (2.0 if failed else 1.5))
            self.refresh_note.value = f"<span style='color:#777'>next refresh in {interval:.0f} s</span>"

    # -- logs ---------------------------------------------------------------------------------

    def _stream_logs(self) -> None:
        """Follow the chosen rank's log in a thread; a newer choice makes older streams stop."""
        name, rank = self.job_select.value, self.rank_select.value
        self._log_generation += 1
        generation = self._log_generation
        self._log_lines = deque(maxlen=LOG_LINES)
        self._set_logs([])
        if name is None or rank is None:
            return
        thread = threading.Thread(target=self._follow_logs, args=(name, int(rank), generation),
                                  name=f"kubelab-logs-{name}-{rank}", daemon=True)
        self._log_thread = thread
        thread.start()

    def _follow_logs(self, name: str, rank: int, generation: int) -> None:
        lines = self._log_lines
        last_flush = 0.0
        try:
            for line in self.client.logs(name, rank=rank, follow=True, tail=LOG_LINES):
                if generation != self._log_generation:
                    return  # another job or rank was chosen; that stream has taken over
                lines.append(line)
                if time.monotonic() - last_flush > LOG_FLUSH_SECONDS:
                    self._set_logs(lines)
                    last_flush = time.monotonic()
        except USER_ERRORS as e:
            if generation == self._log_generation:
                lines.append(f"[logs unavailable: {_error_text(e)}]")
        if generation == self._log_generation:
            self._set_logs(lines)

    def wait_for_logs(self, timeout: float | None = None) -> None:
        """Block until the current log stream ends (a test helper, also handy in scripts)."""
        if self._log_thread is not None:
            self._log_thread.join(timeout)

    # -- metrics ------------------------------------------------------------------------------

    def _follow_metrics_of(self, name: str) -> None:
        """Follow job ``name``'s metrics in a thread; choosing another job stops it."""
        if self._metrics_thread is not None and self._metrics_thread.is_alive() and \
                getattr(self._metrics_thread, "job", None) == name:
            return
        self._metrics_generation += 1
        generation = self._metrics_generation
        self.metric_series = MetricSeries()
        if self.charts is not None:
            self.charts.clear("<i>Waiting for metrics…</i>")
        thread = threading.Thread(target=self._follow_metrics, args=(name, generation),
                                  name=f"kubelab-metrics-{name}", daemon=True)
        thread.job = name  # type: ignore[attr-defined]
        self._metrics_thread = thread
        thread.start()

    def _follow_metrics(self, name: str, generation: int) -> None:
        series = self.metric_series
        try:
            for item in self.client.follow_metrics(name):
                if generation != self._metrics_generation or self._closed.is_set():
                    return
                if series.apply(item):
                    self._show_metrics(name, series, force=bool(item.get("done")))
            if generation == self._metrics_generation:
                self._show_metrics(name, series, force=True)
        except USER_ERRORS as e:
            if generation == self._metrics_generation and self.charts is not None:
                self.charts.note.value = f"<i>metrics unavailable: {html.escape(_error_text(e))}</i>"

    def _show_metrics(self, name: str, series: MetricSeries, force: bool = False) -> None:
        latest = series.latest()
        if latest and self.latest.get(name) != latest:
            self.latest[name] = latest
            if self._widgets is not None:
                self.table.value = jobs_table_html(self.jobs, latest=self.latest)
        if self.charts is not None:
            self.charts.draw(series, force=force or series.done)

    def wait_for_metrics(self, timeout: float | None = None) -> None:
        """Block until the current metrics follow ends (the job ended); a test and script helper."""
        if self._metrics_thread is not None:
            self._metrics_thread.join(timeout)

    def _set_logs(self, lines: Any) -> None:
        if self._widgets is None:
            return
        lines = list(lines)
        if getattr(self, "log_filter", None) is not None and self.log_filter.value == "own":
            lines = user_lines(lines)
        text = html.escape("\n".join(lines))
        self.logs_view.value = f"<pre class='kubelab-logs' style='margin:0;padding:4px'>{text}</pre>"

    def _set_error(self, message: str) -> None:
        self.last_error = message
        if self._widgets is not None and hasattr(self, "error"):
            self.error.value = (f"<div class='kubelab-error' style='color:#b00020'>&#9888; {html.escape(message)}</div>"
                                if message else "")

    @property
    def log_text(self) -> str:
        """The log lines the detail view shows now."""
        return "\n".join(self._log_lines)
