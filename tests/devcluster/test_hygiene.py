"""Pods create nothing on the host outside the devcluster's folders, and see HOME and workingDir as set.

Each pod runs in a private root (an overlay of the host's ``/`` whose upper layer lives in the
pod's folder), with its own /tmp and /dev/shm. These tests snapshot the host folders a pod could
touch, run pods that mount volumes at the paths the catalogue uses (``/home/jovyan``,
``/shared``, the ServiceAccount token) and at new paths under ``/``, ``/etc`` and ``/run``, write
to ``~``, /tmp, /dev/shm and /var/tmp, and compare.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kubelab.devcluster.podinit import NODE_SOFTWARE
from kubelab.devcluster.settings import cache_dir
from kubelab.devcluster.testing import bound_claim, pod_log, python_pod, wait_pod_phase

pytestmark = pytest.mark.integration

#: Where the old process node left folders on the host (issue 12).
LEGACY_PATHS = ("/var/run/secrets/kubernetes.io/serviceaccount", "/home/jovyan", "/shared")
#: Host folders a pod's writes or mount points could land in, listed two levels deep.
SNAPSHOT_ROOTS = ("/", "/home", "/run", "/etc", "/tmp", "/dev/shm", "/root", "/opt", "/var", "/var/tmp", "/srv",
                  "/mnt")
SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


def snapshot(skip: tuple[Path, ...]) -> set[str]:
    """Every path up to two levels below each of :data:`SNAPSHOT_ROOTS`, outside ``skip``."""
    seen: set[str] = set()
    skipped = {os.path.realpath(s) for s in skip}

    def walk(folder: str, depth: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if os.path.realpath(entry.path) in skipped:
                continue
            seen.add(entry.path)
            if depth > 1 and entry.is_dir(follow_symlinks=False) and not entry.path.startswith(("/proc", "/sys")):
                walk(entry.path, depth - 1)

    for root in SNAPSHOT_ROOTS:
        walk(root, 2)
    return seen


@pytest.fixture
def token() -> str:
    return f"kl-hyg-{secrets.token_hex(4)}"


@pytest.fixture
def host_before(cluster) -> Iterator[tuple[set[str], dict[str, bool], tuple[Path, ...]]]:
    skip = tuple(p for p in (cluster.state, cache_dir()) if p is not None)
    yield snapshot(skip), {p: os.path.lexists(p) for p in LEGACY_PATHS}, skip


WRITER = """
import json, os, pathlib
t = os.environ['TOKEN']
home = os.path.expanduser('~')
written = {}
for path in (f'{home}/{t}.txt', f'/tmp/{t}.txt', f'/dev/shm/{t}', f'/var/tmp/{t}', f'/{t}-top/x', f'/etc/{t}.conf'):
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text(t)
    written[path] = pathlib.Path(path).read_text() == t
