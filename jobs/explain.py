"""Plain words for a job's failures, and which log lines are the user's own (pure functions).

:func:`explain` turns what Kubernetes and the launcher report about a job (rank messages, Job
conditions, pod events, the failed rank's last lines) into **one plain sentence** shown above the
raw log: out of memory, an image that cannot be pulled, a rank no node can take, the time limit,
a rendezvous peer that never came, a script that does not exist, or the user's own exception.

:func:`headline` finds the user's own error in a rank's log: the last line of the user's
traceback (``KeyError: 'missing_key'``), or ``can't open file ...``. It skips what torchrun adds
after it (its own ``ChildFailedError`` traceback and the ``=====`` failure banner) and never
quotes Kubernetes' ``BackoffLimitExceeded``.

:func:`user_lines` drops the launcher's lines from a log (kubelab's entrypoint, torchrun's
glog-style warnings, its failure banner and traceback, the OMP_NUM_THREADS notice) and strips
torchrun's ``[rank0]:`` prefixes, so that the log pane can show only what the script printed.

Inputs are plain data (a :class:`~kubelab.jobs.spec.JobStatus` or its dict), so the widget, the
hub's jobs page and the service use the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# torchrun and c10d log through glog: "W1201 21:57:13.123000 1234 torch/distributed/run.py:793] ..."
_GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]")
# C++ warnings of torch: "[W1201 21:57:13.1 socket.cpp:759] ..." or "[W socket.cpp:663] ..."
_CPP = re.compile(r"^\[[IWEF](\d{4} [\d:.]+)? ?[\w./-]+\.(cpp|h|cc):\d+\]")
# torchrun's per-process prefix on the child's output: "[rank0]: ", "[default0]:"
_RANK_PREFIX = re.compile(r"^\[(rank|default)\d+\]:\s?")
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning|Failure|Fault)|"
                        r"[A-Za-z_][\w.]*\.[A-Z]\w*)(: (?P<message>.*))?$")
_CANT_OPEN = re.compile(r"can't open file (?P<rest>.+)$")
_NO_MODULE = re.compile(r"No module named (?P<module>\S+)")
_PEER = re.compile(r"peer (?P<peer>\S+) (was unreachable for|did not resolve within) (?P<seconds>\d+)s")
# The kubelet's eviction message (eviction_manager.go, emptyDirLimitEviction).
_EVICTED_VOLUME = re.compile(r'Usage of EmptyDir volume "(?P<volume>scratch|outputs)" exceeds the limit "(?P<limit>[^"]+)"')
_LAUNCHER_PREFIXES = ("kubelab-entrypoint:", "Setting OMP_NUM_THREADS environment variable",
                      "*****************************************")


def strip_rank_prefix(line: str) -> str:
    return _RANK_PREFIX.sub("", line, count=1)


def _torchrun_blocks(lines: Sequence[str]) -> set[int]:
    """Indices of torchrun's own failure report: its traceback ending in ``ChildFailedError`` and
    the ``=====`` banner after it."""
    hidden: set[int] = set()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Traceback (most recent call last):"):
            # An unprefixed traceback is the launcher's when it ends in torch.distributed.elastic.
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or lines[j].startswith("\t")):
                j += 1
            if j < len(lines) and ("torch.distributed.elastic" in lines[j] or "ChildFailedError" in lines[j]):
                hidden.update(range(i, j + 1))
                i = j + 1
                continue
        if line.startswith("=" * 20):
            # The banner: from one ==== line to the next (FAILED, Failures, Root Cause ...).
            j = i + 1
            while j < len(lines) and not lines[j].startswith("=" * 20):
                j += 1
            if j < len(lines) and any("FAILED" in lines[k] or "Root Cause" in lines[k] for k in range(i, j)):
                hidden.update(range(i, j + 1))
                i = j + 1
                continue
        i += 1
    return hidden


def is_launcher_line(line: str) -> bool:
    """Whether one line comes from the launcher (kubelab's entrypoint, torchrun, torch's C++ logs)."""
    return bool(line.startswith(_LAUNCHER_PREFIXES) or _GLOG.match(line) or _CPP.match(line)
                or "torch.distributed.elastic" in line and not _RANK_PREFIX.match(line))


def user_lines(lines: Iterable[str]) -> list[str]:
    """The lines the user's script printed, without the launcher's and without ``[rankN]:`` prefixes."""
    lines = list(lines)
    hidden = _torchrun_blocks(lines)
    return [strip_rank_prefix(line) for i, line in enumerate(lines) if i not in hidden and not is_launcher_line(line)]


def headline(lines: Iterable[str]) -> str | None:
    """The user's own error in a rank's log: the last line of its last traceback, or ``can't open
    file ...``, or ``No module named ...``; None when the log shows none."""
    own = user_lines(lines)
    for line in reversed(own):
        text = line.strip()
        match = _CANT_OPEN.search(text)
        if match:
            return f"can't open file {match.group('rest')}"
    # The last traceback's final line (exception type and message).
    last_traceback = max((i for i, line in enumerate(own) if line.startswith("Traceback (most recent call last)")),
                         default=None)
    if last_traceback is not None:
        finals = [line.strip() for line in own[last_traceback + 1:]
                  if not line.startswith((" ", "\t")) and _EXCEPTION.match(line.strip())]
        if finals:
            return finals[-1]
    for line in reversed(own):
        match = _NO_MODULE.search(line)
        if match:
            return f"No module named {match.group('module')}"
    return None


@dataclass(frozen=True)
class Explanation:
    """One failure in plain words.

    Attributes:
        kind: ``oom``, ``image``, ``unschedulable``, ``deadline``, ``rendezvous``, ``missing-script``,
            ``user-error`` or ``exit``.
        sentence: The sentence shown above the raw log.
        rank: The rank it concerns, when one does.
    """

    kind: str
    sentence: str
    rank: int | None = None


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)


def _ranks(job: Any) -> list[tuple[int, str, str, int | None]]:
    """(rank, phase, message, exit code) of every rank."""
    out = []
    for r in _get(job, "ranks", []) or []:
        out.append((int(_get(r, "rank", 0)), str(_get(r, "phase", "") or ""), str(_get(r, "message", "") or ""),
                    _get(r, "exit_code")))
    return out


def _events_of(job: Any, rank: int | None = None) -> list[str]:
    events = [str(e) for e in _get(job, "events", []) or []]
    if rank is None:
        return events
    return [e for e in events if e.startswith(f"rank {rank}:")]


def _image_words(texts: Iterable[str]) -> str:
    for text in texts:
        match = re.search(r'image "?([^"\s]+?)"?(:\s|"|$)', text)
        if match:
            return f"the image {match.group(1)}"
    return "its image"


def explain(job: Any) -> Explanation | None:
    """One plain sentence for why a job failed, or is stuck; None when nothing is wrong.

    Args:
        job: A :class:`~kubelab.jobs.spec.JobStatus` or its dict.
    """
    phase = str(_get(job, "phase", ""))
    message = str(_get(job, "message", "") or "")
    ranks = _ranks(job)
    failed_rank = _get(job, "failed_rank")
    last_logs = list(_get(job, "last_logs", []) or [])
    texts = [(r, m) for r, _p, m, _c in ranks] + [(None, message)] + [(None, e) for e in _events_of(job)]

    def rank_of(text_rank: int | None, text: str) -> int | None:
        if text_rank is not None:
            return text_rank
        match = re.match(r"rank (\d+)", text)
        return int(match.group(1)) if match else failed_rank

    for rank, text in texts:
        if "OOMKilled" in text:
            who = f"Rank {rank_of(rank, text)}" if rank_of(rank, text) is not None else "A rank"
            return Explanation("oom", f"{who} ran out of memory (OOMKilled): it used more than its memory limit; "
                               "ask for more memory per worker, or use a smaller batch or model.", rank_of(rank, text))
    for rank, text in texts:
        # The kubelet's eviction of a rank over its emptyDir sizeLimit (jobs/builders/common.py volumes).
        match = _EVICTED_VOLUME.search(text)
        if match:
            r = rank_of(rank, text)
            who = f"Rank {r}" if r is not None else "A rank"
            if match.group("volume") == "outputs":
                return Explanation("outputs-full", f"{who} wrote more outputs than the job may bring back into your "
                                   f"home ({match.group('limit')}, storage.transfer.maxOutputSize) and was stopped; "
                                   "keep fewer or smaller checkpoints, or use a shared volume.", r)
            return Explanation("scratch-full", f"{who} filled its scratch space ({match.group('limit')}: /tmp, and "
                               "its home folder where your home is not mounted) and was stopped; write large files "
                               "to KUBELAB_OUTPUT_DIR or a shared volume, or ask for a larger storage.scratch.size.", r)
    for rank, text in texts:
        if any(k in text for k in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "Failed to pull image",
                                   "ErrImageNeverPull")):
            r = rank_of(rank, text)
            who = f"Rank {r}" if r is not None else "A rank"
            words = _image_words([text] + [t for _, t in texts])
            return Explanation("image", f"{who} cannot start: {words} could not be pulled; check "
                               "the image name, or ask your admin whether the cluster can reach its registry.", r)
    for _rank, text in texts:
        if "DeadlineExceeded" in text or "exceeded max_runtime_seconds" in text or \
                "active longer than specified deadline" in text or "deadline exceeded" in text.lower():
            limit = re.search(r"max_runtime_seconds=(\d+)", text)
            within = f" of {limit.group(1)} s" if limit else ""
            return Explanation("deadline", f"The job ran past its time limit{within} (max_runtime_seconds) and was "
                               "stopped; ask for a longer limit or save checkpoints and resume.", None)
    for line in reversed(last_logs):
        match = _PEER.search(line)
        if match:
            return Explanation("rendezvous", f"Rank {failed_rank} gave up waiting for its peer {match.group('peer')}: "
                               f"that rank never started or never listened within {match.group('seconds')} s "
                               "(look at its status and events).", failed_rank)
    for rank, phase_of_rank, text in ((r, p, m) for r, p, m, _c in ranks):
        if phase_of_rank in ("Pending", "Queued") and ("Unschedulable" in text or "Insufficient" in text
                                                        or "FailedScheduling" in text):
            return Explanation("unschedulable", f"Rank {rank} cannot be placed on any node: {_scheduling_words(text)}; "
                               "it starts when resources free up, or cancel it and ask for less.", rank)
    for event in _events_of(job):
        if "FailedScheduling" in event and phase not in ("Succeeded", "Failed", "Cancelled"):
            r = rank_of(None, event)
            return Explanation("unschedulable", f"Rank {r} cannot be placed on any node: {_scheduling_words(event)}; "
                               "it starts when resources free up, or cancel it and ask for less.", r)
    if phase != "Failed":
        return None
    own = headline(last_logs)
    if own and own.startswith("can't open file"):
        return Explanation("missing-script", f"Rank {failed_rank} could not start your script: {own}.", failed_rank)
    if own:
        return Explanation("user-error", f"Rank {failed_rank} failed in your code: {own}", failed_rank)
    code = next((c for r, _p, _m, c in ranks if r == failed_rank), None)
    if code is not None:
        return Explanation("exit", f"Rank {failed_rank} exited with code {code}{_signal_words(code)}; its last "
                           "lines are below.", failed_rank)
    if failed_rank is None:
        return Explanation("exit", f"The job failed{': ' + message if message else ''}.", None)
    return Explanation("exit", f"Rank {failed_rank} failed; its last lines are below.", failed_rank)


def _scheduling_words(text: str) -> str:
    insufficient = sorted(set(re.findall(r"Insufficient ([\w./-]+)", text)))
    if insufficient:
        return "not enough free " + " and ".join(insufficient)
    if "didn't match" in text or "node selector" in text.lower() or "affinity" in text:
        return "no node matches its GPU class"
    if "taint" in text:
        return "every node that could take it is reserved (a taint it does not tolerate)"
    return text.split(": ", 1)[-1].strip() or "the scheduler found no node"


def _signal_words(code: int) -> str:
    if code in (137, -9):
        return " (killed: SIGKILL, often out of memory)"
    if code in (143, -15):
        return " (stopped: SIGTERM)"
    return ""


def job_headline(job: Any) -> str:
    """A short line for a job list: the explanation's sentence, else the job's message."""
    found = explain(job)
    if found is not None:
        return found.sentence
    return str(_get(job, "message", "") or "")
