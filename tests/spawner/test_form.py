"""The picker: views with availability and quota, and the server-rendered HTML."""

from __future__ import annotations

import pytest
from kube_objects import A100, node, pod

from kubelab.core.availability import gpu_availability
from kubelab.core.records import node_info, pod_info
from kubelab.spawner.form import profile_views, render_form


def views_for(catalogue, groups, used_gpus=0, remaining=None):
    pods = [pod_info(pod("x", gpus=used_gpus, node_name="a-1"))] if used_gpus else []
    av = gpu_availability([node_info(node("a-1", gpus=4, product=A100))], pods, catalogue.gpu_classes)
    return profile_views(catalogue.profiles_for(groups), catalogue, av, gpus_remaining=remaining)


@pytest.mark.parametrize(
    ("groups", "slugs"),
    [(["students"], ["cpu-small"]), (["gpu-users"], ["cpu-small", "cpu-large", "a100", "v100"]),
     (["admins"], ["cpu-small", "a100", "admin-gpu"])],
    ids=["student", "gpu-user", "admin"],
)
def test_views_follow_groups(catalogue, groups, slugs):
    assert [v.slug for v in views_for(catalogue, groups)] == slugs


@pytest.mark.parametrize(
    ("used", "remaining", "reasons"),
    [
        (0, None, {1: None, 2: None, 4: None}),
        (1, None, {1: None, 2: None, 4: "only 3 of 4 NVIDIA A100 80GB free"}),
        (0, 1, {1: None, 2: "your GPU quota allows 1 more", 4: "your GPU quota allows 1 more"}),
        (4, None, {1: "only 0 of 4 NVIDIA A100 80GB free", 2: "only 0 of 4 NVIDIA A100 80GB free", 4: "only 0 of 4 NVIDIA A100 80GB free"}),
    ],
    ids=["all-free", "one-used", "quota-left-1", "full"],
)
def test_count_reasons(catalogue, used, remaining, reasons):
    (a100,) = [v for v in views_for(catalogue, ["gpu-users"], used, remaining) if v.slug == "a100"]
    assert {c.count: c.reason for c in a100.counts} == reasons
    assert a100.available is any(r is None for r in reasons.values())
    assert a100.availability == f"{4 - used} of 4 NVIDIA A100 80GB free"


def test_v100_without_nodes_is_greyed_with_reason(catalogue):
    (v100,) = [v for v in views_for(catalogue, ["gpu-users"]) if v.slug == "v100"]
    assert not v100.available and v100.reason == "no schedulable NVIDIA V100 node in the cluster"
    html = render_form(views_for(catalogue, ["gpu-users"]), {}, "/hub/api/kubelab/availability")
    assert 'id="kl-radio-v100" value="v100" disabled' in html
    assert "Unavailable: no schedulable NVIDIA V100 node in the cluster" in html


def test_form_groups_and_defaults(catalogue):
    html = render_form(views_for(catalogue, ["gpu-users"], used_gpus=1), {}, "/hub/api/kubelab/availability")
    assert '<legend>CPU servers</legend>' in html and '<legend>GPU servers</legend>' in html
    assert 'id="kl-radio-cpu-small" value="cpu-small" checked' in html  # the catalogue default
    assert ('<option value="4" data-count="4" title="only 3 of 4 NVIDIA A100 80GB free" disabled>4 GPUs (unavailable)</option>'
            in html)
    assert 'name="gpus--a100"' in html and 'name="image--a100"' in html
    assert "Not now: 4 GPUs: only 3 of 4 NVIDIA A100 80GB free" in html


def test_form_for_student_has_no_gpu_group(catalogue):
    html = render_form(views_for(catalogue, ["students"]), {}, "/x")
    assert "GPU servers" not in html and "a100" not in html


def test_last_choice_is_remembered(catalogue):
    last = {"profile": "a100", "image": "torch-cpu", "gpus": 2}
    html = render_form(views_for(catalogue, ["gpu-users"]), last, "/x")
    assert 'id="kl-radio-a100" value="a100" checked' in html
    assert '<option value="torch-cpu" selected>' in html
    assert '<option value="2" data-count="2" selected>' in html


def test_last_choice_ignored_when_it_cannot_start(catalogue):
    html = render_form(views_for(catalogue, ["gpu-users"], used_gpus=4), {"profile": "a100", "gpus": 1}, "/x")
    assert 'id="kl-radio-cpu-small" value="cpu-small" checked' in html
    assert 'id="kl-radio-a100" value="a100" disabled' in html


def test_names_are_escaped(catalogue):
    from dataclasses import replace

    views = views_for(catalogue, ["students"])
    views[0] = replace(views[0], name="<script>x</script>", description='"quoted" & more')
    html = render_form(views, {}, "/x")
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html and "&quot;quoted&quot; &amp; more" in html
