"""KubeSpawner's profile_list as a profile source: each step of the chain, and how it combines
with the catalogue. The differential test against stock KubeSpawner is test_differential.py."""

from __future__ import annotations

import logging

import pytest
from traitlets.config import Config

from kubelab.core.catalogue import CatalogueError, GpuClass
from kubelab.spawner.form import catalogue_entry, listed_entry, profile_views, render_profile_template
from kubelab.spawner.offers import check_profile_sources, load_profile_list, validate_offer
from kubelab.spawner.options import OptionsError, Selection, options_from_form
from kubelab.spawner.profile_list import (
    ListSelection,
    ProfileListError,
    apply_overrides,
    check_profile_list,
    gpu_request,
    initialise_profile_list,
    merge_overrides,
    profile_overrides,
    static_gpu_requests,
    validate_list_options,
)
from kubelab.spawner.spawner import LabSpawner

SETTABLE = set(LabSpawner.class_trait_names(config=True)).__contains__

IMAGE_OPTION = {
    "display_name": "Image",
    "choices": {
        "base": {"display_name": "base", "kubespawner_override": {"image": "jupyter/base-notebook:latest"}},
        "minimal": {"display_name": "minimal", "default": True, "kubespawner_override": {"image": "jupyter/minimal-notebook:latest"}},
    },
    "unlisted_choice": {
        "enabled": True, "display_name": "Other image", "validation_regex": "^jupyter/.+:.+$",
        "validation_message": "Must be an image matching ^jupyter/<name>:<tag>$",
        "kubespawner_override": {"image": "{value}", "extra_labels": {"tag": "{value}"}},
    },
}
GPU_LIST = [
    {"display_name": "Small", "kubespawner_override": {"cpu_limit": 1}},
    {"display_name": "GPU Server", "slug": "gpu", "allowed_groups": ["gpu-users"],
     "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "1"}},
     "profile_options": {"image": IMAGE_OPTION,
                         "size": {"display_name": "GPUs", "choices": {
                             "one": {"display_name": "1 GPU"},
                             "two": {"display_name": "2 GPUs", "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "2"}}}}}}},
]


def initialised(raw=GPU_LIST):
    return initialise_profile_list(raw)


def test_initialise_follows_kubespawner():
    profiles = initialise_profile_list({"b": {"display_name": "B Two"}, "a": {"display_name": "A One", "profile_options": {
        "x": {"display_name": "X", "choices": {"p": {"display_name": "P"}, "q": {"display_name": "Q"}}}}}})
    assert [p["slug"] for p in profiles] == ["a-one", "b-two"]  # a dict's values in key order, slugified names
    assert [p.get("default") for p in profiles] == [True, None]  # the first becomes the default
    option = profiles[0]["profile_options"]["x"]
    assert option["choices"]["p"]["default"] is True and "default" not in option["choices"]["q"]
    assert option["unlisted_choice"] == {"enabled": False}
    enabled = initialise_profile_list([{"display_name": "Z", "profile_options": {"i": {"unlisted_choice": {"enabled": True}}}}])
    assert enabled[0]["profile_options"]["i"]["unlisted_choice"]["display_name_in_choices"] == "Other..."


def _with(**changes):
    profile = {"display_name": "P", "slug": "p", **changes}
    return initialise_profile_list([profile])


@pytest.mark.parametrize(
    ("profiles", "path", "problem"),
    [
        pytest.param(_with(kubespawner_overide={}), "profile_list[0].kubespawner_overide", "kubelab does not know this key", id="typo-profile-key"),
        pytest.param(_with(kubespawner_override={"cpu_limt": 1}), "profile_list[0].kubespawner_override.cpu_limt", "not a KubeSpawner setting", id="typo-setting"),
        pytest.param(_with(kubespawner_override={"automount_service_account_token": True}), "profile_list[0].kubespawner_override.automount_service_account_token",
                     "no Kubernetes credentials", id="credentials"),
        pytest.param(_with(kubespawner_override={"profile_list": []}), "profile_list[0].kubespawner_override.profile_list",
                     "read before a profile is chosen", id="form-setting"),
        pytest.param(_with(kubespawner_override={"extra_labels": {"kubelab.io/user": "bob"}}),
                     "profile_list[0].kubespawner_override.extra_labels.kubelab.io/user", "kubelab's own", id="kubelab-label"),
        pytest.param(_with(profile_options={"i": {"display_name": "I", "choices": {"a": {"display_name": "A", "colour": "red"}}}}),
                     "profile_list[0].profile_options.i.choices.a.colour", "kubelab does not know this key", id="choice-key"),
        pytest.param(_with(profile_options={"i": {"display_name": "I", "widget": "radio", "choices": {"a": {}}}}),
                     "profile_list[0].profile_options.i.widget", "allowed: choices", id="option-key"),
        pytest.param(_with(profile_options={"i": {"unlisted_choice": {"enabled": True, "validation_regex": "(["}}}),
                     "profile_list[0].profile_options.i.unlisted_choice.validation_regex", "does not compile", id="bad-regex"),
        pytest.param(_with(profile_options={"i": {"display_name": "I"}}), "profile_list[0].profile_options.i",
                     "no choices and no enabled unlisted_choice", id="empty-option"),
        pytest.param(_with(allowed_groups="gpu-users"), "profile_list[0].allowed_groups", "list of JupyterHub group names", id="groups-string"),
        pytest.param(_with(slug="cpu-small"), "profile_list[0].slug", "already a profile of the catalogue", id="slug-clash"),
        pytest.param(initialise_profile_list([{"display_name": "A"}, {"display_name": "A"}]), "profile_list[1].slug",
                     r"already a profile of profile_list\[0\]", id="slug-twice"),
    ],
)
def test_keys_kubelab_cannot_honour_are_named(profiles, path, problem):
    with pytest.raises(ProfileListError, match=problem) as info:
        check_profile_list(profiles, SETTABLE, taken_slugs=["cpu-small"])
    assert info.value.path == path


def test_fancy_profiles_display_keys_are_accepted():
    profiles = _with(profile_options={"image": {"display_name": "Image", "dynamic_image_building": {"enabled": True},
                                                "choices": {"a": {"display_name": "A", "description": "the A image"}},
                                                "unlisted_choice": {"enabled": True, "description_in_choices": "any"}}})
    check_profile_list(profiles, SETTABLE)


GPU = initialised()[1]


@pytest.mark.parametrize(
    ("options", "chosen"),
    [
        pytest.param({}, {"image": ("choice", "minimal"), "size": ("choice", "one")}, id="defaults"),
        pytest.param({"image": "base", "size": "two"}, {"image": ("choice", "base"), "size": ("choice", "two")}, id="choices"),
        pytest.param({"image--unlisted-choice": "jupyter/scipy-notebook:2024"}, {"image": ("unlisted", "jupyter/scipy-notebook:2024"),
                                                                               "size": ("choice", "one")}, id="unlisted"),
        pytest.param({"image": "unlisted_choice", "image--unlisted-choice": "jupyter/r:1"}, {"image": ("unlisted", "jupyter/r:1"),
                                                                                          "size": ("choice", "one")}, id="fancy-marker"),
    ],
)
def test_list_options_accepted(options, chosen):
    assert dict(validate_list_options(options, GPU).chosen) == chosen


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"image--unlisted-choice": "evil/miner:1"}, r"image--unlisted-choice 'evil/miner:1' does not match '\^jupyter/\.\+:\.\+\$': Must be",
                     id="regex"),
        pytest.param({"image": "huge"}, r"image 'huge' is not a choice of profile 'gpu'; allowed: base, minimal", id="not-a-choice"),
        pytest.param({"size--unlisted-choice": "8"}, r"unknown option 'size--unlisted-choice' for profile 'gpu'; allowed keys: profile, image, image--unlisted-choice, size",
                     id="unlisted-not-enabled"),
        pytest.param({"cpu_limit": 64}, r"unknown option 'cpu_limit'", id="unknown-key"),
        pytest.param({"image--unlisted-choice": "jupyter/{username}:1"}, r"without braces", id="braces"),
        pytest.param({"image--unlisted-choice": "jupyter/x:" + "1" * 300}, r"at most 256", id="too-long"),
        pytest.param({"image": "unlisted_choice"}, r"image--unlisted-choice is empty", id="marker-without-value"),
        pytest.param({"size": 2}, r"size must be a string", id="not-a-string"),
    ],
)
def test_list_options_refused(options, message):
    with pytest.raises(OptionsError, match=message) as info:
        validate_list_options(options, GPU)
    assert info.value.status == 400


def test_overrides_in_kubespawner_order():
    chosen = {"image": ("unlisted", "jupyter/r:1"), "size": ("choice", "two")}
    overrides = profile_overrides(GPU, chosen)
    base = {"extra_resource_limits": {"example.com/fpga": "1"}, "extra_labels": {"lab": "x", "drop": "me"}, "image": "base:1"}
    merged = merge_overrides(base, [*overrides, {"extra_labels": {"drop": None}}])
    assert merged == {
        "extra_resource_limits": {"example.com/fpga": "1", "nvidia.com/gpu": "2"},  # dicts merge, the later choice wins
        "image": "jupyter/r:1",  # {value} filled in
        "extra_labels": {"lab": "x", "tag": "jupyter/r:1"},  # None deletes a key
    }
    assert base["extra_labels"] == {"lab": "x", "drop": "me"}, "the base is never changed"


async def test_callable_overrides_get_the_spawner():
    async def later(spawner):
        return f"{spawner}-async"

    got = await apply_overrides({"environment": {"A": "1"}}, [{"image": lambda s: f"{s}:1", "environment": lambda s: {"B": s}},
                                                              {"default_url": later}], "alice")
    assert got == {"image": "alice:1", "environment": {"A": "1", "B": "alice"}, "default_url": "alice-async"}


A100 = GpuClass("a100", "NVIDIA A100 80GB", {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"})


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param({"extra_resource_limits": {"nvidia.com/gpu": "2"}, "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
                     ("a100", 2), id="catalogue-class"),
        pytest.param({"extra_resource_guarantees": {"nvidia.com/gpu": 1}}, ("nvidia.com/gpu", 1), id="no-selector-any-node"),
        pytest.param({"extra_resource_limits": {"example.com/fpga": "1"}}, (None, 0), id="not-a-gpu"),
        pytest.param({"extra_resource_limits": {"nvidia.com/gpu": "0"}}, (None, 0), id="zero"),
    ],
)
def test_gpu_request(settings, expected):
    cls, count = gpu_request(settings, {"a100": A100})
    assert (cls.key if cls else None, count) == expected


def test_static_requests_per_choice():
    requests = static_gpu_requests(GPU, {"extra_resource_limits": {}, "node_selector": {}}, {"a100": A100})
    assert {k: v[1] for k, v in requests.items()} == {None: 1, ("image", "base"): 1, ("image", "minimal"): 1, ("size", "one"): 1, ("size", "two"): 2}


@pytest.mark.parametrize(
    ("formdata", "expected"),
    [
        pytest.param({"profile": ["gpu"], "profile-option-gpu--image": ["base"], "profile-option-small--image": ["x"]},
                     {"profile": "gpu", "image": "base"}, id="kubespawner-naming"),
        pytest.param({"profile": ["gpu"], "select-profile": ["gpu"], "profile-option-gpu--image": ["unlisted_choice"],
                      "profile-option-gpu--image--unlisted-choice": ["jupyter/r:1"], "profile-option-other--image--unlisted-choice": [""]},
                     {"profile": "gpu", "image": "unlisted_choice", "image--unlisted-choice": "jupyter/r:1"}, id="fancy-profiles"),
        pytest.param({"profile": ["a100"], "profile-option-a100--image": ["torch-gpu"], "profile-option-a100--gpus": ["2"]},
                     {"profile": "a100", "image": "torch-gpu", "gpus": "2"}, id="catalogue-profile-kubespawner-naming"),
        pytest.param({"profile": ["a100"], "image--a100": ["torch-gpu"], "gpus--a100": ["1"]},
                     {"profile": "a100", "image": "torch-gpu", "gpus": "1"}, id="kubelab-naming"),
        pytest.param({"profile": ["gpu"], "profile-option-": ["x"]}, {"profile": "gpu", "profile-option-": "x"}, id="malformed-passed-on"),
    ],
)
def test_form_namings(formdata, expected):
    assert options_from_form(formdata) == expected


def test_offer_combines_both_sources(catalogue):
    profiles = load_profile_list(GPU_LIST, catalogue, SETTABLE)
    default = validate_offer({}, catalogue, profiles, ["students"])
    assert isinstance(default, ListSelection) and default.slug == "small"  # profile_list's default first
    assert isinstance(validate_offer({"profile": "cpu-small"}, catalogue, profiles, []), Selection)
    with pytest.raises(OptionsError, match=r"profile 'gpu' is only for members of gpu-users; you are in: students") as info:
        validate_offer({"profile": "gpu"}, catalogue, profiles, ["students"])
    assert info.value.status == 403
    with pytest.raises(OptionsError, match=r"unknown profile 'nope'; allowed: small, gpu, cpu-small, cpu-large, a100, v100"):
        validate_offer({"profile": "nope"}, catalogue, profiles, ["gpu-users"])
    # a user who may use no profile_list profile gets the catalogue's default
    only_gpu = load_profile_list([GPU_LIST[1]], catalogue, SETTABLE)
    assert validate_offer({}, catalogue, only_gpu, ["students"]).slug == "cpu-small"


def test_startup_line_and_startup_error(catalogue, caplog):
    c = Config()
    assert check_profile_sources(c, catalogue, SETTABLE) is None  # nothing to combine
    c.KubeSpawner.profile_list = GPU_LIST
    with caplog.at_level(logging.INFO, logger="JupyterHub"):
        line = check_profile_sources(c, catalogue, SETTABLE)
    assert line.startswith("kubelab profiles: 2 from KubeSpawner.profile_list first (default 'small'), then 5 from the catalogue")
    assert "picker: KubeSpawner's form.html" in line
    assert [r.getMessage() for r in caplog.records] == [line]
    c.KubeSpawner.profile_list = [{"display_name": "x", "kubespawner_override": {"mem_limt": "1G"}}]
    with pytest.raises(CatalogueError, match=r"^KubeSpawner.profile_list: profile_list\[0\].kubespawner_override.mem_limt: not a KubeSpawner setting"):
        check_profile_sources(c, catalogue, SETTABLE)


def test_kubespawner_shape_marks_unfit_choices(catalogue):
    from kubelab.core.availability import ClassAvailability

    av = {"a100": ClassAvailability("a100", "NVIDIA A100 80GB", allocatable=4, requested=3, free=1, max_free_on_node=1, nodes=1)}
    (view,) = profile_views([catalogue.profile("a100")], catalogue, av, gpus_remaining=None)
    entry = catalogue_entry(view)
    gpus = entry["profile_options"]["gpus"]["choices"]
    assert gpus["1"]["display_name"] == "1 GPU" and gpus["1"]["default"] is True
    assert gpus["2"]["display_name"] == "2 GPUs (unavailable)" and gpus["2"]["description"].startswith("Unavailable: only 1 of 4")
    assert "1 of 4 NVIDIA A100 80GB free" in entry["description"]
    listed = listed_entry(GPU, static_gpu_requests(GPU, {}, {"a100": A100}),
                          {"nvidia.com/gpu": ClassAvailability("nvidia.com/gpu", "nvidia.com/gpu", 1, 0, 1, 1, 1)})
    assert "kubespawner_override" not in str(listed) and "allowed_groups" not in listed
    assert listed["profile_options"]["size"]["choices"]["two"]["display_name"] == "2 GPUs (unavailable)"
    assert "1 GPU × nvidia.com/gpu · 1 of 1 nvidia.com/gpu free" in listed["description"]


def test_fancy_profiles_template_gets_the_profiles(catalogue):
    from jupyterhub_fancy_profiles import TEMPLATE_PATHS

    html = render_profile_template([{"slug": "a100", "display_name": "A100 <b>", "profile_options": {}}], {},
                                   template_paths=TEMPLATE_PATHS)
    assert 'window.profileList = [{"slug": "a100", "display_name": "A100 \\u003cb\\u003e"' in html
    assert "/hub/fancy-profiles/static/dist/form.js" in html
    stock = render_profile_template([{"slug": "a100", "display_name": "A100", "default": True, "profile_options": {}}], {})
    assert 'id="profile-item-a100"' in stock and "checked" in stock  # KubeSpawner's own form.html
