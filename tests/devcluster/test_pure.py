"""Unit tests of the process node's pure parts: env, status, hosts, addresses, layout, volumes, preflight."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest

from kubelab.devcluster import preflight
from kubelab.devcluster.controlplane import Layout, component_commands, first_service_ip
from kubelab.devcluster.hosts import Peer, hosts_content, named_peers
from kubelab.devcluster.netns import allocate_ip, sandbox_names
from kubelab.devcluster.nodes import DEFAULT_LAYOUT, make_node, make_node_status, parse_layout
from kubelab.devcluster.pki import CertPair, ClusterPki
from kubelab.devcluster.podenv import PodConfigError, command_line, expand, parse_quantity, resolve_env
from kubelab.devcluster.podstatus import ContainerState, container_status, pod_phase, pod_status
from kubelab.devcluster.provisioner import make_volume, wants_volume
from kubelab.devcluster.settings import Instance
from kubelab.devcluster.volumes import Mount, key_files, mount_plan, volume_files

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def pod(**spec) -> dict:
    meta = spec.pop("metadata", {})
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "1234abcd-0000", "labels": {"app": "x"},
                     "annotations": {"a": "b"}, **meta},
        "spec": {"nodeName": "kubelab-cpu", "containers": [{"name": "main", "image": "img"}], **spec},
        "status": {"podIP": "10.244.16.5", "hostIP": "127.0.0.1"},
    }


# ---- env -----------------------------------------------------------------------------------------

CMS = {"cfg": {"color": "blue", "size": "L"}}
SECRETS = {"sec": {"token": base64.b64encode(b"s3cret").decode()}}


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({"env": [{"name": "A", "value": "1"}]}, {"A": "1"}),
        ({"env": [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-$(NOPE)-$$(A)"}]},
         {"A": "x", "B": "x-$(NOPE)-$(A)"}),
        ({"env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}, {"N": "p"}),
        ({"env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}]}, {"N": "x"}),
        ({"env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a']"}}}]}, {"N": "b"}),
        ({"env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}, {"N": "10.244.16.5"}),
        ({"env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}, {"N": "kubelab-cpu"}),
        ({"env": [{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}}]}, {"C": "blue"}),
        ({"env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}}]}, {"S": "s3cret"}),
        ({"env": [{"name": "O", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}}]},
         {}),
        ({"envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "P_"}], "env": [{"name": "P_size", "value": "S"}]},
         {"P_color": "blue", "P_size": "S"}),
        ({"envFrom": [{"secretRef": {"name": "sec"}}]}, {"token": "s3cret"}),
        ({"resources": {"limits": {"cpu": "1500m"}},
          "env": [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}, {"CPU": "2"}),
        ({"env": [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}}]},
         {"MEM": "32"}),
    ],
    ids=["value", "expansion", "name", "label", "annotation", "pod-ip", "node-name", "configmap-key", "secret-key",
         "optional-missing", "env-from-prefix-overridden", "env-from-secret", "cpu-limit-rounds-up",
         "unset-limit-is-node-allocatable"],
)
def test_resolve_env(container, expected):
    env = resolve_env(pod(), {"name": "main", **container}, CMS.get, SECRETS.get, {"cpu": "8", "memory": "32Gi"})
    assert env == expected


@pytest.mark.parametrize(
    ("container", "match"),
    [
        ({"env": [{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]}, 'configmap "gone"'),
        ({"env": [{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}, 'key "k"'),
        ({"envFrom": [{"secretRef": {"name": "gone"}}]}, 'secret "gone" not found'),
        ({"env": [{"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}, "unsupported fieldRef"),
    ],
    ids=["missing-configmap", "missing-key", "missing-secret", "bad-field-path"],
)
def test_resolve_env_refuses_missing_references(container, match):
    with pytest.raises(PodConfigError, match=match):
        resolve_env(pod(), {"name": "main", **container}, CMS.get, SECRETS.get, {})


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({"command": ["python", "-m", "x"], "args": ["--n", "$(N)"]}, ["python", "-m", "x", "--n", "4"]),
        ({"args": ["jupyterhub-singleuser"]}, ["jupyterhub-singleuser"]),
    ],
    ids=["command-and-args", "args-only"],
)
def test_command_line(container, expected):
    assert command_line(container, {"N": "4"}) == expected


def test_command_line_without_command_or_args_is_a_config_error():
    with pytest.raises(PodConfigError, match="neither command nor args"):
        command_line({"name": "main"}, {})


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("4Gi", str(4 * 2**30)), ("1e3", "1000"), ("2", "2"), ("1k", "1000")],
    ids=["milli", "gibi", "exponent", "plain", "kilo"],
)
def test_parse_quantity(text, value):
    assert parse_quantity(text) == parse_quantity(value)


def test_expand_leaves_unknown_references():
    assert expand("$(A) $(B)", {"A": "1"}) == "1 $(B)"


# ---- status --------------------------------------------------------------------------------------


def cs(state: str, code: int | None = None, restarts: int = 0) -> ContainerState:
    return ContainerState("main", "img", state=state, exit_code=code, restart_count=restarts, reason="r",
                          started_at=T0, finished_at=T0 if state == "terminated" else None)


@pytest.mark.parametrize(
    ("policy", "states", "started", "phase"),
    [
        ("Never", [cs("waiting")], False, "Pending"),
        ("Never", [cs("running")], True, "Running"),
        ("Never", [cs("terminated", 0)], True, "Succeeded"),
        ("Never", [cs("terminated", 3)], True, "Failed"),
        ("OnFailure", [cs("terminated", 0)], True, "Succeeded"),
        ("OnFailure", [cs("terminated", 1)], True, "Running"),
        ("Always", [cs("terminated", 0)], True, "Running"),
        ("Always", [cs("waiting", restarts=2)], True, "Running"),
    ],
    ids=["never-waiting", "running", "never-exit-0", "never-exit-3", "onfailure-exit-0", "onfailure-exit-1-restarts",
         "always-exit-0-restarts", "crashloop"],
)
def test_pod_phase(policy, states, started, phase):
    assert pod_phase(policy, states, started) == phase


def test_container_status_nulls_unused_states_for_strategic_merge():
    status = container_status("1234abcd", cs("terminated", 3))
    assert status["state"]["waiting"] is None and status["state"]["running"] is None
    assert status["state"]["terminated"]["exitCode"] == 3
    assert status["state"]["terminated"]["finishedAt"] == "2026-01-02T03:04:05Z"
    assert status["ready"] is False


def test_pod_status_of_a_failed_pod():
    status = pod_status(pod(restartPolicy="Never"), [cs("terminated", 3)], "10.244.16.5", "127.0.0.1", T0, True, T0)
    assert status["phase"] == "Failed"
    assert status["podIPs"] == [{"ip": "10.244.16.5"}]
    assert status["startTime"] == "2026-01-02T03:04:05Z"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"


# ---- hosts ---------------------------------------------------------------------------------------


def peer_pod(name: str, ip: str | None, labels: dict, subdomain: str = "workers", **meta) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels, **meta},
            "spec": {"hostname": name, "subdomain": subdomain}, "status": {"podIP": ip, "phase": "Running"}}


HEADLESS = {"metadata": {"name": "workers", "namespace": "ns"},
            "spec": {"clusterIP": "None", "selector": {"app": "w"}}}


@pytest.mark.parametrize(
    ("pods", "services", "expected"),
    [
        ([peer_pod("w0", "10.0.0.2", {"app": "w"}), peer_pod("w1", "10.0.0.3", {"app": "w"})], [HEADLESS],
         [Peer("10.0.0.2", "w0", "workers"), Peer("10.0.0.3", "w1", "workers")]),
        ([peer_pod("w0", "10.0.0.2", {"app": "w"})], [], []),
        ([peer_pod("w0", "10.0.0.2", {"app": "w"})], [{**HEADLESS, "spec": {"clusterIP": "127.100.0.9",
                                                                            "selector": {"app": "w"}}}], []),
        ([peer_pod("w0", "10.0.0.2", {"app": "other"})], [HEADLESS], []),
        ([peer_pod("w0", None, {"app": "w"})], [HEADLESS], []),
        ([peer_pod("w0", "10.0.0.2", {"app": "w"}, deletionTimestamp="2026-01-01T00:00:00Z")], [HEADLESS], []),
        ([{**peer_pod("w0", "10.0.0.2", {"app": "w"}), "metadata": {"name": "w0", "namespace": "other",
                                                                   "labels": {"app": "w"}}}], [HEADLESS], []),
    ],
    ids=["two-peers", "no-service", "service-not-headless", "not-selected", "no-address", "terminating",
         "other-namespace"],
)
def test_named_peers(pods, services, expected):
    assert named_peers(pods, services, "ns") == expected


def test_hosts_content_lists_self_and_peers():
    me = peer_pod("w0", "10.0.0.2", {"app": "w"})
    text = hosts_content(me, "10.0.0.2", [Peer("10.0.0.2", "w0", "workers"), Peer("10.0.0.3", "w1", "workers")])
    lines = text.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert "10.0.0.2\tw0.workers.ns.svc.cluster.local\tw0.workers\tw0" in lines
    assert "10.0.0.3\tw1.workers.ns.svc.cluster.local\tw1.workers" in lines
    assert sum("10.0.0.2" in line for line in lines) == 1


# ---- addresses, layout, settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "used", "reserved", "expected"),
    [
        ("10.244.16.0/20", [], [], "10.244.16.1"),
        ("10.244.16.0/20", ["10.244.16.1", "10.244.16.2"], [], "10.244.16.3"),
        ("10.244.0.0/30", [], ["10.244.0.1"], "10.244.0.2"),
    ],
    ids=["first", "skips-used", "skips-gateway"],
)
def test_allocate_ip(cidr, used, reserved, expected):
    assert allocate_ip(cidr, used, reserved) == expected


def test_allocate_ip_full_range_raises():
    with pytest.raises(RuntimeError, match="is full"):
        allocate_ip("10.0.0.0/30", ["10.0.0.1", "10.0.0.2"])


def test_sandbox_names_fit_linux_interface_names():
    netns, veth = sandbox_names("0123abcd-4567-89ef-0000-000000000000")
    assert netns == "klpod-0123abcd45" and veth == "klv0123abcd45" and len(veth) <= 15


def test_default_layout_has_cpu_and_a100_nodes():
    cpu, gpu = parse_layout(DEFAULT_LAYOUT, 11250, "10.244.0.0/16")
    assert (cpu.name, cpu.gpus, cpu.kubelet_port, cpu.pod_cidr) == ("kubelab-cpu", 0, 11250, "10.244.16.0/20")
    assert (gpu.name, gpu.gpus, gpu.kubelet_port, gpu.pod_cidr) == ("kubelab-gpu-a100", 4, 11251, "10.244.32.0/20")
    node = make_node(gpu)
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert make_node(cpu)["spec"]["taints"] == []


def test_layout_adds_a_v100_node_in_one_entry():
    layout = {"nodes": [*DEFAULT_LAYOUT["nodes"], {"name": "kubelab-gpu-v100", "gpus": 2,
                                                   "gpu_product": "NVIDIA-V100-SXM2-32GB"}]}
    v100 = parse_layout(layout, 11250, "10.244.0.0/16")[2]
    status = make_node_status(v100, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    assert status["allocatable"]["nvidia.com/gpu"] == "2"
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 11252}}
    assert status["addresses"][0] == {"type": "InternalIP", "address": "127.0.0.1"}


@pytest.mark.parametrize(
    ("layout", "match"),
    [({"nodes": []}, "non-empty"), ({"nodes": [{"name": "a", "gpu": 1}]}, "unknown field"),
     ({"nodes": [{"name": "a"}, {"name": "a"}]}, "duplicate"), ({"nodes": [{"cpu": "2"}]}, "'name' is required")],
    ids=["empty", "typo", "duplicate", "no-name"],
)
def test_bad_layouts_are_refused(layout, match):
    with pytest.raises(ValueError, match=match):
        parse_layout(layout, 11250, "10.244.0.0/16")


@pytest.mark.parametrize(
    ("number", "apiserver", "bridge", "gateway"),
    [(0, 6443, "kubelab0", "10.244.0.1"), (7, 7143, "kubelab7", "10.251.0.1")],
    ids=["default", "seven"],
)
def test_instances_do_not_overlap(number, apiserver, bridge, gateway):
    inst = Instance.numbered(number)
    assert (inst.apiserver_port, inst.bridge, inst.gateway) == (apiserver, bridge, gateway)


def test_component_commands_keep_everything_on_loopback(tmp_path):
    pair = CertPair(Path("c"), Path("k"))
    cmds = component_commands(Instance(), Layout(tmp_path), Path("/bin"), ClusterPki(pair, pair, pair, pair, pair),
                              "/usr/bin/etcd")
    api = cmds["kube-apiserver"]
    for flag in ("--service-cluster-ip-range=127.100.0.0/16", "--kubelet-preferred-address-types=InternalIP",
                 "--bind-address=127.0.0.1", "--allow-privileged=true"):
        assert flag in api
    assert "--unsafe-no-fsync" in cmds["etcd"]
    assert first_service_ip() == "127.100.0.1"


# ---- volumes and provisioner ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "expected"),
    [(None, {"a": (b"A", 0o644), "b": (b"B", 0o644)}),
     ([{"key": "a", "path": "dir/x.conf", "mode": 0o600}], {"dir/x.conf": (b"A", 0o600)})],
    ids=["all-keys", "items"],
)
def test_key_files(items, expected):
    assert key_files({"a": b"A", "b": b"B"}, items, None, "cm", optional=False) == expected


def test_volume_files_for_a_secret_decode_base64():
    vol = {"name": "s", "secret": {"secretName": "sec", "defaultMode": 0o400}}
    assert volume_files(vol, pod(), CMS.get, SECRETS.get) == {"token": (b"s3cret", 0o400)}


def test_mount_plan_with_sub_path_and_read_only():
    container = {"volumeMounts": [{"name": "home", "mountPath": "/home/u", "subPath": "u"},
                                  {"name": "cfg", "mountPath": "/etc/x.conf", "subPath": "x.conf", "readOnly": True}]}
    plan = mount_plan(container, {"home": "/v/pvc-1", "cfg": "/p/cfg"}, {})
    assert plan == [Mount("/v/pvc-1/u", "/home/u"), Mount("/p/cfg/x.conf", "/etc/x.conf", True)]


@pytest.mark.parametrize(
    ("mounts", "match"),
    [([{"name": "nope", "mountPath": "/x"}], "no volume named"),
     ([{"name": "home", "mountPath": "/x", "subPath": "../escape"}], "stay inside")],
    ids=["unknown-volume", "escaping-subpath"],
)
def test_mount_plan_refuses(mounts, match):
    with pytest.raises(PodConfigError, match=match):
        mount_plan({"volumeMounts": mounts}, {"home": "/v"}, {})


def test_provisioned_volume_is_pre_bound_to_its_claim(tmp_path):
    claim = {"metadata": {"name": "home", "namespace": "ns", "uid": "u-1"},
             "spec": {"storageClassName": "kubelab-local", "accessModes": ["ReadWriteMany"],
                      "resources": {"requests": {"storage": "5Gi"}}}, "status": {"phase": "Pending"}}
    assert wants_volume(claim)
    pv = make_volume(claim, tmp_path)
    assert pv["metadata"]["name"] == "pvc-u-1"
    assert pv["spec"]["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "ns",
                                      "name": "home", "uid": "u-1"}
    assert pv["spec"]["hostPath"]["path"] == str(tmp_path / "pvc-u-1")
    assert pv["spec"]["capacity"] == {"storage": "5Gi"} and pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert not wants_volume({**claim, "spec": {**claim["spec"], "volumeName": "pvc-u-1"}})
    assert not wants_volume({**claim, "spec": {**claim["spec"], "storageClassName": "other"}})


# ---- preflight -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "words"),
    [(preflight.check_root(1000), ["needs root", "uid 1000"]),
     (preflight.check_apt(None, "build it"), ["apt-get is not on PATH", "build it"]),
     (preflight.check_disk(Path("/c"), 2**20, 4 * 2**30, "building"), ["not enough disk space", "4.00 GiB", "/c"])],
    ids=["root", "apt", "disk"],
)
def test_preflight_failures_are_one_clear_line(message, words):
    assert message is not None and "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "message",
    [preflight.check_root(0), preflight.check_apt("/usr/bin/apt-get", "x"),
     preflight.check_disk(Path("/c"), 5 * 2**30, 4 * 2**30, "building")],
    ids=["root", "apt", "disk"],
)
def test_preflight_passes(message):
    assert message is None


def test_existing_parent_walks_up(tmp_path):
    assert preflight.existing_parent(tmp_path / "a" / "b") == tmp_path


def test_layout_json_round_trips(tmp_path):
    from kubelab.devcluster.nodes import layout_json, load_layout

    specs = parse_layout(DEFAULT_LAYOUT, 11250, "10.244.0.0/16")
    path = tmp_path / "nodes.json"
    path.write_text(layout_json(specs))
    assert load_layout(path, 1, "10.9.0.0/16") == specs
    assert json.loads(path.read_text())["nodes"][1]["gpus"] == 4


def test_config_map_binary_data_becomes_exact_file_bytes_and_text_env():
    cms = {"files": {"text": "T", "blob": b"\x00\xffbin"}}
    vol = {"name": "f", "configMap": {"name": "files", "items": [{"key": "blob", "path": "a/b.bin"}]}}
    assert volume_files(vol, pod(), cms.get, SECRETS.get) == {"a/b.bin": (b"\x00\xffbin", 0o644)}
    env = resolve_env(pod(), {"name": "m", "envFrom": [{"configMapRef": {"name": "files"}}]}, cms.get, SECRETS.get, {})
    assert env["text"] == "T" and env["blob"].endswith("bin")
