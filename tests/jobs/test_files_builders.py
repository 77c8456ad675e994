"""Where job pods see the user's files, per storage mode, and the RWO route's objects (pure builders).

The process node does not enforce access modes (docs/devcluster.md), so the Multi-Attach rule
is covered here: on a ReadWriteOnce home no rank pod of any engine mounts the home, and the one
pod that does (the collector) is pinned to the node that already holds it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelab.core.catalogue import HomeStorage, ScratchStorage, SharedStorage, TransferLimits
from kubelab.core.records import PodInfo
from kubelab.jobs import builders
from kubelab.jobs.builders import BuildContext, job_id, make_children, make_parent
from kubelab.jobs.builders.collector import home_node
from kubelab.jobs.builders.common import check_files, output_dir, output_route, storage_options
from kubelab.jobs.policy import job_usage
from kubelab.jobs.spec import JobSpec, JobSpecError

RWX = HomeStorage(access_mode="ReadWriteMany")
RWO = HomeStorage(access_mode="ReadWriteOnce")
SHARED = SharedStorage("lab-shared", "/shared")
SHARED_IN_HOME = SharedStorage("lab-shared", "/home/jovyan/shared")
FILES = {"proj/train.py": b"print(1)"}
JID = job_id("alice", "ddp")


def ctx(**kw: Any) -> BuildContext:
    base: dict[str, Any] = {"user": "alice", "namespace": "jobs", "image": "img:1", "home": RWX,
                            "transfer_token": "s3cr3t-transfer", "scratch": ScratchStorage(size_bytes=4 * 2**30),
                            "transfer": TransferLimits(max_output_bytes=2**30, max_input_bytes=2**30, max_files=100)}
    base.update(kw)
    return BuildContext(**base)


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {"name": "ddp", "script": "proj/train.py", "workers": 2}
    base.update(kw)
    return JobSpec(**base)


def objects(s: JobSpec, c: BuildContext, engine: str = "plain") -> list[dict[str, Any]]:
    return make_children(s, c, engine, (JID, "uid-1"))


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template in ``obj``, whatever the engine."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "containers" in node and isinstance(node["containers"], list):
                found.append((where, node))
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(obj, f"{obj['kind']}/{obj['metadata']['name']}")
    return found


def claims(pod: dict[str, Any]) -> set[str]:
    return {v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes") or [] if "persistentVolumeClaim" in v}


def env(pod: dict[str, Any], owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pod's env; a TrainJob's ranks get theirs from its ``trainer`` (the pod template is a patch)."""
    items = owner["spec"]["trainer"]["env"] if owner and owner["kind"] == "TrainJob" else pod["containers"][0]["env"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in items}


def mounts(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in pod["containers"][0].get("volumeMounts") or []}


def rank_pods(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(w, p) for o in objs for w, p in pod_templates(o) if "collector" not in o["metadata"]["name"]]


def rank_pods_with_owner(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(w, p, o) for o in objs for w, p in pod_templates(o) if "collector" not in o["metadata"]["name"]]


# -- RWO homes: no Multi-Attach ------------------------------------------------------------------

RWO_CASES = [pytest.param(engine, shared, id=f"{engine}-{'shared' if shared else 'no-shared'}")
             for engine in sorted(builders.ENGINES) for shared in (None, SHARED)]


