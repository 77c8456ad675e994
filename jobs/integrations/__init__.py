"""Thin adapters that feed :func:`kubelab.jobs.metrics.log` from training frameworks.

Each module imports its framework at import time, so it loads only where that framework is
installed; ``import kubelab.jobs`` never imports them. Use::

    from kubelab.jobs.integrations.huggingface import KubelabCallback   # transformers.Trainer
    from kubelab.jobs.integrations.lightning import KubelabLogger       # lightning / pytorch_lightning
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelab.jobs import metrics


def log_scalars(step: int, values: Mapping[str, Any], prefix: str = "") -> bool:
    """Log the numeric entries of ``values`` at ``step`` (others skipped); names are sanitised.

    Frameworks report a mix (``{"loss": 0.3, "epoch": 1.0, "train_runtime": ..., "model": "x"}``)
    and names such as ``train/loss`` or ``val loss``: anything ``metrics.log`` would refuse is
    left out or renamed here, so an adapter never fills stderr with refusals.
    """
    scalars: dict[str, float] = {}
    for key, value in values.items():
        number = metrics.as_value(value)
        if number is None:
            continue
        name = sanitise(f"{prefix}{key}")
        if name is not None:
            scalars[name] = number
        if len(scalars) == metrics.MAX_SCALARS:
            break
    if not scalars:
        return True
    return metrics.log(step, **scalars)


def sanitise(name: str) -> str | None:
    """``name`` made acceptable to :data:`kubelab.jobs.metrics.NAME_PATTERN`, or None."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_./-") else "_" for c in str(name))[:64]
    if cleaned and not (cleaned[0].isalpha() or cleaned[0] == "_"):
        cleaned = ("_" + cleaned)[:64]
    return cleaned if metrics.check_name(cleaned) is None else None