sa = os.environ['SA']
print(json.dumps({
    'home': home, 'cwd': os.getcwd(), 'written': written,
    'sa_namespace': open(sa + '/namespace').read(), 'sa_token': bool(open(sa + '/token').read()),
    'dirs': {p: os.path.isdir(p) for p in ('/home/jovyan', '/shared', f'/{t}/deep/scratch', f'/run/{t}')},
    'config': open(f'/etc/{t}/app.conf').read(),
    'out': pathlib.Path('/out/reached-host').write_text('yes'),
}))
"""


def test_pods_with_volumes_create_nothing_on_the_host(core, namespace, cluster, token, host_before, tmp_path):
    if cluster.external:
        pytest.skip("the host's filesystem is the process node's only on the devcluster")
    before, legacy_before, skip = host_before
    bound_claim(core, namespace, "home", "ReadWriteOnce")
    bound_claim(core, namespace, "shared", "ReadWriteMany")
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "app"}, "data": {"app.conf": "from-cm"}})
    volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "home"}},
        {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "run", "emptyDir": {}},
        {"name": "app", "configMap": {"name": "app"}},
        {"name": "out", "hostPath": {"path": str(tmp_path)}},
    ]
    mounts = [
        {"name": "home", "mountPath": "/home/jovyan"},
        {"name": "shared", "mountPath": "/shared"},
        {"name": "scratch", "mountPath": f"/{token}/deep/scratch"},
        {"name": "run", "mountPath": f"/run/{token}"},
        {"name": "app", "mountPath": f"/etc/{token}/app.conf", "subPath": "app.conf", "readOnly": True},
        {"name": "out", "mountPath": "/out"},
    ]
    env = [{"name": "TOKEN", "value": token}, {"name": "SA", "value": SA_TOKEN_DIR}]
    # HOME unset: the process node's default (root's home) must not be the host's /root either.
    pod = python_pod("writer", WRITER, volumes=volumes, container={
        "volumeMounts": mounts, "env": env, "workingDir": f"/opt/{token}/work"})
    created = core.create_namespaced_pod(namespace, pod)
    assert any(m.mount_path == SA_TOKEN_DIR for m in created.spec.containers[0].volume_mounts), \
        "ServiceAccount admission should mount the token"
    wait_pod_phase(core, namespace, "writer", ("Succeeded",), timeout=90)
    seen = json.loads(pod_log(core, namespace, "writer"))

    # Inside the pod, everything was there and writable...
    assert seen["home"] == "/root" and seen["cwd"] == f"/opt/{token}/work"
    assert all(seen["written"].values()), seen["written"]
    assert seen["sa_namespace"] == namespace and seen["sa_token"]
    assert all(seen["dirs"].values()), seen["dirs"]
    assert seen["config"] == "from-cm"
    # ... only a volume of the host (hostPath) reached the host ...
    assert (tmp_path / "reached-host").read_text() == "yes"
    # ... and nothing else did.
    created_paths = snapshot(skip) - before
    ours = sorted(p for p in created_paths if token in p or p in LEGACY_PATHS)
    assert ours == [], f"the pod created these on the host: {ours}"
    for path in (f"/root/{token}.txt", f"/tmp/{token}.txt", f"/dev/shm/{token}", f"/var/tmp/{token}",
                 f"/{token}-top", f"/{token}", f"/run/{token}", f"/etc/{token}", f"/etc/{token}.conf",
                 f"/opt/{token}"):
        assert not os.path.lexists(path), f"{path} appeared on the host"
    for path, existed in legacy_before.items():
        assert os.path.lexists(path) == existed, f"{path} {'vanished' if existed else 'appeared'} on the host"


def test_home_and_working_dir_are_honoured_and_land_in_the_users_files(core, namespace, cluster, token):
    bound_claim(core, namespace, "home")
    volume = {"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "home"}}]}
    mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
    code = (
        "import json, os, pathlib\n"
        "pathlib.Path('~/.config/kl/settings').expanduser().parent.mkdir(parents=True)\n"
        "pathlib.Path('~/.config/kl/settings').expanduser().write_text('from-home')\n"
        "pathlib.Path('result.txt').write_text('from-workdir')\n"
        "print(json.dumps({'home': os.path.expanduser('~'), 'cwd': os.getcwd()}))\n"
    )
    core.create_namespaced_pod(namespace, python_pod("job", code, **json.loads(json.dumps(volume)), container={
        "volumeMounts": mounts, "workingDir": "/home/jovyan/runs/1",
        "env": [{"name": "HOME", "value": "/home/jovyan"}]}))
    wait_pod_phase(core, namespace, "job", ("Succeeded",), timeout=90)
    assert json.loads(pod_log(core, namespace, "job")) == {"home": "/home/jovyan", "cwd": "/home/jovyan/runs/1"}
    reader = ("print(open('/home/jovyan/.config/kl/settings').read(), "
              "open('/home/jovyan/runs/1/result.txt').read())")
    core.create_namespaced_pod(namespace, python_pod("reader", reader, **json.loads(json.dumps(volume)),
                                                     container={"volumeMounts": mounts}))
    wait_pod_phase(core, namespace, "reader", ("Succeeded",), timeout=90)
    assert pod_log(core, namespace, "reader") == "from-home from-workdir\n"
    assert not os.path.lexists("/home/jovyan/runs/1/result.txt")


def test_each_pod_has_its_own_tmp_and_shm(core, namespace, token):
    """Two pods at once write the same names to /tmp and /dev/shm; neither sees the other's, nor the host's."""
    (Path("/tmp") / f"{token}-host").write_text("host")
    try:
        code = (
            "import os, sys, time\n"
            "me = os.environ['ME']\n"
            "for d in ('/tmp', '/dev/shm'):\n"
            f"    open(f'{{d}}/{token}', 'w').write(me)\n"
            "time.sleep(3)\n"
            f"print(open('/tmp/{token}').read(), open('/dev/shm/{token}').read(), "
            f"os.path.exists('/tmp/{token}-host'), sorted(os.listdir('/tmp')))\n"
        )
        for me in ("a", "b"):
            core.create_namespaced_pod(namespace, python_pod(f"p-{me}", code, container={
                "env": [{"name": "ME", "value": me}]}))
        # Besides its own file, a pod's /tmp shows only the node's software when that lives under
        # the host's /tmp (a clone made with mktemp -d), bound read-only (podinit.NODE_SOFTWARE).
        listed = sorted({token} | {Path(p).relative_to("/tmp").parts[0] for p in NODE_SOFTWARE
                                   if p.startswith("/tmp/")})
        for me in ("a", "b"):
            wait_pod_phase(core, namespace, f"p-{me}", ("Succeeded",), timeout=90)
            assert pod_log(core, namespace, f"p-{me}") == f"{me} {me} False {listed}\n"
        assert not os.path.lexists(f"/tmp/{token}") and not os.path.lexists(f"/dev/shm/{token}")
    finally:
        (Path("/tmp") / f"{token}-host").unlink()
