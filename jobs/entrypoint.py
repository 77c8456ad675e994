"""The trainer entrypoint: ``python -m kubelab.jobs.entrypoint [--dry-run] -- <args...>``.

Every rank of every engine runs this. It reads the environment the builder (or the local backend)
set, as ``jobs/CONTRACT.md`` describes, and launches the user's script the framework's way:
``torchrun`` (as ``python -m torch.distributed.run``, a subprocess), ``TF_CONFIG``, ``mpirun`` or
``horovodrun``, or the script directly for independent replicas.

It imports only the standard library (and :mod:`kubelab.jobs.transfer`, itself standard library
only), so it runs in any trainer image and on a bare GPU machine with just ``PYTHONPATH`` set;
torch is only ever imported by the launched subprocess.

Around the launch it looks after the rank's files: it copies a shipped script folder into the
home (``KUBELAB_FILES_DIR``), fetches the job's inputs from its collector (``KUBELAB_INPUTS``),
makes ``KUBELAB_OUTPUT_DIR``, and, on the collect route, hands that folder to the collector when
the processes have ended, whatever their exit code (:mod:`kubelab.jobs.transfer`).

Before launching it waits, up to ``KUBELAB_RENDEZVOUS_TIMEOUT`` seconds, for the peers it needs
(their names to resolve; the master's port to accept for torchrun workers; every sshd for the MPI
launcher) and fails with a message naming the first unreachable peer, instead of hanging inside
a collective.

``KUBELAB_RANK_OFFSET`` (added to ``KUBELAB_RANK``, default 0) lets engines whose rank comes from a
per-replica-type index (Kubeflow v1 Workers after the Master) keep one contract.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubelab.jobs import transfer

DEFAULT_PORTS = {"pytorch": 29500, "tensorflow": 2222, "mpi": 22, "replicas": 29500}
FRAMEWORKS = tuple(DEFAULT_PORTS)
PREFIX = "kubelab-entrypoint"
DEFAULT_SSH_DIR = "/kubelab/ssh"
# Per-pod MPI bookkeeping. /tmp is the pod's own, and sessions of the pod's sshd see it too, so a
# rank started by mpirun on a worker leaves its exit status where that worker's entrypoint reads it.
MPI_STATE = "/tmp/kubelab-mpi"
MPI_FAILED = f"{MPI_STATE}/failed"
MPI_DONE = f"{MPI_STATE}/done"
# Each MPI process runs under this: a non-zero exit is recorded with its MPI rank in its pod.
MPI_RANK_WRAPPER = ["sh", "-c", f'"$@"; code=$?; if [ "$code" -ne 0 ]; then mkdir -p {MPI_STATE}; '
                    f'echo "$OMPI_COMM_WORLD_RANK $code" >> {MPI_FAILED}; fi; exit "$code"', "kubelab-mpi-rank"]
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
               "-o", "LogLevel=ERROR"]


class EntrypointError(RuntimeError):
    """The environment is wrong or a peer is unreachable; the message says which."""


@dataclass
class Launch:
    """What to run: the command line, the env it adds, and the peers to wait for first.

    Attributes:
        argv: The command line.
        env: Variables added to the inherited environment.
        wait_resolve: Peers whose names must resolve before launching.
        wait_connect: ``(host, port)`` that must accept a TCP connection before launching.
        mpi_hostfile: Content of the MPI hostfile to write before launching (``{hostfile}`` in argv).
        mpi_workers: MPI launcher: the workers' sshd ``(host, port)``, told when the run is over.
        sshd_port: MPI worker: the port its own sshd serves (``{sshd_config}`` in argv).
        ssh_dir: MPI: the folder holding the job's key (``id_rsa``, ``authorized_keys``).
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    wait_resolve: list[str] = field(default_factory=list)
    wait_connect: list[tuple[str, int]] = field(default_factory=list)
    mpi_hostfile: str | None = None
    mpi_workers: list[tuple[str, int]] = field(default_factory=list)
    sshd_port: int | None = None
    ssh_dir: str = ""


