"""LabSpawner against stock KubeSpawner 7.1 on the same profile_list: same pod, same PVC, except
kubelab's documented additions (docs/migrating-from-z2jh.md, listed in ADDED below).

The profile lists are KubeSpawner's own documentation examples, read from the installed
package's ``KubeSpawner.profile_list`` help text (its "List example" and "Dict example"), and the
z2jh 4.4.0 documentation examples that docs/migrating-from-z2jh.md carries over. Both spawners get
the configuration z2jh's hub writes (its ``common_labels``, its dynamic storage; see
z2jh_config()). KubeSpawner loads a Kubernetes client configuration when it is constructed, so
these tests use the devcluster's kubeconfig; they create nothing.

The REST and form refusal of unlisted values that fail ``validation_regex`` is checked on a real
hub at the end.
"""

from __future__ import annotations

import ast
import copy
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes
import pytest
import requests
import yaml
from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner
from labhub import CATALOGUE, make_namespace, start_hub, uname
from traitlets.config import Config

from kubelab.core.catalogue import parse_catalogue
from kubelab.core.platform import Platform
from kubelab.spawner.profile_list import initialise_profile_list
from kubelab.spawner.spawner import LabSpawner

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-z2jh.md"
#: z2jh's common labels for a release "jhub" of chart jupyterhub 4.4.0, exactly as its hub config
#: computes them (jupyterhub/files/hub/jupyterhub_config.py, lines 120-134 at tag 4.4.0).
Z2JH_COMMON_LABELS = {
    "app.kubernetes.io/name": "jupyterhub", "app": "jupyterhub",
    "app.kubernetes.io/instance": "jhub", "release": "jhub",
    "helm.sh/chart": "jupyterhub-4.4.0", "chart": "jupyterhub-4.4.0",
    "app.kubernetes.io/managed-by": "kubespawner",
}

#: kubelab's documented additions to a profile_list spawn (docs/migrating-from-z2jh.md, "What
#: kubelab adds"); every other field of the manifests must equal stock KubeSpawner's.
ADDED = {
    "pod_labels": {"kubelab.io/user", "kubelab.io/profile", "kubelab.io/server", "app.kubernetes.io/part-of"},
    "pod_annotations": {"kubelab.io/username", "kubelab.io/servername", "kubelab.io/groups"},
    "env": {"KUBELAB_PROFILE", "KUBELAB_GPU_CLASS", "KUBELAB_GPUS"},
    "pvc_labels": {"kubelab.io/user", "app.kubernetes.io/part-of"},
    # the user's id ends the pod's name, so two users' names never clash (make() gives alice id 7)
    "pod_name_suffix": "-7",
}


def kubespawner_doc_examples() -> dict[str, Any]:
    """The profile lists of KubeSpawner's own documentation (the trait's help text)."""
    text = KubeSpawner.class_traits()["profile_list"].help
    found = {}
    for name in ("List example::", "Dict example::"):
        block = text[text.index(name) + len(name):]
        block = textwrap.dedent(block[: block.find("example::") if "Dict" not in name else block.index("Instead of")])
        # KubeSpawner 7.1's Dict example has an unquoted key, ``demo-2: {`` (a typo in its docs)
        block = re.sub(r"^(\s*)demo-2:", r'\1"demo-2":', block, flags=re.M)
        tree = ast.parse(block.strip().rsplit("\n\n", 1)[0] if "List" in name else block.strip())
        (assign,) = [n for n in tree.body if isinstance(n, ast.Assign)]
        found[f"kubespawner-{name.split()[0].lower()}"] = ast.literal_eval(assign.value)
    return found


def z2jh_doc_examples() -> dict[str, Any]:
    """The z2jh profileLists that docs/migrating-from-z2jh.md carries over."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    lists = [yaml.safe_load(b)["singleuser"]["profileList"] for b in blocks if "profileList" in b]
    assert len(lists) == 2, "the page carries two z2jh examples"
    return {"z2jh-multiple-profiles": lists[0], "z2jh-gpu": lists[1]}


EXAMPLES = {**kubespawner_doc_examples(), **z2jh_doc_examples()}


def selections(profile_list: Any) -> list[dict[str, Any]]:
    """For every profile: its defaults, each choice of each option, and a valid unlisted value."""
    out = []
    for profile in initialise_profile_list(profile_list):
        out.append({"profile": profile["slug"]})
        for key, option in (profile.get("profile_options") or {}).items():
            for choice in option.get("choices") or {}:
                out.append({"profile": profile["slug"], key: choice})
            if option["unlisted_choice"].get("enabled"):
                out.append({"profile": profile["slug"], f"{key}--unlisted-choice": "jupyter/datascience-notebook:2024-10-07"})
    return out


CASES = [pytest.param(name, opts, id=f"{name}:{'/'.join(str(v) for v in opts.values())}")
         for name, plist in EXAMPLES.items() for opts in selections(plist)]


def z2jh_config(profile_list: Any) -> Config:
    """What z2jh's hub config sets for KubeSpawner (storage dynamic, its labels, its cmd)."""
    c = Config()
    c.KubeSpawner.profile_list = copy.deepcopy(profile_list)
    c.KubeSpawner.common_labels = dict(Z2JH_COMMON_LABELS)
    c.KubeSpawner.namespace = "jhub"
    c.KubeSpawner.image = "jupyter/minimal-notebook:2343e33dec46"
    c.KubeSpawner.storage_pvc_ensure = True
    c.KubeSpawner.storage_capacity = "10Gi"
    c.KubeSpawner.volumes = {"volume-{user_server}": {"name": "volume-{user_server}", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}}
    c.KubeSpawner.volume_mounts = {"volume-{user_server}": {"mountPath": "/home/jovyan", "name": "volume-{user_server}"}}
    c.Spawner.cmd = ["jupyterhub-singleuser"]
    c.Spawner.default_url = "/lab"
    c.LabSpawner.allow_root = False  # the test process may run as root; z2jh's pods do not
    return c


