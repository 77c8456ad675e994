"""Where a job's outputs are, and when its collector is done (pure; the reconciler does the I/O).

A job's parent records where its outputs go (``kubelab.io/outputs``: ``dir`` and ``route``, see
:mod:`kubelab.jobs.builders.collector`). On the ``direct`` route the ranks write there themselves.
On the ``collect`` route the job's collector brings each rank's output folder into the
ReadWriteOnce home when the rank ends; it stops by itself once every rank succeeded and handed
its files over, or the reconciler closes it once the job has ended and no rank pod runs any more
(:func:`collector_step`). Either way the reconciler then records the collector's last summary
line in the parent (``outputs.json``), which :func:`outputs_status` reads back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubelab.core.naming import ANNOTATION_OUTPUTS, COMPONENT_COLLECTOR, LABEL_COMPONENT
from kubelab.jobs.transfer import human

#: The parent's data key holding the collection's result.
OUTPUTS_KEY = "outputs.json"
#: What the collector prints before each summary (:mod:`kubelab.jobs.transfer`).
SUMMARY_PREFIX = "kubelab-collector: "
TERMINAL = ("Succeeded", "Failed")

#: :func:`collector_step` answers.
WAIT = "wait"
RECORD = "record"
CLOSE = "close"


def is_collector(pod: Mapping[str, Any]) -> bool:
    """Whether ``pod`` is a job's collector."""
    return ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT) == COMPONENT_COLLECTOR


def _phase(pod: Mapping[str, Any] | None) -> str:
    return ((pod or {}).get("status") or {}).get("phase") or "Pending"


def collector_of(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The job's collector pod among its pods (the newest, should there be two)."""
    found = [p for p in pods if is_collector(p)]
    return max(found, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "") if found else None


def planned(parent: Mapping[str, Any]) -> dict[str, Any]:
    """``{"dir", "route"}`` from the parent's annotation; ``{}`` for jobs from before it existed."""
    raw = ((parent.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_OUTPUTS)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def recorded(parent: Mapping[str, Any]) -> dict[str, Any] | None:
    """The collection's recorded result, if the reconciler wrote it."""
    raw = (parent.get("data") or {}).get(OUTPUTS_KEY)
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def collector_step(parent: Mapping[str, Any], job_done: bool, pods: Iterable[Mapping[str, Any]]) -> str:
    """What the reconciler does about a job's collector now.

    * :data:`RECORD`: the collector has stopped (done, or failed) and nothing is recorded yet;
    * :data:`CLOSE`: the job has ended, no rank pod is still running (each handed over what it
      could, or never will), yet the collector waits: stop it, then record;
    * :data:`WAIT`: otherwise (no collector, already recorded, ranks still at work).
    """
    if planned(parent).get("route") != "collect" or recorded(parent) is not None:
        return WAIT
    pods = list(pods)
    collector = collector_of(pods)
    if collector is None:
        return RECORD if job_done else WAIT  # deleted, or never created: record that nothing came
    if _phase(collector) in TERMINAL:
        return RECORD
    # A rank pod being deleted still runs until its grace ends: it may be handing over its outputs.
    ranks_running = [p for p in pods if not is_collector(p) and _phase(p) not in TERMINAL]
    if job_done and not ranks_running:
        return CLOSE
    return WAIT


def summary_from_log(lines: Iterable[str]) -> dict[str, Any] | None:
    """The collector's last summary line (``kubelab-collector: {...}``) as a dict."""
    found = None
    for line in lines:
        text = line.strip()
        if text.startswith(SUMMARY_PREFIX) and text.endswith("}"):
            try:
                value = json.loads(text[len(SUMMARY_PREFIX):])
            except ValueError:
                continue
            if isinstance(value, dict):
                found = value
    return found


def record_for(summary: Mapping[str, Any] | None, collector: Mapping[str, Any] | None, last_lines: list[str]) -> dict[str, Any]:
    """The parent's ``outputs.json``: the collector's summary, or why there is none."""
    if summary is not None:
        return dict(summary)
    if collector is None:
        why = "the job's collector was gone before it reported"
    else:
        why = f"the job's collector ended {_phase(collector)} without a report"
        error = next((ln for ln in reversed(last_lines) if "error" in ln.lower()), None)
        if error:
            why += f": {error.strip()[:300]}"
    return {"state": "failed", "message": why, "files": 0, "bytes": 0}


def outputs_status(parent: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], job_done: bool) -> dict[str, Any]:
    """:attr:`JobStatus.outputs`: where the outputs go, and in words, whether they are there."""
    plan = planned(parent)
    folder, route = plan.get("dir"), plan.get("route")
    if not folder:
        return {}
    out: dict[str, Any] = {"dir": folder, "route": route}
    if route != "collect":
        out["state"] = "written" if job_done else "writing"
        out["message"] = (f"The ranks wrote their outputs to {folder}; your server sees them there." if job_done
                          else f"The ranks write their outputs to {folder}; your server sees them as they are written.")
        return out
    result = recorded(parent)
    collector = collector_of(pods)
    if result is None:
        out["state"] = "collecting" if job_done else "waiting"
        where = (f" (the collector runs on {(collector.get('spec') or {}).get('nodeName')})"
                 if collector is not None and (collector.get("spec") or {}).get("nodeName") else "")
        out["message"] = (f"Outputs are being brought into your home at {folder}{where}." if job_done else
                          f"Outputs written to {folder} in the job come into your home at the same path when "
                          f"each rank ends{where}.")
        return out
    out.update({k: result.get(k) for k in ("state", "files", "bytes", "missing_ranks", "skipped", "refused")
                if k in result})
    files, size = result.get("files") or 0, result.get("bytes") or 0
    if result.get("state") == "collected":
        out["message"] = f"{files} file(s) ({human(size)}) came back into your home at {folder}."
    elif result.get("state") == "failed":
        out["message"] = f"No outputs came back: {result.get('message', 'the collector failed')}."
    else:
        missing = result.get("missing_ranks") or []
        parts = [f"{files} file(s) ({human(size)}) came back into {folder}"]
        if missing:
            parts.append(f"rank(s) {', '.join(map(str, missing))} sent nothing (stopped before they could)")
        if result.get("refused"):
            parts.append(f"{result['refused']} file(s) were over the job's output budget and did not")
        if result.get("skipped"):
            parts.append(f"{result['skipped']} file(s) were written by two ranks; the lower rank's was kept")
        out["message"] = "; ".join(parts) + "."
    return out