def _int(env: Mapping[str, str], name: str, default: int | None = None, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise EntrypointError(f"{name} is not set; see jobs/CONTRACT.md")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EntrypointError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise EntrypointError(f"{name}={value} must be >= {minimum}")
    return value


def parse_peers(raw: str, default_port: int) -> list[tuple[str, int]]:
    """Parse ``KUBELAB_PEERS`` (``host[:port],...``) into (host, port) pairs.

    Raises:
        EntrypointError: An empty entry or a bad port.
    """
    out = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            raise EntrypointError(f"KUBELAB_PEERS={raw!r} has an empty entry")
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, str(default_port)
        if not port.isdigit():
            raise EntrypointError(f"KUBELAB_PEERS entry {item!r} has a bad port")
        out.append((host, int(port)))
    return out


def visible_gpus(env: Mapping[str, str]) -> int:
    """GPUs this process may use, from ``CUDA_VISIBLE_DEVICES`` (unset means none known)."""
    raw = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not raw or raw in ("-1", "none", "NoDevFiles"):
        return 0
    return len([d for d in raw.split(",") if d.strip()])


def user_command(env: Mapping[str, str], args: Sequence[str], python: str) -> list[str]:
    """``[python, script, args]`` or ``[python, -m, module, args]``.

    Raises:
        EntrypointError: Neither or both of ``KUBELAB_SCRIPT``/``KUBELAB_MODULE`` set.
    """
    script, module = env.get("KUBELAB_SCRIPT"), env.get("KUBELAB_MODULE")
    if bool(script) == bool(module):
        raise EntrypointError("set exactly one of KUBELAB_SCRIPT and KUBELAB_MODULE")
    return [python, script, *args] if script else [python, "-m", str(module), *args]


def plan(env: Mapping[str, str], args: Sequence[str], python: str = sys.executable) -> Launch:
    """Compute the launch of this rank from the CONTRACT environment (pure).

    Raises:
        EntrypointError: A missing or invalid variable, or an NCCL setup that cannot work.
    """
    framework = env.get("KUBELAB_FRAMEWORK", "")
    if framework not in FRAMEWORKS:
        raise EntrypointError(f"KUBELAB_FRAMEWORK={framework!r}; allowed: {', '.join(FRAMEWORKS)}")
    world = _int(env, "KUBELAB_WORLD_SIZE", minimum=1)
    rank = _int(env, "KUBELAB_RANK") + _int(env, "KUBELAB_RANK_OFFSET", default=0)
    if rank >= world:
        raise EntrypointError(f"KUBELAB_RANK={rank} is outside 0..{world - 1} (KUBELAB_WORLD_SIZE={world})")
    nprocs = _int(env, "KUBELAB_NPROCS", default=1, minimum=1)
    port = _int(env, "KUBELAB_PORT", default=DEFAULT_PORTS[framework], minimum=1)
    peers = parse_peers(env.get("KUBELAB_PEERS", "") or "localhost", port)
    if len(peers) != world:
        raise EntrypointError(f"KUBELAB_PEERS lists {len(peers)} peer(s) but KUBELAB_WORLD_SIZE={world}")
    command = user_command(env, args, python)
    others = [h for i, (h, _) in enumerate(peers) if i != rank]

    if framework == "pytorch":
        gpus = visible_gpus(env)
        if gpus and nprocs > gpus and env.get("KUBELAB_BACKEND", "nccl") == "nccl":
            # NCCL refuses two ranks on one GPU ("Duplicate GPU detected"); say so before it does.
            raise EntrypointError(
                f"NCCL needs one GPU per process: {nprocs} processes on {gpus} GPU(s) "
                f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')}); set procs_per_worker <= {gpus}, "
                "or KUBELAB_BACKEND=gloo to share GPUs (about 40x slower)"
            )
        run = [python, "-m", "torch.distributed.run", f"--nproc_per_node={nprocs}"]
        if world == 1:
            run += ["--standalone", "--nnodes=1"]
            restarts = _int(env, "KUBELAB_RESTARTS", default=0)
            if restarts:
                # torchrun's elastic restarts: a failed process starts again in this pod (and
                # resumes from its checkpoint); kubelab restarts the pod only when the pod is lost.
                run.append(f"--max-restarts={restarts}")
            launch = Launch(run + command[1:])
        else:
            master, master_port = peers[0]
            run += [f"--nnodes={world}", f"--node_rank={rank}", f"--master_addr={master}",
                    f"--master_port={master_port}"]
            # Workers need the master's store to accept; the master needs the others' names to resolve.
            launch = Launch(run + command[1:], wait_resolve=others,
                            wait_connect=[] if rank == 0 else [(master, master_port)])
        launch.env["KUBELAB_BACKEND"] = env.get("KUBELAB_BACKEND", "nccl" if gpus else "gloo")
        return launch
    if framework == "tensorflow":
        tf_config = {"cluster": {"worker": [f"{h}:{p}" for h, p in peers]}, "task": {"type": "worker", "index": rank}}
        return Launch(command, env={"TF_CONFIG": json.dumps(tf_config)}, wait_resolve=others)
    if framework == "mpi":
        launcher = env.get("KUBELAB_MPI_LAUNCHER", "mpirun")
        if launcher not in ("mpirun", "horovodrun"):
            raise EntrypointError(f"KUBELAB_MPI_LAUNCHER={launcher!r}; allowed: mpirun, horovodrun")
        ssh_dir = env.get("KUBELAB_MPI_SSH_DIR") or DEFAULT_SSH_DIR
        if rank != 0:
            # Worker side: this pod's own sshd (its own config, host key and port; never the
            # machine's), until the launcher says the run is over.
            port = peers[rank][1]
            return Launch(["/usr/sbin/sshd", "-D", "-e", "-f", "{sshd_config}"], sshd_port=port, ssh_dir=ssh_dir)
        total = world * nprocs
        workers = peers[1:]
        ssh_port = peers[1][1] if workers else port
        if launcher == "horovodrun":
            hosts = ",".join(f"{h}:{nprocs}" for h, _ in peers)
            argv = ["horovodrun", "-np", str(total), "-H", hosts, "-p", str(ssh_port), "-i", "{ssh_key}", *command]
            return Launch(argv, wait_connect=list(workers), mpi_workers=list(workers), ssh_dir=ssh_dir)
        hostfile = "".join(f"{h} slots={nprocs}\n" for h, _ in peers)
        forward = [a for name in ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "KUBELAB_JOB", "KUBELAB_BACKEND")
                   if env.get(name) for a in ("-x", name)]
        argv = ["mpirun", "-np", str(total), "--hostfile", "{hostfile}", *forward, *MPI_RANK_WRAPPER, *command]
        return Launch(argv, env={
            "OMPI_MCA_plm_rsh_args": " ".join(["-p", str(ssh_port), "-i", "{ssh_key}", *SSH_OPTIONS]),
            # Pods commonly run as root; Open MPI refuses that without both of these.
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            # Open MPI cuts "<pod>.<subdomain>" to "<pod>", which only resolves with the subdomain.
            "OMPI_MCA_orte_keep_fqdn_hostnames": "1",
        }, wait_connect=list(workers), mpi_hostfile=hostfile, mpi_workers=list(workers), ssh_dir=ssh_dir)
    return Launch(command)


