"""kubelab.spawner: ``LabSpawner`` and the pure pieces it is built from.

Public API: :class:`LabSpawner`, :func:`configure_hub`, :func:`validate_user_options`.
The shared hub state it reads (cluster cache, quota ledger, availability) lives in
:mod:`kubelab.core`.
"""

from .configure import configure_hub, load_catalogue_or_exit
from .options import OptionsError, Selection, validate_user_options

__all__ = [
    "LabSpawner",
    "OptionsError",
    "Selection",
    "configure_hub",
    "load_catalogue_or_exit",
    "validate_user_options",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy: importing kubespawner is slow and needs jupyterhub
    if name == "LabSpawner":
        from .spawner import LabSpawner

        return LabSpawner
    raise AttributeError(name)
