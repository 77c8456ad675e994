"""A user's profiles from both sources, the catalogue and KubeSpawner's ``profile_list``, as one offer.

How they combine (the hub logs it in one line at start-up, :func:`check_profile_sources`):

* ``profile_list``'s profiles come first, in their order, and its default (KubeSpawner's rule:
  the one marked ``default``, else the first) is the default of a spawn that names no profile,
  so a z2jh site's REST clients and users keep getting what they got;
* the catalogue's profiles follow; its default applies when the user may use no ``profile_list``
  profile;
* slugs are unique across both (a clash stops the hub);
* kubelab's rules apply to both: group rules (the catalogue's ``groups``, ``profile_list``'s
  ``allowed_groups``), the GPU quota, and live availability of profiles that request GPUs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kubelab.core.catalogue import Catalogue, CatalogueError

from .options import OptionsError, SpawnChoice, offered_profiles, validate_user_options
from .profile_list import (
    ProfileListError,
    check_profile_list,
    initialise_profile_list,
    profile_allows,
    validate_list_options,
)

log = logging.getLogger("JupyterHub")

#: How the start-up error names the setting.
SETTING = "KubeSpawner.profile_list"


def _join(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values) or "(none)"


def load_profile_list(raw: Any, catalogue: Catalogue, settable: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Initialise and check an evaluated ``profile_list``.

    Raises:
        ProfileListError: Something kubelab cannot honour (see :func:`check_profile_list`).
    """
    profiles = initialise_profile_list(raw)
    check_profile_list(profiles, settable, taken_slugs=[p.slug for p in catalogue.profiles])
    return profiles


def listed_for(profiles: Sequence[Mapping[str, Any]], groups: Iterable[str]) -> list[Mapping[str, Any]]:
    """The ``profile_list`` profiles a member of ``groups`` may use, in order."""
    groups = set(groups)
    return [p for p in profiles if profile_allows(p, groups)]


def validate_offer(
    options: Any,
    catalogue: Catalogue,
    profiles: Sequence[Mapping[str, Any]],
    groups: Iterable[str],
) -> SpawnChoice:
    """Validate ``user_options`` against everything a member of ``groups`` is offered.

    Args:
        options: ``user_options`` as received (form or REST).
        catalogue: The catalogue.
        profiles: The initialised ``profile_list`` (empty without one).
        groups: The user's groups.

    Returns:
        A catalogue :class:`~kubelab.spawner.options.Selection` or a
        :class:`~kubelab.spawner.profile_list.ListSelection` (its GPUs still to be resolved).

    Raises:
        OptionsError: 400 (malformed, unknown, outside the allowed values) or 403 (a profile
            the user's groups may not use), naming the key and what is allowed.
    """
    groups = sorted(set(groups))
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise OptionsError(400, "user options must be an object with a 'profile' key and that profile's options")
    allowed = listed_for(profiles, groups)
    slug = options.get("profile")
    rest = {k: v for k, v in options.items() if k != "profile"}
    if slug is None or slug == "":
        default = next((p for p in allowed if p.get("default")), allowed[0] if allowed else None)
        if default is not None:
            return validate_list_options(rest, default)
        return validate_user_options(options, catalogue, groups)
    offered = [p["slug"] for p in allowed] + [p.slug for p in offered_profiles(catalogue, groups)]
    if not isinstance(slug, str):
        raise OptionsError(400, f"profile must be a string; allowed: {_join(offered)}")
    by_slug = {p["slug"]: p for p in profiles}
    if slug in by_slug:
        profile = by_slug[slug]
        if not profile_allows(profile, groups):
            raise OptionsError(403, f"profile {slug!r} is only for members of {_join(sorted(profile['allowed_groups']))}; "
                                    f"you are in: {_join(groups)}")
        return validate_list_options(rest, profile)
    if profiles and slug not in {p.slug for p in catalogue.profiles}:
        shown = slug if len(slug) <= 40 else slug[:37] + "..."
        raise OptionsError(400, f"unknown profile {shown!r}; allowed: {_join(offered)}")
    return validate_user_options(options, catalogue, groups)


def _configured(config: Any, section: str, name: str) -> Any:
    return config[section][name] if section in config and name in config[section] else None


def check_profile_sources(config: Any, catalogue: Catalogue, settable: Callable[[str], bool]) -> str | None:
    """Check the ``profile_list`` set in ``config`` (at hub start-up) and log how it combines.

    ``c.LabSpawner.profile_list`` wins over ``c.KubeSpawner.profile_list`` (z2jh's), as traitlets
    would resolve it. A callable is checked each time it is evaluated instead.

    Args:
        config: The hub's traitlets config.
        catalogue: The catalogue.
        settable: Whether a name is a configurable LabSpawner setting.

    Returns:
        The log line, or None when no ``profile_list`` is set (nothing to combine).

    Raises:
        CatalogueError: A key kubelab cannot honour; the message names the setting and the path,
            e.g. ``KubeSpawner.profile_list: profile_list[1].kubespawner_override.cpu_limt: not a
            KubeSpawner setting (a typo?), so it would have no effect``.
    """
    raw = _configured(config, "LabSpawner", "profile_list")
    if raw is None:
        raw = _configured(config, "KubeSpawner", "profile_list")
    if not raw:
        return None
    template = any(
        _configured(config, section, name)
        for section in ("LabSpawner", "KubeSpawner")
        for name in ("additional_profile_form_template_paths", "profile_form_template")
    )
    picker = "the configured KubeSpawner form template" if template else "KubeSpawner's form.html"
    cat = f"then {len(catalogue.profiles)} from the catalogue (whose default applies to users who may use no profile_list profile)"
    if callable(raw):
        line = (f"kubelab profiles: KubeSpawner.profile_list is a callable, evaluated per user at every form and spawn "
                f"and checked then; its profiles come first and its default is the default, {cat}; ")
    else:
        try:
            profiles = load_profile_list(raw, catalogue, settable)
        except ProfileListError as e:
            raise CatalogueError(SETTING, e.path, e.problem) from None
        default = next(p["slug"] for p in profiles if p.get("default"))
        line = (f"kubelab profiles: {len(profiles)} from KubeSpawner.profile_list first (default {default!r}), {cat}; ")
    line += f"group rules, GPU quota and availability apply to both; picker: {picker}"
    log.info("%s", line)
    return line
