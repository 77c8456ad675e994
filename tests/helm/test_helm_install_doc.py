"""Every command in docs/install.md is one the tests run or render.

The commands are read from the page (```bash blocks, and inline `helm ...`/`kubectl ...` code in
the prose) and each must match exactly one row of COMMANDS:

* ``render``: a Helm command on the kubelab chart, rendered (or linted) with real Helm and the
  values files it names; ``z2jh``: the z2jh install, whose values file is validated against z2jh
  4.4.0's schema and whose --version must be that schema's;
* ``offline``: a kubectl command run here with ``--dry-run=client``;
* ``cluster``: run against the test cluster (devcluster) by the integration test below, in a fresh
  namespace standing in for ``jhub``;
* ``network``: needs the internet (chart repositories, upstream manifests), which CI does not
  have; the row pins what the command must say (a version), so the page cannot drift from what
  was tested.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes
import pytest
import yaml
from kubelab_chart import CHART_DIR, PROVENANCE, REPO, Z2JH_SCHEMA, load_values, render

DOC = REPO / "docs" / "install.md"
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
DOC_NAMESPACE = "jhub"

# (id, pattern over the command, kind)
COMMANDS: list[tuple[str, str, str]] = [
    ("nvdp-repo-add", r"helm repo add nvdp https://nvidia\.github\.io/k8s-device-plugin", "network"),
    ("nvdp-repo-update", r"helm repo update nvdp", "network"),
    ("nvdp-install", r"helm upgrade --install nvdp nvdp/nvidia-device-plugin --version \d+\.\d+\.\d+ .*--set gfd\.enabled=true", "network"),
    ("kueue-install", r"kubectl apply --server-side -f https://github\.com/kubernetes-sigs/kueue/releases/download/(v[\d.]+)/manifests\.yaml", "network"),
    ("z2jh-repo-add", r"helm repo add jupyterhub https://hub\.jupyter\.org/helm-chart/", "network"),
    ("z2jh-repo-update", r"helm repo update jupyterhub", "network"),
    ("z2jh-install", r"helm upgrade (--install )?jhub jupyterhub/jupyterhub .*", "z2jh"),
    ("z2jh-service", r"kubectl --namespace jhub get service proxy-public", "network"),
    ("hub-restart", r"kubectl --namespace jhub rollout restart deployment/hub", "network"),
    ("freeze", r"python images/freeze\.py", "network"),
    ("make-images", r"make images", "images"),
    ("build-images", r"images/build\.sh( [a-z-]+)*", "images"),
    ("kubelab-lint", r"helm lint \./helm/kubelab .*", "render"),
    ("kubelab-template", r"helm template kubelab \./helm/kubelab .*", "render"),
    ("kubelab-install", r"helm upgrade (--install )?kubelab \./helm/kubelab .*", "render"),
    ("helm-history", r"helm history kubelab --namespace jhub", "cluster"),
    ("helm-rollback", r"helm rollback kubelab \d+ --namespace jhub", "cluster"),
    ("create-namespace", r"kubectl create namespace jhub", "offline"),
    ("create-secret", r"kubectl create secret generic kubelab-oidc --namespace jhub --from-file=client-secret=client-secret\.txt", "offline"),
    ("gpu-nodes", r"kubectl get nodes -o custom-columns=.*", "cluster"),
    ("taint", r"kubectl taint nodes --selector=\S+ nvidia\.com/gpu=present:NoSchedule --overwrite", "cluster"),
    ("api-endpoints", r"kubectl get endpoints kubernetes --namespace default", "cluster"),
    ("get-catalogue", r"kubectl --namespace jhub get configmap kubelab-platform -o jsonpath=.*", "cluster"),
    ("can-i-list", r"kubectl auth can-i --list --namespace jhub --as=system:serviceaccount:jhub:\S+", "cluster"),
]


def doc_commands() -> list[str]:
    """The commands on the page: lines of ```bash blocks, and inline code that starts with a tool."""
    text = DOC.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        commands += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [c for c in re.findall(r"`([^`\n]+)`", prose)
                 if re.match(r"(helm |kubectl |make |python |images/build\.sh)", c)]
    return commands


def classify(command: str) -> tuple[str, str]:
    """``(id, kind)`` of the single COMMANDS row the command matches.

    Raises:
        LookupError: None or several rows match.
    """
    rows = [(name, kind) for name, pattern, kind in COMMANDS if re.fullmatch(pattern, command)]
    if len(rows) != 1:
        raise LookupError(f"docs/install.md command {command!r} matches {len(rows)} rows of COMMANDS")
    return rows[0]


def of_kind(kind: str) -> list[str]:
    """The page's commands of one kind (unclassifiable ones fail test_every_command_is_covered)."""
    found = []
    for command in doc_commands():
        try:
            if classify(command)[1] == kind:
                found.append(command)
        except LookupError:
            continue
    return found


def parse_helm(command: str) -> dict[str, Any]:
    """The parts of a `helm upgrade|template|lint` command that decide what it installs."""
    words = shlex.split(command)
    parsed: dict[str, Any] = {"action": words[1], "values": [], "set": [], "positional": [], "flags": set()}
    it = iter(words[2:])
    for word in it:
        if word in ("--values", "-f"):
            parsed["values"].append(REPO / next(it))
        elif word == "--set":
            parsed["set"].append(next(it))
        elif word in ("--namespace", "-n"):
            parsed["namespace"] = next(it)
        elif word in ("--version", "--timeout"):
            parsed[word.lstrip("-")] = next(it)
        elif word.startswith("--"):
            parsed["flags"].add(word)
        else:
            parsed["positional"].append(word)
    return parsed


def merged_values(parsed: dict[str, Any]) -> dict[str, Any]:
    """Values as Helm composes them from -f files then --set expressions."""
    values: dict[str, Any] = {}
    layers = [load_values(path) for path in parsed["values"]] + [helm.parse_set_string(s) for s in parsed["set"]]
    for layer in layers:
        values = _merge(values, layer)
    return values


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_doc_has_the_commands_the_issue_asks_for() -> None:
    ids = {classify(c)[0] for c in doc_commands()}
    assert {"nvdp-install", "kubelab-install", "z2jh-install", "create-secret", "helm-rollback"} <= ids


@pytest.mark.parametrize("command", doc_commands())
def test_every_command_is_covered(command: str) -> None:
    classify(command)


def test_an_unknown_command_is_refused() -> None:
    with pytest.raises(LookupError, match="matches 0 rows"):
        classify("kubectl delete namespace jhub")


@pytest.mark.parametrize("command", of_kind("render"))
def test_kubelab_helm_commands_render(command: str) -> None:
    """Each kubelab Helm command's chart path and values files exist, and Helm renders (or lints) them."""
    parsed = parse_helm(command)
    chart = REPO / next(p for p in parsed["positional"] if p.startswith("./"))
    assert chart == CHART_DIR
    for path in parsed["values"]:
        assert path.is_file(), f"{command}: {path} does not exist"
    values = merged_values(parsed)
    if parsed["action"] == "lint":
        report = helm.lint(chart, values, strict=True, kube_version="v1.28.0")
        errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert errors == [], report
        return
    assert parsed.get("namespace") == DOC_NAMESPACE
    release = parsed["positional"][0]
    objects = render(values, release=release, namespace=DOC_NAMESPACE)
    assert any(o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kubelab-platform" for o in objects)


@pytest.mark.parametrize("command", of_kind("z2jh"))
def test_z2jh_commands_use_the_validated_version_and_values(command: str) -> None:
    parsed = parse_helm(command)
    readme = PROVENANCE.read_text()
    schema_version = re.search(r"z2jh-values\.schema\.yaml \| jupyterhub/zero-to-jupyterhub-k8s \| ([\d.]+)", readme)
    assert schema_version and parsed.get("version") == schema_version.group(1)
    assert parsed.get("namespace") == DOC_NAMESPACE
    override = jsonschema.validators.extend(jsonschema.Draft7Validator, {"required": lambda *_: iter(())})
    for path in parsed["values"]:
        assert path.is_file()
        override(yaml.safe_load(Z2JH_SCHEMA.read_text())).validate(yaml.safe_load(path.read_text()))


def test_network_commands_pin_what_was_tested() -> None:
    """Kueue's manifest version is the one whose CRDs the chart's Kueue objects are validated with."""
    crd_readme = PROVENANCE.read_text()
    kueue_tag = re.search(r"\| kueue/ \| kubernetes-sigs/kueue \| (v[\d.]+) \|", crd_readme)
    assert kueue_tag
    for command in doc_commands():
        if classify(command)[0] == "kueue-install":
            assert f"/download/{kueue_tag.group(1)}/" in command


def kubectl(*args: str, kubeconfig: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run([KUBECTL, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd, check=False)


@pytest.mark.parametrize("command", of_kind("offline"))
def test_offline_kubectl_commands(command: str, tmp_path: Path) -> None:
    """kubectl's own client-side dry run builds each object; the secret matches what the hub mounts."""
    (tmp_path / "client-secret.txt").write_text("not-a-real-secret")
    result = kubectl(*shlex.split(command)[1:], "--dry-run=client", "-o", "yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    obj = yaml.safe_load(result.stdout)
    if obj["kind"] == "Secret":
        z2jh = yaml.safe_load((REPO / "helm" / "z2jh-values.yaml").read_text())
        volume = next(v for v in z2jh["hub"]["extraVolumes"] if "secret" in v)
        assert obj["metadata"]["name"] == volume["secret"]["secretName"]
        secret_file = z2jh["hub"]["extraEnv"]["KUBELAB_OIDC_CLIENT_SECRET_FILE"]
        assert list(obj["data"]) == [secret_file.rsplit("/", 1)[1]]
        assert obj["metadata"]["namespace"] == DOC_NAMESPACE


# --- the cluster commands, in page order, on the test cluster ----------------------------------


@pytest.fixture
def doc_namespace(namespace: str) -> Iterator[str]:
    """The test namespace, standing in for `jhub`."""
    yield namespace


@pytest.mark.integration
def test_cluster_commands_run(cluster, kube, doc_namespace: str) -> None:
    """Install the kubelab chart as the page says, then run every cluster command of the page.

    The devcluster is Kubernetes 1.20 without Kueue, so Kueue is switched off and the jobs
    namespace is the release namespace; everything else is the page's values file. The kubelab
    install and upgrade go through Helm's own install/upgrade (helm-python-sdk), not kubectl.
    """
    ns = doc_namespace
    commands = [c.replace(f"--namespace {DOC_NAMESPACE}", f"--namespace {ns}")
                .replace(f"serviceaccount:{DOC_NAMESPACE}:", f"serviceaccount:{ns}:") for c in doc_commands()]
    install = next(c for c in doc_commands() if classify(c)[0] == "kubelab-install")
    values = merged_values(parse_helm(install))
    values = _merge(values, {"kueue": {"enabled": False}, "catalogue": {"jobs": {"namespace": None}}})
    values["catalogue"]["jobs"].pop("namespace", None)
    cfg = helm.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=ns)
    installed = False
    try:
        release = cfg.install(str(CHART_DIR), "kubelab", values, namespace=ns, timeout=120)
        installed = True
        assert release["status"] == "deployed"
        upgraded_values = _merge(values, {"networkPolicy": {"notebooks": {"internet": False}}})
        cfg.upgrade(str(CHART_DIR), "kubelab", upgraded_values, namespace=ns, timeout=120)
        ran = []
        for original, command in zip(doc_commands(), commands, strict=True):
            name, kind = classify(original)
            if kind != "cluster":
                continue
            ran.append(name)
            if name == "helm-history":
                assert [r["revision"] for r in cfg.history("kubelab")] == [1, 2]
            elif name == "helm-rollback":
                revision = int(re.search(r"rollback kubelab (\d+)", command).group(1))
                cfg.rollback("kubelab", version=revision, timeout=120)
                history = cfg.history("kubelab")
                assert [r["revision"] for r in history] == [1, 2, 3]
                internet = kubernetes.client.NetworkingV1Api(kube).read_namespaced_network_policy("kubelab-notebooks", ns)
                assert len(internet.spec.egress) == 3, "rollback to revision 1 restores the internet rule"
            else:
                args = shlex.split(command)[1:]
                if name == "taint":
                    args.append("--dry-run=server")
                result = kubectl(*args, kubeconfig=cluster.kubeconfig)
                assert result.returncode == 0, f"{command}: {result.stderr}"
                if name == "get-catalogue":
                    assert yaml.safe_load(result.stdout)["profiles"]
                if name == "gpu-nodes":
                    assert re.search(r"\s\d+\s+NVIDIA-", result.stdout), result.stdout
                if name == "can-i-list" and command.endswith(":hub"):
                    assert re.search(r"^pods\s.*\[get list watch create delete\]", result.stdout, re.M), result.stdout
                if name == "can-i-list" and command.endswith(":kubelab-singleuser"):
                    assert not re.search(r"^(pods|secrets|configmaps)", result.stdout, re.M), result.stdout
        assert {"helm-history", "helm-rollback", "gpu-nodes", "taint", "get-catalogue", "can-i-list"} <= set(ran)
    finally:
        if installed:
            cfg.uninstall("kubelab", timeout=120)
        cfg.close()