@pytest.mark.parametrize(("engine", "shared"), RWO_CASES)
def test_on_an_rwo_home_only_the_pinned_collector_mounts_it(engine: str, shared: SharedStorage | None) -> None:
    c = ctx(home=RWO, shared=shared, files=FILES if shared is None else None, home_node="kubelab-cpu")
    s = spec(output_dir="~/results/ddp", script="/shared/proj/train.py" if shared else "proj/train.py")
    check_files(s, c)
    objs = objects(s, c, engine)
    holders = [(w, p) for o in objs for w, p in pod_templates(o) if "home-alice" in claims(p)]
    assert [w.split(".")[0] for w, _ in holders] == [f"Job/{JID}-collector"]
    (_, collector), = holders
    assert collector["nodeName"] == "kubelab-cpu"
    assert collector["tolerations"] == [{"operator": "Exists"}], "the home may sit on a tainted GPU node"
    ranks = rank_pods_with_owner(objs)
    assert ranks and all("home-alice" not in claims(p) for _, p, _ in ranks)
    for where, pod, owner in ranks:
        # The rank's home is its scratch; the outputs folder is its own size-limited emptyDir.
        assert mounts(pod)["/home/jovyan"] == {"name": "scratch", "mountPath": "/home/jovyan", "subPath": "home"}, where
        assert mounts(pod)["/home/jovyan/results/ddp"]["name"] == "outputs", where
        e = env(pod, owner)
        assert e["KUBELAB_COLLECTOR"] == f"http://collector.{JID}-collector:8470", where
        assert e["KUBELAB_TRANSFER_TOKEN"] == {"secretKeyRef": {"name": f"{JID}-transfer-token", "key": "token"}}, where
        assert e["KUBELAB_OUTPUT_COLLECT"] == "1" and "KUBELAB_LOG_DIR" not in e, where


