"""Validation of ``user_options``: the same rules for the spawn form and the REST API.

The chain, as module-level steps (each testable without a spawner):

1. :func:`offered_profiles` (initialise): the catalogue's profiles the user's groups allow, with
   the default resolved;
2. :func:`validate_user_options` (validate + load): checks every key and value against the
   catalogue and returns a :class:`Selection`;
3. :func:`kubelab.spawner.objects.spawn_settings` (apply): the spawner settings for the selection,
   computed on a clean base.

Errors are :class:`OptionsError` with an HTTP status: 400 for an unknown key (listing the allowed
keys) or a value outside the allowed set, 403 for a profile or choice the user may not use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubelab.core.catalogue import Catalogue, GpuClass, Image, Profile

#: Keys ``user_options`` may hold.
ALLOWED_KEYS: tuple[str, ...] = ("gpus", "image", "profile")
#: Form fields besides ``profile``: ``image--<slug>`` and ``gpus--<slug>`` (one pair per profile).
FORM_SEPARATOR = "--"
#: KubeSpawner's naming of the same fields (its form, fancy-profiles): ``profile-option-<slug>--<key>``.
KUBESPAWNER_FIELD_PREFIX = "profile-option-"
#: KubeSpawner's suffix of an option's free-form value: ``<key>--unlisted-choice``.
UNLISTED_SUFFIX = "--unlisted-choice"
# form fields that carry no option: JupyterHub's XSRF token, and fancy-profiles' radio buttons,
# which repeat the chosen slug that its hidden ``profile`` field posts
_FORM_IGNORED = frozenset({"_xsrf", "select-profile"})


class OptionsError(ValueError):
    """``user_options`` were refused.

    Attributes:
        status: HTTP status: 400 (malformed or outside the allowed set) or 403 (not permitted).
        message: Plain words for the user, naming the key and what is allowed.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SpawnChoice(Protocol):
    """What the spawner, the quota and the messages need of a validated choice, from either
    source: a catalogue :class:`Selection` or a ``profile_list``
    :class:`~kubelab.spawner.profile_list.ListSelection`."""

    @property
    def slug(self) -> str: ...  # noqa: D102

    @property
    def name(self) -> str: ...  # noqa: D102

    @property
    def gpus(self) -> int: ...  # noqa: D102

    @property
    def gpu_class(self) -> GpuClass | None: ...  # noqa: D102

    def describe(self) -> str: ...  # noqa: D102

    def as_options(self) -> dict[str, Any]: ...  # noqa: D102


@dataclass(frozen=True)
class Selection:
    """A validated choice: what to start.

    Attributes:
        profile: The profile.
        image: The image.
        gpus: GPUs asked for (0 for CPU profiles).
        gpu_class: The profile's GPU class, None for CPU profiles.
    """

    profile: Profile
    image: Image
    gpus: int = 0
    gpu_class: GpuClass | None = None

    @property
    def slug(self) -> str:
        """The profile's slug."""
        return self.profile.slug

    @property
    def name(self) -> str:
        """The profile's name."""
        return self.profile.name

    def as_options(self) -> dict[str, Any]:
        """The canonical ``user_options`` for this selection."""
        opts: dict[str, Any] = {"profile": self.profile.slug, "image": self.image.key}
        if self.gpu_class is not None:
            opts["gpus"] = self.gpus
        return opts

    def describe(self) -> str:
        """``"A100 GPU (1 × NVIDIA A100 80GB, PyTorch (CUDA))"``."""
        gpu = f"{self.gpus} × {self.gpu_class.display_name}, " if self.gpu_class else ""
        return f"{self.profile.name} ({gpu}{self.image.display_name})"


def offered_profiles(catalogue: Catalogue, groups: Iterable[str]) -> list[Profile]:
    """Profiles a member of ``groups`` may use, in catalogue order."""
    return catalogue.profiles_for(groups)


def default_profile(profiles: Sequence[Profile]) -> Profile | None:
    """The profile marked default, else the first one; None when there is none."""
    return next((p for p in profiles if p.default), profiles[0] if profiles else None)


def _join(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values) or "(none)"


_COUNT = re.compile(r"[0-9]{1,5}")


