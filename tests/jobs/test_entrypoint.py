"""The trainer entrypoint: launch plans per framework and rank, peer waits, and real runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kubelab.jobs import entrypoint
from kubelab.jobs.entrypoint import MPI_RANK_WRAPPER, SSH_OPTIONS, EntrypointError, Launch, plan, wait_for_peers

SCRIPTS = Path(__file__).parent / "scripts"
REPO = Path(__file__).resolve().parents[2]
PEERS = "job-0.job,job-1.job,job-2.job"


def env(**kw: str) -> dict[str, str]:
    base = {"KUBELAB_JOB": "job", "KUBELAB_FRAMEWORK": "pytorch", "KUBELAB_RANK": "0", "KUBELAB_WORLD_SIZE": "3",
            "KUBELAB_NPROCS": "1", "KUBELAB_PEERS": PEERS, "KUBELAB_SCRIPT": "train.py"}
    base.update(kw)
    return base


TORCH = ["py", "-m", "torch.distributed.run", "--nproc_per_node=1", "--nnodes=3"]
PLANS = [
    pytest.param(env(), TORCH + ["--node_rank=0", "--master_addr=job-0.job", "--master_port=29500", "train.py", "a"],
                 {"KUBELAB_BACKEND": "gloo"}, ["job-1.job", "job-2.job"], [], id="pytorch-rank0-master"),
    pytest.param(env(KUBELAB_RANK="2"),
                 TORCH + ["--node_rank=2", "--master_addr=job-0.job", "--master_port=29500", "train.py", "a"],
                 {"KUBELAB_BACKEND": "gloo"}, ["job-0.job", "job-1.job"], [("job-0.job", 29500)],
                 id="pytorch-rank2-waits-for-master"),
    pytest.param(env(KUBELAB_RANK="1", KUBELAB_RANK_OFFSET="1"),
                 TORCH + ["--node_rank=2", "--master_addr=job-0.job", "--master_port=29500", "train.py", "a"],
                 {"KUBELAB_BACKEND": "gloo"}, ["job-0.job", "job-1.job"], [("job-0.job", 29500)],
                 id="pytorch-rank-offset-kubeflow-worker"),
    pytest.param(env(KUBELAB_WORLD_SIZE="1", KUBELAB_PEERS="solo", KUBELAB_NPROCS="2", CUDA_VISIBLE_DEVICES="0,1"),
                 ["py", "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "--nnodes=1", "train.py",
                  "a"], {"KUBELAB_BACKEND": "nccl"}, [], [], id="pytorch-single-worker-standalone"),
    pytest.param(env(KUBELAB_MODULE="pkg.train", KUBELAB_SCRIPT="", KUBELAB_FRAMEWORK="replicas", KUBELAB_RANK="1"),
                 ["py", "-m", "pkg.train", "a"], {}, [], [], id="replicas-module"),
    pytest.param(env(KUBELAB_FRAMEWORK="mpi", KUBELAB_NPROCS="2"),
                 ["mpirun", "-np", "6", "--hostfile", "{hostfile}", "-x", "KUBELAB_JOB", *MPI_RANK_WRAPPER,
                  "py", "train.py", "a"],
                 {"OMPI_MCA_plm_rsh_args": "-p 22 -i {ssh_key} " + " ".join(SSH_OPTIONS),
                  "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                  "OMPI_MCA_orte_keep_fqdn_hostnames": "1"},
                 [], [("job-1.job", 22), ("job-2.job", 22)], id="mpi-rank0-mpirun"),
    pytest.param(env(KUBELAB_FRAMEWORK="mpi", KUBELAB_RANK="1"), ["/usr/sbin/sshd", "-D", "-e", "-f", "{sshd_config}"],
                 {}, [], [], id="mpi-worker-sshd"),
    pytest.param(env(KUBELAB_FRAMEWORK="mpi", KUBELAB_MPI_LAUNCHER="horovodrun"),
                 ["horovodrun", "-np", "3", "-H", "job-0.job:1,job-1.job:1,job-2.job:1", "-p", "22", "-i", "{ssh_key}",
                  "py", "train.py", "a"],
                 {}, [], [("job-1.job", 22), ("job-2.job", 22)], id="mpi-horovodrun"),
]


@pytest.mark.parametrize(("environ", "argv", "added", "resolve", "connect"), PLANS)
def test_plan(environ: dict[str, str], argv: list[str], added: dict[str, str], resolve: list[str],
              connect: list[tuple[str, int]]) -> None:
    launch = plan(environ, ["a"], python="py")
    assert launch.argv == argv
    assert launch.env == added
    assert launch.wait_resolve == resolve
    assert launch.wait_connect == connect


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_tf_config_per_rank(rank: int) -> None:
    launch = plan(env(KUBELAB_FRAMEWORK="tensorflow", KUBELAB_RANK=str(rank)), [], python="py")
    assert json.loads(launch.env["TF_CONFIG"]) == {
        "cluster": {"worker": ["job-0.job:2222", "job-1.job:2222", "job-2.job:2222"]},
        "task": {"type": "worker", "index": rank},
    }
    assert launch.argv == ["py", "train.py"]


def test_mpi_hostfile_lists_every_worker_with_slots() -> None:
    launch = plan(env(KUBELAB_FRAMEWORK="mpi", KUBELAB_NPROCS="4"), [], python="py")
    assert launch.mpi_hostfile == "job-0.job slots=4\njob-1.job slots=4\njob-2.job slots=4\n"


ERRORS = [
    pytest.param({"KUBELAB_FRAMEWORK": "jax"}, "KUBELAB_FRAMEWORK='jax'", id="framework"),
    pytest.param({"KUBELAB_RANK": "3"}, "outside 0..2", id="rank-too-big"),
    pytest.param({"KUBELAB_RANK": "x"}, "not an integer", id="rank-not-int"),
    pytest.param({"KUBELAB_PEERS": "a,b"}, "lists 2 peer", id="peers-count"),
    pytest.param({"KUBELAB_PEERS": "a,,b"}, "empty entry", id="peers-empty"),
    pytest.param({"KUBELAB_MODULE": "m"}, "exactly one of KUBELAB_SCRIPT", id="script-and-module"),
    pytest.param({"KUBELAB_NPROCS": "2", "CUDA_VISIBLE_DEVICES": "0"}, "NCCL needs one GPU per process",
                 id="nccl-two-procs-one-gpu"),
    pytest.param({"KUBELAB_FRAMEWORK": "mpi", "KUBELAB_MPI_LAUNCHER": "srun"}, "allowed: mpirun, horovodrun",
                 id="mpi-launcher"),
]


@pytest.mark.parametrize(("overrides", "match"), ERRORS)
def test_plan_errors(overrides: dict[str, str], match: str) -> None:
    with pytest.raises(EntrypointError, match=match):
        plan(env(**overrides), [], python="py")


def test_gloo_may_share_a_gpu_when_asked() -> None:
    launch = plan(env(KUBELAB_NPROCS="2", CUDA_VISIBLE_DEVICES="0", KUBELAB_BACKEND="gloo"), [], python="py")
    assert "--nproc_per_node=2" in launch.argv


def test_wait_names_the_unresolvable_peer() -> None:
    t0 = time.monotonic()
    with pytest.raises(EntrypointError, match=r"peer no-such-peer\.invalid did not resolve within 1s"):
        wait_for_peers(Launch([], wait_resolve=["localhost", "no-such-peer.invalid"]), timeout=1, sleep=0.1)
    assert time.monotonic() - t0 < 10


def test_wait_names_the_unreachable_peer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(EntrypointError, match=rf"peer 127\.0\.0\.1:{port} was unreachable for 1s"):
            wait_for_peers(Launch([], wait_connect=[("127.0.0.1", port)]), timeout=1, sleep=0.1)


def test_wait_returns_once_peers_answer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        wait_for_peers(Launch([], wait_resolve=["localhost"], wait_connect=[s.getsockname()]), timeout=5)


def run_entrypoint(environ: dict[str, str], *args: str, cwd: Path = SCRIPTS) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("KUBELAB_")}
    full.update(environ)
    full["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "kubelab.jobs.entrypoint", *args], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_dry_run_prints_one_json_line_and_exits_0() -> None:
    out = run_entrypoint(env(KUBELAB_RANK="1"), "--dry-run", "--", "--lr", "0.1")
    assert out.returncode == 0, out.stderr
    plan_json: dict[str, Any] = json.loads(out.stdout)
    assert plan_json["argv"][-3:] == ["train.py", "--lr", "0.1"]
    assert plan_json["wait_connect"] == ["job-0.job:29500"]


def test_contract_error_exits_2_with_a_message() -> None:
    out = run_entrypoint(env(KUBELAB_PEERS="a"))
    assert out.returncode == 2
    assert "kubelab-entrypoint: error: KUBELAB_PEERS lists 1 peer(s) but KUBELAB_WORLD_SIZE=3" in out.stderr


@pytest.mark.parametrize("rank", [0, 1])
def test_tf_config_seen_by_a_real_script(rank: int) -> None:
    out = run_entrypoint({"KUBELAB_FRAMEWORK": "tensorflow", "KUBELAB_RANK": str(rank), "KUBELAB_WORLD_SIZE": "2",
                          "KUBELAB_PEERS": "localhost:12345,127.0.0.1:12346", "KUBELAB_SCRIPT": "print_tf_config.py",
                          "KUBELAB_RENDEZVOUS_TIMEOUT": "5"})
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("TF_CONFIG="))
    assert json.loads(line.removeprefix("TF_CONFIG=")) == {
        "cluster": {"worker": ["localhost:12345", "127.0.0.1:12346"]}, "task": {"index": rank, "type": "worker"}}


def test_failing_script_exit_code_is_the_entrypoints() -> None:
    out = run_entrypoint({"KUBELAB_FRAMEWORK": "replicas", "KUBELAB_RANK": "1", "KUBELAB_WORLD_SIZE": "2",
                          "KUBELAB_SCRIPT": "fail_rank.py", "KUBELAB_PEERS": "localhost,localhost"})
    assert out.returncode == 1
    assert out.stdout.splitlines()[-1] == "rank 1: failing on purpose"


@pytest.mark.parametrize(("signal_name", "code"), [("SIGKILL", 137), ("SIGTERM", 143)], ids=["sigkill", "sigterm"])
def test_a_script_killed_by_a_signal_ends_the_entrypoint_128_plus_it(tmp_path: Path, signal_name: str,
                                                                      code: int) -> None:
    """As a runtime reports a container killed by the OOM killer (137), not sys.exit(-9)'s 247."""
    (tmp_path / "killed.py").write_text(f"import os, signal\nos.kill(os.getpid(), signal.{signal_name})\n")
    out = run_entrypoint({"KUBELAB_FRAMEWORK": "replicas", "KUBELAB_RANK": "0", "KUBELAB_WORLD_SIZE": "1",
                          "KUBELAB_SCRIPT": "killed.py", "KUBELAB_PEERS": "localhost"}, cwd=tmp_path)
    assert out.returncode == code, out.stderr


