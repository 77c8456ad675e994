"""Examples on offer to every user: a DDP training script that logs metrics, and a notebook
with the launcher.

``copy_examples(dest)`` puts them in a folder of the user's home (``~/kubelab-examples`` by
default) without overwriting the user's edits; the JupyterLab launcher tile "Distributed job"
does that and opens the notebook::

    from kubelab.jobs.examples import copy_examples
    copy_examples()          # -> ~/kubelab-examples/{ddp_train.py, distributed-job.ipynb}
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

HERE = Path(__file__).parent
#: The files on offer, as they are named in the user's folder.
FILES = ("ddp_train.py", "distributed-job.ipynb")
#: Where they go in the home.
DEFAULT_FOLDER = "kubelab-examples"


def example_path(name: str) -> Path:
    """The shipped copy of example ``name`` (one of :data:`FILES`).

    Raises:
        KeyError: Not an example.
    """
    if name not in FILES:
        raise KeyError(f"no example {name!r}; examples: {', '.join(FILES)}")
    return HERE / name


def copy_examples(dest: str | os.PathLike[str] | None = None) -> Path:
    """Copy the examples into ``dest`` (default ``~/kubelab-examples``); a file already there is
    kept as the user left it.

    Returns:
        The folder.
    """
    folder = Path(dest) if dest is not None else Path.home() / DEFAULT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = folder / name
        if not target.exists():
            shutil.copyfile(example_path(name), target)
    return folder
