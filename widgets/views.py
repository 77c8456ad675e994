"""The job list and job detail views as HTML, and the labels of the launcher's form.

Pure functions of ``options()`` and ``JobStatus`` values: the ipywidgets launcher shows their
HTML in ``HTML`` widgets, and the fallback ``_repr_html_`` (no ipywidgets) shows the same HTML,
so both look alike and the rendering is tested without a kernel.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import quote

from kubelab.jobs.explain import explain
from kubelab.jobs.spec import JobStatus
from kubelab.widgets.charts import latest_text

PHASE_COLOURS = {
    "Pending": "#8a6d00",
    "Queued": "#8a6d00",
    "Running": "#1565c0",
    "Succeeded": "#2e7d32",
    "Failed": "#b00020",
    "Cancelled": "#616161",
}
TABLE_COLUMNS = ("Name", "Framework", "Workers", "Phase (per rank)", "Age", "GPUs", "Latest")
#: Words in an image's key or name that mark it as a PyTorch image.
PYTORCH_WORDS = ("pytorch", "torch")


def phase_badge(phase: str, text: str | None = None) -> str:
    """A coloured phase label; the colour is a hint only, the text always says the phase."""
    colour = PHASE_COLOURS.get(phase, "#333")
    return (f'<span class="kubelab-phase kubelab-phase-{escape(phase.lower())}" '
            f'style="color:{colour};font-weight:600">{escape(text or phase)}</span>')


def age(created: str | None, now: dt.datetime | None = None) -> str:
    """``created`` (RFC 3339, UTC) as a short age: ``42s``, ``5m``, ``3h``, ``2d``."""
    if not created:
        return "-"
    try:
        then = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    now = now or dt.datetime.now(dt.UTC)
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def gpus_text(job: JobStatus) -> str:
    """``"2 x 1 a100"`` or ``"-"`` for a CPU job."""
    if not job.gpus_per_worker:
        return "-"
    return f"{job.workers} x {job.gpus_per_worker} {job.gpu_class or ''}".strip()


def ranks_html(job: JobStatus) -> str:
    """The phase of every rank: ``0 Running · 1 Pending``, or the job's phase if no ranks yet."""
    if not job.ranks:
        return phase_badge(job.phase)
    return " · ".join(phase_badge(r.phase, f"{r.rank} {r.phase}") for r in job.ranks)


