"""``kubelab-devcluster`` for real: bad input, idempotent ``up``, and nothing left running after ``down``.

Bad-input cases run the real command in the real conditions (another uid, a PATH
without apt-get, a tiny tmpfs), no mocks. The life-cycle test starts a second,
throw-away instance (its own state, ports and bridge) so the shared one is untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import kubernetes
import pytest

from kubelab.devcluster import ClusterInfo, pidfile
from kubelab.devcluster.controlplane import COMPONENTS, Layout
from kubelab.devcluster.testing import python_pod, wait_for, wait_pod_phase

pytestmark = pytest.mark.integration
CLI = str(Path(sys.prefix) / "bin" / "kubelab-devcluster")


def run_cli(*args: str, env: dict[str, str], timeout: float = 180, user: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI with exactly ``env`` added to a clean environment (no KUBECONFIG)."""
    base = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBELAB_STATE", "KUBELAB_CACHE")}
    argv = [CLI, *args]
    if user is not None:
        # The checkout may sit under a directory only root can enter (mktemp -d, /root): let the
        # unprivileged uid read the code it runs without making it root in any other way.
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env={**base, **env}, timeout=timeout, check=False)


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout == ""


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_up_without_root_names_root(tmp_path):
    result = run_cli("up", env={"KUBELAB_STATE": str(tmp_path / "state")}, user=65534)
    assert_one_line_failure(result, "needs root", "uid 65534")


def test_up_without_apt_and_without_cache_names_apt_get(tmp_path):
    env = {"PATH": str(Path(sys.prefix) / "bin"), "KUBELAB_CACHE": str(tmp_path / "empty-cache"),
           "KUBELAB_STATE": str(tmp_path / "state")}
    result = run_cli("up", env=env)
    assert_one_line_failure(result, "apt-get is not on PATH", "build the Kubernetes v1.20.2 binaries")
    assert not (tmp_path / "empty-cache").exists(), "nothing may be built or downloaded"


def test_up_with_cache_on_full_disk_names_disk_space(tmp_path, tiny_tmpfs):
    result = run_cli("up", env={"KUBELAB_CACHE": str(tiny_tmpfs), "KUBELAB_STATE": str(tmp_path / "state")})
    assert_one_line_failure(result, "not enough disk space", str(tiny_tmpfs), "GiB")
    assert list(tiny_tmpfs.iterdir()) == []


def test_up_with_state_on_full_disk_names_disk_space(cluster, tiny_tmpfs):
    # The cache is warm (the cluster fixture built it); only the state has no room.
    result = run_cli("up", env={"KUBELAB_STATE": str(tiny_tmpfs / "state")})
    assert_one_line_failure(result, "not enough disk space", "state", str(tiny_tmpfs))


def _require_local(cluster: ClusterInfo) -> None:
    if cluster.external:
        pytest.skip("KUBECONFIG points at an external cluster: the devcluster life cycle is not under test")


def test_second_up_changes_nothing(cluster):
    _require_local(cluster)
    layout = Layout(cluster.state)
    before = {name: pidfile.read(layout.pid(name)) for name in COMPONENTS}
    result = run_cli("up", env={"KUBELAB_STATE": str(cluster.state)})
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout and "nothing changed" in result.stdout
    assert {name: pidfile.read(layout.pid(name)) for name in COMPONENTS} == before
    status = run_cli("status", env={"KUBELAB_STATE": str(cluster.state)})
    assert status.returncode == 0 and status.stdout.startswith("devcluster running")


def test_env_prints_export_line(cluster):
    result = run_cli("env", env={"KUBELAB_STATE": "/some/state"})
    assert result.stdout == "export KUBECONFIG=/some/state/kubeconfig\n"


def test_up_with_foreign_kubeconfig_starts_nothing(tmp_path):
    foreign = tmp_path / "other-kubeconfig"
    foreign.write_text("apiVersion: v1\nkind: Config\n")
    state = tmp_path / "state"
    result = run_cli("up", env={"KUBECONFIG": str(foreign), "KUBELAB_STATE": str(state)})
    assert result.returncode == 0, result.stderr
    assert f"KUBECONFIG points at {foreign}" in result.stdout
    assert not state.exists()