def wait_for_peers(launch: Launch, timeout: float, sleep: float = 0.5) -> None:
    """Wait until every peer in ``launch`` resolves / accepts, or fail naming the first that does not.

    Raises:
        EntrypointError: A peer is still unreachable after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    for host in launch.wait_resolve:
        while True:
            try:
                socket.getaddrinfo(host, None)
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise EntrypointError(
                        f"peer {host} did not resolve within {timeout:g}s (KUBELAB_RENDEZVOUS_TIMEOUT): {e}"
                    ) from e
                time.sleep(sleep)
    for host, port in launch.wait_connect:
        while True:
            try:
                with socket.create_connection((host, port), timeout=2):
                    break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise EntrypointError(
                        f"peer {host}:{port} was unreachable for {timeout:g}s (KUBELAB_RENDEZVOUS_TIMEOUT): {e}"
                    ) from e
                time.sleep(sleep)


def sshd_config(state: str, port: int, ssh_dir: str) -> str:
    """A worker's own sshd configuration: its port, a host key made for this pod, the job's
    authorized key, keys only. It lives in a temporary folder, so no sshd of the machine is touched."""
    return "\n".join([
        f"Port {port}", f"HostKey {state}/host_key", f"PidFile {state}/sshd.pid",
        f"AuthorizedKeysFile {ssh_dir}/authorized_keys",
        # Secret volumes are not the user's own 0700 ~/.ssh that StrictModes expects.
        "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "PermitRootLogin prohibit-password", "PrintMotd no", "",
    ])


def _private_key_copy(ssh_dir: str) -> str:
    """The job's private key copied to a 0600 file: ssh refuses a key that others may read."""
    try:
        with open(os.path.join(ssh_dir, "id_rsa"), "rb") as src:
            key = src.read()
    except OSError as e:
        raise EntrypointError(f"no SSH key for mpirun in KUBELAB_MPI_SSH_DIR={ssh_dir} ({e.strerror}): "
                              "the job needs its ssh Secret mounted there") from e
    fd, path = tempfile.mkstemp(prefix="kubelab-ssh-key-")
    with os.fdopen(fd, "wb") as dst:
        dst.write(key)
    os.chmod(path, 0o600)
    return path


