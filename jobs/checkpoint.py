"""``kubelab.jobs.checkpoint``: save and resume training state, so a job survives losing a pod.

Standard library only, plus what the framework already has: a state holding torch tensors is
written with ``torch.save`` when the script has imported torch, anything else with ``pickle``::

    from kubelab.jobs import checkpoint

    start = 0
    found = checkpoint.latest()            # None on the first run
    if found is not None:
        model.load_state_dict(found.state["model"])
        opt.load_state_dict(found.state["opt"])
        start = found.step + 1
    for step in range(start, steps):
        train_step(step)
        if step % 20 == 0:
            checkpoint.save({"model": model.state_dict(), "opt": opt.state_dict()}, step)

Where: ``KUBELAB_CHECKPOINT_DIR``, which kubelab sets for a job with ``checkpoint_dir`` (a folder
of the user's files that every rank and every restart of the job sees), or the ``folder``
argument. Files are ``checkpoint-<step, 10 digits>.pt`` (torch) or ``.pkl`` (pickle).

**Atomic.** :func:`save` writes a temporary file in the same folder, flushes and ``fsync``\\ s
it, renames it over the final name (``os.replace``, atomic on POSIX) and ``fsync``\\ s the folder.
A process killed mid-write leaves a temporary file, never a torn checkpoint: :func:`latest` only
reads complete names and ignores the temporary files, so the previous checkpoint is intact.
The newest ``keep`` checkpoints stay; older ones are removed after the new one is in place.

**Ranks.** In a DDP job every rank holds the same state, so by default only rank 0 writes
(torchrun's ``RANK``, else ``KUBELAB_RANK``); every rank reads the same file with
:func:`latest`. On rank 0, :func:`latest` says on stderr which step it resumes from
(``kubelab-checkpoint: resuming from step 120 (...)``); the jobs service reads that line to
report "resumed from step 120" after a restart.
"""

from __future__ import annotations

import os
import pickle  # noqa: S403 - the user's own checkpoints, written by their own job
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The environment variable naming the job's checkpoint folder (jobs/CONTRACT.md).
ENV = "KUBELAB_CHECKPOINT_DIR"
#: A complete checkpoint's file name; temporary files never match it.
_NAME = re.compile(r"checkpoint-(?P<step>\d{10})\.(?P<fmt>pt|pkl)")
#: The line rank 0 prints when it resumes; the jobs service looks for it in the rank's log.
RESUME_LINE = re.compile(r"kubelab-checkpoint: resuming from step (?P<step>\d+)")
#: Checkpoints kept by default.
KEEP = 2
#: Largest step (a file name holds 10 digits).
MAX_STEP = 10**10 - 1


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back: its step, the state that was saved, and its file."""

    step: int
    state: Any
    path: Path


def folder(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The checkpoint folder: ``path``, else ``$KUBELAB_CHECKPOINT_DIR``, else None."""
    raw = os.fspath(path) if path is not None else os.environ.get(ENV)
    return Path(raw) if raw else None


def rank() -> int:
    """This process's global rank: torchrun's ``RANK``, else ``KUBELAB_RANK`` + ``KUBELAB_RANK_OFFSET``."""
    for name in ("RANK", "KUBELAB_RANK"):
        raw = os.environ.get(name, "")
        if raw.strip().isdigit():
            offset = os.environ.get("KUBELAB_RANK_OFFSET", "0") if name == "KUBELAB_RANK" else "0"
            return int(raw) + (int(offset) if offset.strip().isdigit() else 0)
    return 0


