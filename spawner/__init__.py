"""kubelab.spawner: ``LabSpawner`` and the pure pieces it is built from.

Public API: :class:`LabSpawner`, :func:`configure_hub`, :class:`QuotaLedger` / :func:`shared_ledger`,
:class:`ClusterCache` / :func:`shared_cache`, :func:`gpu_availability`, :func:`validate_user_options`.
"""

from .availability import ClassAvailability, gpu_availability
from .cluster import ClusterCache, shared_cache
from .configure import configure_hub, load_catalogue_or_exit
from .options import OptionsError, Selection, validate_user_options
from .quota import QuotaExceeded, QuotaLedger, Reservation, shared_ledger

__all__ = [
    "ClassAvailability",
    "ClusterCache",
    "LabSpawner",
    "OptionsError",
    "QuotaExceeded",
    "QuotaLedger",
    "Reservation",
    "Selection",
    "configure_hub",
    "load_catalogue_or_exit",
    "gpu_availability",
    "shared_cache",
    "shared_ledger",
    "validate_user_options",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy: importing kubespawner is slow and needs jupyterhub
    if name == "LabSpawner":
        from .spawner import LabSpawner

        return LabSpawner
    raise AttributeError(name)