def jobs_table_html(jobs: Iterable[JobStatus], now: dt.datetime | None = None,
                    latest: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """The job list: name, framework, workers, phase per rank, age, GPUs, latest metric values.

    Args:
        latest: Per job name, the newest value of each scalar it logged (``loss 0.031``).
    """
    jobs = list(jobs)
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{c}</th>" for c in TABLE_COLUMNS)
    if not jobs:
        body = f"<tr><td colspan='{len(TABLE_COLUMNS)}' style='padding:2px 8px'><i>No jobs yet.</i></td></tr>"
    else:
        rows = []
        for job in jobs:
            cells = (
                f"<b>{escape(job.name)}</b> {phase_badge(job.phase)}",
                escape(job.framework),
                str(job.workers),
                ranks_html(job),
                age(job.created, now),
                escape(gpus_text(job)),
                f"<span class='kubelab-latest'>{escape(latest_text((latest or {}).get(job.name) or {})) or '-'}</span>",
            )
            tds = "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in cells)
            rows.append(f"<tr class='kubelab-job' data-job='{escape(job.name)}'>{tds}</tr>")
        body = "".join(rows)
    return f"<table class='kubelab-jobs'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def job_detail_html(job: JobStatus) -> str:
    """One job: phase, message, each rank (pod, node, exit code), events and a failed rank's last lines."""
    parts = [f"<div class='kubelab-job-detail'><b>{escape(job.name)}</b> {phase_badge(job.phase)} "
             f"<span>({escape(job.engine)}, {escape(job.framework)}, user {escape(job.user)})</span>"]
    why = explain(job)
    if why is not None:
        # One plain sentence above the raw lines: what went wrong, in the user's terms.
        colour = "#b00020" if job.phase == "Failed" else "#8a6d00"
        parts.append(f"<div class='kubelab-explain' data-kind='{escape(why.kind)}' "
                     f"style='color:{colour};font-weight:600'>{escape(why.sentence)}</div>")
    if job.message and (why is None or job.phase != "Failed"):
        parts.append(f"<div class='kubelab-message'>{escape(job.message)}</div>")
    rows = "".join(
        f"<tr><td style='padding:0 8px'>{r.rank}</td><td style='padding:0 8px'>{phase_badge(r.phase)}</td>"
        f"<td style='padding:0 8px'>{escape(r.pod or '-')}</td><td style='padding:0 8px'>{escape(r.node or '-')}</td>"
        f"<td style='padding:0 8px'>{'-' if r.exit_code is None else r.exit_code}</td>"
        f"<td style='padding:0 8px'>{escape(r.message)}</td></tr>"
        for r in job.ranks
    )
    if rows:
        parts.append("<table><thead><tr><th>rank</th><th>phase</th><th>pod</th><th>node</th><th>exit</th>"
                     f"<th></th></tr></thead><tbody>{rows}</tbody></table>")
    if job.failed_rank is not None:
        parts.append(f"<div>Rank {job.failed_rank} failed; its last lines:</div>"
                     f"<pre class='kubelab-last-logs'>{escape(chr(10).join(job.last_logs))}</pre>")
    if job.events:
        items = "".join(f"<li>{escape(e)}</li>" for e in job.events[-5:])
        parts.append(f"<ul class='kubelab-events'>{items}</ul>")
    parts.append("</div>")
    return "".join(parts)


def gpu_class_label(gpu_class: Mapping[str, Any]) -> str:
    """``"NVIDIA A100 80GB (3 of 8 free)"``: the dropdown shows availability with the name."""
    name = str(gpu_class.get("display_name") or gpu_class.get("key"))
    free, total = gpu_class.get("free"), gpu_class.get("allocatable")
    if free is None or total is None:
        return name
    return f"{name} ({free} of {total} free)"


def quota_text(options: Mapping[str, Any]) -> str:
    """The GPU quota line: ``GPU quota: 1 of 2 in use (server 'gpu' (1 GPU)); 1 remaining``.

    It never contradicts itself: when the user's groups may use no GPU class (or the limit is 0),
    it says that the group allows none, not "0 of 2 in use; 0 remaining".
    """
    quota = options.get("quota") or {}
    used = quota.get("used_gpus") or 0
    limit = quota.get("max_gpus")
    users = ", ".join(quota.get("used_by") or [])
    in_use = f" ({users})" if users else ""
    if limit == 0 or ("gpu_classes" in options and not options.get("gpu_classes") and not used
                      and options.get("engine") != "local"):
        return "GPU quota: your group allows no GPUs; jobs run on CPU"
    if limit is None:
        return f"GPU quota: unlimited; {used} in use{in_use}"
    remaining = quota.get("remaining_gpus")
    remaining = max(0, limit - used) if remaining is None else remaining
    return f"GPU quota: {used} of {limit} in use{in_use}; {remaining} remaining"


def options_html(options: Mapping[str, Any]) -> str:
    """What the user may choose, for the fallback view without ipywidgets."""
    gpu = ", ".join(escape(gpu_class_label(g)) for g in options.get("gpu_classes") or []) or "none"
    images = ", ".join(escape(str(i.get("display_name") or i.get("key"))) for i in options.get("images") or [])
    return (
        "<ul class='kubelab-options'>"
        f"<li>Frameworks: {escape(', '.join(options.get('frameworks') or []))}</li>"
        f"<li>GPU classes: {gpu}</li>"
        f"<li>Images: {images or 'the notebook image'}</li>"
        f"<li>Workers: up to {escape(str(options.get('max_workers', '?')))}</li>"
        f"<li>{escape(quota_text(options))}</li>"
        "</ul>"
    )


def default_image_for(framework: str, options: Mapping[str, Any]) -> str:
    """The image preselected for a new job: ``""`` (the notebook's own image) unless the framework
    is PyTorch and the catalogue offers a PyTorch image, or another framework and the catalogue
    names a default. The notebook's own image is the safe choice: the script already runs there.
    """
    images = [i for i in options.get("images") or [] if i.get("key")]
    if framework == "pytorch":
        for image in images:
            words = f"{image.get('key', '')} {image.get('display_name', '')} {image.get('image', '')}".lower()
            if any(w in words for w in PYTORCH_WORDS):
                return str(image["key"])
        return ""
    default = options.get("default_image")
    return str(default) if default in [i["key"] for i in images] else ""


# -- where things are (issue 17) ------------------------------------------------------------------

#: Files of a job's output folder linked in the detail view (the folder link shows the rest).
MAX_OUTPUT_LINKS = 12
LINK_STYLE = "color:#1565c0;text-decoration:underline"


def lab_tree_url(path: str, root: str, base_url: str) -> str | None:
    """The JupyterLab URL showing ``path`` (a file opens, a folder opens in the file browser), or
    None when ``path`` is not under the server's ``root``."""
    root = root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None
    relative = path[len(root):].lstrip("/")
    return f"{base_url.rstrip('/')}/lab/tree/{quote(relative)}"


def where_outputs_text(options: Mapping[str, Any], name: str) -> str:
    """Under the form: where this job's outputs will go (``KUBELAB_OUTPUT_DIR``) and how they get there."""
    storage = options.get("storage") or {}
    pattern = storage.get("outputs")
    if not pattern:
        return ""
    folder = str(pattern).replace("<job>", name or "<name>")
    home = str(storage.get("home") or "")
    shown = "~" + folder[len(home):] if home and folder.startswith(home.rstrip("/") + "/") else folder
    how = ("the ranks write there as they run" if storage.get("outputs_route") == "direct" else
           "job pods cannot mount your home, so they come back into it when each rank ends")
    return f"Outputs (KUBELAB_OUTPUT_DIR): {shown} — {how}"


def outputs_html(job: JobStatus, files: list[str] | None = None, *, root: str = "", base_url: str = "") -> str:
    """The job's outputs: where they go, whether they are there, and, once the job ended, links
    to them in JupyterLab's file browser.

    Args:
        files: The output folder's files relative to it, as the notebook sees them (None: not listed).
        root: The folder the JupyterLab server serves (the home); links need the outputs under it.
        base_url: The server's URL prefix (``JUPYTERHUB_SERVICE_PREFIX``, e.g. ``/user/alice/``).
    """
    outputs = job.outputs or {}
    folder = outputs.get("dir")
    if not folder:
        return ""
    state = str(outputs.get("state") or "")
    # The message names the folder; links are styled as links (JupyterLab's CSS resets anchors).
    parts = [f"<div class='kubelab-outputs' data-state='{escape(state)}'><b>Outputs:</b> "
             f"{escape(str(outputs.get('message') or folder))}"]
    folder_url = lab_tree_url(folder, root, base_url) if root else None
    if job.done and folder_url is not None and files:
        parts.append(f" <a class='kubelab-outputs-folder' href='{escape(folder_url)}' target='_blank' "
                     f"style='{LINK_STYLE}'>Open the folder in the file browser</a>")
        items = "".join(
            f"<li><a class='kubelab-output' href='{escape(folder_url.rstrip('/') + '/' + quote(f))}' "
            f"target='_blank' style='{LINK_STYLE}'>{escape(f)}</a></li>" for f in files[:MAX_OUTPUT_LINKS])
        more = f"<li>… and {len(files) - MAX_OUTPUT_LINKS} more</li>" if len(files) > MAX_OUTPUT_LINKS else ""
        parts.append(f"<ul class='kubelab-output-files'>{items}{more}</ul>")
    elif job.done and files == []:
        parts.append(" <i>The folder holds no files.</i>")
    parts.append("</div>")
    return "".join(parts)