def _as_count(value: Any) -> int | None:
    """Accept an int or a decimal string (form data); refuse bools, floats and the rest."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # fullmatch on ASCII digits: str.isdigit() also takes "\u0661" and strip() took " 1\n"
    if isinstance(value, str) and _COUNT.fullmatch(value):
        return int(value)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_user_options(options: Any, catalogue: Catalogue, groups: Iterable[str]) -> Selection:
    """Check ``options`` for a member of ``groups`` and resolve defaults.

    Args:
        options: ``user_options`` as received (form or REST JSON body); ``{}`` picks the defaults.
        catalogue: The platform catalogue.
        groups: The user's JupyterHub groups.

    Returns:
        The validated :class:`Selection`.

    Raises:
        OptionsError: 400 for unknown keys (message lists the allowed keys), wrong types, and values
            outside the allowed set; 403 for a profile (or an image) the user's groups do not allow.
    """
    groups = sorted(set(groups))
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise OptionsError(400, f"user options must be an object; allowed keys: {_join(ALLOWED_KEYS)}")
    unknown = sorted(str(k) for k in options if k not in ALLOWED_KEYS)
    if unknown:
        raise OptionsError(
            400, f"unknown option{'s' if len(unknown) > 1 else ''} {_join(map(repr, unknown))}; allowed keys: {_join(ALLOWED_KEYS)}"
        )
    offered = offered_profiles(catalogue, groups)

    slug = options.get("profile")
    if slug is None or slug == "":
        profile = default_profile(offered)
        if profile is None:
            raise OptionsError(403, f"no profile is available to your groups ({_join(groups)})")
    else:
        if not isinstance(slug, str):
            raise OptionsError(400, f"profile must be a string; allowed: {_join(p.slug for p in offered)}")
        try:
            profile = catalogue.profile(slug)
        except KeyError:
            raise OptionsError(400, f"unknown profile {_short(slug)}; allowed: {_join(p.slug for p in offered)}") from None
        if not profile.allows(groups):
            raise OptionsError(
                403,
                f"profile {slug!r} is only for members of {_join(sorted(profile.groups))}; "
                f"you are in: {_join(groups)}",
            )

    image_key = options.get("image")
    if image_key is None or image_key == "":
        image = catalogue.images[profile.images[0]]
    else:
        if not isinstance(image_key, str):
            raise OptionsError(400, f"image must be a string; allowed with {profile.slug!r}: {_join(profile.images)}")
        if image_key not in profile.images:
            elsewhere = [p.slug for p in catalogue.profiles if image_key in p.images]
            if elsewhere and not any(p.slug in elsewhere for p in offered):
                raise OptionsError(
                    403, f"image {image_key!r} is only offered with profiles you may not use ({_join(elsewhere)})"
                )
            raise OptionsError(
                400, f"image {_short(image_key)} is not offered with profile {profile.slug!r}; allowed: {_join(profile.images)}"
            )
        image = catalogue.images[image_key]

    raw_gpus = options.get("gpus")
    if profile.gpu is None:
        if raw_gpus not in (None, "", 0, "0") or isinstance(raw_gpus, bool):
            raise OptionsError(400, f"profile {profile.slug!r} has no GPU; gpus must be 0 or left out")
        return Selection(profile=profile, image=image)
    gpu_class = catalogue.gpu_classes[profile.gpu.gpu_class]
    if raw_gpus is None or raw_gpus == "":
        gpus = profile.gpu.counts[0]
    else:
        count = _as_count(raw_gpus)
        if count is None or count not in profile.gpu.counts:
            raise OptionsError(
                400, f"gpus {_short(raw_gpus)} is not allowed with profile {profile.slug!r}; allowed: {_join(profile.gpu.counts)}"
            )
        gpus = count
    return Selection(profile=profile, image=image, gpus=gpus, gpu_class=gpu_class)


def options_from_form(formdata: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Turn the spawn form's fields into ``user_options``, in kubelab's or KubeSpawner's naming.

    * kubelab's picker posts ``profile`` plus ``image--<slug>`` / ``gpus--<slug>`` for every profile;
    * KubeSpawner's form and fancy-profiles post ``profile`` plus ``profile-option-<slug>--<key>``
      and ``profile-option-<slug>--<key>--unlisted-choice`` for every profile.

    Only the chosen profile's fields are kept, under their key (``image``, ``gpus``, ``<key>``,
    ``<key>--unlisted-choice``). Any other field is passed on under its own name, so that the
    validation refuses it exactly as it would refuse it over REST.

    Args:
        formdata: Field name → list of values, as JupyterHub passes it.
    """
    def first(name: str) -> str:
        values = formdata.get(name) or [""]
        value = values[0]
        return value.decode() if isinstance(value, bytes) else value

    slug = first("profile")
    options: dict[str, Any] = {}
    if slug:
        options["profile"] = slug
    for name in formdata:
        if name in _FORM_IGNORED or name == "profile":
            continue
        if name.startswith(KUBESPAWNER_FIELD_PREFIX):
            owner, sep, key = name[len(KUBESPAWNER_FIELD_PREFIX):].partition(FORM_SEPARATOR)
            if sep and owner and key:
                if owner == slug and first(name) != "":
                    options[key] = first(name)
                continue
        key, sep, owner = name.partition(FORM_SEPARATOR)
        if sep and key in ("image", "gpus") and owner:
            if owner == slug and first(name) != "":
                options[key] = first(name)
            continue
        options[name] = first(name)
    return options