def test_throwaway_instance_up_twice_then_down_leaves_no_process(cluster, tmp_path):
    """A full second instance: ``up`` twice, pods run, ``down`` stops every daemon and pod process;
    after another ``up`` the claim's data is still there and the interrupted pod reads Failed."""
    _require_local(cluster)
    state = tmp_path / "instance7"
    env = {"KUBELAB_STATE": str(state), "KUBELAB_DEVCLUSTER_INSTANCE": "7"}
    started = time.monotonic()
    first = run_cli("up", env=env)
    assert first.returncode == 0, first.stderr
    assert time.monotonic() - started < 60, "a warm start should take seconds"
    layout = Layout(state)
    pids = {name: pidfile.read(layout.pid(name)) for name in COMPONENTS}
    assert all(pidfile.alive(layout.pid(name)) for name in COMPONENTS)
    mount = f"/mnt/kubelab-test-instance7-{tmp_path.name}"
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
              "container": {"volumeMounts": [{"name": "data", "mountPath": mount}]}}
    try:
        second = run_cli("up", env=env)
        assert second.returncode == 0 and "nothing changed" in second.stdout
        assert {name: pidfile.read(layout.pid(name)) for name in COMPONENTS} == pids

        api = kubernetes.config.new_client_from_config(config_file=str(layout.kubeconfig))
        core = kubernetes.client.CoreV1Api(api)
        wait_for(lambda: core.read_namespaced_service_account("default", "default").secrets, 30, "default SA token")
        core.create_namespaced_persistent_volume_claim("default", {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        })
        core.create_namespaced_pod("default", python_pod("writer", f"open('{mount}/f', 'w').write('survives')",
                                                         **json.loads(json.dumps(volume))))
        pod = core.create_namespaced_pod("default", python_pod("sleeper", "import time; time.sleep(600)"))
        running = wait_pod_phase(core, "default", "sleeper", ("Running",))
        assert running.status.pod_ip.startswith("10.251."), "instance 7 uses its own subnet"
        wait_pod_phase(core, "default", "writer", ("Succeeded",))
        pod_pid = pidfile.read(state / "agent" / "pods" / f"default_sleeper_{pod.metadata.uid}" / "pid")
        assert pod_pid is not None and pidfile.process_start_time(pod_pid[0]) == pod_pid[1]
        api.close()
    finally:
        down = run_cli("down", env=env)
    assert down.returncode == 0, down.stderr
    for name, (pid, start) in pids.items():
        assert pidfile.process_start_time(pid) != start, f"{name} outlived down"
    assert pidfile.process_start_time(pod_pid[0]) != pod_pid[1], "the pod process outlived down"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert pod.metadata.uid.replace("-", "")[:10] not in netns
    assert subprocess.run(["ip", "link", "show", "kubelab7"], capture_output=True, check=False).returncode != 0
    status = run_cli("status", env=env)
    assert status.returncode == 3 and "not running" in status.stdout

    try:
        again = run_cli("up", env=env)
        assert again.returncode == 0, again.stderr
        api = kubernetes.config.new_client_from_config(config_file=str(layout.kubeconfig))
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespaced_pod("default", python_pod("reader", f"print(open('{mount}/f').read())",
                                                         **json.loads(json.dumps(volume))))
        wait_pod_phase(core, "default", "reader", ("Succeeded",))
        assert core.read_namespaced_pod_log("reader", "default") == "survives\n"
        # A restartPolicy=Never pod whose process the stop killed cannot run again: it ends Failed,
        # with SIGTERM's 143 when the agent could still report it, else 137 found on restart.
        sleeper = wait_pod_phase(core, "default", "sleeper", ("Failed",))
        assert sleeper.status.container_statuses[0].state.terminated.exit_code in (137, 143)
        api.close()
    finally:
        wiped = run_cli("down", "--wipe", env=env)
    assert wiped.returncode == 0 and not state.exists()


def test_ensure_cluster_uses_a_foreign_kubeconfig_as_is(tmp_path, monkeypatch):
    from kubelab.devcluster import ensure_cluster

    foreign = tmp_path / "kind-kubeconfig"
    foreign.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(foreign))
    monkeypatch.setenv("KUBELAB_HOST_IP", "192.0.2.10")
    info = ensure_cluster(state=tmp_path / "state")
    assert (info.kubeconfig, info.host_ip, info.external, info.started) == (foreign, "192.0.2.10", True, False)
    assert not (tmp_path / "state").exists()
