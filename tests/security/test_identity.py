"""The identity rule (``kubelab.core.naming``): no two JupyterHub names share a Kubernetes value.

Property tests over arbitrary names (hypothesis), plus each name's image used as a name: the
attack of issue 9 was a user named exactly like another user's derived value
(``john.doe`` → ``john-doe-30f69670``, a valid name that mapped to itself). Also the pure home
decision of ``kubelab.core.home`` for the upgrade from kubelab 0.1's naming.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kubelab.core.home import HomeChoice, HomeClaimError, choose_home_claim, home_candidates
from kubelab.core.naming import (
    DEFAULT_SERVER_LABEL,
    HASH_MARKER,
    home_claim_name,
    is_safe,
    legacy_home_claim_name,
    legacy_safe_name,
    server_label,
    slug,
    user_label,
)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

# Every code point, lone surrogates included (JSON can carry them), plus names that look like
# kubelab's own values, so that hypothesis also tries the images of other names as names.
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
NAMES = st.one_of(
    st.text(ANY_CHAR, max_size=90),
    st.text(st.sampled_from("abcz019-.\n_@A"), max_size=70),
    st.from_regex(r"[a-z0-9][-a-z0-9]{0,60}[a-z0-9]", fullmatch=True),
)
LABEL_FUNCTIONS = [
    pytest.param(user_label, id="user_label"),
    pytest.param(home_claim_name, id="home_claim_name"),
    pytest.param(server_label, id="server_label"),
    pytest.param(lambda n: slug(n, 40), id="slug-40"),
]


@pytest.mark.parametrize("derive", LABEL_FUNCTIONS)
@given(a=NAMES, b=NAMES)
@settings(max_examples=400, deadline=None)
@example(a="john.doe", b="john-doe-30f69670")
@example(a="default", b="")
@example(a="Alice", b="alice")
@example(a="a--b", b="a-b")
def test_distinct_names_never_share_a_value(derive, a: str, b: str) -> None:
    if a != b:
        assert derive(a) != derive(b), (a, b)


@pytest.mark.parametrize("derive", LABEL_FUNCTIONS)
@given(name=NAMES)
@settings(max_examples=400, deadline=None)
@example(name="john.doe")
@example(name="")
@example(name="x" * 200)
@example(name="\ud800")
def test_the_image_of_a_name_used_as_a_name_maps_elsewhere(derive, name: str) -> None:
    """A user who takes another user's derived value as their name gets a different value."""
    value = derive(name)
    assert DNS_LABEL.fullmatch(value) and len(value) <= 63, value
    # the image, and the slug part of it (what a user would have to type to be "home-x")
    for image in {value, value.removeprefix("home-")}:
        if image != name:
            assert derive(image) != value, (name, image)


@given(name=NAMES)
@settings(max_examples=400, deadline=None)
def test_safe_names_are_kept_and_others_are_marked(name: str) -> None:
    value = slug(name)
    if is_safe(name):
        assert value == name
    else:
        assert value != name and HASH_MARKER in value
        prefix, _, digest = value.rpartition(HASH_MARKER)
        assert re.fullmatch(r"[0-9a-f]{32}", digest), "128 bits of hash"
        assert prefix and "--" not in prefix