def make(cls: type, config: Config, catalogue) -> Any:
    user = SimpleNamespace(name="alice", id=7, url="/user/alice/", groups=[SimpleNamespace(name="gpu-users")],
                           spawners={}, escaped_name="alice")
    hub = SimpleNamespace(public_host="", url="http://hub:8081/hub/", base_url="/hub/", api_url="http://hub:8081/hub/api")
    if cls is LabSpawner:
        config = copy.deepcopy(config)
        config.LabSpawner.platform = Platform(catalogue)
    return cls(config=config, user=user, hub=hub, orm_spawner=SimpleNamespace(name="", user_options={}, server=None))


def as_json(obj: Any) -> dict[str, Any]:
    return ApiClient().sanitize_for_serialization(obj)


async def manifests(spawner: Any, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifests after what JupyterHub and ``_start`` call: apply_user_options, load_user_options."""
    spawner.user_options = dict(options)
    await spawner._run_apply_user_options(spawner.user_options)
    await spawner.load_user_options()
    return as_json(await spawner.get_pod_manifest()), as_json(spawner.get_pvc_manifest())


def drop_additions(pod: dict[str, Any], pvc: dict[str, Any]) -> None:
    """Remove kubelab's documented additions (asserting each is there) from LabSpawner's manifests."""
    meta = pod["metadata"]
    assert meta["name"].endswith(ADDED["pod_name_suffix"]), meta["name"]
    meta["name"] = meta["name"].removesuffix(ADDED["pod_name_suffix"])
    assert ADDED["pod_labels"] <= set(meta["labels"]), meta["labels"]
    assert ADDED["pod_annotations"] <= set(meta["annotations"]), meta["annotations"]
    for key in ADDED["pod_labels"]:
        del meta["labels"][key]
    for key in ADDED["pod_annotations"]:
        del meta["annotations"][key]
    (container,) = pod["spec"]["containers"]
    env = container["env"]
    assert "KUBELAB_PROFILE" in {e["name"] for e in env}
    container["env"] = [e for e in env if e["name"] not in ADDED["env"]]
    assert ADDED["pvc_labels"] <= set(pvc["metadata"]["labels"]), pvc["metadata"]["labels"]
    for key in ADDED["pvc_labels"]:
        del pvc["metadata"]["labels"][key]


@pytest.fixture(scope="module")
def catalogue():
    return parse_catalogue(CATALOGUE, "differential-catalogue.yaml")


@pytest.fixture(scope="module")
def kubeconfig(cluster):
    """Point KubeSpawner's client loading at the devcluster (kubernetes_asyncio reads
    $KUBECONFIG once, at import, before the cluster fixture exported it)."""
    from kubernetes_asyncio.config import kube_config

    before = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(cluster.kubeconfig)
    yield
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = before


@pytest.fixture(scope="module")
async def lab_spawners(kubeconfig, catalogue):
    """One LabSpawner per example, reused for all its selections (so a leak between spawns shows)."""
    return {name: make(LabSpawner, z2jh_config(plist), catalogue) for name, plist in EXAMPLES.items()}


@pytest.mark.parametrize(("example", "options"), CASES)
async def test_manifests_equal_stock_kubespawner(kubeconfig, catalogue, lab_spawners, example, options):
    # a fresh stock spawner for every selection: KubeSpawner applies overrides to the live
    # spawner, so a reused one would carry the previous selection's settings
    stock = make(KubeSpawner, z2jh_config(EXAMPLES[example]), catalogue)
    want_pod, want_pvc = await manifests(stock, options)
    got_pod, got_pvc = await manifests(lab_spawners[example], options)
    drop_additions(got_pod, got_pvc)
    # the recommended labels kubelab sets lose to z2jh's common_labels, as every label does
    assert got_pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "jhub"
    assert got_pod == want_pod
    assert got_pvc == want_pvc


async def test_gpu_profile_counts_as_gpus(kubeconfig, catalogue, lab_spawners):
    spawner = lab_spawners["z2jh-gpu"]
    spawner.user_options = {"profile": "gpu-server"}
    choice = await spawner.load_user_options(fresh=True)
    assert (choice.gpus, choice.gpu_class.resource) == (1, "nvidia.com/gpu")
    pod = await spawner.get_pod_manifest()
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert (env["KUBELAB_GPUS"], env["KUBELAB_GPU_CLASS"]) == ("1", "nvidia.com/gpu")


async def test_plan_is_made_once_per_spawn(kubeconfig, catalogue, lab_spawners, monkeypatch):
    spawner = lab_spawners["kubespawner-list"]
    calls = []
    original = LabSpawner.plan_spawn

    async def counted(self):
        calls.append(1)
        return await original(self)

    monkeypatch.setattr(LabSpawner, "plan_spawn", counted)
    spawner.user_options = {"profile": "demo-1", "image": "base"}
    await spawner._run_apply_user_options(spawner.user_options)  # JupyterHub, before start()
    await spawner.load_user_options()  # LabSpawner._start, then KubeSpawner._start
    await spawner.load_user_options()
    assert len(calls) == 1
    assert spawner.image == "jupyter/base-notebook:latest"


async def test_async_callable_profile_list(kubeconfig, catalogue, lab_spawners):
    """profile_list as an async callable, called with the spawner (KubeSpawner's contract)."""
    seen = []

    async def profiles(spawner):
        seen.append(spawner.user.name)
        return copy.deepcopy(EXAMPLES["kubespawner-list"])

    config = z2jh_config([])
    config.KubeSpawner.profile_list = profiles
    spawner = make(LabSpawner, config, catalogue)
    want_pod, want_pvc = await manifests(lab_spawners["kubespawner-list"], {"profile": "demo-2"})
    got_pod, got_pvc = await manifests(spawner, {"profile": "demo-2"})
    assert (got_pod, got_pvc) == (want_pod, want_pvc)
    assert seen == ["alice"]


# -- the same refusal on the form and the REST API, through a real hub -------------------------

DEMO = EXAMPLES["kubespawner-list"]
EVIL = "docker.io/evil/miner:latest"
ALICE = uname("differ")


@pytest.fixture(scope="module")
def core(cluster):
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def hub(cluster, core, tmp_path_factory):
    ns = make_namespace(core, "kl-plist")
    # set before kubelab's wiring, as z2jh's config sets it before kubelab's extraConfig runs
    h = start_hub(cluster, ns, tmp_path_factory.mktemp("plisthub"), before=f"c.KubeSpawner.profile_list = {DEMO!r}\n")
    h.ensure_user(ALICE, ["gpu-users"])
    yield h, ns
    h.stop()
    core.delete_namespace(ns)


def test_key_kubelab_cannot_honour_stops_the_hub(cluster, core, tmp_path):
    bad = [{"display_name": "Typo", "kubespawner_override": {"cpu_limt": 2}}]
    with pytest.raises(RuntimeError, match=r"KubeSpawner.profile_list: profile_list\[0\].kubespawner_override.cpu_limt: "
                                            r"not a KubeSpawner setting"):
        start_hub(cluster, "default", tmp_path / "badhub", before=f"c.KubeSpawner.profile_list = {bad!r}\n")


def test_startup_line_says_how_sources_combine(hub):
    h, _ = hub
    assert ("kubelab profiles: 2 from KubeSpawner.profile_list first (default 'demo-1'), then 2 from the catalogue"
            in h.log_text())


def test_unlisted_value_failing_regex_refused_on_rest_and_form(hub, core):
    h, ns = hub
    want = r"image--unlisted-choice 'docker.io/evil/miner:latest' does not match '\^jupyter/\.\+:\.\+\$': Must be an image matching"
    r = h.api("POST", f"/users/{ALICE}/server", json={"profile": "demo-1", "image--unlisted-choice": EVIL}, timeout=60)
    assert r.status_code == 400, r.text
    assert re.search(want, r.json()["message"]), r.json()
    session = requests.Session()
    session.get(f"{h.url}/hub/login", timeout=30)
    login = session.post(f"{h.url}/hub/login", timeout=30,
                         data={"username": ALICE, "password": "pw", "_xsrf": session.cookies.get("_xsrf")})
    assert login.ok, login.status_code
    page = session.get(f"{h.url}/hub/spawn", timeout=30)
    assert 'name="profile-option-demo-1--image"' in page.text  # KubeSpawner's form.html, kubelab's profiles in it
    xsrf = session.cookies.get("_xsrf")
    form = {"_xsrf": xsrf, "profile": "demo-1", "profile-option-demo-1--image--unlisted-choice": EVIL}
    r = session.post(f"{h.url}/hub/spawn", data=form, timeout=60, allow_redirects=False)
    # JupyterHub re-renders the form with the message (HTML-escaped)
    assert "does not match &#39;^jupyter/.+:.+$&#39;: Must be an image matching" in r.text, r.text[-1500:]
    assert core.list_namespaced_pod(ns).items == [] and [p.metadata.name for p in core.list_namespaced_persistent_volume_claim(ns).items] == ["lab-shared"]