def checkpoints(where: str | os.PathLike[str] | None = None) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete checkpoint in the folder, newest first."""
    base = folder(where)
    if base is None or not base.is_dir():
        return []
    found = []
    for entry in base.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match and entry.is_file():
            found.append((int(match.group("step")), entry))
    return sorted(found, key=lambda item: (item[0], item[1].suffix == ".pt"), reverse=True)


def _uses_torch(state: Any) -> bool:
    # Only when the script imported torch already: this module never imports a framework itself.
    return "torch" in sys.modules


def save(state: Any, step: int, *, folder_path: str | os.PathLike[str] | None = None, keep: int = KEEP,
         all_ranks: bool = False) -> Path | None:
    """Write ``state`` as the checkpoint of ``step``, atomically; keep the newest ``keep``.

    Args:
        state: What to save (a dict of state dicts, tensors, numbers).
        step: The training step it belongs to (0..9999999999); :func:`latest` returns the highest.
        folder_path: The folder; default ``$KUBELAB_CHECKPOINT_DIR``.
        keep: How many checkpoints stay (at least 1).
        all_ranks: Write on every rank (each to its own folder, say); default rank 0 only.

    Returns:
        The checkpoint's path, or None on a rank that does not write.

    Raises:
        ValueError: No folder (``checkpoint_dir`` unset and no ``folder_path``), a bad step or ``keep``.
        OSError: The folder cannot be written (the previous checkpoint is left as it was).
    """
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise ValueError(f"step {step!r} is not allowed; an integer in 0..{MAX_STEP}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep {keep!r} is not allowed; an integer >= 1")
    base = folder(folder_path)
    if base is None:
        raise ValueError(f"no checkpoint folder: set checkpoint_dir on the job (it sets {ENV}) or pass folder_path=")
    if not all_ranks and rank() != 0:
        return None
    base.mkdir(parents=True, exist_ok=True)
    torch_format = _uses_torch(state)
    final = base / f"checkpoint-{step:010d}.{'pt' if torch_format else 'pkl'}"
    fd, tmp = tempfile.mkstemp(prefix=f".checkpoint-{step:010d}-", suffix=".tmp", dir=base)
    try:
        with os.fdopen(fd, "wb") as f:
            if torch_format:
                sys.modules["torch"].save(state, f)
            else:
                pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        # Whatever happened (a full disk, KeyboardInterrupt), the complete checkpoints stay as they were.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(base)
    for _old_step, old in checkpoints(base)[keep:]:
        try:
            old.unlink()
        except FileNotFoundError:
            pass  # another writer removed it first
    return final


def _fsync_folder(base: Path) -> None:
    """Make the rename durable: a crash of the node right after save() still finds the new name."""
    try:
        fd = os.open(base, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a file system that cannot open folders (rare); the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some network file systems refuse fsync on a folder
    finally:
        os.close(fd)


def _load(path: Path, map_location: Any) -> Any:
    if path.suffix == ".pt":
        try:
            import torch  # the framework the checkpoint was written with
        except ImportError as e:
            raise RuntimeError(f"{path} was written with torch.save, and torch is not installed here") from e
        # weights_only=False: the job reads back its own state (optimizer, RNG states, numbers).
        return torch.load(path, map_location=map_location, weights_only=False)  # noqa: S614
    with open(path, "rb") as f:
        return pickle.load(f)  # noqa: S301 - the job's own checkpoint


_announced: set[str] = set()


def latest(folder_path: str | os.PathLike[str] | None = None, *, map_location: Any = "cpu") -> Checkpoint | None:
    """The newest complete checkpoint, or None when there is none (a first run).

    A checkpoint that cannot be read (a file damaged outside kubelab) is skipped with a line on
    stderr, and the one before it is returned.

    Args:
        folder_path: The folder; default ``$KUBELAB_CHECKPOINT_DIR`` (None when unset: no checkpoint).
        map_location: Passed to ``torch.load`` for ``.pt`` files (default ``"cpu"``).
    """
    for step, path in checkpoints(folder_path):
        try:
            state = _load(path, map_location)
        except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, ValueError) as e:
            print(f"kubelab-checkpoint: skipping {path}: {e}", file=sys.stderr, flush=True)
            continue
        if rank() == 0 and str(path) not in _announced:
            _announced.add(str(path))
            print(f"kubelab-checkpoint: resuming from step {step} ({path})", file=sys.stderr, flush=True)
        return Checkpoint(step=step, state=state, path=path)
    return None
