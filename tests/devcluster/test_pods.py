"""Pods on the process node, through the real API: addresses, exit codes, logs, volumes, names, deletion."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from kubelab.devcluster import SIMULATE_ANNOTATION, SIMULATE_LABEL, pidfile
from kubelab.devcluster.netns import sandbox_names
from kubelab.devcluster.settings import load_instance
from kubelab.devcluster.testing import bound_claim, pod_log, python_pod, wait_for, wait_pod_gone, wait_pod_phase

pytestmark = pytest.mark.integration
KUBECTL = str(Path(sys.prefix) / "bin" / "kubectl")


@pytest.fixture
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


def http_get(url: str, timeout: float = 20) -> str:
    """GET ``url``, retrying until the server inside the pod listens."""

    def attempt() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            return None

    return wait_for(attempt, timeout, f"HTTP answer from {url}")


def kubectl(*args: str, kubeconfig: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)}, check=False,
    )


def test_two_http_servers_on_one_port_each_answer_at_their_own_address(core, namespace, cluster, tmp_path):
    server = "import http.server as h; h.test(HandlerClass=h.SimpleHTTPRequestHandler, port=8000, bind='0.0.0.0')"
    ips = []
    for name in ("web-a", "web-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "whoami.txt").write_text(name)
        # The pod sees the host's folder only through a volume: its /tmp is its own.
        pod = python_pod(name, server, volumes=[{"name": "www", "hostPath": {"path": str(tmp_path / name)}}],
                         container={"workingDir": "/srv/www", "volumeMounts": [{"name": "www", "mountPath": "/srv/www"}]})
        core.create_namespaced_pod(namespace, pod)
    for name in ("web-a", "web-b"):
        pod = wait_pod_phase(core, namespace, name, ("Running",))
        assert pod.status.host_ip == "127.0.0.1"
        assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(f"{cluster.host_ip}/16", strict=False)
        ips.append(pod.status.pod_ip)
    assert ips[0] != ips[1]
    if not cluster.external:
        assert cluster.host_ip == load_instance(cluster.state).gateway
    for name, ip in zip(("web-a", "web-b"), ips, strict=True):
        assert http_get(f"http://{ip}:8000/whoami.txt") == name


@pytest.mark.parametrize(
    ("code", "condition", "phase"),
    [(3, "Failed", "Failed"), (0, "Complete", "Succeeded")],
    ids=["exit-3-fails", "exit-0-completes"],
)
def test_job_outcome_follows_exit_code(kube, core, namespace, code, condition, phase):
    batch = client.BatchV1Api(kube)
    pod = python_pod("x", f"raise SystemExit({code})")
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"exit-{code}"},
        "spec": {"backoffLimit": 0, "template": {"spec": pod["spec"]}},
    }
    batch.create_namespaced_job(namespace, job)

    def finished() -> list[str] | None:
        conds = batch.read_namespaced_job(f"exit-{code}", namespace).status.conditions or []
        return [c.type for c in conds if c.status == "True"] or None

    assert wait_for(finished, 60, f"job exit-{code} to finish") == [condition]
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name=exit-{code}").items
    assert len(pods) == 1
    assert pods[0].status.phase == phase
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert terminated.exit_code == code
    assert terminated.reason == ("Completed" if code == 0 else "Error")
    assert terminated.finished_at is not None


LOG_CODE = "import time\nfor i in range(5):\n    print(f'line {i}', flush=True)\n    time.sleep(0.4)\n"


def test_logs_through_kubectl_and_python_client(core, namespace, cluster):
    core.create_namespaced_pod(namespace, python_pod("talker", LOG_CODE))
    wait_pod_phase(core, namespace, "talker", ("Running", "Succeeded"))
    expected = "".join(f"line {i}\n" for i in range(5))

    # Follow while it still runs: output arrives as it is written, the stream ends with the process.
    resp = core.read_namespaced_pod_log("talker", namespace, follow=True, _preload_content=False)
    first_at, chunks = None, []
    for chunk in resp.stream(64):
        chunks.append(chunk)
        if first_at is None:
            first_at = (time.monotonic(), core.read_namespaced_pod("talker", namespace).status.phase)
    assert b"".join(chunks).decode() == expected
    assert first_at is not None and first_at[1] == "Running", "first bytes should stream before the pod ends"
    wait_pod_phase(core, namespace, "talker", ("Succeeded",))

    assert pod_log(core, namespace, "talker") == expected
    assert pod_log(core, namespace, "talker", follow=True) == expected
    assert pod_log(core, namespace, "talker", tail_lines=2) == "line 3\nline 4\n"
    assert pod_log(core, namespace, "talker", limit_bytes=9) == "line 0\nli"
    stamped = pod_log(core, namespace, "talker", timestamps=True).splitlines()
    assert len(stamped) == 5 and stamped[0].endswith(" line 0") and stamped[0][:4].isdigit()

    plain = kubectl("logs", "-n", namespace, "talker", kubeconfig=cluster.kubeconfig)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == expected
    followed = kubectl("logs", "-f", "-n", namespace, "talker", "--tail=1", kubeconfig=cluster.kubeconfig)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "line 4\n"


def test_kubectl_logs_follow_streams_until_exit(core, namespace, cluster):
    core.create_namespaced_pod(namespace, python_pod("slow", LOG_CODE))
    wait_pod_phase(core, namespace, "slow", ("Running",))
    proc = subprocess.Popen(
        [KUBECTL, "logs", "-f", "-n", namespace, "slow"], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
    )
    first = proc.stdout.readline()
    assert first == "line 0\n"
    assert proc.poll() is None, "kubectl logs -f should still be following"
    rest = proc.stdout.read()
    assert proc.wait(timeout=30) == 0
    assert first + rest == "".join(f"line {i}\n" for i in range(5))


def test_claim_binds_and_data_persists_to_a_later_pod(core, namespace):
    claim = bound_claim(core, namespace, "home")
    assert claim.spec.storage_class_name == "kubelab-local"
    mount = f"/mnt/kubelab-test-{namespace}"
    volume = {"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "home"}}],
              "container": {"volumeMounts": [{"name": "home", "mountPath": mount}]}}
    writer = python_pod("writer", f"open('{mount}/note.txt', 'w').write('kept')", **json.loads(json.dumps(volume)))
    core.create_namespaced_pod(namespace, writer)
    wait_pod_phase(core, namespace, "writer", ("Succeeded",))
    reader = python_pod("reader", f"print(open('{mount}/note.txt').read())", **json.loads(json.dumps(volume)))
    core.create_namespaced_pod(namespace, reader)
    wait_pod_phase(core, namespace, "reader", ("Succeeded",))
    assert pod_log(core, namespace, "reader") == "kept\n"
    # The bind mount, and the mount point itself, lived in the pod's own view only.
    assert not Path(mount).exists()


def test_pods_under_headless_service_reach_each_other_by_hostname_subdomain(core, namespace):
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "workers"},
        "spec": {"clusterIP": "None", "selector": {"app": "ranks"}, "ports": [{"port": 8000}]},
    })
    code = (
        "import http.server, threading, time, urllib.request, socket, sys\n"
        "srv = http.server.ThreadingHTTPServer(('0.0.0.0', 8000), http.server.SimpleHTTPRequestHandler)\n"
        "threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
        "peer = sys.argv[1]\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        urllib.request.urlopen(f'http://{peer}.workers:8000/', timeout=1)\n"
        "        socket.gethostbyname(f'{peer}.workers.' + sys.argv[2] + '.svc.cluster.local')\n"
        "        print('reached', peer, flush=True)\n"
        "        time.sleep(2)\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.2)\n"
        "else:\n"
        "    raise SystemExit(1)\n"
    )
    for me, peer in (("rank0", "rank1"), ("rank1", "rank0")):
        pod = python_pod(me, code, labels={"app": "ranks"}, hostname=me, subdomain="workers",
                         container={"args": [peer, namespace]})
        core.create_namespaced_pod(namespace, pod)
    for me, peer in (("rank0", "rank1"), ("rank1", "rank0")):
        wait_pod_phase(core, namespace, me, ("Succeeded",), timeout=90)
        # The other rank's request also shows in this log (http.server logs to stderr).
        assert f"reached {peer}\n" in pod_log(core, namespace, me)


def test_deleting_a_pod_sends_sigterm_then_removes_it(core, namespace, tmp_path):
    marker = tmp_path / "terminated"
    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n    open('/out/terminated', 'w').write('SIGTERM')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(600)\n"
    )
    core.create_namespaced_pod(namespace, python_pod(
        "graceful", code, volumes=[{"name": "out", "hostPath": {"path": str(tmp_path)}}],
        container={"volumeMounts": [{"name": "out", "mountPath": "/out"}]}))
    wait_pod_phase(core, namespace, "graceful", ("Running",))
    wait_for(lambda: pod_log(core, namespace, "graceful") == "ready\n", 20, "handler installed")
    started = time.monotonic()
    core.delete_namespaced_pod("graceful", namespace, grace_period_seconds=30)
    wait_pod_gone(core, namespace, "graceful", timeout=30)
    assert marker.read_text() == "SIGTERM"
    assert time.monotonic() - started < 15, "a process that exits on SIGTERM should not wait out the grace period"


def test_process_ignoring_sigterm_is_killed_after_grace_period(core, namespace, cluster):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(600)\n"
    pod = core.create_namespaced_pod(namespace, python_pod("stubborn", code))
    wait_pod_phase(core, namespace, "stubborn", ("Running",))
    wait_for(lambda: pod_log(core, namespace, "stubborn") == "ready\n", 20, "handler installed")
    pid_file = next((cluster.state / "agent" / "pods").glob(f"{namespace}_stubborn_{pod.metadata.uid}")) / "pid"
    pid, start = pidfile.read(pid_file)
    started = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace, grace_period_seconds=2)
    wait_pod_gone(core, namespace, "stubborn", timeout=30)
    assert 1.5 < time.monotonic() - started < 15
    assert pidfile.process_start_time(pid) != start, "the process must be gone once the pod object is"


def _events(core: client.CoreV1Api, namespace: str, pod: str, reason: str) -> list[str]:
    items = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}").items
    return [e.message for e in items if e.reason == reason]


def _gpu_pod(name: str, count: int, tolerate: bool) -> dict:
    code = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('NVIDIA_VISIBLE_DEVICES'))"
    extra = {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]} if tolerate else {}
    return python_pod(name, code, container={"resources": {"limits": {"nvidia.com/gpu": str(count)}}}, **extra)


@pytest.mark.parametrize(
    ("count", "tolerate", "message"),
    [(1, False, "that the pod didn't tolerate"), (5, True, "Insufficient nvidia.com/gpu")],
    ids=["no-toleration", "five-gpus"],
)
def test_unschedulable_gpu_pod_stays_pending_with_reason(core, namespace, count, tolerate, message):
    core.create_namespaced_pod(namespace, _gpu_pod("gpu", count, tolerate))
    messages = wait_for(lambda: _events(core, namespace, "gpu", "FailedScheduling"), 30, "FailedScheduling event")
    assert any(message in m for m in messages), messages
    pod = core.read_namespaced_pod("gpu", namespace)
    assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_tolerating_gpu_pod_lands_on_gpu_node_with_its_own_devices(core, namespace):
    for name, count in (("gpu-a", 1), ("gpu-b", 2)):
        core.create_namespaced_pod(namespace, _gpu_pod(name, count, tolerate=True))
    seen = set()
    for name, count in (("gpu-a", 1), ("gpu-b", 2)):
        # Generous: on the shared devcluster other suites' pods may hold the node's GPUs for a while.
        pod = wait_pod_phase(core, namespace, name, ("Succeeded",), timeout=180)
        assert pod.spec.node_name == "kubelab-gpu-a100"
        cuda, nvidia = pod_log(core, namespace, name).split()
        assert cuda == nvidia and len(cuda.split(",")) == count
        seen.add(cuda)
    node = client.CoreV1Api(core.api_client).read_node("kubelab-gpu-a100")
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert node.status.allocatable["nvidia.com/gpu"] == "4"


def test_env_value_from_and_env_from(core, namespace):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"color": "blue", "size": "L"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "sec"}, "stringData": {"token": "s3cret"}})
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "ROLE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['role']"}}},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME)"},
    ]
    code = "import json, os, socket; print(json.dumps({**os.environ, 'CWD': os.getcwd(), 'HOST': socket.gethostname()}))"
    pod = python_pod("envy", code, labels={"role": "worker"}, container={
        "env": env, "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "resources": {"limits": {"memory": "256Mi"}}, "workingDir": "/tmp",
    })
    core.create_namespaced_pod(namespace, pod)
    done = wait_pod_phase(core, namespace, "envy", ("Succeeded",))
    seen = json.loads(pod_log(core, namespace, "envy"))
    assert {k: seen[k] for k in ("POD_NAME", "POD_NS", "NODE", "ROLE", "COLOR", "TOKEN", "MEM_MI", "GREETING")} == {
        "POD_NAME": "envy", "POD_NS": namespace, "NODE": "kubelab-cpu", "ROLE": "worker", "COLOR": "blue",
        "TOKEN": "s3cret", "MEM_MI": "256", "GREETING": "hi envy",
    }
    assert seen["POD_IP"] == done.status.pod_ip
    assert seen["CFG_color"] == "blue" and seen["CFG_size"] == "L"
    assert seen["PATH"].startswith(str(Path(sys.prefix) / "bin"))
    assert seen["CWD"] == "/tmp" and seen["HOST"] == "envy"


def test_config_map_secret_and_empty_dir_volumes(core, namespace):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "files"}, "data": {"a.conf": "A", "b.conf": "B"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "keys"}, "stringData": {"id": "xyz"}})
    base = f"/tmp/kubelab-test-{namespace}"
    code = (
        "import os, json\n"
        f"b = {base!r}\n"
        "print(json.dumps({'conf': sorted(os.listdir(b + '/conf')), 'renamed': open(b + '/conf/renamed.conf').read(),\n"
        "  'single': open(b + '/single.conf').read(), 'secret': open(b + '/keys/id').read(),\n"
        "  'scratch': os.listdir(b + '/scratch')}))\n"
    )
    pod = python_pod("vols", code, volumes=[
        {"name": "conf", "configMap": {"name": "files", "items": [{"key": "a.conf", "path": "renamed.conf"}]}},
        {"name": "whole", "configMap": {"name": "files"}},
        {"name": "keys", "secret": {"secretName": "keys"}},
        {"name": "scratch", "emptyDir": {}},
    ], container={"volumeMounts": [
        {"name": "conf", "mountPath": f"{base}/conf"},
        {"name": "whole", "mountPath": f"{base}/single.conf", "subPath": "b.conf"},
        {"name": "keys", "mountPath": f"{base}/keys", "readOnly": True},
        {"name": "scratch", "mountPath": f"{base}/scratch"},
    ]})
    core.create_namespaced_pod(namespace, pod)
    wait_pod_phase(core, namespace, "vols", ("Succeeded",))
    seen = json.loads(pod_log(core, namespace, "vols"))
    assert seen == {"conf": ["renamed.conf"], "renamed": "A", "single": "B", "secret": "xyz", "scratch": []}


def test_on_failure_restarts_and_previous_logs(core, namespace):
    # The flag lives in an emptyDir, which outlives container restarts (the container's /tmp does not).
    code = (
        "import os, sys\n"
        "f = '/state/second-run'\n"
        "if os.path.exists(f) and not os.path.exists('/tmp/first-run'):\n    print('second'); sys.exit(0)\n"
        "open(f, 'w').close(); open('/tmp/first-run', 'w').close(); print('first'); sys.exit(1)\n"
    )
    core.create_namespaced_pod(namespace, python_pod(
        "flaky", code, restart_policy="OnFailure", volumes=[{"name": "state", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "state", "mountPath": "/state"}]}))
    pod = wait_pod_phase(core, namespace, "flaky", ("Succeeded",))
    status = pod.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    assert pod_log(core, namespace, "flaky") == "second\n"
    assert pod_log(core, namespace, "flaky", previous=True) == "first\n"


def test_simulated_pod_runs_without_a_process(core, namespace, cluster):
    pod = python_pod("sim", "raise SystemExit(1)")
    pod["metadata"]["annotations"] = {SIMULATE_ANNOTATION: "true"}
    created = core.create_namespaced_pod(namespace, pod)
    running = wait_pod_phase(core, namespace, "sim", ("Running",))
    assert running.status.pod_ip and running.status.container_statuses[0].state.running
    pod_dir = cluster.state / "agent" / "pods" / f"{namespace}_sim_{created.metadata.uid}"
    assert not (pod_dir / "pid").exists()
    time.sleep(1)
    assert core.read_namespaced_pod("sim", namespace).status.phase == "Running"


def test_every_pod_of_a_namespace_labelled_simulate_runs_without_a_process(core, namespace, cluster):
    # Labelled just before the pods are created, as a benchmark does: the agent must not miss it.
    core.patch_namespace(namespace, {"metadata": {"labels": {SIMULATE_LABEL: "true"}}})
    created = [core.create_namespaced_pod(namespace, python_pod(f"sim-{i}", "raise SystemExit(1)")) for i in range(3)]
    for pod in created:
        running = wait_pod_phase(core, namespace, pod.metadata.name, ("Running",))
        assert running.status.pod_ip and running.status.container_statuses[0].state.running
        pod_dir = cluster.state / "agent" / "pods" / f"{namespace}_{pod.metadata.name}_{pod.metadata.uid}"
        assert not (pod_dir / "pid").exists() and not (pod_dir / "logs").exists()
    # Once the label is gone, a new pod runs as a process again (and ends with the script's exit code).
    core.patch_namespace(namespace, {"metadata": {"labels": {SIMULATE_LABEL: None}}})
    core.create_namespaced_pod(namespace, python_pod("real", "raise SystemExit(3)", restart_policy="Never"))
    real = wait_pod_phase(core, namespace, "real", ("Succeeded", "Failed"))
    assert real.status.container_statuses[0].state.terminated.exit_code == 3
    assert core.read_namespaced_pod("sim-0", namespace).status.phase == "Running"


def test_hosts_file_follows_peers_and_keeps_its_inode(core, namespace):
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "grp"}, "spec": {"clusterIP": "None", "selector": {"app": "grp"}},
    })
    sleeper = "import time; time.sleep(600)"
    first = core.create_namespaced_pod(namespace, python_pod("m0", sleeper, labels={"app": "grp"}, hostname="m0",
                                                             subdomain="grp"))
    wait_pod_phase(core, namespace, "m0", ("Running",))
    hosts = Path("/etc/netns") / sandbox_names(first.metadata.uid)[0] / "hosts"
    inode = hosts.stat().st_ino
    core.create_namespaced_pod(namespace, python_pod("m1", sleeper, labels={"app": "grp"}, hostname="m1",
                                                     subdomain="grp"))
    m1_ip = wait_pod_phase(core, namespace, "m1", ("Running",)).status.pod_ip
    line = f"{m1_ip}\tm1.grp.{namespace}.svc.cluster.local\tm1.grp"
    wait_for(lambda: line in hosts.read_text().splitlines(), 20, "m1 in m0's hosts file")
    core.delete_namespaced_pod("m1", namespace, grace_period_seconds=0)
    wait_for(lambda: "m1.grp" not in hosts.read_text(), 30, "m1 gone from m0's hosts file")
    assert hosts.stat().st_ino == inode, "ip netns exec bind-mounts the file: it must be rewritten in place"