def _read_failures(text: str) -> list[tuple[int, int]]:
    """``(MPI rank, exit code)`` lines of a failed-ranks file."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].lstrip("-").isdigit() and parts[1].isdigit():
            out.append((int(parts[0]), int(parts[1])))
    return out


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, with SIGTERM/SIGINT forwarded to it."""
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        raise EntrypointError(f"{argv[0]} is not installed in this image")
    child = subprocess.Popen(argv, env=env, start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child


def run_mpi_worker(launch: Launch, env: dict[str, str], poll: float = 0.5) -> int:
    """Serve sshd until the launcher marks the run done; exit 1 if an MPI rank of this pod failed."""
    assert launch.sshd_port is not None
    state = tempfile.mkdtemp(prefix="kubelab-sshd-")
    keygen = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{state}/host_key"],
                            capture_output=True, text=True)
    if keygen.returncode != 0:
        raise EntrypointError(f"ssh-keygen failed: {keygen.stderr.strip()}")
    config = f"{state}/sshd_config"
    with open(config, "w") as f:
        f.write(sshd_config(state, launch.sshd_port, launch.ssh_dir))
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder (the pod's own /run)
    child = _spawn([a.replace("{sshd_config}", config) for a in launch.argv], env)
    try:
        while not os.path.exists(MPI_DONE):
            if child.poll() is not None:
                raise EntrypointError(f"sshd exited with code {child.returncode} before the launcher was done")
            time.sleep(poll)
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait()
    failures = _read_failures(open(MPI_FAILED).read()) if os.path.exists(MPI_FAILED) else []
    for mpi_rank, code in failures:
        print(f"{PREFIX}: MPI rank {mpi_rank} on this worker exited with code {code}", file=sys.stderr, flush=True)
    return 1 if failures else 0


def finish_mpi(launch: Launch, key: str, code: int) -> int:
    """After mpirun: tell every worker the run is over, and collect which pods' ranks failed.

    The launcher's own exit code is its own ranks' verdict: a worker whose rank failed fails itself,
    so the job names that rank; only a failure nobody recorded (ssh, mpirun itself) fails here.
    """
    failed_elsewhere = []
    for host, port in launch.mpi_workers:
        done = subprocess.run(["ssh", "-p", str(port), "-i", key, *SSH_OPTIONS, host,
                               f"mkdir -p {MPI_STATE} && touch {MPI_DONE} && cat {MPI_FAILED} 2>/dev/null; true"],
                              capture_output=True, text=True, timeout=60)
        if _read_failures(done.stdout):
            failed_elsewhere.append(host)
    own = _read_failures(open(MPI_FAILED).read()) if os.path.exists(MPI_FAILED) else []
    for mpi_rank, rc in own:
        print(f"{PREFIX}: MPI rank {mpi_rank} on this pod exited with code {rc}", file=sys.stderr, flush=True)
    if own:
        return 1
    if failed_elsewhere:
        print(f"{PREFIX}: {launch.argv[0]} exited with code {code}: MPI ranks failed on {', '.join(failed_elsewhere)}",
              file=sys.stderr, flush=True)
        return 0
    return code


def run(launch: Launch) -> int:
    """Run ``launch`` as a child, forwarding SIGTERM/SIGINT so a cancel stops the training processes."""
    env = dict(os.environ, **launch.env)
    if launch.sshd_port is not None:
        return run_mpi_worker(launch, env)
    argv = list(launch.argv)
    temporary = []
    key = None
    if launch.mpi_workers:
        key = _private_key_copy(launch.ssh_dir)
        temporary.append(key)
    # One worker: mpirun starts every rank here and never uses ssh.
    env = {k: v.replace("{ssh_key}", key or "/dev/null") for k, v in env.items()}
    argv = [a.replace("{ssh_key}", key or "/dev/null") for a in argv]
    if launch.mpi_hostfile is not None:
        tmp = tempfile.NamedTemporaryFile("w", prefix="kubelab-hostfile-", delete=False)
        tmp.write(launch.mpi_hostfile)
        tmp.close()
        temporary.append(tmp.name)
        argv = [a.replace("{hostfile}", tmp.name) for a in argv]
    try:
        code = exit_status(_spawn(argv, env).wait())
        if key is not None:
            code = finish_mpi(launch, key, code)
        return code
    finally:
        for path in temporary:
            os.unlink(path)


def exit_status(returncode: int) -> int:
    """A child's status as this process's exit code: 128 + N for a child killed by signal N.

    ``Popen.wait`` gives ``-N`` for a signal, and ``sys.exit(-9)`` would exit 247; the container
    must end 137 (SIGKILL, e.g. the OOM killer) or 143 (SIGTERM), as a shell or runtime reports it.
    """
    return 128 - returncode if returncode < 0 else returncode


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit code (the child's, or 2 for a contract/rendezvous error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    dry_run = False
    while argv and argv[0] != "--":
        flag = argv.pop(0)
        if flag == "--dry-run":
            dry_run = True
        else:
            print(f"{PREFIX}: unknown option {flag!r}; usage: python -m kubelab.jobs.entrypoint "
                  "[--dry-run] -- <args...>", file=sys.stderr)
            return 2
    if argv and argv[0] == "--":
        argv.pop(0)
    try:
        launch = plan(env, argv)
        if dry_run:
            print(json.dumps({"argv": launch.argv, "env": launch.env, "hostfile": launch.mpi_hostfile,
                              "wait_resolve": launch.wait_resolve,
                              "wait_connect": [f"{h}:{p}" for h, p in launch.wait_connect]}))
            return 0
        rank = int(env["KUBELAB_RANK"]) + int(env.get("KUBELAB_RANK_OFFSET") or 0)
        print(f"{PREFIX}: job {env.get('KUBELAB_JOB', '?')} rank {rank} of {env['KUBELAB_WORLD_SIZE']}: "
              f"{' '.join(launch.argv)}", file=sys.stderr, flush=True)
        timeout = float(_int(env, "KUBELAB_RENDEZVOUS_TIMEOUT", default=300, minimum=1))
        prepare_files(env, timeout)
        wait_for_peers(launch, timeout)
        code = run(launch)
    except EntrypointError as e:
        print(f"{PREFIX}: error: {e}", file=sys.stderr, flush=True)
        return 2
    # Whatever the code, and after a SIGTERM too (within the grace period): a failed or stopped
    # run's checkpoints are what the user needs most.
    hand_over_outputs(env, rank, code, timeout)
    return code


# -- the rank's files (CONTRACT.md: HOME, KUBELAB_OUTPUT_DIR and the collector's variables) ---------


def say(message: str) -> None:
    """One line of the entrypoint's own on stderr (the log filter hides these from "your lines")."""
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


def copy_shipped(source: str, dest: str) -> int:
    """Copy the shipped script folder (a ConfigMap volume) into ``dest``, writable; return the files copied.

    A ConfigMap volume holds its items as symlinks into ``..data``: they are followed, and the
    volume's own ``..``-entries are left out.
    """
    count = 0
    for top, dirs, files in os.walk(source, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        rel = os.path.relpath(top, source)
        if rel.split(os.sep)[0].startswith(".."):
            continue
        target = os.path.normpath(os.path.join(dest, rel))
        os.makedirs(target, exist_ok=True)
        for name in files:
            if name.startswith(".."):
                continue
            shutil.copyfile(os.path.join(top, name), os.path.join(target, name))
            count += 1
    return count


def prepare_files(env: Mapping[str, str], timeout: float) -> None:
    """Before the script starts: the shipped folder into the home, the inputs from the collector,
    and the output folder made (so a script can write there without creating it).

    Raises:
        EntrypointError: The inputs could not be fetched (the message says why).
    """
    home = env.get("HOME") or os.getcwd()
    shipped = env.get("KUBELAB_FILES_DIR")
    if shipped and os.path.isdir(shipped):
        say(f"files: copied {copy_shipped(shipped, home)} shipped file(s) into {home}")
    if env.get("KUBELAB_INPUTS") and env.get("KUBELAB_COLLECTOR"):
        try:
            files, size = transfer.fetch_inputs(env["KUBELAB_COLLECTOR"], env.get("KUBELAB_TRANSFER_TOKEN", ""), timeout)
        except transfer.TransferError as e:
            raise EntrypointError(str(e)) from e
        say(f"inputs: fetched {files} file(s) ({transfer.human(size)}) from your home to the same paths")
    for name, what in (("KUBELAB_OUTPUT_DIR", "outputs"), ("KUBELAB_CHECKPOINT_DIR", "checkpoints")):
        folder = env.get(name)
        if folder:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                say(f"{what}: cannot create {folder}: {e.strerror}")


def hand_over_outputs(env: Mapping[str, str], rank: int, code: int, timeout: float) -> None:
    """On the collect route, hand this rank's output folder to the collector (it writes it into the home)."""
    output, url = env.get("KUBELAB_OUTPUT_DIR"), env.get("KUBELAB_COLLECTOR")
    if not (output and url and env.get("KUBELAB_OUTPUT_COLLECT") == "1"):
        return
    try:
        result = transfer.send_outputs(url, env.get("KUBELAB_TRANSFER_TOKEN", ""), rank, output, code, timeout)
    except transfer.TransferError as e:
        say(f"outputs: not handed over, they are lost with this pod: {e}")
        return
    kept = f"; {result['skipped']} not kept (a lower rank wrote the same path)" if result["skipped"] else ""
    say(f"outputs: handed {result['sent']} file(s) ({transfer.human(result['bytes'])}) from {output} to the "
        f"collector, into your home at the same path{kept}")
    for item in result["unsent"][:5]:
        say(f"outputs: not kept: {item}")


if __name__ == "__main__":
    raise SystemExit(main())
