"""user_options validation: the same table drives the unit test and (in test_spawn_rest) the REST API."""

from __future__ import annotations

import pytest

from kubelab.spawner.options import OptionsError, options_from_form, validate_user_options

GPU = ["gpu-users"]
STUDENT = ["students"]

# (id, groups, options, status, message regex) -- every case must be refused
REFUSED = [
    ("unknown-key", GPU, {"profile": "cpu-small", "cpu_limit": 64}, 400, r"unknown option 'cpu_limit'; allowed keys: gpus, image, profile"),
    ("unknown-keys-listed", GPU, {"node_selector": {}, "image_pull_policy": "x"}, 400, r"unknown options 'image_pull_policy', 'node_selector'"),
    ("kubespawner-override", GPU, {"profile": "a100", "kubespawner_override": {"image": "evil"}}, 400, r"allowed keys"),
    ("raw-image-ref", GPU, {"profile": "cpu-small", "image": "evil/miner:latest"}, 400, r"image 'evil/miner:latest' is not offered with profile 'cpu-small'; allowed: scipy, torch-cpu"),
    ("gpu-profile-outside-group", STUDENT, {"profile": "a100"}, 403, r"profile 'a100' is only for members of admins, gpu-users; you are in: students"),
    ("gpu-profile-no-groups", [], {"profile": "v100", "gpus": 1}, 403, r"only for members of gpu-users; you are in: \(none\)"),
    ("cpu-large-outside-group", STUDENT, {"profile": "cpu-large"}, 403, r"only for members of gpu-users"),
    ("admin-profile-as-gpu-user", GPU, {"profile": "admin-gpu"}, 403, r"only for members of admins"),
    ("admin-image-via-allowed-profile", GPU, {"profile": "a100", "image": "secret-gpu"}, 403, r"image 'secret-gpu' is only offered with profiles you may not use \(admin-gpu\)"),
    ("unknown-profile", GPU, {"profile": "h100"}, 400, r"unknown profile 'h100'; allowed: cpu-small, cpu-large, a100, v100"),
    ("profile-not-string", GPU, {"profile": ["a100"]}, 400, r"profile must be a string"),
    ("gpus-not-allowed", GPU, {"profile": "a100", "gpus": 3}, 400, r"gpus 3 is not allowed with profile 'a100'; allowed: 1, 2, 4"),
    ("gpus-too-many", GPU, {"profile": "a100", "gpus": 99}, 400, r"gpus 99 is not allowed"),
    ("gpus-negative", GPU, {"profile": "a100", "gpus": -1}, 400, r"gpus -1 is not allowed"),
    ("gpus-float", GPU, {"profile": "a100", "gpus": 1.0}, 400, r"gpus 1.0 is not allowed"),
    ("gpus-bool", GPU, {"profile": "a100", "gpus": True}, 400, r"gpus True is not allowed"),
    ("gpus-string-junk", GPU, {"profile": "a100", "gpus": "1; rm -rf"}, 400, r"is not allowed with profile 'a100'"),
    ("gpus-on-cpu-profile", GPU, {"profile": "cpu-small", "gpus": 1}, 400, r"profile 'cpu-small' has no GPU"),
    ("gpus-zero-on-gpu-profile", GPU, {"profile": "a100", "gpus": 0}, 400, r"gpus 0 is not allowed"),
    ("gpu-image-on-cpu-profile", GPU, {"profile": "cpu-small", "image": "torch-gpu"}, 400, r"image 'torch-gpu' is not offered with profile 'cpu-small'"),
    ("image-not-string", GPU, {"profile": "cpu-small", "image": {"ref": "x"}}, 400, r"image must be a string"),
    ("options-not-object", GPU, ["a100"], 400, r"user options must be an object"),
    ("student-gpus-on-default", STUDENT, {"gpus": 1}, 400, r"profile 'cpu-small' has no GPU"),
]


@pytest.mark.parametrize(("groups", "options", "status", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused(catalogue, groups, options, status, message):
    with pytest.raises(OptionsError, match=message) as info:
        validate_user_options(options, catalogue, groups)
    assert info.value.status == status


ACCEPTED = [
    ("empty-is-default", STUDENT, {}, ("cpu-small", "scipy", 0)),
    ("none-is-default", GPU, None, ("cpu-small", "scipy", 0)),
    ("cpu-with-image", GPU, {"profile": "cpu-small", "image": "torch-cpu"}, ("cpu-small", "torch-cpu", 0)),
    ("gpu-default-count", GPU, {"profile": "a100"}, ("a100", "torch-gpu", 1)),
    ("gpu-count-from-form", GPU, {"profile": "a100", "gpus": "2", "image": "torch-cpu"}, ("a100", "torch-cpu", 2)),
    ("gpu-count-int", ["admins"], {"profile": "a100", "gpus": 4}, ("a100", "torch-gpu", 4)),
    ("cpu-gpus-zero", STUDENT, {"profile": "cpu-small", "gpus": 0}, ("cpu-small", "scipy", 0)),
]


@pytest.mark.parametrize(("groups", "options", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted(catalogue, groups, options, expected):
    sel = validate_user_options(options, catalogue, groups)
    assert (sel.profile.slug, sel.image.key, sel.gpus) == expected


FORMS = [
    ("picks-chosen-profile-fields", {"profile": ["a100"], "image--a100": ["torch-cpu"], "gpus--a100": ["2"],
                                     "image--cpu-small": ["scipy"], "_xsrf": ["t"]},
     {"profile": "a100", "image": "torch-cpu", "gpus": "2"}),
    ("cpu-profile", {"profile": ["cpu-small"], "image--cpu-small": ["torch-cpu"], "gpus--a100": ["1"]},
     {"profile": "cpu-small", "image": "torch-cpu"}),
    ("extra-field-passed-on-for-refusal", {"profile": ["cpu-small"], "cpu_limit": ["64"]},
     {"profile": "cpu-small", "cpu_limit": "64"}),
    ("no-profile", {}, {}),
]


@pytest.mark.parametrize(("formdata", "expected"), [c[1:] for c in FORMS], ids=[c[0] for c in FORMS])
def test_options_from_form(formdata, expected):
    assert options_from_form(formdata) == expected


def test_form_extra_field_refused_like_rest(catalogue):
    opts = options_from_form({"profile": ["cpu-small"], "image": ["evil"]})
    # a bare "image" field (not image--<slug>) is passed on and refused by the same rule as REST
    with pytest.raises(OptionsError, match="image 'evil' is not offered with profile 'cpu-small'") as info:
        validate_user_options(opts, catalogue, GPU)
    assert info.value.status == 400
