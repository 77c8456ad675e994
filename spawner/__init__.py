"""kubelab.spawner: ``LabSpawner`` and the pure pieces it is built from.

Public API: :class:`LabSpawner`, :func:`configure_spawner`, :func:`validate_user_options`.
The shared hub state it reads (cluster cache, quota ledger, availability) lives in
:mod:`kubelab.core` and reaches it through the platform the hub was configured with.
"""

from .configure import configure_spawner
from .options import OptionsError, Selection, validate_user_options
from .spawner import LabSpawner

__all__ = [
    "LabSpawner",
    "OptionsError",
    "Selection",
    "configure_spawner",
    "validate_user_options",
]
