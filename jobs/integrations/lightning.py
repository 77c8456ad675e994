"""A PyTorch Lightning logger that sends ``self.log(...)`` scalars to kubelab.

Usage::

    from kubelab.jobs.integrations.lightning import KubelabLogger

    trainer = lightning.Trainer(logger=KubelabLogger(), ...)   # or logger=[KubelabLogger(), TensorBoardLogger(...)]

Works with ``lightning`` (2.x) and the older ``pytorch_lightning`` package, whichever is
installed. Lightning calls a logger on global rank 0 only; kubelab's series then hold rank 0's
values, which after DDP's reduction (``sync_dist=True``) are the job's.
"""

from __future__ import annotations

from argparse import Namespace
from typing import Any

try:
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the pre-2.0 package name
    from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
    from pytorch_lightning.utilities import rank_zero_only

from kubelab.jobs import metrics as kubelab_metrics
from kubelab.jobs.integrations import log_scalars


class KubelabLogger(Logger):
    """Forward Lightning's logged metrics to :func:`kubelab.jobs.metrics.log`.

    Args:
        prefix: Added before every name.
    """

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    @property
    def name(self) -> str:
        return "kubelab"

    @property
    def version(self) -> str:
        return "0"

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        return kubelab_metrics

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Hyper-parameters are not curves; kubelab keeps none."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:  # noqa: F811 - Lightning's name
        log_scalars(int(step or 0), metrics, self.prefix)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        kubelab_metrics.flush()