def test_entrypoint_imports_only_the_standard_library() -> None:
    code = ("import sys, kubelab.jobs.entrypoint as e; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'kubernetes', 'yaml')]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]", out.stderr
    assert entrypoint.__name__ == "kubelab.jobs.entrypoint"


@pytest.mark.gpu
def test_nccl_on_a_real_gpu(tmp_path: Path) -> None:
    """torchrun with NCCL, one process per GPU (needs an NVIDIA GPU)."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        pytest.skip("no NVIDIA GPU here: nvidia-smi is absent")
    out = run_entrypoint({"KUBELAB_FRAMEWORK": "pytorch", "KUBELAB_RANK": "0", "KUBELAB_WORLD_SIZE": "1",
                          "KUBELAB_PEERS": "localhost", "KUBELAB_SCRIPT": str(SCRIPTS / "ddp_linreg.py"),
                          "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0"),
                          "KUBELAB_BACKEND": "nccl"})
    assert out.returncode == 0, out.stderr
    assert "final_loss=" in out.stdout


def test_mpi_launcher_without_the_jobs_key_says_so(tmp_path: Path) -> None:
    launch = plan(env(KUBELAB_FRAMEWORK="mpi", KUBELAB_MPI_SSH_DIR=str(tmp_path)), [], python="py")
    with pytest.raises(EntrypointError, match=f"no SSH key for mpirun in KUBELAB_MPI_SSH_DIR={tmp_path}"):
        entrypoint.run(launch)
