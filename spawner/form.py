"""The profile picker: per-profile views (shared with the JSON endpoint) and the server-rendered form.

The form works without JavaScript: radio buttons pick the profile, each profile has its own image
and GPU-count selects (``image--<slug>``, ``gpus--<slug>``), and choices that cannot start now are
disabled with the reason next to them. A few lines of vanilla JS refresh the numbers from the JSON
endpoint every 15 s and enable/disable choices accordingly.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader

from kubelab.core.availability import ClassAvailability, unfit_reason
from kubelab.core.catalogue import Catalogue, GpuClass, Profile

from .objects import quantity_bytes
from .options import FORM_SEPARATOR


@dataclass(frozen=True)
class CountChoice:
    """One GPU count of a profile: whether it can start now, and why not."""

    count: int
    reason: str | None = None


@dataclass(frozen=True)
class ProfileView:
    """A profile as the picker and ``/api/kubelab/availability`` show it."""

    slug: str
    name: str
    description: str
    kind: str  # "cpu" or "gpu"
    resources: str
    images: list[dict[str, str]]
    gpu_class: str | None = None
    gpu_display_name: str | None = None
    availability: str | None = None
    free: int | None = None
    total: int | None = None
    counts: list[CountChoice] = field(default_factory=list)
    reason: str | None = None
    default: bool = False

    @property
    def available(self) -> bool:
        """Whether at least one choice of this profile can start now."""
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["available"] = self.available
        return out


def _gib(value: str | None) -> str:
    n = quantity_bytes(value)
    return f"{n / 2**30:g} GiB" if n else ""


def _resources(p: Profile) -> str:
    cpu = ""
    if p.cpu_limit is not None:
        cpu = f"{p.cpu_guarantee:g}–{p.cpu_limit:g} CPU" if p.cpu_guarantee not in (None, p.cpu_limit) else f"{p.cpu_limit:g} CPU"
    mem = ""
    if p.mem_limit:
        mem = f"{_gib(p.mem_guarantee)}–{_gib(p.mem_limit)}" if p.mem_guarantee not in (None, p.mem_limit) else _gib(p.mem_limit)
    return ", ".join(x for x in (cpu, mem) if x)


def profile_views(
    profiles: Sequence[Profile],
    catalogue: Catalogue,
    availability: Mapping[str, ClassAvailability],
    gpus_remaining: int | None = None,
) -> list[ProfileView]:
    """Build the picker's view of ``profiles`` with live availability and quota.

    Args:
        profiles: Profiles the user may use.
        catalogue: The catalogue (images, GPU classes).
        availability: :func:`~kubelab.core.availability.gpu_availability` output.
        gpus_remaining: GPUs the user's quota still allows (None: unlimited).
    """
    views = []
    for p in profiles:
        images = [{"key": k, "name": catalogue.images[k].display_name} for k in p.images]
        if p.gpu is None:
            views.append(ProfileView(p.slug, p.name, p.description, "cpu", _resources(p), images, default=p.default))
            continue
        cls = catalogue.gpu_classes[p.gpu.gpu_class]
        av = availability.get(cls.key)
        counts = []
        for n in p.gpu.counts:
            reason = unfit_reason(n, av)
            if reason is None and gpus_remaining is not None and n > gpus_remaining:
                reason = f"your GPU quota allows {gpus_remaining} more"
            counts.append(CountChoice(n, reason))
        usable = [c for c in counts if c.reason is None]
        views.append(
            ProfileView(
                p.slug, p.name, p.description, "gpu", _resources(p), images,
                gpu_class=cls.key,
                gpu_display_name=cls.display_name,
                availability=av.summary() if av else f"0 of 0 {cls.display_name} free",
                free=av.free if av else 0,
                total=av.allocatable if av else 0,
                counts=counts,
                reason=None if usable else counts[0].reason,
                default=p.default,
            )
        )
    return views


_STYLE = """
<style>
.kl-group{border:0;padding:0;margin:0 0 1.2em}
.kl-group>legend{font-size:1.1em;font-weight:600;border:0;margin-bottom:.4em}
.kl-profile{display:block;border:1px solid #ccc;border-radius:6px;padding:.7em .9em;margin:.4em 0}
.kl-profile:focus-within{outline:2px solid #1f6feb}
.kl-profile.kl-off{opacity:.55}
.kl-head{display:flex;gap:.6em;align-items:baseline;flex-wrap:wrap}
.kl-name{font-weight:600}
.kl-avail{margin-left:auto;font-variant-numeric:tabular-nums}
.kl-reason{color:#a40000}
.kl-choices{display:flex;gap:1.2em;margin-top:.4em;flex-wrap:wrap}
.kl-choices label{font-weight:normal;margin-right:.4em}
.kl-choices select{width:auto;display:inline-block}
.kl-note{color:#555;font-size:.9em;margin-top:.3em}
</style>
"""

_SCRIPT = """
<script>
(function () {
  // Refresh availability without a reload; the server re-checks everything on submit anyway.
  var url = %(url)s;
  function apply(data) {
    (data.profiles || []).forEach(function (p) {
      var box = document.getElementById("kl-profile-" + p.slug);
      if (!box) return;
      var av = box.querySelector(".kl-avail");
      if (av && p.availability) av.textContent = p.availability;
      var why = box.querySelector(".kl-reason");
      if (why) why.textContent = p.reason ? "Unavailable: " + p.reason : "";
      box.classList.toggle("kl-off", !p.available);
      var radio = box.querySelector("input[name=profile]");
      if (radio) radio.disabled = !p.available;
      var note = box.querySelector(".kl-note");
      if (note) {
        var blocked = (p.counts || []).filter(function (c) { return c.reason; }).map(function (c) {
          return c.count + " GPU" + (c.count === 1 ? "" : "s") + ": " + c.reason;
        });
        note.textContent = blocked.length ? "Not now: " + blocked.join("; ") : "";
      }
      (p.counts || []).forEach(function (c) {
        var opt = box.querySelector("option[data-count='" + c.count + "']");
        if (!opt) return;
        opt.disabled = !!c.reason;
        opt.textContent = c.count + " GPU" + (c.count === 1 ? "" : "s") + (c.reason ? " (unavailable)" : "");
        opt.title = c.reason || "";
      });
    });
  }
  function tick() {
    fetch(url, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) { if (d) apply(d); }).catch(function () {});
  }
  setInterval(tick, 15000);
})();
</script>
"""


def _option(value: str, label: str, *, selected: bool, disabled: bool = False, extra: str = "") -> str:
    return (
        f'<option value="{escape(value)}"{extra}{" selected" if selected else ""}{" disabled" if disabled else ""}>'
        f"{escape(label)}</option>"
    )


def render_form(views: Sequence[ProfileView], last: Mapping[str, Any] | None, refresh_url: str) -> str:
    """The picker's HTML (goes inside JupyterHub's spawn ``<form>``).

    Args:
        views: :func:`profile_views` output.
        last: The user's last ``user_options`` (pre-selected when still valid and available).
        refresh_url: URL of the per-user availability JSON.
    """
    last = dict(last or {})
    by_slug = {v.slug: v for v in views}
    chosen = last.get("profile") if last.get("profile") in by_slug and by_slug[last["profile"]].available else None
    if chosen is None:
        usable = [v for v in views if v.available]
        chosen = next((v.slug for v in usable if v.default), usable[0].slug if usable else None)
    parts = [_STYLE, '<div class="kl-picker">']
    if not views:
        parts.append("<p>No server profile is available to your groups. Ask your administrator.</p>")
    for kind, title in (("cpu", "CPU servers"), ("gpu", "GPU servers")):
        group = [v for v in views if v.kind == kind]
        if not group:
            continue
        parts.append(f'<fieldset class="kl-group" id="kl-group-{kind}"><legend>{title}</legend>')
        for v in group:
            is_chosen = v.slug == chosen
            off = "" if v.available else " kl-off"
            parts.append(f'<div class="kl-profile{off}" id="kl-profile-{escape(v.slug)}">')
            rid = f"kl-radio-{escape(v.slug)}"
            parts.append(
                f'<div class="kl-head"><input type="radio" name="profile" id="{rid}" value="{escape(v.slug)}"'
                f'{" checked" if is_chosen else ""}{"" if v.available else " disabled"}>'
                f'<label for="{rid}" class="kl-name">{escape(v.name)}</label>'
                f'<span class="kl-res">{escape(v.resources)}</span>'
            )
            if v.availability:
                parts.append(f'<span class="kl-avail" aria-live="polite">{escape(v.availability)}</span>')
            parts.append("</div>")
            if v.description:
                parts.append(f'<div class="kl-desc">{escape(v.description)}</div>')
            parts.append(f'<div class="kl-reason" role="status">{escape("Unavailable: " + v.reason) if v.reason else ""}</div>')
            parts.append('<div class="kl-choices">')
            img_id = f"kl-image-{escape(v.slug)}"
            last_image = last.get("image") if is_chosen else None
            parts.append(f'<span><label for="{img_id}">Image</label><select id="{img_id}" name="image{FORM_SEPARATOR}{escape(v.slug)}">')
            for i, img in enumerate(v.images):
                sel = img["key"] == last_image if last_image in [x["key"] for x in v.images] else i == 0
                parts.append(_option(img["key"], img["name"], selected=sel))
            parts.append("</select></span>")
            if v.kind == "gpu":
                gid = f"kl-gpus-{escape(v.slug)}"
                parts.append(
                    f'<span><label for="{gid}">GPUs ({escape(v.gpu_display_name or "")})</label>'
                    f'<select id="{gid}" name="gpus{FORM_SEPARATOR}{escape(v.slug)}">'
                )
                last_count = str(last.get("gpus")) if is_chosen else None
                ok_counts = [str(c.count) for c in v.counts if c.reason is None]
                want = last_count if last_count in ok_counts else (ok_counts[0] if ok_counts else None)
                for c in v.counts:
                    # the reason goes in the note below and the tooltip: long option texts widen the select
                    label = f"{c.count} GPU{'s' if c.count != 1 else ''}" + (" (unavailable)" if c.reason else "")
                    title = f' title="{escape(c.reason)}"' if c.reason else ""
                    parts.append(
                        _option(str(c.count), label, selected=str(c.count) == want, disabled=c.reason is not None,
                                extra=f' data-count="{c.count}"{title}')
                    )
                parts.append("</select></span>")
            parts.append("</div>")
            blocked = [c for c in v.counts if c.reason]
            note = "; ".join(f"{c.count} GPU{'s' if c.count != 1 else ''}: {c.reason}" for c in blocked)
            parts.append(f'<div class="kl-note">{escape("Not now: " + note) if note else ""}</div></div>')
        parts.append("</fieldset>")
    parts.append("</div>")
    parts.append(_SCRIPT % {"url": json.dumps(refresh_url)})
    return "\n".join(parts)


# -- KubeSpawner's profile_list shape, for KubeSpawner's form template and fancy-profiles -------

#: Appended to the display name of a choice or profile that cannot start now.
UNAVAILABLE = " (unavailable)"
#: Keys never sent to the page: overrides may hold callables and settings users need not see.
_HIDDEN_KEYS = frozenset({"kubespawner_override", "allowed_groups"})


def _described(*parts: str | None) -> str:
    return " · ".join(p for p in parts if p)


def _count_label(n: int) -> str:
    return f"{n} GPU{'s' if n != 1 else ''}"


def catalogue_entry(view: ProfileView) -> dict[str, Any]:
    """A catalogue profile's view in KubeSpawner's ``profile_list`` shape.

    Its options are ``image`` and, for GPU profiles, ``gpus`` (so the form posts
    ``profile-option-<slug>--image`` and ``--gpus``). Availability goes into the descriptions;
    a count that cannot start now, and a profile none of whose counts can, get
    :data:`UNAVAILABLE` after their name and the reason as description.
    """
    options: dict[str, Any] = {
        "image": {
            "display_name": "Image",
            "choices": {img["key"]: {"display_name": img["name"], "default": i == 0} for i, img in enumerate(view.images)},
            "unlisted_choice": {"enabled": False},
        }
    }
    if view.kind == "gpu":
        usable = [c.count for c in view.counts if c.reason is None]
        default = usable[0] if usable else (view.counts[0].count if view.counts else None)
        options["gpus"] = {
            "display_name": f"GPUs ({view.gpu_display_name})",
            "choices": {
                str(c.count): {
                    "display_name": _count_label(c.count) + (UNAVAILABLE if c.reason else ""),
                    "description": f"Unavailable: {c.reason}" if c.reason else (view.availability or ""),
                    "default": c.count == default,
                }
                for c in view.counts
            },
            "unlisted_choice": {"enabled": False},
        }
    return {
        "slug": view.slug,
        "display_name": view.name + ("" if view.available else UNAVAILABLE),
        "description": _described(view.description, view.resources, view.availability,
                                  f"Unavailable: {view.reason}" if view.reason else None),
        "default": False,
        "profile_options": options,
    }


def _public(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _public(v) for k, v in value.items() if k not in _HIDDEN_KEYS}
    return copy.deepcopy(value)


#: The GPUs a ``profile_list`` spawn would request: for its default choices (key None) and for
#: each ``(option, choice)`` picked with the other options at their defaults.
GpuRequests = Mapping[tuple[str, str] | None, tuple[GpuClass | None, int]]


def listed_entry(
    profile: Mapping[str, Any],
    requests: GpuRequests,
    availability: Mapping[str, ClassAvailability],
    gpus_remaining: int | None = None,
) -> dict[str, Any]:
    """A ``profile_list`` profile as shown: without its overrides, with availability when it requests GPUs.

    Args:
        profile: The initialised profile.
        requests: What it would request (see :data:`GpuRequests`).
        availability: Class key → availability, including the classes in ``requests``.
        gpus_remaining: GPUs the user's quota still allows (None: unlimited).
    """
    entry = _public(profile)
    entry["default"] = False

    def reason(cls: GpuClass | None, count: int) -> str | None:
        if cls is None or not count:
            return None
        why = unfit_reason(count, availability.get(cls.key))
        if why is None and gpus_remaining is not None and count > gpus_remaining:
            why = f"your GPU quota allows {gpus_remaining} more"
        return why

    cls, count = requests.get(None, (None, 0))
    fits = []
    for key, option in (entry.get("profile_options") or {}).items():
        for ckey, choice in (option.get("choices") or {}).items():
            ccls, ccount = requests.get((key, ckey), (cls, count))
            why = reason(ccls, ccount)
            fits.append(why is None)
            if why:
                choice["display_name"] = f"{choice.get('display_name', ckey)}{UNAVAILABLE}"
                choice["description"] = f"Unavailable: {why}"
            elif ccls is not None and ccount:
                av = availability.get(ccls.key)
                choice.setdefault("description", av.summary() if av else "")
    why = reason(cls, count)
    if cls is not None and count:
        av = availability.get(cls.key)
        entry["description"] = _described(profile.get("description"), _count_label(count) + f" × {cls.display_name}",
                                          av.summary() if av else None, f"Unavailable: {why}" if why else None)
        if why and not any(fits):
            entry["display_name"] = f"{profile.get('display_name', profile['slug'])}{UNAVAILABLE}"
    return entry


def with_default(entries: Iterable[dict[str, Any]], default_slug: str | None) -> list[dict[str, Any]]:
    """``entries`` with exactly the profile ``default_slug`` marked default (the form pre-selects it)."""
    out = list(entries)
    for entry in out:
        entry["default"] = entry["slug"] == default_slug
    return out


def render_profile_template(
    profile_list: Sequence[Mapping[str, Any]],
    user_options: Mapping[str, Any],
    *,
    template_paths: Sequence[str] = (),
    template: str = "",
) -> str:
    """Render a KubeSpawner profile template, as KubeSpawner 7.1's ``_render_options_form`` does.

    ``template`` (``profile_form_template``) if set, else the first ``form.html`` in
    ``template_paths`` (``additional_profile_form_template_paths``; fancy-profiles' ``setup_ui``
    puts its own there), else KubeSpawner's. The template gets ``profile_list`` and
    ``user_options``; ``tojson`` keeps the profiles' order.
    """
    env = Environment(loader=ChoiceLoader([FileSystemLoader(list(template_paths)), PackageLoader("kubespawner", "templates")]))
    # as KubeSpawner: tojson must keep the admin's order of profiles and choices
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    tmpl = env.from_string(template) if template else env.get_template("form.html")
    return tmpl.render(profile_list=list(profile_list), user_options=dict(user_options))