@given(name=st.text(ANY_CHAR, min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_no_named_server_takes_the_default_servers_label(name: str) -> None:
    assert server_label(name) != DEFAULT_SERVER_LABEL
    assert server_label("") == DEFAULT_SERVER_LABEL


CASES = [
    ("alice", "alice", "home-alice"),
    ("bob-2", "bob-2", "home-bob-2"),
    ("john-doe-30f69670", "john-doe-30f69670", "home-john-doe-30f69670"),
    ("john.doe", "john-doe---30f69670bba25e88a97e749a67b8b93d", "home-john-doe---30f69670bba25e88a97e749a67b8b93d"),
    ("a--b", "a-b---90827a2e56361a8fd77208d8b32b17de", "home-a-b---90827a2e56361a8fd77208d8b32b17de"),
]


@pytest.mark.parametrize(("name", "label", "claim"), CASES, ids=[c[0] for c in CASES])
def test_values_are_stable(name: str, label: str, claim: str) -> None:
    """The values are part of the cluster's state: changing them orphans labels and homes."""
    assert (user_label(name), home_claim_name(name)) == (label, claim)


def test_the_reported_collision_is_gone() -> None:
    assert legacy_safe_name("john.doe") == legacy_safe_name("john-doe-30f69670") == "john-doe-30f69670"
    assert user_label("john.doe") != user_label("john-doe-30f69670")
    assert home_claim_name("john.doe") != home_claim_name("john-doe-30f69670")
    assert server_label("default") != server_label("")


LEGACY = [
    ("alice", None),  # unchanged names have no legacy claim to look for
    ("john.doe", "home-john-doe-30f69670"),
    ("Alice", "home-alice-3bc51062"),
    ("a--b", "home-a--b"),
    ("alice\n", None),  # kubelab 0.1 produced the invalid name 'home-alice\n': nothing to find
]


@pytest.mark.parametrize(("name", "claim"), LEGACY, ids=[repr(c[0]) for c in LEGACY])
def test_legacy_home_claim_name(name: str, claim: str | None) -> None:
    assert legacy_home_claim_name(name) == claim


NEW_JD = home_claim_name("john.doe")
OLD_JD = "home-john-doe-30f69670"
KS = "hub.jupyter.org/username"  # KubeSpawner writes it on every PVC it creates
KL = "kubelab.io/username"

HOME = [
    ("fresh-user", "john.doe", {}, HomeChoice(NEW_JD)),
    ("legacy-claim-of-this-user-kept", "john.doe", {OLD_JD: {KS: "john.doe"}}, HomeChoice(OLD_JD, legacy=True, exists=True)),
    ("legacy-claim-by-kubelab-annotation", "john.doe", {OLD_JD: {KL: "john.doe"}}, HomeChoice(OLD_JD, legacy=True, exists=True)),
    ("legacy-claim-of-another-user-not-adopted", "john.doe", {OLD_JD: {KS: "john-doe-30f69670"}}, HomeChoice(NEW_JD)),
    ("legacy-claim-without-owner-not-adopted", "john.doe", {OLD_JD: {}}, HomeChoice(NEW_JD)),
    ("kubelab-annotation-decides-over-kubespawners", "john.doe", {OLD_JD: {KL: "mallory", KS: "john.doe"}},
     HomeChoice(NEW_JD)),
    ("current-claim-wins", "john.doe", {NEW_JD: {KL: "john.doe"}, OLD_JD: {KS: "john.doe"}},
     HomeChoice(NEW_JD, exists=True)),
    ("current-claim-made-by-hand", "john.doe", {NEW_JD: {}}, HomeChoice(NEW_JD, exists=True)),
    ("owner-of-the-claim-named-like-them", "john-doe-30f69670", {OLD_JD: {KS: "john-doe-30f69670"}},
     HomeChoice(OLD_JD, exists=True)),
]


@pytest.mark.parametrize(("user", "found", "expected"), [c[1:] for c in HOME], ids=[c[0] for c in HOME])
def test_choose_home_claim(user: str, found: dict, expected: HomeChoice) -> None:
    assert choose_home_claim(user, found) == expected


def test_a_user_named_like_another_users_old_claim_is_refused_it() -> None:
    """``john-doe-30f69670``'s own name is ``home-john-doe-30f69670``: john.doe's pre-upgrade home."""
    with pytest.raises(HomeClaimError, match="home-john-doe-30f69670 that would be your home belongs to another user"):
        choose_home_claim("john-doe-30f69670", {OLD_JD: {KS: "john.doe"}})
    assert home_candidates("john-doe-30f69670") == [OLD_JD]
    assert home_candidates("john.doe") == [NEW_JD, OLD_JD]
