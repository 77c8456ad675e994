"""One pod on the process node: its sandbox, its process, its restarts, its status and its end.

A :class:`PodRunner` owns one pod from the moment it is bound to one of the
agent's nodes until its API object is gone. It runs the first container's command
in the pod's network namespace (through :mod:`kubelab.devcluster.podinit`),
captures output into CRI-format log files, restarts per ``restartPolicy`` and, on
deletion, sends SIGTERM to the process group and SIGKILL after the grace period,
then deletes the pod object with grace 0, as the kubelet does.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiTypeError
from kubernetes.client.rest import ApiException

from kubelab.devcluster import cgroups, eviction, images, netns, pidfile
from kubelab.devcluster.kubeletapi import LogNotFound, LogSource
from kubelab.devcluster.logfile import LogWriter
from kubelab.devcluster.nodes import node_resources
from kubelab.devcluster.podenv import PodConfigError, command_line, parse_quantity, resolve_env
from kubelab.devcluster.podinit import CGROUP_FD_OPTION
from kubelab.devcluster.podstatus import ContainerState, exit_reason, pod_status, rfc3339
from kubelab.devcluster.volumes import materialise, mount_plan

if TYPE_CHECKING:
    from kubelab.devcluster.agent import Agent
    from kubelab.devcluster.nodes import NodeSpec

log = logging.getLogger(__name__)
#: Namespace label: the process node simulates every pod of a namespace labelled ``"true"``, so
#: a benchmark's hub (kubelab's or stock KubeSpawner) builds its pods exactly as it would anywhere
#: and only the devcluster decides not to run them.
SIMULATE_LABEL = "kubelab.io/simulate"
#: Pod annotation: simulate this one pod (devcluster tests that need a single such pod).
SIMULATE_ANNOTATION = "kubelab.io/simulate"
STRATEGIC = "application/strategic-merge-patch+json"
MAX_BACKOFF = 10.0


def patch_strategic(method: Any, *args: Any) -> Any:
    """Call a generated ``patch_*`` method so that it sends a strategic-merge patch.

    Clients that take ``_content_type`` default to JSON-patch and need it; older ones (the
    Kubeflow SDK pins ``kubernetes<36``) refuse the keyword and send a dict body as a
    strategic-merge patch by themselves.
    """
    try:
        return method(*args, _content_type=STRATEGIC)
    except ApiTypeError:
        return method(*args)


def now() -> datetime.datetime:
    """Aware UTC now."""
    return datetime.datetime.now(datetime.UTC)


def gpu_request(pod: dict[str, Any]) -> int:
    """How many ``nvidia.com/gpu`` the pod's containers ask for (limits, else requests)."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        value = (res.get("limits") or {}).get("nvidia.com/gpu") or (res.get("requests") or {}).get("nvidia.com/gpu")
        total += int(value or 0)
    return total


def is_simulated(pod: dict[str, Any], namespace: dict[str, Any] | None = None) -> bool:
    """Whether the pod runs simulated (Running with an address, no process).

    Args:
        pod: The pod; its :data:`SIMULATE_ANNOTATION` opts it in.
        namespace: Its namespace object, if known; its :data:`SIMULATE_LABEL` opts in every pod.
    """
    annotated = (pod["metadata"].get("annotations") or {}).get(SIMULATE_ANNOTATION, "")
    labelled = ((namespace or {}).get("metadata", {}).get("labels") or {}).get(SIMULATE_LABEL, "")
    return "true" in (annotated.lower(), labelled.lower())


def memory_limit(container: dict[str, Any]) -> int | None:
    """The container's ``limits.memory`` in bytes (None when unset or not positive)."""
    value = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if value is None:
        return None
    limit = int(parse_quantity(value))
    return limit if limit > 0 else None


def pod_dir_name(pod: dict[str, Any]) -> str:
    """Folder name of a pod on the node: ``<ns>_<name>_<uid>``."""
    meta = pod["metadata"]
    return f"{meta['namespace']}_{meta['name']}_{meta['uid']}"


