"""Attacks on one real hub (LabSpawner + the jobs service) on the devcluster, as a tenant would try them.

The classes of issue 9 that this suite owns, and more of the same kind:

* colliding names: ``john.doe.<run>`` and the user named like kubelab 0.1's value for him,
  both on one hub: neither sees the other's home, jobs or quota;
* the upgrade from kubelab 0.1's naming: a home made before it is kept, and the user whose
  name equals that home's old name is refused it;
* a named server called ``default``: the server quota holds, and its label differs from the
  default server's;
* a student's job over the catalogue's limits: refused, naming the limit;
* malformed inputs (trailing newlines, NaN/Infinity, huge env values, args and retries, bad
  ``tail`` values, reserved ``KUBELAB_*`` names, odd spawn options): all 4xx, naming the field.

Every attack asserts the status, the message, and that the namespace holds exactly the objects
it held before (:meth:`tests.security.attacks.Tally.attack`); the counts are printed at the end.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import textwrap
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import kubernetes
import pytest
import requests
import yaml

from kubelab.core.naming import (
    DEFAULT_SERVER_LABEL,
    home_claim_name,
    legacy_home_claim_name,
    legacy_safe_name,
    server_label,
    user_label,
)
from kubelab.devcluster.testing import wait_for
from tests.harness import HubProcess
from tests.security.attacks import TALLY, answer_message, exists, objects, write_into_claim

pytestmark = pytest.mark.integration

RUN = secrets.token_hex(2)
#: A victim whose kubelab 0.1 value (``john-doe-<run>-<8 hex>``) is itself a valid user name.
VICTIM = f"john.doe.{RUN}"
ATTACKER = legacy_safe_name(VICTIM)
#: A user with a home made by kubelab 0.1, and the user named like that home's old name.
OLD_USER = f"ann.lee.{RUN}"
SQUATTER = legacy_safe_name(OLD_USER)
STUDENT = f"student-{RUN}"
OWNER = f"quota-{RUN}"
USERS = {VICTIM: ["gpu-users"], ATTACKER: ["gpu-users"], OLD_USER: [], SQUATTER: [], STUDENT: ["students"],
         OWNER: []}

VICTIM_SECRET = "the victim's private notes"
SCRIPTS = {
    "sleep.py": "import time\nprint('victim job', flush=True)\ntime.sleep(120)\n",
    "peek.py": textwrap.dedent("""
        import os
        print("HOME", sorted(os.listdir(".")), flush=True)
        print("SECRET", os.path.exists("secret.txt"), flush=True)
    """),
}


def catalogue(namespace: str) -> dict[str, Any]:
    return {
        "platform": {"name": "kubelab-attacks"},
        "gpuClasses": {"a100": {
            "displayName": "NVIDIA A100 80GB", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}},
        "images": {"scipy": {"displayName": "SciPy", "image": "quay.io/jupyter/scipy-notebook:2025-10-20"}},
        "profiles": [
            {"slug": "cpu", "name": "CPU", "cpu": {"guarantee": 0.1, "limit": 1},
             "memory": {"guarantee": "128Mi", "limit": "1Gi"}, "images": ["scipy"], "default": True},
            {"slug": "a100", "name": "A100", "cpu": {"guarantee": 0.1, "limit": 2},
             "memory": {"guarantee": "128Mi", "limit": "2Gi"}, "gpu": {"class": "a100", "counts": [1, 2]},
             "images": ["scipy"], "groups": ["gpu-users"]},
        ],
        "storage": {"home": {"size": "1Gi", "accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"}},
        "quotas": {"perUser": {"maxGpus": 2, "maxServers": 2}, "groups": {"students": {"maxGpus": 0}}},
        "jobs": {
            "engine": "plain", "namespace": namespace, "maxWorkers": 4, "kueue": {"enabled": False},
            "limits": {"cpuPerWorker": 1, "memoryPerWorker": "1Gi", "procsPerWorker": 2, "workersPerUser": 4,
                       "cpuPerUser": 2, "memoryPerUser": "2Gi"},
            "groupLimits": {"gpu-users": {"cpuPerWorker": 2, "memoryPerWorker": "4Gi", "procsPerWorker": 4}},
        },
        "defaults": {"maxNamedServers": 5},
    }


@pytest.fixture(scope="module")
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)


@pytest.fixture(scope="module")
def ns(core: kubernetes.client.CoreV1Api) -> Iterator[str]:
    name = f"kl-attacks-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"kubelab.io/test": "true"}}})
    wait_for(lambda: exists(lambda: core.read_namespaced_service_account("default", name))
               and core.read_namespaced_service_account("default", name).secrets, 30, "the default ServiceAccount")
    yield name
    if os.environ.get("KUBELAB_TEST_KEEP") != "1":
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def legacy_home(core: kubernetes.client.CoreV1Api, ns: str) -> str:
    """OLD_USER's home as kubelab 0.1 left it: its old name, KubeSpawner's owner annotation, a file."""
    name = legacy_home_claim_name(OLD_USER)
    assert name == f"home-{SQUATTER}"
    core.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": name, "annotations": {"hub.jupyter.org/username": OLD_USER},
                     "labels": {"app.kubernetes.io/managed-by": "kubelab", "component": "singleuser-storage"}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    })
    write_into_claim(core, ns, name, {"notes.txt": "written before the upgrade\n"}, pod="write-legacy")
    return name


@pytest.fixture(scope="module")
def hub(cluster: Any, ns: str, legacy_home: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    work = tmp_path_factory.mktemp("attacks")
    path = work / "catalogue.yaml"
    path.write_text(yaml.safe_dump(catalogue(ns)))
    config = textwrap.dedent(f"""
        from kubelab.core.catalogue import load_catalogue
        from kubelab.hub_config.wiring import configure_platform
        configure_platform(c, load_catalogue({str(path)!r}), jobs_namespace={ns!r}, rendezvous_timeout=60)
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.KubeSpawner.namespace = {ns!r}
        c.LabSpawner.start_timeout = 120
        c.LabSpawner.http_timeout = 90
        c.LabSpawner.delete_grace_period = 1
    """)
    h = HubProcess(config, connect_ip=cluster.host_ip, workdir=work, env={"KUBECONFIG": str(cluster.kubeconfig)})
    h.start(timeout=90)
    try:
        for user, groups in USERS.items():
            h.ensure_user(user, groups)
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def tokens(hub: HubProcess) -> dict[str, str]:
    return {u: hub.user_token(u) for u in USERS}


def server_path(user: str, server: str = "") -> str:
    return f"/users/{quote(user)}/servers/{quote(server)}" if server else f"/users/{quote(user)}/server"


def spawn(hub: HubProcess, token: str, user: str, server: str = "", options: dict | None = None) -> None:
    r = hub.api("POST", server_path(user, server), json=options or {"profile": "cpu"}, token=token, timeout=120)
    assert r.status_code in (201, 202), (user, server, r.status_code, r.text)
    hub.wait_server(user, server, timeout=120)


def jobs_api(hub: HubProcess, method: str, path: str, token: str, **kw: Any) -> requests.Response:
    return hub.api(method, f"/kubelab/{path}", token=token, **kw)


def server_pods(core: kubernetes.client.CoreV1Api, ns: str, user: str) -> list[Any]:
    pods = core.list_namespaced_pod(ns, label_selector=f"kubelab.io/user={user_label(user)}").items
    return [p for p in pods if "kubelab.io/server" in (p.metadata.labels or {}) and not p.metadata.deletion_timestamp]


def claims_of(pod: Any) -> set[str]:
    return {v.persistent_volume_claim.claim_name for v in pod.spec.volumes or [] if v.persistent_volume_claim}


# -- the upgrade from kubelab 0.1's naming ---------------------------------------------------------


def test_a_home_from_before_the_upgrade_is_kept(hub: HubProcess, tokens: dict[str, str], core, ns: str,
                                                 legacy_home: str) -> None:
    spawn(hub, tokens[OLD_USER], OLD_USER)
    (pod,) = server_pods(core, ns, OLD_USER)
    assert legacy_home in claims_of(pod), claims_of(pod)
    assert not exists(lambda: core.read_namespaced_persistent_volume_claim(home_claim_name(OLD_USER), ns)), \
        "no second, empty home was made"
    # the file written before the upgrade is in the running server, through the hub's proxy
    r = requests.get(f"{hub.url}/user/{quote(OLD_USER)}/api/contents/notes.txt",
                     headers={"Authorization": f"token {tokens[OLD_USER]}"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["content"] == "written before the upgrade\n"


def test_a_user_named_like_an_old_home_is_refused_it(hub: HubProcess, tokens: dict[str, str], kube, core, ns: str,
                                                      legacy_home: str) -> None:
    TALLY.attack(
        "colliding names", lambda: hub.api("POST", server_path(SQUATTER), json={"profile": "cpu"},
                                           token=tokens[SQUATTER], timeout=60),
        status=409, message=rf"the volume {legacy_home} that would be your home belongs to another user",
        snapshot=lambda: objects(kube, ns), settle=2,
    )
    assert server_pods(core, ns, SQUATTER) == []


# -- colliding names ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collided(hub: HubProcess, tokens: dict[str, str], core, ns: str) -> dict[str, str]:
    """Both users of the collision have a server and a home; the victim has a private file."""
    spawn(hub, tokens[ATTACKER], ATTACKER)  # first: the attacker's own home takes the victim's old name
    spawn(hub, tokens[VICTIM], VICTIM)
    homes = {}
    for user in (VICTIM, ATTACKER):
        (pod,) = server_pods(core, ns, user)
        (homes[user],) = claims_of(pod)
    write_into_claim(core, ns, homes[VICTIM], {"secret.txt": VICTIM_SECRET, "sleep.py": SCRIPTS["sleep.py"]},
                     pod="write-victim")
    write_into_claim(core, ns, homes[ATTACKER], {"peek.py": SCRIPTS["peek.py"]}, pod="write-attacker")
    return homes


def test_colliding_names_get_distinct_labels_and_homes(core, ns: str, collided: dict[str, str]) -> None:
    assert legacy_safe_name(VICTIM) == ATTACKER, "the pair collided under kubelab 0.1's naming"
    assert collided == {VICTIM: home_claim_name(VICTIM), ATTACKER: f"home-{ATTACKER}"}
    labels = {u: server_pods(core, ns, u)[0].metadata.labels["kubelab.io/user"] for u in (VICTIM, ATTACKER)}
    assert labels == {VICTIM: user_label(VICTIM), ATTACKER: ATTACKER} and labels[VICTIM] != labels[ATTACKER]
    for user, claim in collided.items():
        annotations = core.read_namespaced_persistent_volume_claim(claim, ns).metadata.annotations
        assert annotations["kubelab.io/username"] == user
        assert annotations["hub.jupyter.org/username"] == user


def test_colliding_names_see_nothing_of_each_other(hub: HubProcess, tokens: dict[str, str], kube, core, ns: str,
                                                   collided: dict[str, str]) -> None:
    victim, attacker = tokens[VICTIM], tokens[ATTACKER]
    r = jobs_api(hub, "POST", "jobs", victim, json={"name": "train", "framework": "replicas", "script": "sleep.py",
                                                     "workers": 1, "gpus_per_worker": 1, "gpu_class": "a100"})
    assert r.status_code == 201, r.text
    wait_for(lambda: jobs_api(hub, "GET", "jobs/train", victim).json()["phase"] == "Running", 120, "train")
    snapshot = lambda: objects(kube, ns)  # noqa: E731

    assert jobs_api(hub, "GET", "jobs", attacker).json() == {"jobs": []}
    for method, path in [("GET", "jobs/train"), ("GET", "jobs/train/logs?rank=0"), ("DELETE", "jobs/train")]:
        TALLY.attack("colliding names", lambda m=method, p=path: jobs_api(hub, m, p, attacker),
                     status=404, message=r"^no job 'train'$", snapshot=snapshot)
    # neither sees the other's quota: the victim's GPU job is the victim's alone
    assert jobs_api(hub, "GET", "options", victim).json()["quota"]["used_gpus"] == 1
    quota = jobs_api(hub, "GET", "options", attacker).json()["quota"]
    assert (quota["used_gpus"], quota["remaining_gpus"], quota["used_by"]) == (0, 2, [])

    # the attacker's own job mounts the attacker's home, which holds no file of the victim's
    r = jobs_api(hub, "POST", "jobs", attacker, json={"name": "peek", "framework": "replicas", "script": "peek.py"})
    assert r.status_code == 201, r.text
    final = wait_for(lambda: (s := jobs_api(hub, "GET", "jobs/peek", attacker).json())["phase"]
                       in ("Succeeded", "Failed") and s, 120, "peek")
    logs = jobs_api(hub, "GET", "jobs/peek/logs?rank=0", attacker).text
    assert final["phase"] == "Succeeded", (final, logs)
    listing = next(line for line in logs.splitlines() if line.startswith("HOME "))
    assert "'peek.py'" in listing and "secret.txt" not in listing and "sleep.py" not in listing, logs
    assert "SECRET False" in logs, logs
    assert VICTIM_SECRET not in logs
    assert jobs_api(hub, "GET", "jobs/train", victim).json()["phase"] == "Running", "the victim's job is untouched"
    assert jobs_api(hub, "DELETE", "jobs/train", victim).status_code == 200


#: A pair whose job ids collide: ``job_id`` keeps 24 bits of sha256(user, name), so an attacker
#: who picks a user name finds one in about 2^24 tries (found offline: 45M tries, a minute of
#: Python). Both names are fixed: the search cannot run per test run.
JOB_VICTIM, JOB_ATTACKER = "carol.jobs", "mallory-44810786"


def test_a_user_whose_job_id_collides_sees_and_cancels_nothing(hub: HubProcess, kube, core, ns: str) -> None:
    from kubelab.jobs.builders import job_id

    assert job_id(JOB_VICTIM, "train") == job_id(JOB_ATTACKER, "train") == "train-45c8e2"
    for user in (JOB_VICTIM, JOB_ATTACKER):
        hub.ensure_user(user)
    victim, attacker = hub.user_token(JOB_VICTIM), hub.user_token(JOB_ATTACKER)
    claim = home_claim_name(JOB_VICTIM)
    core.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": claim, "annotations": {"kubelab.io/username": JOB_VICTIM}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    })
    write_into_claim(core, ns, claim, {"sleep.py": SCRIPTS["sleep.py"]}, pod="write-carol")
    r = jobs_api(hub, "POST", "jobs", victim, json={"name": "train", "framework": "replicas", "script": "sleep.py"})
    assert r.status_code == 201, r.text
    snapshot = lambda: objects(kube, ns)  # noqa: E731
    try:
        for method in ("GET", "DELETE"):
            TALLY.attack("colliding names", lambda m=method: jobs_api(hub, m, "jobs/train", attacker),
                         status=404, message=r"^no job 'train'$", snapshot=snapshot)
    finally:
        assert jobs_api(hub, "GET", "jobs/train", victim).status_code == 200, "the victim's job survives"
        jobs_api(hub, "DELETE", "jobs/train", victim)


# -- a named server called "default" --------------------------------------------------------------


def test_a_named_server_called_default_is_not_the_default_server(hub: HubProcess, tokens: dict[str, str], kube,
                                                                 core, ns: str) -> None:
    """maxServers 2: the default server, then "default" and "x" at once: exactly one more starts.

    kubelab 0.1 labelled both ``default`` servers alike, so the quota took the new one's
    reservation as already covered by the running default server and admitted both.
    """
    token = tokens[OWNER]
    spawn(hub, token, OWNER)

    def start(server: str) -> requests.Response:
        return hub.api("POST", server_path(OWNER, server), json={"profile": "cpu"}, token=token, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(start, "default")
        time.sleep(0.05)  # "default" reserves first: the order in which kubelab 0.1 admitted both
        second = pool.submit(start, "x")
        answers = {"default": first.result(), "x": second.result()}
    codes = sorted(r.status_code for r in answers.values())
    assert codes[0] in (201, 202) and codes[1] == 429, {k: (r.status_code, r.text[:200]) for k, r in answers.items()}
    refused = next(r for r in answers.values() if r.status_code == 429)
    assert "server quota: you use 2 of 2 servers" in answer_message(refused), answer_message(refused)
    started = next(k for k, r in answers.items() if r.status_code in (201, 202))
    hub.wait_server(OWNER, started)
    time.sleep(2)  # a wrongly admitted third server would have its pod by now
    pods = server_pods(core, ns, OWNER)
    TALLY.count("named server default", refused=True, created=len(pods) - 2)
    assert len(pods) == 2, [p.metadata.name for p in pods]
    labels = sorted(p.metadata.labels["kubelab.io/server"] for p in pods)
    assert labels == sorted([DEFAULT_SERVER_LABEL, server_label(started)])
    if started == "default":
        assert server_label("default") == "default" != DEFAULT_SERVER_LABEL
    hub.stop_server(OWNER, started)


# -- a student's job over the catalogue's limits ------------------------------------------------


STUDENT_JOBS = [
    ("8-cpu", {"cpu": 8}, 400, "cpu", r"cpu: 8 is not allowed; allowed: up to 1 \(limit cpuPerWorker for your groups \(students\)\)"),
    ("30Gi", {"memory": "30Gi"}, 400, "memory", r"memory: '30Gi' is not allowed; allowed: up to 1Gi \(limit memoryPerWorker"),
    ("8-cpu-30Gi", {"cpu": 8, "memory": "30Gi"}, 400, "cpu", r"limit cpuPerWorker"),
    ("cpu-1e300", {"cpu": 1e300}, 400, "cpu", r"limit cpuPerWorker"),
    ("memory-999999999Ti", {"memory": "999999999Ti"}, 400, "memory", r"allowed: up to 1Gi \(limit memoryPerWorker"),
    ("procs-100000", {"procs_per_worker": 100000}, 400, "procs_per_worker", r"an integer in 1\.\.1024"),
    ("procs-3", {"procs_per_worker": 3}, 400, "procs_per_worker", r"3 is not allowed; allowed: 1\.\.2 \(limit procsPerWorker"),
    ("workers-5", {"workers": 5}, 400, "workers", r"5 is not allowed; allowed: 1\.\.4 \(limit workersPerJob"),
    ("gpus", {"gpus_per_worker": 1, "gpu_class": "a100"}, 403, None, r"may not use GPUs"),
]


@pytest.mark.parametrize(("extra", "status", "field", "message"), [s[1:] for s in STUDENT_JOBS],
                         ids=[s[0] for s in STUDENT_JOBS])
def test_a_students_job_over_the_catalogue_limits_is_refused(hub: HubProcess, tokens: dict[str, str], kube, ns: str,
                                                            extra: dict, status: int, field: str | None,
                                                            message: str) -> None:
    body = {"name": "big", "framework": "replicas", "script": "train.py", **extra}
    r = TALLY.attack("catalogue limits", lambda: jobs_api(hub, "POST", "jobs", tokens[STUDENT], json=body),
                     status=status, message=message, snapshot=lambda: objects(kube, ns))
    if field:
        assert r.json()["field"] == field


# -- malformed inputs ---------------------------------------------------------------------------


def raw(text: str) -> dict[str, Any]:
    """A request body sent as it is (Python's json.loads accepts NaN and Infinity)."""
    return {"data": text, "headers": {"Content-Type": "application/json"}}


JOB = '"framework": "replicas", "script": "peek.py"'
MALFORMED_JOBS = [
    ("name-trailing-newline", {"json": {"name": "ddp\n", "script": "peek.py"}}, 400, "name", r"'ddp\\n' is not allowed"),
    ("cpu-NaN", raw('{"name": "x", ' + JOB + ', "cpu": NaN}'), 400, "cpu", r"nan is not allowed"),
    ("cpu-Infinity", raw('{"name": "x", ' + JOB + ', "cpu": Infinity}'), 400, "cpu", r"inf is not allowed"),
    ("cpu-minus-Infinity", raw('{"name": "x", ' + JOB + ', "cpu": -Infinity}'), 400, "cpu", r"not allowed"),
    ("memory-trailing-newline", {"json": {"name": "x", "script": "peek.py", "memory": "1Gi\n"}}, 400, "memory",
     r"'1Gi\\n' is not allowed"),
    ("memory-NaN-text", {"json": {"name": "x", "script": "peek.py", "memory": "NaN"}}, 400, "memory", r"not allowed"),
    ("env-value-64KiB", {"json": {"name": "x", "script": "peek.py", "env": {"TOKEN": "x" * 65536}}}, 400, "env",
     r"env\.TOKEN holds 65536 characters; at most 32768"),
    ("env-1000-vars", {"json": {"name": "x", "script": "peek.py", "env": {f"V{i}": "1" for i in range(1000)}}}, 400,
     "env", r"1000 variables; at most 64"),
    ("env-KUBELAB_RANK_OFFSET", {"json": {"name": "x", "script": "peek.py", "env": {"KUBELAB_RANK_OFFSET": "5"}}}, 400,
     "env", r"KUBELAB_RANK_OFFSET is reserved"),
    ("env-KUBELAB_RANK", {"json": {"name": "x", "script": "peek.py", "env": {"KUBELAB_RANK": "0"}}}, 400, "env",
     r"KUBELAB_RANK is reserved"),
    ("env-name-newline", {"json": {"name": "x", "script": "peek.py", "env": {"A\n": "1"}}}, 400, "env",
     r"is not a variable name"),
    ("args-10000", {"json": {"name": "x", "script": "peek.py", "args": ["a"] * 10000}}, 400, "args",
     r"10000 arguments; at most 256"),
    ("arg-1MiB", {"json": {"name": "x", "script": "peek.py", "args": ["a" * 2**20]}}, 400, "args",
     r"args\[0\] holds 1048576 characters; at most 4096"),
    ("retries-1e9", {"json": {"name": "x", "script": "peek.py", "retries": 10**9}}, 400, "retries",
     r"an integer in 0\.\.10"),
    ("retries-huge-int", raw('{"name": "x", ' + JOB + ', "retries": ' + "9" * 4000 + "}"), 400, "retries",
     r"an integer in 0\.\.10"),
    ("body-3MiB", {"json": {"name": "x", "script": "peek.py", "env": {"A": "x" * 3 * 2**20}}}, 413, "(body)",
     r"the body holds \d+ bytes"),
]


@pytest.mark.parametrize(("kw", "status", "field", "message"), [m[1:] for m in MALFORMED_JOBS],
                         ids=[m[0] for m in MALFORMED_JOBS])
def test_malformed_job_inputs_are_4xx(hub: HubProcess, tokens: dict[str, str], kube, ns: str, collided: dict,
                                      kw: dict, status: int, field: str, message: str) -> None:
    r = TALLY.attack("malformed input", lambda: jobs_api(hub, "POST", "jobs", tokens[ATTACKER], **kw),
                     status=status, message=message, snapshot=lambda: objects(kube, ns))
    assert r.json()["field"] == field, r.json()


@pytest.fixture(scope="module")
def peek_job(hub: HubProcess, tokens: dict[str, str], collided: dict) -> str:
    """A finished job of the attacker's, whose logs the tail attacks ask for."""
    r = jobs_api(hub, "POST", "jobs", tokens[ATTACKER], json={"name": "tailme", "framework": "replicas",
                                                              "script": "peek.py"})
    assert r.status_code == 201, r.text
    wait_for(lambda: jobs_api(hub, "GET", "jobs/tailme", tokens[ATTACKER]).json()["phase"] == "Succeeded", 120,
               "tailme")
    return "tailme"


# (tornado strips blanks around query arguments, so "10%0A" is 10: not a bad value)
TAILS = ["-1", "1e3", "nan", "99999999999", "1.5", "%D9%A1", "0x10", "%2B5"]


@pytest.mark.parametrize("tail", TAILS)
def test_bad_tail_values_are_400(hub: HubProcess, tokens: dict[str, str], kube, ns: str, peek_job: str,
                                 tail: str) -> None:
    r = TALLY.attack("malformed input",
                     lambda: jobs_api(hub, "GET", f"jobs/{peek_job}/logs?rank=0&tail={tail}", tokens[ATTACKER]),
                     status=400, message=r"^tail: .* is not allowed", snapshot=lambda: objects(kube, ns))
    assert r.json()["field"] == "tail"
    assert "HOME" in jobs_api(hub, "GET", f"jobs/{peek_job}/logs?rank=0&tail=5", tokens[ATTACKER]).text


def test_a_job_name_with_a_newline_in_the_url_is_no_job(hub: HubProcess, tokens: dict[str, str], kube, ns: str,
                                                        peek_job: str) -> None:
    for path in (f"jobs/{peek_job}%0A", f"jobs/{peek_job}%0A/logs"):
        TALLY.attack("malformed input", lambda p=path: jobs_api(hub, "GET", p, tokens[ATTACKER]),
                     status=404, message=r".", snapshot=lambda: objects(kube, ns))


SPAWN_OPTIONS = [
    ("profile-trailing-newline", {"json": {"profile": "cpu\n"}}, 400, r"unknown profile 'cpu\\n'"),
    ("gpus-trailing-newline", {"json": {"profile": "a100", "gpus": "1\n"}}, 400, r"gpus '1\\n' is not allowed"),
    ("gpus-arabic-digit", {"json": {"profile": "a100", "gpus": "\u0661"}}, 400, r"is not allowed with profile 'a100'"),
    ("gpus-NaN", raw('{"profile": "a100", "gpus": NaN}'), 400, r"gpus nan is not allowed"),
    ("gpus-huge", {"json": {"profile": "a100", "gpus": 10**30}}, 400, r"is not allowed with profile 'a100'"),
    ("unknown-key", {"json": {"profile": "cpu", "cpu_limit": 64}}, 400, r"unknown option 'cpu_limit'"),
]


@pytest.mark.parametrize(("kw", "status", "message"), [s[1:] for s in SPAWN_OPTIONS], ids=[s[0] for s in SPAWN_OPTIONS])
def test_malformed_spawn_options_are_4xx(hub: HubProcess, tokens: dict[str, str], kube, ns: str, kw: dict,
                                        status: int, message: str) -> None:
    TALLY.attack("malformed input",
                 lambda: hub.api("POST", server_path(VICTIM, "odd"), token=tokens[VICTIM], timeout=60, **kw),
                 status=status, message=message, snapshot=lambda: objects(kube, ns), settle=1)
