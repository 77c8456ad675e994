"""The process node's memory cgroups and image pulls, the pure parts (no cluster, no cgroup writes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelab.devcluster.cgroups import Hierarchy, limit_writes, memory_hierarchies, node_folder, oom_kills, own_cgroup
from kubelab.devcluster.images import (
    ERR_IMAGE_NEVER_PULL,
    ERR_IMAGE_PULL,
    pull_backoff,
    pull_failure,
    registry_host,
    unreachable,
)
from kubelab.devcluster.podstatus import exit_reason
from kubelab.devcluster.runtime import memory_limit

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
NONE = "22 1 0:21 / /proc rw,relatime - proc proc rw\n"


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [
        (HYBRID, [Hierarchy(1, Path("/sys/fs/cgroup/memory")), Hierarchy(2, Path("/sys/fs/cgroup/unified"))]),
        (UNIFIED, [Hierarchy(2, Path("/sys/fs/cgroup"))]),
        (NONE, []),
        ("35 31 0:32 /kubepods /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
         [Hierarchy(1, Path("/sys/fs/cgroup/memory"), "/kubepods")]),
    ],
    ids=["hybrid-v1-first", "unified", "none", "bind-mounted-root"],
)
def test_memory_hierarchies_from_mountinfo(mountinfo, expected):
    assert memory_hierarchies(mountinfo) == expected


PROC_CGROUP = "9:name=systemd:/\n4:memory:/process_api/83c9\n1:cpu:/\n0::/user.slice/agent.scope\n"


@pytest.mark.parametrize(
    ("text", "version", "expected"),
    [(PROC_CGROUP, 1, "/process_api/83c9"), (PROC_CGROUP, 2, "/user.slice/agent.scope"),
     ("0::/\n", 1, None), ("4:cpu,memory:/a\n", 1, "/a")],
    ids=["v1", "v2", "v1-absent", "v1-co-mounted"],
)
def test_own_cgroup(text, version, expected):
    assert own_cgroup(text, version) == expected


@pytest.mark.parametrize(
    ("hierarchy", "own", "expected"),
    [
        # v1: below the agent's own cgroup, so pods stay inside the agent's limits.
        (Hierarchy(1, Path("/sys/fs/cgroup/memory")), "/process_api/83c9",
         "/sys/fs/cgroup/memory/process_api/83c9/kubelab4"),
        # v2: a cgroup with processes may not hand controllers on, so beside it.
        (Hierarchy(2, Path("/sys/fs/cgroup")), "/user.slice/agent.scope", "/sys/fs/cgroup/user.slice/kubelab4"),
        (Hierarchy(2, Path("/sys/fs/cgroup")), "/", "/sys/fs/cgroup/kubelab4"),
        (Hierarchy(1, Path("/sys/fs/cgroup/memory"), "/kubepods"), "/kubepods/pod1",
         "/sys/fs/cgroup/memory/pod1/kubelab4"),
    ],
    ids=["v1-below", "v2-beside", "v2-root", "v1-bind-mounted"],
)
def test_node_folder(hierarchy, own, expected):
    assert node_folder(hierarchy, own, "kubelab4") == Path(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", 2),
     ("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n", 1),
     ("oom_kill_disable 0\nunder_oom 0\n", 0)],
    ids=["v1-oom_control", "v2-memory.events", "old-kernel-no-counter"],
)
def test_oom_kills(text, expected):
    assert oom_kills(text) == expected


@pytest.mark.parametrize(
    ("version", "limit", "expected"),
    [
        (1, 64 << 20, [("memory.limit_in_bytes", "67108864", True), ("memory.memsw.limit_in_bytes", "67108864", False)]),
        (1, None, []),
        (2, 64 << 20, [("memory.oom.group", "1", False), ("memory.max", "67108864", True),
                       ("memory.swap.max", "0", False)]),
        (2, None, [("memory.oom.group", "1", False)]),
    ],
    ids=["v1", "v1-unlimited", "v2", "v2-unlimited"],
)
def test_limit_writes(version, limit, expected):
    assert limit_writes(version, limit) == expected


@pytest.mark.parametrize(
    ("container", "expected"),
    [({"resources": {"limits": {"memory": "64Mi"}}}, 64 << 20), ({"resources": {"limits": {"memory": "1G"}}}, 10**9),
     ({"resources": {"requests": {"memory": "1Gi"}}}, None), ({}, None)],
    ids=["Mi", "G", "request-only", "none"],
)
def test_memory_limit_of_a_container(container, expected):
    assert memory_limit(container) == expected


@pytest.mark.parametrize(
    ("code", "oom", "expected"),
    [(0, False, "Completed"), (1, False, "Error"), (137, True, "OOMKilled"), (1, True, "OOMKilled"),
     (0, True, "OOMKilled")],
    ids=["ok", "error", "oom-137", "oom-child-killed", "oom-survived"],
)
def test_exit_reason(code, oom, expected):
    assert exit_reason(code, oom) == expected


@pytest.mark.parametrize(
    ("image", "host", "fails"),
    [
        ("registry.invalid/team/trainer:1", "registry.invalid", True),
        ("REGISTRY.INVALID:5000/team/trainer", "REGISTRY.INVALID:5000", True),
        ("invalid:5000/x", "invalid:5000", True),
        ("ghcr.io/kubelab/notebook-cpu:0.1.0", "ghcr.io", False),
        ("python:3.11", None, False),
        ("library/invalid", None, False),  # Docker Hub's library/invalid, not a registry
        ("registry.invalid.example.com/x", "registry.invalid.example.com", False),
        ("localhost/x", "localhost", False),
    ],
    ids=["invalid-tld", "upper-case-with-port", "bare-invalid", "ghcr", "short-name", "hub-path", "invalid-label",
         "localhost"],
)
def test_unreachable_registry(image, host, fails):
    assert registry_host(image) == host
    assert unreachable(image) is fails


def test_pull_failure_has_the_kubelets_shapes():
    failure = pull_failure("registry.invalid/team/trainer:1", "IfNotPresent")
    assert failure is not None and failure.reason == ERR_IMAGE_PULL
    assert failure.message == ("rpc error: code = Unknown desc = Error response from daemon: Get "
                               "https://registry.invalid/v2/: dial tcp: lookup registry.invalid: no such host")
    never = pull_failure("registry.invalid/team/trainer:1", "Never")
    assert never is not None and never.reason == ERR_IMAGE_NEVER_PULL
    assert never.message == 'Container image "registry.invalid/team/trainer:1" is not present with pull policy of Never'
    assert pull_failure("python:3.11", "Always") is None


def test_pull_backoff_doubles_to_its_cap():
    assert [pull_backoff(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
