"""KubeSpawner's ``profile_list`` as a source of profiles, with KubeSpawner 7's documented semantics.

A z2jh site's ``singleuser.profileList`` becomes ``c.KubeSpawner.profile_list``; LabSpawner
offers those profiles as they are, beside (after) the catalogue's, and adds its own rules on top:
``allowed_groups`` (the group rule 2i2c's hubs use), the GPU quota, and live availability for a
profile whose overrides request a GPU resource.

The chain (CONVENTIONS item 2), each step a module-level function testable without a spawner:

1. :func:`initialise_profile_list`: copy; a dict becomes its values sorted by key; a missing
   ``slug`` comes from ``display_name`` (python-slugify, as KubeSpawner does); each option gets
   a default choice and an ``unlisted_choice`` entry; one profile is the default.
2. :func:`check_profile_list`: every key is one kubelab honours, else :class:`ProfileListError`
   naming its path (``profile_list[1].kubespawner_override.cpu_limt``).
3. :func:`validate_list_options`: ``user_options`` against one initialised profile: known keys
   only, a listed choice, or an unlisted value that matches ``validation_regex``.
4. :func:`profile_overrides`: the profile's ``kubespawner_override`` and then each option's, in
   KubeSpawner's order, with ``{value}`` filled in for unlisted choices.
5. :func:`apply_overrides`: those overrides on a copy of the configured base: dicts are merged
   recursively (``None`` deletes a key), everything else replaced, callables called with the
   spawner (and awaited when they return an awaitable).

Differences from stock KubeSpawner 7.1, all stricter or leak fixes: a value outside the choices
is a 400 (KubeSpawner raises ``KeyError``, a 500), so is an unknown key; unlisted values are
bounded (:data:`MAX_UNLISTED_LENGTH`, no braces, which KubeSpawner would expand as templates);
overrides apply on the configured base at every spawn instead of on the live spawner, so nothing
from the previous spawn leaks into the next.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kubespawner.utils import recursive_format, recursive_update
from slugify import slugify

from kubelab.core.catalogue import DEFAULT_GPU_RESOURCE, GpuClass

from .options import UNLISTED_SUFFIX, OptionsError

#: Keys of one profile: KubeSpawner's, plus kubelab's ``allowed_groups``.
PROFILE_KEYS = frozenset({"display_name", "description", "slug", "default", "kubespawner_override",
                          "profile_options", "allowed_groups"})
#: Keys of one ``profile_options`` entry: KubeSpawner's, plus fancy-profiles' ``dynamic_image_building``.
OPTION_KEYS = frozenset({"display_name", "choices", "unlisted_choice", "dynamic_image_building"})
#: Keys of one choice: KubeSpawner's, plus fancy-profiles' ``description`` and ``slug``.
CHOICE_KEYS = frozenset({"display_name", "default", "kubespawner_override", "description", "slug"})
#: Keys of ``unlisted_choice``: KubeSpawner's, plus fancy-profiles' ``description_in_choices``.
UNLISTED_KEYS = frozenset({"enabled", "display_name", "display_name_in_choices", "validation_regex",
                           "validation_message", "kubespawner_override", "description_in_choices"})
#: Settings a profile may not override, and why.
REFUSED_OVERRIDES: Mapping[str, str] = {
    "automount_service_account_token": "notebook pods hold no Kubernetes credentials in kubelab",
    "platform": "it is the hub's shared state",
    **{name: "it is read before a profile is chosen" for name in (
        "profile_list", "options_form", "options_from_form", "apply_user_options", "profile_form_template",
        "additional_profile_form_template_paths", "pre_spawn_hook", "auth_state_hook",
    )},
}
#: Settings whose keys may not start with ``kubelab.io/`` in an override (kubelab's own labels).
LABEL_SETTINGS = ("extra_labels", "storage_extra_labels", "extra_annotations", "common_labels")
#: Values the pickers post for "the unlisted choice" in the option's own field (KubeSpawner's
#: form posts ``unlisted-choice`` only when its JavaScript is off, fancy-profiles ``unlisted_choice``).
UNLISTED_MARKERS = frozenset({"unlisted-choice", "unlisted_choice"})
#: Longest unlisted value accepted.
MAX_UNLISTED_LENGTH = 256
#: Extended resources that count as GPUs besides the catalogue classes' resources.
GPU_RESOURCES = (DEFAULT_GPU_RESOURCE, "amd.com/gpu")


class ProfileListError(ValueError):
    """``profile_list`` holds something kubelab cannot honour.

    Attributes:
        path: Where, e.g. ``profile_list[1].kubespawner_override.cpu_limt``.
        problem: What is wrong and what is allowed.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _join(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values) or "(none)"


