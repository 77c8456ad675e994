"""A Hugging Face ``transformers.Trainer`` callback that sends its logs to kubelab.

Usage::

    from kubelab.jobs.integrations.huggingface import KubelabCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[KubelabCallback()])

Every ``on_log`` (each ``logging_steps``, and evaluation) becomes one ``metrics.log`` at
``state.global_step`` with the numeric entries (``loss``, ``learning_rate``, ``eval_loss``...).
Safe on every rank: each rank's series is its own.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from kubelab.jobs import metrics
from kubelab.jobs.integrations import log_scalars


class KubelabCallback(TrainerCallback):
    """Forward the Trainer's logged scalars to :func:`kubelab.jobs.metrics.log`.

    Args:
        prefix: Added before every name (e.g. ``"hf/"``).
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs:
            log_scalars(int(state.global_step), logs, self.prefix)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The last points leave before the Trainer returns, not only at interpreter exit.
        metrics.flush()
