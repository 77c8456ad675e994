"""Plain words for failures, the user's own headline, and the user's own log lines (pure).

The two torchrun logs in ``tests/jobs/logs/`` were produced by this repository's entrypoint
running torch 2.13's torchrun on a script that raises ``KeyError`` and on a missing script
(paths rewritten to a notebook image's); the rest are the messages Kubernetes and the
entrypoint write, in the shapes ``kubelab.jobs.status`` reports them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelab.jobs.explain import explain, headline, is_launcher_line, user_lines
from kubelab.jobs.spec import JobStatus, RankStatus

LOGS = Path(__file__).parent / "logs"
TRACEBACK = (LOGS / "torchrun_user_traceback.log").read_text().splitlines()
MISSING = (LOGS / "torchrun_missing_script.log").read_text().splitlines()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (TRACEBACK, "KeyError: 'missing_key'"),
        (MISSING, "can't open file '/home/jovyan/nope.py': [Errno 2] No such file or directory"),
        (["Traceback (most recent call last):", '  File "t.py", line 1', "    import foo",
          "ModuleNotFoundError: No module named 'foo'"], "ModuleNotFoundError: No module named 'foo'"),
        (["step 1", "step 2"], None),
        (TRACEBACK[-20:], None),  # only torchrun's banner: nothing of the user's to quote
    ],
    ids=["user-traceback", "missing-script", "missing-module", "no-error", "banner-only"],
)
def test_headline_names_the_users_error_not_torchruns(lines: list[str], expected: str | None) -> None:
    assert headline(lines) == expected


def test_user_lines_hide_the_launcher_and_strip_rank_prefixes() -> None:
    own = user_lines(TRACEBACK)
    assert own[0] == "hello from user"
    assert own[-1] == "KeyError: 'missing_key'"
    assert not any("ChildFailedError" in line or "FAILED" in line or "=====" in line or "kubelab-entrypoint" in line
                   for line in own)
    assert len(own) == 6


@pytest.mark.parametrize(
    ("line", "launcher"),
    [("kubelab-entrypoint: job t rank 0 of 2: python -m torch.distributed.run", True),
     ("W1201 22:27:13.026000 7166 torch/distributed/run.py:793] Setting OMP_NUM_THREADS", True),
     ("[W1201 22:27:13.1 socket.cpp:759] [c10d] The client socket has failed to connect", True),
     ("[rank0]: epoch 1 loss 0.3", False), ("loss=0.3", False)],
    ids=["entrypoint", "glog", "cpp-warning", "prefixed-user", "user"],
)
def test_is_launcher_line(line: str, launcher: bool) -> None:
    assert is_launcher_line(line) is launcher


def failed(rank_message: str = "", exit_code: int | None = 1, logs: list[str] | None = None, message: str = "",
           events: list[str] | None = None, phase: str = "Failed") -> JobStatus:
    return JobStatus(name="ddp", user="alice", framework="pytorch", workers=2, phase=phase, failed_rank=1,
                     message=message, last_logs=logs or [], events=events or [],
                     ranks=[RankStatus(0, "Cancelled"), RankStatus(1, phase if phase != "Running" else "Pending",
                                                                   exit_code=exit_code, message=rank_message)])


@pytest.mark.parametrize(
    ("job", "kind", "words"),
    [
        (failed("OOMKilled", 137), "oom", "Rank 1 ran out of memory (OOMKilled)"),
        (failed("ErrImagePull: rpc error: pull access denied for ghcr.io/x/y:1", None, phase="Running",
                events=['rank 1: Failed: Failed to pull image "ghcr.io/x/y:1": not found']),
         "image", "the image ghcr.io/x/y:1 could not be pulled"),
        (failed("Unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu.", None, phase="Running"),
         "unschedulable", "Rank 1 cannot be placed on any node: not enough free nvidia.com/gpu"),
        (failed("DeadlineExceeded: Job was active longer than specified deadline", None),
         "deadline", "ran past its time limit"),
        (failed("stopped: the job failed", None, message="Failed: deadline exceeded"),
         "deadline", "ran past its time limit"),
        (failed(logs=["kubelab-entrypoint: error: peer ddp-3fa2c1-0.ddp-3fa2c1:29500 was unreachable for 120s"],
                exit_code=2), "rendezvous", "peer ddp-3fa2c1-0.ddp-3fa2c1:29500"),
        (failed(logs=["kubelab-entrypoint: error: peer ddp-3fa2c1-1.ddp-3fa2c1 did not resolve within 20s "
                      "(KUBELAB_RENDEZVOUS_TIMEOUT): [Errno -3] Temporary failure in name resolution"], exit_code=2),
         "rendezvous", "peer ddp-3fa2c1-1.ddp-3fa2c1: that rank never started or never listened within 20 s"),
        (failed("BackoffLimitExceeded: Job has reached the specified backoff limit", logs=MISSING),
         "missing-script", "can't open file '/home/jovyan/nope.py'"),
        (failed("BackoffLimitExceeded: Job has reached the specified backoff limit", logs=TRACEBACK),
         "user-error", "Rank 1 failed in your code: KeyError: 'missing_key'"),
        (failed("Error", exit_code=137), "exit", "exited with code 137 (killed: SIGKILL"),
    ],
    ids=["oom", "image", "unschedulable", "deadline", "engine-deadline", "rendezvous", "unresolved-peer", "missing-script", "user-error",
         "exit-code"],
)
def test_each_failure_gets_one_plain_sentence(job: JobStatus, kind: str, words: str) -> None:
    found = explain(job)
    assert found is not None and found.kind == kind, found
    assert words in found.sentence
    assert "BackoffLimitExceeded" not in found.sentence and "ChildFailedError" not in found.sentence
    assert found.sentence.count(". ") == 0 or kind in ("user-error",)  # one sentence
    assert explain(job.to_dict()) == found  # the dict form (the widget's, the page's) says the same


def test_a_healthy_job_needs_no_words() -> None:
    job = JobStatus(name="ok", user="alice", framework="pytorch", workers=1, phase="Running",
                    ranks=[RankStatus(0, "Running")])
    assert explain(job) is None