def test_without_a_holder_the_collector_is_the_holder_servers_follow() -> None:
    objs = objects(spec(), ctx(home=RWO, files=FILES, home_node=None))
    (job,) = [o for o in objs if o["metadata"]["name"] == f"{JID}-collector" and o["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    assert "nodeName" not in pod and claims(pod) == {"home-alice"}
    assert job["spec"]["backoffLimit"] == 0, "a retried collector could land on another node"
    assert job["spec"]["template"]["metadata"]["labels"]["kubelab.io/user"] == "alice"


@pytest.mark.parametrize(
    ("pods", "node"),
    [
        ([], None),
        ([PodInfo(name="jupyter-alice", namespace="jobs", node="kubelab-cpu", claims=("home-alice",))], "kubelab-cpu"),
        ([PodInfo(name="jupyter-alice", namespace="hub", node="kubelab-cpu", claims=("home-alice",))], None),
        ([PodInfo(name="done", namespace="jobs", node="kubelab-cpu", claims=("home-alice",), phase="Succeeded")], None),
        ([PodInfo(name="pending", namespace="jobs", node=None, claims=("home-alice",))], None),
        ([PodInfo(name="x", namespace="jobs", node="gpu", claims=("home-bob",))], None),
        ([PodInfo(name="b", namespace="jobs", node="n2", claims=("home-alice",)),
          PodInfo(name="a", namespace="jobs", node="n1", claims=("home-alice",))], "n1"),
    ],
    ids=["nothing-holds-it", "server-holds-it", "other-namespace", "ended-pod", "unscheduled", "other-claim",
         "two-holders-first-by-name"],
)
def test_home_node(pods: list[PodInfo], node: str | None) -> None:
    assert home_node(pods, "home-alice", "jobs") == node


def test_collector_service_selects_only_the_collector() -> None:
    objs = objects(spec(), ctx(home=RWO, files=FILES))
    (svc,) = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == f"{JID}-collector"]
    (job,) = [o for o in objs if o["kind"] == "Job" and o["metadata"]["name"] == f"{JID}-collector"]
    pod = job["spec"]["template"]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["hostname"] == "collector" and pod["spec"]["subdomain"] == svc["metadata"]["name"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    e = env(pod["spec"])
    assert e["KUBELAB_OUTPUT_DIR"] == "/home/jovyan/kubelab-runs/ddp" and e["KUBELAB_WORLD_SIZE"] == "2"
    assert e["KUBELAB_MAX_OUTPUT_BYTES"] == str(2**30) and "s3cr3t-transfer" not in json.dumps(pod)
    ranks = [o for o in objs if o["metadata"]["labels"].get("kubelab.io/component") == "rank" and o["kind"] == "Job"]
    assert all(svc["spec"]["selector"]["kubelab.io/component"] != r["spec"]["template"]["metadata"]["labels"]
               ["kubelab.io/component"] for r in ranks)


def test_no_collector_where_the_pods_mount_the_files() -> None:
    for c in (ctx(home=RWX), ctx(home=RWO, shared=SHARED)):
        s = spec(script="/shared/proj/train.py")
        names = [o["metadata"]["name"] for o in objects(s, c)]
        assert not [n for n in names if "collector" in n or "transfer" in n], names
        assert all("KUBELAB_COLLECTOR" not in env(p) for _, p in rank_pods(objects(s, c)))


# -- where things are ----------------------------------------------------------------------------

WHERE = [
    pytest.param(RWX, None, None, "/home/jovyan/kubelab-runs/ddp", "direct", id="rwx-home-default"),
    pytest.param(RWX, SHARED, "/shared/x/out", "/shared/x/out", "direct", id="rwx-home-output-on-shared"),
    pytest.param(RWO, SHARED, None, "/shared/kubelab-runs/alice/ddp", "direct", id="shared-default-per-user"),
    pytest.param(RWO, SHARED, "~/results", "/home/jovyan/results", "collect", id="shared-output-in-rwo-home"),
    pytest.param(RWO, SHARED_IN_HOME, None, "/home/jovyan/shared/kubelab-runs/alice/ddp", "direct",
                 id="shared-under-home"),
    pytest.param(RWO, None, None, "/home/jovyan/kubelab-runs/ddp", "collect", id="rwo-only-default"),
    pytest.param(RWO, None, "out/ddp", "/home/jovyan/out/ddp", "collect", id="rwo-only-relative"),
]


@pytest.mark.parametrize(("home", "shared", "requested", "folder", "route"), WHERE)
def test_where_the_outputs_go(home: HomeStorage, shared: SharedStorage | None, requested: str | None,
                              folder: str, route: str) -> None:
    s, c = spec(output_dir=requested), ctx(home=home, shared=shared)
    assert (output_dir(s, c), output_route(s, c)) == (folder, route)
    annotation = json.loads(make_parent(s, c, "plain")["metadata"]["annotations"]["kubelab.io/outputs"])
    assert annotation == {"dir": folder, "route": route}


@pytest.mark.parametrize(("home", "shared"), [(RWX, None), (RWX, SHARED), (RWO, SHARED), (RWO, None)],
                         ids=["rwx", "rwx-shared", "rwo-shared", "rwo-only"])
def test_every_rank_has_a_sane_home_and_bounded_scratch(home: HomeStorage, shared: SharedStorage | None) -> None:
    s = spec(script="/shared/proj/train.py" if shared and home is RWO else "proj/train.py")
    for where, pod in rank_pods(objects(s, ctx(home=home, shared=shared, files=FILES))):
        e, m = env(pod), mounts(pod)
        assert e["HOME"] == "/home/jovyan" and pod["containers"][0]["workingDir"] == "/home/jovyan", where
        assert m["/tmp"] == {"name": "scratch", "mountPath": "/tmp", "subPath": "tmp"}, where
        scratch = next(v for v in pod["volumes"] if v["name"] == "scratch")
        assert scratch == {"name": "scratch", "emptyDir": {"sizeLimit": "4Gi"}}, where
        assert m["/home/jovyan"]["name"] == ("home" if home is RWX else "scratch"), where
        if shared:
            assert m["/shared"]["name"] == "shared", "the notebook's path for the shared volume"
        # Parents before children, as container runtimes mount them.
        depths = [p.rstrip("/").count("/") for p in m]
        assert depths == sorted(depths), where
        assert not any(v.get("hostPath") for v in pod["volumes"]), where


def test_a_user_cannot_point_home_elsewhere() -> None:
    (_, pod), *_ = rank_pods(objects(spec(env={"HOME": "/root"}), ctx()))
    homes = [e for e in pod["containers"][0]["env"] if e["name"] == "HOME"]
    assert homes == [{"name": "HOME", "value": "/home/jovyan"}]


def test_shipped_files_are_copied_not_mounted_over_the_home() -> None:
    (_, pod), *_ = rank_pods(objects(spec(), ctx(home=RWO, files=FILES)))
    assert env(pod)["KUBELAB_FILES_DIR"] == "/kubelab/files"
    assert mounts(pod)["/kubelab/files"] == {"name": "files", "mountPath": "/kubelab/files", "readOnly": True}


def test_inputs_in_an_rwo_home_are_fetched_and_others_are_seen() -> None:
    s = spec(script="/home/jovyan/shared/proj/train.py", inputs=["data/mnist", "~/shared/imagenet"])
    c = ctx(home=RWO, shared=SHARED_IN_HOME)
    check_files(s, c)
    (_, pod), *_ = rank_pods(objects(s, c))
    assert json.loads(env(pod)["KUBELAB_INPUTS"]) == ["/home/jovyan/data/mnist"]
    (job,) = [o for o in objects(s, c) if o["kind"] == "Job" and "collector" in o["metadata"]["name"]]
    assert json.loads(env(job["spec"]["template"]["spec"])["KUBELAB_INPUTS"]) == ["/home/jovyan/data/mnist"]
    # The outputs go straight to the shared volume: the collector only serves the inputs.
    assert env(job["spec"]["template"]["spec"])["KUBELAB_OUTPUT_DIR"] == ""


def test_options_say_where_outputs_go() -> None:
    assert storage_options(ctx(home=RWO))["outputs"] == "/home/jovyan/kubelab-runs/<job>"
    assert storage_options(ctx(home=RWO))["outputs_route"] == "collect"
    assert storage_options(ctx(home=RWO, shared=SHARED))["outputs"] == "/shared/kubelab-runs/alice/<job>"


# -- refusals name the route ---------------------------------------------------------------------

REFUSALS = [
    pytest.param(RWX, None, {"output_dir": "/etc/out"}, "output_dir", r"outside your files.*under your home /home/jovyan",
                 id="output-outside"),
    pytest.param(RWO, None, {"output_dir": "~/../../var/lib"}, "output_dir", "outside your files", id="output-dotdot"),
    pytest.param(RWO, SHARED, {"output_dir": "/data"}, "output_dir", "or the shared volume /shared",
                 id="output-outside-names-shared"),
    pytest.param(RWX, None, {"output_dir": "~"}, "output_dir", "a folder of their own", id="output-whole-home"),
    pytest.param(RWO, SHARED, {"output_dir": "/shared"}, "output_dir", "a folder of their own",
                 id="output-whole-shared"),
    pytest.param(RWO, None, {"inputs": ["/datasets/imagenet"]}, "inputs", "outside your files", id="input-outside"),
    pytest.param(RWO, None, {"inputs": ["~"]}, "inputs", "not the whole volume", id="input-whole-home"),
    pytest.param(RWO, SHARED, {"script": "proj/train.py"}, "script",
                 "in your home, which job pods cannot mount.*under the shared volume /shared", id="shared-script-in-home"),
    pytest.param(RWO, None, {"files": {"proj/train.py": b"x" * (1024 * 1024 + 1)}}, "files",
                 r"at most 1048576 .*list it in 'inputs'", id="shipped-too-big-names-inputs"),
    pytest.param(RWO, None, {"files": {"other.py": b"x"}}, "files", "do not hold the script", id="shipped-without-script"),
]


@pytest.mark.parametrize(("home", "shared", "change", "field", "match"), REFUSALS)
def test_refusals_name_the_route(home: HomeStorage, shared: SharedStorage | None, change: dict[str, Any],
                                 field: str, match: str) -> None:
    files = change.pop("files", FILES)
    with pytest.raises(JobSpecError, match=match) as err:
        check_files(spec(**change), ctx(home=home, shared=shared, files=files))
    assert err.value.field == field


def test_the_collector_is_not_one_of_the_users_workers() -> None:
    pods = [PodInfo(name="r0", namespace="jobs", labels={"kubelab.io/job": "ddp", "kubelab.io/component": "rank"},
                    cpu_millis=1000),
            PodInfo(name="c", namespace="jobs", labels={"kubelab.io/job": "ddp", "kubelab.io/component": "job-collector"},
                    cpu_millis=50)]
    usage = job_usage(pods)
    assert (usage.workers, usage.cpu_millis) == (1, 1000)