class PodRunner:
    """Runs one pod. All methods but :meth:`run` are called from the agent's informer thread.

    Args:
        agent: The agent (API access, address and GPU allocation, hosts files).
        node: The node the pod is bound to.
        pod: The pod as first seen.
        simulated: Mark it Running without starting a process (:func:`is_simulated`).
    """

    def __init__(self, agent: Agent, node: NodeSpec, pod: dict[str, Any], simulated: bool = False) -> None:
        self.agent = agent
        self.node = node
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.namespace: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.dir = agent.state / "pods" / pod_dir_name(pod)
        self.simulated = simulated
        self.ip: str | None = None
        self.netns: str | None = None
        self.gpus: list[int] = []
        self.started = False
        self.start_time = now()
        containers = pod["spec"]["containers"]
        self.states = [ContainerState(c["name"], c.get("image", "")) for c in containers]
        self.proc: subprocess.Popen[bytes] | None = None
        self.deleting = False
        self.grace: float = 30.0
        self.gone = False
        self.parked = False
        self.shutting_down = False
        self.status_stale = False
        self.evicted: str | None = None
        self.finished = threading.Event()
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._main, name=f"pod-{self.namespace}/{self.name}", daemon=True)

    # ---- called from the informer thread -------------------------------------------------------

    def start(self) -> None:
        """Start the pod's thread (simulated pods only need a moment of the agent's pool)."""
        if self.simulated:
            self.agent.pool.submit(self._main)
        else:
            self.thread.start()

    def update(self, pod: dict[str, Any]) -> None:
        """Take the latest version of the pod; start termination when it is being deleted."""
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and not self.deleting:
            grace = meta.get("deletionGracePeriodSeconds")
            self.request_delete(float(grace if grace is not None else 30))

    def request_delete(self, grace: float) -> None:
        """SIGTERM the process group now and SIGKILL it after ``grace`` seconds."""
        with self.lock:
            self.deleting = True
            self.grace = grace
            proc = self.proc
            parked, self.parked = self.parked, False
        if parked:
            self.agent.pool.submit(self._finalize)
            return
        self.wake.set()
        if proc is not None and proc.returncode is None:
            self.agent.pool.submit(self._event, "Killing", f"Stopping container {self.states[0].name}")
            self._signal_group(proc.pid, signal.SIGTERM)
            timer = threading.Timer(max(grace, 0.0), self._kill_if_alive, args=(proc,))
            timer.daemon = True
            timer.start()

    def object_gone(self) -> None:
        """The API object was removed (force delete): kill at once, clean up, stop."""
        self.gone = True
        self.request_delete(0)

    def log_source(self, container: str, previous: bool) -> LogSource:
        """The log of ``container`` (its current or previous instance), for the kubelet API.

        Raises:
            LogNotFound: Unknown container, or no such instance yet.
        """
        for index, state in enumerate(self.states):
            if state.name != container:
                continue
            number = state.restart_count - (1 if previous else 0)
            path = self.dir / "logs" / container / f"{number}.log"
            if number < 0 or not path.exists():
                if previous:
                    raise LogNotFound(
                        f'previous terminated container "{container}" in pod "{self.name}" not found', 400
                    )
                raise LogNotFound(
                    f'container "{container}" in pod "{self.name}" is waiting to start: {state.reason}', 400
                )

            def live(index: int = index, number: int = number) -> bool:
                st = self.states[index]
                return st.restart_count == number and st.state == "running"

            return LogSource(path, live)
        raise LogNotFound(f'container "{container}" is not valid for pod "{self.name}"', 400)

    # ---- the pod's own thread ------------------------------------------------------------------

    def _main(self) -> None:
        """Run the pod to its end, then either finish (object being deleted) or park until it is."""
        try:
            if (self.pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                # Finished before this agent started: keep its address until the object goes.
                self.ip = self.agent.allocate_ip(self)
            else:
                self._setup()
                if self.simulated:
                    self._simulate()
                else:
                    self._run_container()
        except Exception:  # noqa: BLE001 - thread top level: log, then still clean up
            log.exception("pod %s/%s: runner failed", self.namespace, self.name)
        finally:
            self._teardown()
            self.agent.release_gpus(self)
            # A finished (or simulated) pod needs no thread while it waits for deletion: park it,
            # and request_delete hands the final step to the agent's pool.
            with self.lock:
                self.parked = not self.deleting and not self.shutting_down
                finalize = self.deleting and not self.shutting_down
            if finalize:
                self._finalize()

    def _finalize(self) -> None:
        """Delete the pod object with grace 0 (unless already gone) and forget the pod."""
        try:
            if not self.gone:
                self._delete_object()
            # Gone from the node, as the kubelet removes a deleted pod's volumes: only the logs stay.
            self._remove_writable(volumes=True)
        except Exception:  # noqa: BLE001 - pool/thread top level: log and still release
            log.exception("pod %s/%s: final delete failed", self.namespace, self.name)
        finally:
            self.agent.release(self)
            self.finished.set()

    def _setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "uid").write_text(self.uid + "\n")
        self.ip = self.agent.allocate_ip(self)
        self.gpus = self.agent.allocate_gpus(self)
        recovered = [cs for cs in (self.pod.get("status") or {}).get("containerStatuses") or []
                     if (cs.get("state") or {}).get("running") or (cs.get("state") or {}).get("terminated")]
        for state, cs in zip(self.states, recovered, strict=False):
            # A previous agent ran this pod and was stopped: the process is gone, count it as killed.
            state.restart_count = cs.get("restartCount", 0) + 1
            state.last_terminated = {"exitCode": 137, "reason": "Error", "message": "process node restarted"}
        if recovered:
            self.started = True
        if not self.simulated:
            self.netns = netns.create_sandbox(
                self.uid, self.ip, self.agent.prefixlen, self.agent.bridge, self.agent.hosts_for(self)
            )
            (self.dir / "sandbox").write_text(self.netns + "\n")
            # Pending with its address; a simulated pod posts Running at once instead (one write, not
            # two, per pod of a 2,000-pod benchmark).
            self._patch_status()

    def _simulate(self) -> None:
        for state in self.states:
            state.state, state.reason, state.started_at = "running", "", now()
        self.started = True
        self._patch_status()

    def _restart_policy(self) -> str:
        return self.pod["spec"].get("restartPolicy") or "Always"

    def _run_container(self) -> None:
        main = self.states[0]
        if self.started and self._restart_policy() == "Never":
            # Recovered after an agent restart: a Never pod cannot be run again.
            main.state, main.exit_code, main.reason = "terminated", 137, "Error"
            main.restart_count -= 1
            main.finished_at = now()
            self._patch_status()
            return
        pull_failures = 0
        while not self.deleting and not self.shutting_down:
            failure = images.pull_failure(self.pod["spec"]["containers"][0].get("image", ""),
                                          self.pod["spec"]["containers"][0].get("imagePullPolicy"))
            if failure is not None:
                pull_failures += 1
                self._fail_pull(failure, pull_failures)
                continue
            try:
                spec_path = self._prepare()
            except (PodConfigError, ApiException) as e:
                message = str(e) if isinstance(e, PodConfigError) else f"API error: {e.reason}"
                if message != main.message:
                    self._event("Failed", f"Error: {message}", "Warning")
                main.state, main.reason, main.message = "waiting", "CreateContainerConfigError", message
                self._patch_status(message=message)
                self.wake.wait(2.0)
                self.wake.clear()
                continue
            code, sig, oom = self._run_once(spec_path)
            main.state, main.exit_code, main.signal = "terminated", code, sig
            main.reason, main.message, main.finished_at = exit_reason(code, oom), "", now()
            for other in self.states[1:]:
                other.state, other.exit_code, other.reason, other.finished_at = "terminated", code, main.reason, now()
            if self.deleting or self.shutting_down or self.evicted:
                # An evicted pod is Failed whatever its restartPolicy, as the kubelet leaves it.
                break
            policy = self._restart_policy()
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                break
            self._patch_status()
            delay = min(MAX_BACKOFF, 0.5 * 2 ** min(main.restart_count, 8))
            last = main.terminated_dict(f"kubelab://{self.uid[:8]}-{main.name}-{main.restart_count}")
            main.state, main.reason, main.message = "waiting", "CrashLoopBackOff", f"back-off {delay:.0f}s"
            self._event("BackOff", f"Back-off restarting failed container {main.name}", "Warning")
            main.last_terminated = last
            main.restart_count += 1
            for other in self.states[1:]:
                other.restart_count = main.restart_count
            self._patch_status()
            self.wake.wait(delay)
            self.wake.clear()
        if self.evicted:
            # Reclaim the space at once: freeing the node's disk is what the eviction is for.
            self._remove_writable(volumes=True)
        self._patch_status()

    def _fail_pull(self, failure: images.PullFailure, failures: int) -> None:
        """Report one failed pull of the first container's image and wait out its back-off, as the
        kubelet's image manager does (:mod:`kubelab.devcluster.images`)."""
        image = self.states[0].image

        def waiting(reason: str, message: str) -> None:
            for state in self.states:
                state.state, state.reason, state.message = "waiting", reason, message
            self._patch_status()

        def pause(seconds: float) -> bool:
            self.wake.wait(seconds)
            self.wake.clear()
            return not (self.deleting or self.shutting_down)

        if failure.reason == images.ERR_IMAGE_NEVER_PULL:
            if failures == 1 or self.states[0].reason != failure.reason:
                self._event(failure.reason, failure.message, "Warning")
                self._event("Failed", f"Error: {failure.reason}", "Warning")
            waiting(failure.reason, failure.message)
            pause(images.pull_backoff(failures))
            return
        self._event("Pulling", images.pulling_message(image))
        self._event("Failed", images.failed_message(image, failure), "Warning")
        self._event("Failed", f"Error: {failure.reason}", "Warning")
        waiting(failure.reason, failure.message)
        if not pause(images.SYNC_SECONDS):
            return
        # The pod's next sync finds the pull backing off.
        self._event("BackOff", images.backoff_message(image))
        self._event("Failed", f"Error: {images.IMAGE_PULL_BACKOFF}", "Warning")
        waiting(images.IMAGE_PULL_BACKOFF, images.backoff_message(image))
        pause(images.pull_backoff(failures))

    def _prepare(self) -> Path:
        """Resolve env, volumes and the command; write the launcher's spec file."""
        pod = json.loads(json.dumps(self.pod))
        pod.setdefault("status", {}).update(
            {"podIP": self.ip, "podIPs": [{"ip": self.ip}], "hostIP": self.agent.host_ip}
        )
        container = pod["spec"]["containers"][0]
        hostname = pod["spec"].get("hostname") or self.name
        base = {
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "HOSTNAME": hostname,
        }
        if self.gpus:
            indices = ",".join(map(str, self.gpus))
            base["NVIDIA_VISIBLE_DEVICES"] = indices
            base["CUDA_VISIBLE_DEVICES"] = indices
        env = resolve_env(
            pod, container, self.agent.configmap_data(self.namespace), self.agent.secret_data(self.namespace),
            node_resources(self.node), base,
        )
        argv = command_line(container, env)
        volume_paths = materialise(
            pod, self.dir, self.agent.configmap_data(self.namespace), self.agent.secret_data(self.namespace),
            self.agent.claim_path(self.namespace),
        )
        mounts = mount_plan(container, volume_paths, env)
        # A fresh writable layer and /tmp for every start, as a new container gets.
        self._remove_writable(volumes=False)
        (self.dir / "rootfs").mkdir(exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        (self.dir / "tmp").chmod(0o1777)
        spec = {
            "argv": argv, "env": env, "cwd": container.get("workingDir"), "hostname": hostname[:63],
            "rootfs": str(self.dir / "rootfs"), "tmp": str(self.dir / "tmp"),
            "mounts": [{"source": m.source, "target": m.target, "read_only": m.read_only} for m in mounts],
        }
        path = self.dir / "launch.json"
        path.write_text(json.dumps(spec))
        path.chmod(0o600)
        return path

    def _container_cgroup(self) -> cgroups.ContainerCgroup | None:
        """A fresh memory cgroup for this start of the first container, when the node has them."""
        memory = self.agent.memory
        if memory is None:
            return None
        container = self.pod["spec"]["containers"][0]
        try:
            return memory.create(self.uid, container["name"], memory_limit(container), self.dir / cgroups.RECORD)
        except (OSError, ValueError) as e:
            log.warning("pod %s/%s: runs without a memory cgroup: %s", self.namespace, self.name, e)
            return None

    def _run_once(self, spec_path: Path) -> tuple[int, int | None, bool]:
        """Run the container process once; return ``(exit code, killing signal, OOM-killed)``."""
        main = self.states[0]
        writer = LogWriter(self.dir / "logs" / main.name / f"{main.restart_count}.log")
        for other in self.states[1:]:
            (self.dir / "logs" / other.name).mkdir(parents=True, exist_ok=True)
            (self.dir / "logs" / other.name / f"{other.restart_count}.log").touch()
        argv = ["ip", "netns", "exec", self.netns or "", sys.executable, "-m", "kubelab.devcluster.podinit",
                str(spec_path)]
        cgroup = self._container_cgroup()
        procs_fd = cgroup.open_procs() if cgroup is not None else None
        if procs_fd is not None:
            argv.append(f"{CGROUP_FD_OPTION}{procs_fd}")
        try:
            with self.lock:
                # Checked under the lock that request_delete and stop_for_shutdown take: no process may
                # start once either has looked for one to stop.
                if self.deleting or self.shutting_down:
                    writer.close()
                    if cgroup is not None:
                        cgroup.remove()
                    return 137, signal.SIGKILL, False
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    start_new_session=True, close_fds=True, pass_fds=() if procs_fd is None else (procs_fd,),
                )
                self.proc = proc
        finally:
            if procs_fd is not None:
                os.close(procs_fd)
        pidfile.write(self.dir / "pid", proc.pid)
        start = pidfile.process_start_time(proc.pid) or 0
        self.started = True
        self._event("Started", f"Started container {main.name}")
        main.state, main.reason, main.message, main.started_at = "running", "", "", now()
        main.exit_code = main.signal = None
        main.finished_at = None
        for other in self.states[1:]:
            other.state, other.reason, other.started_at = "running", "", main.started_at
        self._patch_status()
        readers = [
            threading.Thread(target=self._pump, args=(stream, name, writer), daemon=True)
            for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        for r in readers:
            r.start()
        exited = threading.Event()
        limits = eviction.storage_limits(self.pod)
        if limits:
            threading.Thread(target=self._watch_storage, args=(proc, limits, exited), daemon=True,
                             name=f"storage-{self.namespace}/{self.name}").start()
        # Wait without reaping, so the group id stays ours while we kill what the process left behind.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        exited.set()
        netns.kill_process_group(proc.pid, start)
        status = proc.wait()
        oom = False
        if cgroup is not None:
            # Read before removing: the kernel counts the kills in the cgroup itself.
            oom = cgroup.oom_kills() > 0
            cgroup.remove()
        for r in readers:
            r.join(timeout=5)
        writer.close()
        (self.dir / "pid").unlink(missing_ok=True)
        with self.lock:
            self.proc = None
        if oom:
            log.info("pod %s/%s: container %s was OOM-killed (limit %s)", self.namespace, self.name, main.name,
                     ((self.pod["spec"]["containers"][0].get("resources") or {}).get("limits") or {}).get("memory"))
        if status < 0:
            return 128 - status, -status, oom
        return status, None, oom

    def _watch_storage(self, proc: subprocess.Popen[bytes], limits: eviction.StorageLimits,
                       exited: threading.Event) -> None:
        """Evict the pod once its emptyDirs or writable layer exceed their limits (the kubelet's rule)."""
        while not exited.wait(eviction.CHECK_SECONDS):
            message = eviction.measure(limits, self.dir)
            if message is None:
                continue
            with self.lock:
                if exited.is_set() or self.deleting or self.shutting_down:
                    return
                self.evicted = message
            log.info("pod %s/%s: evicted: %s", self.namespace, self.name, message)
            self._event(eviction.REASON, message, "Warning")
            # evictPod uses a grace period of 0: the process group is killed at once.
            self._signal_group(proc.pid, signal.SIGKILL)
            return

    def _remove_writable(self, volumes: bool) -> None:
        """Remove the pod's writable layer and /tmp (and, with ``volumes``, its volume folders)."""
        for sub in ("rootfs", "tmp", *(("volumes",) if volumes else ())):
            shutil.rmtree(self.dir / sub, ignore_errors=True)

    @staticmethod
    def _pump(stream: Any, name: str, writer: LogWriter) -> None:
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            writer.write(name, chunk)
        stream.close()

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass

    def _kill_if_alive(self, proc: subprocess.Popen[bytes]) -> None:
        # returncode, not poll(): only the pod's thread may reap, or it would lose the exit status.
        if proc.returncode is None:
            self._signal_group(proc.pid, signal.SIGKILL)

    def _delete_object(self) -> None:
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid))
        try:
            self.agent.core.delete_namespaced_pod(self.name, self.namespace, body=body, grace_period_seconds=0)
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def _teardown_sandbox(self) -> None:
        if self.netns:
            netns.delete_sandbox(self.uid)
            (self.dir / "sandbox").unlink(missing_ok=True)
            self.netns = None

    def _teardown(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            self._signal_group(proc.pid, signal.SIGKILL)
        self._teardown_sandbox()

    def stop_for_shutdown(self, timeout: float) -> None:
        """Agent shutdown: SIGTERM the process group, SIGKILL after ``timeout``, remove the sandbox.

        The pod object stays (its node is going away, not the pod); no restart may follow.
        """
        with self.lock:
            self.shutting_down = True
            proc = self.proc
        self.wake.set()
        if proc is not None and proc.returncode is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.returncode is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.returncode is None:
                self._signal_group(proc.pid, signal.SIGKILL)
        entry = pidfile.read(self.dir / "pid")
        if entry is not None:
            netns.kill_process_group(*entry)
            (self.dir / "pid").unlink(missing_ok=True)
        self._teardown_sandbox()

    def retry_status(self) -> None:
        """Post the status again if the last attempt failed (called from the agent's heartbeat)."""
        if self.status_stale and not self.gone:
            self._patch_status()

    def _event(self, reason: str, message: str, kind: str = "Normal") -> None:
        """Record an Event on the pod, as the kubelet does (spawners relay these as progress)."""
        if self.gone:
            return
        stamp = rfc3339(now())
        body = {
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "namespace": self.namespace,
                               "uid": self.uid, "fieldPath": f"spec.containers{{{self.states[0].name}}}"},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": self.node.name},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            self.agent.core.create_namespaced_event(self.namespace, body)
        except (ApiException, urllib3.exceptions.HTTPError) as e:
            log.debug("pod %s/%s: event %s not recorded: %s", self.namespace, self.name, reason, e)

    def _patch_status(self, message: str = "") -> None:
        if self.gone:
            return
        status = pod_status(self.pod, self.states, self.ip, self.agent.host_ip, self.start_time, self.started,
                            now(), message, evicted=self.evicted)
        self.status_stale = True
        try:
            patch_strategic(self.agent.core.patch_namespaced_pod_status, self.name, self.namespace,
                            {"status": status})
            self.status_stale = False
        except ApiException as e:
            if e.status == 404:
                self.gone = True
                self.deleting = True
                return
            log.warning("pod %s/%s: status patch failed: %s %s", self.namespace, self.name, e.status, e.reason)
        except urllib3.exceptions.HTTPError as e:
            # The apiserver may be restarting; the next change posts the full status again.
            log.warning("pod %s/%s: status patch failed: %s; retrying at the next heartbeat", self.namespace,
                        self.name, e)