def initialise_profile_list(raw: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """A fully initialised copy of ``raw``, as KubeSpawner 7.1's ``_get_initialized_profile_list``.

    Args:
        raw: ``profile_list`` (a callable already evaluated): a list, or a dict whose values
            are taken in key order.

    Returns:
        The profiles, each with ``slug``, each option with a default choice and an
        ``unlisted_choice`` dict (``enabled`` False unless set), exactly one ``default`` first.

    Raises:
        ProfileListError: ``raw`` is not a list or dict of dicts, or a profile has neither
            ``slug`` nor ``display_name``.
    """
    if not raw:
        return []
    if isinstance(raw, Mapping):
        raw = [raw[k] for k in sorted(raw)]
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ProfileListError("profile_list", f"must be a list or a dict of profiles, not {type(raw).__name__}")
    profiles = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise ProfileListError(f"profile_list[{i}]", f"must be a dict, not {type(entry).__name__}")
        profile = copy.deepcopy(dict(entry))
        if "slug" not in profile:
            if not isinstance(profile.get("display_name"), str):
                raise ProfileListError(f"profile_list[{i}]", "needs a display_name (or a slug)")
            profile["slug"] = slugify(profile["display_name"])
        for option in (profile.get("profile_options") or {}).values():
            if not isinstance(option, dict):
                continue  # check_profile_list names it
            choices = option.get("choices") or {}
            if choices and not any(c.get("default") for c in choices.values() if isinstance(c, Mapping)):
                first = next(iter(choices))
                choices[first]["default"] = True
            unlisted = option.setdefault("unlisted_choice", {})
            if isinstance(unlisted, dict):
                unlisted.setdefault("enabled", False)
                if unlisted["enabled"]:
                    unlisted.setdefault("display_name_in_choices", "Other...")
        profiles.append(profile)
    if not any(p.get("default") for p in profiles):
        profiles[0]["default"] = True
    return profiles


def _check_keys(value: Any, allowed: frozenset[str], path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileListError(path, f"must be a dict, not {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ProfileListError(f"{path}.{unknown[0]}", f"kubelab does not know this key; allowed: {_join(sorted(allowed))}")
    return value


def check_overrides(overrides: Any, settable: Callable[[str], bool], path: str) -> None:
    """Check one ``kubespawner_override`` dict.

    Args:
        overrides: The dict.
        settable: Whether a name is a configurable LabSpawner setting.
        path: Its path, for the message.

    Raises:
        ProfileListError: Not a dict, a name that is not a setting (KubeSpawner would set a
            plain attribute nobody reads), a setting in :data:`REFUSED_OVERRIDES`, or a
            ``kubelab.io/`` label or annotation.
    """
    if not isinstance(overrides, Mapping):
        raise ProfileListError(path, f"must be a dict of KubeSpawner settings, not {type(overrides).__name__}")
    for name, value in overrides.items():
        where = f"{path}.{name}"
        if name in REFUSED_OVERRIDES:
            raise ProfileListError(where, f"kubelab cannot honour this override: {REFUSED_OVERRIDES[name]}")
        if not isinstance(name, str) or not settable(name):
            raise ProfileListError(where, "not a KubeSpawner setting (a typo?), so it would have no effect")
        if name in LABEL_SETTINGS and isinstance(value, Mapping):
            ours = sorted(k for k in value if str(k).startswith("kubelab.io/"))
            if ours:
                raise ProfileListError(f"{where}.{ours[0]}", "kubelab.io/ labels and annotations are kubelab's own")


def check_profile_list(
    profiles: Sequence[Mapping[str, Any]],
    settable: Callable[[str], bool],
    taken_slugs: Iterable[str] = (),
) -> None:
    """Check an initialised profile list for anything kubelab cannot honour.

    Args:
        profiles: :func:`initialise_profile_list` output.
        settable: Whether a name is a configurable LabSpawner setting.
        taken_slugs: Slugs already used (the catalogue's profiles).

    Raises:
        ProfileListError: The first problem, with its path: an unknown key at any level, an
            override :func:`check_overrides` refuses, a duplicate slug, a ``validation_regex``
            that does not compile, a ``default`` that is not a bool, ``allowed_groups`` that is
            not a list of group names, an option with neither choices nor an enabled unlisted choice.
    """
    seen = {s: "the catalogue" for s in taken_slugs}
    for i, profile in enumerate(profiles):
        path = f"profile_list[{i}]"
        _check_keys(profile, PROFILE_KEYS, path)
        slug = profile["slug"]
        if not isinstance(slug, str) or not slug or "--" in slug:
            raise ProfileListError(f"{path}.slug", f"must be a non-empty string without '--', not {slug!r}")
        if slug in seen:
            raise ProfileListError(f"{path}.slug", f"{slug!r} is already a profile of {seen[slug]}; slugs must be unique")
        seen[slug] = path
        if not isinstance(profile.get("default", False), bool):
            raise ProfileListError(f"{path}.default", "must be true or false")
        groups = profile.get("allowed_groups")
        if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups)):
            raise ProfileListError(f"{path}.allowed_groups", "must be a list of JupyterHub group names")
        check_overrides(profile.get("kubespawner_override", {}), settable, f"{path}.kubespawner_override")
        options = profile.get("profile_options") or {}
        if not isinstance(options, Mapping):
            raise ProfileListError(f"{path}.profile_options", "must be a dict of options")
        for key, option in options.items():
            opath = f"{path}.profile_options.{key}"
            if not isinstance(key, str) or not key or "--" in key or key == "profile":
                raise ProfileListError(opath, "an option key must be a non-empty string without '--', other than 'profile'")
            _check_keys(option, OPTION_KEYS, opath)
            choices = option.get("choices") or {}
            if not isinstance(choices, Mapping):
                raise ProfileListError(f"{opath}.choices", "must be a dict of choices")
            for ckey, choice in choices.items():
                cpath = f"{opath}.choices.{ckey}"
                _check_keys(choice, CHOICE_KEYS, cpath)
                check_overrides(choice.get("kubespawner_override", {}), settable, f"{cpath}.kubespawner_override")
            unlisted = _check_keys(option.get("unlisted_choice", {}), UNLISTED_KEYS, f"{opath}.unlisted_choice")
            if unlisted.get("enabled"):
                check_overrides(unlisted.get("kubespawner_override", {}), settable, f"{opath}.unlisted_choice.kubespawner_override")
                regex = unlisted.get("validation_regex")
                if regex is not None:
                    try:
                        re.compile(regex)
                    except (re.error, TypeError) as e:
                        raise ProfileListError(f"{opath}.unlisted_choice.validation_regex", f"does not compile: {e}") from None
            elif not choices:
                raise ProfileListError(opath, "has no choices and no enabled unlisted_choice")


def profile_allows(profile: Mapping[str, Any], groups: Iterable[str]) -> bool:
    """Whether a member of ``groups`` may use ``profile`` (no ``allowed_groups``: everyone)."""
    allowed = profile.get("allowed_groups")
    return not allowed or bool(set(allowed) & set(groups))


#: One option's resolved value: ``("choice", key)`` or ``("unlisted", value)``.
Chosen = tuple[str, str]


@dataclass(frozen=True)
class ListSelection:
    """A validated choice of a ``profile_list`` profile.

    Attributes:
        profile: The initialised profile.
        chosen: Option key → :data:`Chosen`, for every option of the profile.
        gpus: GPUs its settings request (0: none), set once the overrides are applied.
        gpu_class: The GPU class they match (a catalogue class, or one made from the resource
            and node selector when none matches), None without GPUs.
    """

    profile: Mapping[str, Any]
    chosen: Mapping[str, Chosen] = field(default_factory=dict)
    gpus: int = 0
    gpu_class: GpuClass | None = None

    @property
    def slug(self) -> str:
        """The profile's slug."""
        return str(self.profile["slug"])

    @property
    def name(self) -> str:
        """The profile's display name."""
        return str(self.profile.get("display_name") or self.slug)

    def as_options(self) -> dict[str, Any]:
        """The canonical ``user_options`` (KubeSpawner's keys)."""
        opts: dict[str, Any] = {"profile": self.slug}
        for key, (kind, value) in self.chosen.items():
            opts[key if kind == "choice" else f"{key}{UNLISTED_SUFFIX}"] = value
        return opts

    def describe(self) -> str:
        """``"GPU Server (1 × nvidia.com/gpu)"``."""
        parts = [f"{self.gpus} × {self.gpu_class.display_name}"] if self.gpu_class else []
        options = self.profile.get("profile_options") or {}
        for key, (kind, value) in self.chosen.items():
            if kind == "choice":
                parts.append(str(options[key]["choices"][value].get("display_name") or value))
            else:
                parts.append(value)
        return f"{self.name} ({', '.join(parts)})" if parts else self.name


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise OptionsError(400, f"{key} must be a string")
    return value


def validate_list_options(options: Mapping[str, Any], profile: Mapping[str, Any]) -> ListSelection:
    """Check ``user_options`` for one initialised ``profile_list`` profile.

    Args:
        options: ``user_options`` (``profile`` already resolved to ``profile``).
        profile: The initialised profile.

    Returns:
        The selection, without GPUs yet (see :func:`gpu_request`).

    Raises:
        OptionsError: 400 naming the key: an unknown key (lists the allowed ones), a value
            outside the choices (lists them), an unlisted value for an option without one, or
            one that fails ``validation_regex`` (quotes the regex and ``validation_message``).
    """
    profile_options: Mapping[str, Any] = profile.get("profile_options") or {}
    allowed = ["profile"]
    for key, option in profile_options.items():
        allowed.append(key)
        if option["unlisted_choice"].get("enabled"):
            allowed.append(f"{key}{UNLISTED_SUFFIX}")
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        raise OptionsError(400, f"unknown option{'s' if len(unknown) > 1 else ''} {_join(map(repr, unknown))} "
                                f"for profile {profile['slug']!r}; allowed keys: {_join(allowed)}")
    chosen: dict[str, Chosen] = {}
    for key, option in profile_options.items():
        choices: Mapping[str, Any] = option.get("choices") or {}
        unlisted_cfg = option["unlisted_choice"]
        value = options.get(key)
        unlisted = options.get(f"{key}{UNLISTED_SUFFIX}")
        if unlisted not in (None, ""):
            text = _text(unlisted, f"{key}{UNLISTED_SUFFIX}")
            if value not in (None, "", *UNLISTED_MARKERS) and value not in choices:
                raise OptionsError(400, f"{key} {value!r} is not a choice of profile {profile['slug']!r}; allowed: {_join(choices)}")
            regex = unlisted_cfg.get("validation_regex")
            if len(text) > MAX_UNLISTED_LENGTH or "{" in text or "}" in text or not text.isprintable():
                raise OptionsError(400, f"{key}{UNLISTED_SUFFIX} must be at most {MAX_UNLISTED_LENGTH} printable "
                                        f"characters without braces")
            if regex and not re.match(regex, text):
                hint = unlisted_cfg.get("validation_message")
                raise OptionsError(400, f"{key}{UNLISTED_SUFFIX} {text!r} does not match {regex!r}" + (f": {hint}" if hint else ""))
            chosen[key] = ("unlisted", text)
            continue
        if value in (None, ""):
            default = next((k for k, c in choices.items() if c.get("default")), None)
            if default is None:
                raise OptionsError(400, f"profile {profile['slug']!r} needs {key}{UNLISTED_SUFFIX} (the option has no choices)")
            chosen[key] = ("choice", default)
            continue
        text = _text(value, key)
        if text in UNLISTED_MARKERS and unlisted_cfg.get("enabled"):
            raise OptionsError(400, f"{key}{UNLISTED_SUFFIX} is empty; enter a value")
        if text not in choices:
            raise OptionsError(400, f"{key} {text[:40]!r} is not a choice of profile {profile['slug']!r}; allowed: {_join(choices)}")
        chosen[key] = ("choice", text)
    return ListSelection(profile=profile, chosen=chosen)


def default_chosen(profile: Mapping[str, Any]) -> dict[str, Chosen]:
    """Each option's default choice (options with only an unlisted choice have none and are left out)."""
    out: dict[str, Chosen] = {}
    for key, option in (profile.get("profile_options") or {}).items():
        default = next((k for k, c in (option.get("choices") or {}).items() if c.get("default")), None)
        if default is not None:
            out[key] = ("choice", default)
    return out


def profile_overrides(profile: Mapping[str, Any], chosen: Mapping[str, Chosen]) -> list[Mapping[str, Any]]:
    """The overrides of a selection, in the order KubeSpawner applies them.

    The profile's ``kubespawner_override`` first, then each option's (in the profile's option
    order): the chosen choice's, or the unlisted choice's with ``{value}`` replaced by the value.
    Options missing from ``chosen`` are skipped.
    """
    out: list[Mapping[str, Any]] = [profile.get("kubespawner_override") or {}]
    for key, option in (profile.get("profile_options") or {}).items():
        if key not in chosen:
            continue
        kind, value = chosen[key]
        if kind == "unlisted":
            overrides = option["unlisted_choice"].get("kubespawner_override") or {}
            out.append({k: recursive_format(v, value=value) for k, v in overrides.items()})
        else:
            out.append(option["choices"][value].get("kubespawner_override") or {})
    return out


def merge_overrides(base: Mapping[str, Any], overrides: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """KubeSpawner's ``_apply_overrides`` of plain values, on a copy of ``base``.

    A dict merges recursively into a dict setting (``None`` deletes a key); any other value
    replaces the setting.

    Returns:
        Setting → value for every setting the overrides name.
    """
    out: dict[str, Any] = {}
    for override in overrides:
        for name, value in override.items():
            value = copy.deepcopy(value)
            current = out[name] if name in out else copy.deepcopy(base.get(name))
            if isinstance(value, dict) and isinstance(current, dict):
                recursive_update(current, value)
                out[name] = current
            else:
                out[name] = value
    return out


async def apply_overrides(base: Mapping[str, Any], overrides: Iterable[Mapping[str, Any]], spawner: Any) -> dict[str, Any]:
    """:func:`merge_overrides` after calling callable values with ``spawner`` (KubeSpawner's
    contract), awaiting those that return an awaitable (as KubeSpawner's documentation allows)."""
    resolved = []
    for override in overrides:
        plain = {}
        for name, value in override.items():
            if callable(value):
                value = value(spawner)
                if inspect.isawaitable(value):
                    value = await value
            plain[name] = value
        resolved.append(plain)
    return merge_overrides(base, resolved)


def static_gpu_requests(
    profile: Mapping[str, Any], base: Mapping[str, Any], gpu_classes: Mapping[str, GpuClass],
) -> dict[tuple[str, str] | None, tuple[GpuClass | None, int]]:
    """What a profile's default choices, and each single other choice, would request, for the picker.

    Callable overrides are left out (they may depend on the spawn); the spawn itself counts them.

    Returns:
        ``None`` → the defaults' (class, count); ``(option, choice)`` → that choice's.
    """
    def plain(overrides: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in o.items() if not callable(v)} for o in overrides]

    defaults = default_chosen(profile)
    out: dict[tuple[str, str] | None, tuple[GpuClass | None, int]] = {
        None: gpu_request({**base, **merge_overrides(base, plain(profile_overrides(profile, defaults)))}, gpu_classes)
    }
    for key, option in (profile.get("profile_options") or {}).items():
        for ckey in option.get("choices") or {}:
            chosen = {**defaults, key: ("choice", ckey)}
            settings = merge_overrides(base, plain(profile_overrides(profile, chosen)))
            out[(key, ckey)] = gpu_request({**base, **settings}, gpu_classes)
    return out


def override_names(profile: Mapping[str, Any]) -> set[str]:
    """Every setting any override of ``profile`` may touch (to snapshot their configured values)."""
    names = set(profile.get("kubespawner_override") or {})
    for option in (profile.get("profile_options") or {}).values():
        for choice in (option.get("choices") or {}).values():
            names |= set(choice.get("kubespawner_override") or {})
        names |= set(option["unlisted_choice"].get("kubespawner_override") or {})
    return names


def gpu_request(settings: Mapping[str, Any], gpu_classes: Mapping[str, GpuClass]) -> tuple[GpuClass | None, int]:
    """Which GPUs the final settings of a spawn request.

    The GPU resource is one of a catalogue class's resources or :data:`GPU_RESOURCES`, in
    ``extra_resource_limits`` (else ``extra_resource_guarantees``: Kubernetes sets one from the
    other). The class is the catalogue class with that resource whose ``nodeSelector`` the
    spawn's ``node_selector`` contains; without one, a class named after the resource that
    selects the spawn's ``node_selector`` (so availability counts the nodes it may land on).

    Returns:
        (class, count), or (None, 0) when no GPU is requested.
    """
    resources = {c.resource for c in gpu_classes.values()} | set(GPU_RESOURCES)
    requested = {**(settings.get("extra_resource_guarantees") or {}), **(settings.get("extra_resource_limits") or {})}
    selector = dict(settings.get("node_selector") or {})
    for resource, raw in requested.items():
        if resource not in resources:
            continue
        try:
            count = int(str(raw))
        except ValueError:
            continue
        if count <= 0:
            continue
        for cls in gpu_classes.values():
            if cls.resource == resource and all(selector.get(k) == v for k, v in cls.node_selector.items()):
                return cls, count
        return GpuClass(key=resource, display_name=resource, node_selector=selector, resource=resource), count
    return None, 0


def with_gpus(selection: ListSelection, settings: Mapping[str, Any], gpu_classes: Mapping[str, GpuClass]) -> ListSelection:
    """``selection`` with the GPUs its final ``settings`` request."""
    cls, count = gpu_request(settings, gpu_classes)
    return replace(selection, gpus=count, gpu_class=cls)
