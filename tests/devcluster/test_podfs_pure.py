"""Unit tests of the pod filesystem's pure parts: mount-table reasoning, storage limits, legacy clean-up."""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

import pytest

from kubelab.devcluster import eviction, hygiene
from kubelab.devcluster.podinit import _unescape, containing_mount, is_under, overlay_options, topmost
from kubelab.devcluster.podstatus import ContainerState, pod_status

T0 = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)

# ---- mount table ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parent", "expected"),
    [("/run/x", "/run", True), ("/run", "/run", False), ("/running", "/run", False), ("/a", "/", True),
     ("/", "/", False)],
    ids=["below", "itself", "same-prefix-sibling", "below-root", "root-itself"],
)
def test_is_under(path, parent, expected):
    assert is_under(path, parent) is expected


def test_topmost_keeps_only_outermost_mounts():
    points = ["/sys/fs/cgroup", "/proc", "/sys", "/dev/pts", "/dev", "/etc/hosts", "/sys/fs/cgroup/cpu"]
    assert topmost(points) == ["/dev", "/etc/hosts", "/proc", "/sys"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/run/secrets", "/run"), ("/home/jovyan", "/"), ("/run", "/run"), ("/runner", "/")],
    ids=["below-host-tmpfs", "on-root", "the-mount-itself", "prefix-is-not-parent"],
)
def test_containing_mount(path, expected):
    assert containing_mount(path, ["/", "/proc", "/run", "/run/netns"]) == expected


def test_mountinfo_escapes_are_undone():
    assert _unescape(r"/mnt/with\040space\011tab") == "/mnt/with space\ttab"


@pytest.mark.parametrize("bad", ["/a,b", "/a:b", "/a\\b"], ids=["comma", "colon", "backslash"])
def test_overlay_options_refuse_separators(bad):
    with pytest.raises(ValueError, match="contains ',', ':' or"):
        overlay_options(bad, "/u", "/w")
    assert overlay_options("/", "/u", "/w") == "lowerdir=/,upperdir=/u,workdir=/w"


# ---- storage limits --------------------------------------------------------------------------------


def _pod(volumes: list, limits: dict | None = None) -> dict:
    return {"metadata": {"uid": "u"}, "spec": {"volumes": volumes, "containers": [
        {"name": "main", "resources": {"limits": limits or {}}}]}}


def test_storage_limits_take_positive_size_limits_and_the_containers_limit():
    limits = eviction.storage_limits(_pod([
        {"name": "a", "emptyDir": {"sizeLimit": "4Mi"}},
        {"name": "b", "emptyDir": {}},
        {"name": "zero", "emptyDir": {"sizeLimit": "0"}},
        {"name": "cm", "configMap": {"name": "x"}},
    ], {"ephemeral-storage": "1Gi"}))
    assert limits.empty_dirs == {"a": (4 << 20, "4Mi")}
    assert limits.container == "main" and limits.container_limit == (1 << 30, "1Gi")
    assert bool(limits)
    assert not eviction.storage_limits(_pod([{"name": "b", "emptyDir": {}}]))


@pytest.mark.parametrize(
    ("usage", "container_usage", "expected"),
    [
        ({"a": 4 << 20}, 0, None),
        ({"a": (4 << 20) + 1}, 0, 'Usage of EmptyDir volume "a" exceeds the limit "4Mi". '),
        ({"a": 0}, (1 << 30) + 1, 'Container main exceeded its local ephemeral storage limit "1Gi". '),
        ({"a": 5 << 20}, 2 << 30, 'Usage of EmptyDir volume "a" exceeds the limit "4Mi". '),
    ],
    ids=["at-the-limit", "emptydir-over", "container-over", "emptydir-first-like-the-kubelet"],
)
def test_eviction_message(usage, container_usage, expected):
    limits = eviction.StorageLimits({"a": (4 << 20, "4Mi")}, "main", (1 << 30, "1Gi"))
    assert eviction.eviction_message(limits, usage, container_usage) == expected


def test_disk_usage_counts_allocated_blocks_and_skips_symlink_targets(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(os.urandom(1 << 20))
    (tmp_path / "link").symlink_to("/usr")
    used = eviction.disk_usage(tmp_path)
    assert (1 << 20) <= used < (1 << 20) + 64 * 1024
    assert eviction.disk_usage(tmp_path / "missing") == 0


def test_evicted_pod_status_is_failed_with_the_message():
    state = ContainerState("main", "img", state="terminated", exit_code=137, reason="Error")
    status = pod_status(_pod([]), [state], "10.0.0.2", "127.0.0.1", T0, True, T0,
                        evicted='Usage of EmptyDir volume "a" exceeds the limit "4Mi". ')
    assert (status["phase"], status["reason"]) == ("Failed", "Evicted")
    assert status["message"].startswith("Usage of EmptyDir volume")


# ---- legacy clean-up --------------------------------------------------------------------------------


def _legacy_pod(agent_state: Path, name: str, targets: list[str], cwd: str | None = None, new: bool = False) -> Path:
    pod_dir = agent_state / "pods" / name
    pod_dir.mkdir(parents=True)
    spec = {"argv": ["python"], "env": {}, "cwd": cwd, "hostname": name,
            "mounts": [{"source": "/x", "target": t, "read_only": False} for t in targets]}
    if new:
        spec["rootfs"] = str(pod_dir / "rootfs")
    (pod_dir / "launch.json").write_text(json.dumps(spec))
    time.sleep(0.01)  # birth times after the pod folder's
    return pod_dir


def test_only_what_an_old_agent_created_for_its_pods_is_removed(tmp_path):
    if hygiene.birth_time(tmp_path) is None:
        pytest.skip("this filesystem does not record birth times")
    host, agent = tmp_path / "host", tmp_path / "state" / "agent"
    (host / "pre-existing").mkdir(parents=True)  # there before any pod: kept
    (host / "home").mkdir()
    (host / "home" / "someone").mkdir()  # a sibling keeps home/ from being emptied
    time.sleep(0.01)
    _legacy_pod(agent, "old", [f"{host}/secrets/kubernetes.io/serviceaccount", f"{host}/home/jovyan",
                               f"{host}/pre-existing", f"{host}/has-content", f"{host}/file.conf"],
                cwd=f"{host}/workdir")
    _legacy_pod(agent, "new", [f"{host}/made-by-someone-else"], new=True)
    # An old agent with the new launcher: the pod ran in a private root (rootfs/ is there).
    (_legacy_pod(agent, "old-agent-new-launcher", [f"{host}/also-someone-elses"]) / "rootfs").mkdir()
    for folder in ("secrets/kubernetes.io/serviceaccount", "home/jovyan", "has-content", "workdir",
                   "made-by-someone-else", "also-someone-elses"):
        (host / folder).mkdir(parents=True)
    (host / "has-content" / "data").write_text("keep me")
    (host / "file.conf").touch()

    removed = hygiene.remove_legacy_mount_points(agent, keep=(tmp_path / "state",))

    assert sorted(str(p.relative_to(host)) for p in removed) == [
        "file.conf", "home/jovyan", "secrets", "secrets/kubernetes.io", "secrets/kubernetes.io/serviceaccount",
        "workdir"]
    assert sorted(p.name for p in host.iterdir()) == [
        "also-someone-elses", "has-content", "home", "made-by-someone-else", "pre-existing"]
    assert (host / "home" / "someone").is_dir() and (host / "has-content" / "data").exists()
