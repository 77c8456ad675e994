"""Per-profile idle timeouts on jupyterhub-idle-culler, and the culler service definition."""

from __future__ import annotations

import copy
import sys
from datetime import timedelta
from typing import Any

import pytest
import yaml

from kubelab.core.catalogue import EXAMPLE_PATH, load_catalogue, parse_catalogue
from kubelab.hub_config import culling

CATALOGUE = load_catalogue(EXAMPLE_PATH)  # a100: 1800 s; others: the default 3600 s


def server(profile: str | None = None, **options: Any) -> dict[str, Any]:
    """A server model as the hub's REST API returns it to the culler."""
    opts = dict(options)
    if profile is not None:
        opts["profile"] = profile
    return {"name": "", "user_options": opts, "last_activity": None}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (server("a100"), 1800),
        (server("cpu-small"), 3600),
        (server("cpu-large", image="scipy"), 3600),
        (server(), 3600),
        ({"user_options": None}, 3600),
        (server("removed-from-catalogue"), 3600),
        (server(profile=""), 3600),
    ],
    ids=["gpu-profile", "cpu-profile", "with-other-options", "no-profile", "null-options", "unknown-profile", "empty-slug"],
)
def test_timeout_for_server(model: dict[str, Any], expected: int) -> None:
    assert culling.timeout_for_server(CATALOGUE, model) == expected


@pytest.mark.parametrize(
    ("profile", "idle_seconds", "cull"),
    [
        ("a100", 1799, False),
        ("a100", 1800, True),
        ("cpu-small", 1800, False),
        ("cpu-small", 3600, True),
        (None, 3599, False),
    ],
    ids=["gpu-just-before", "gpu-at-timeout", "cpu-at-gpu-timeout", "cpu-at-timeout", "default-before"],
)
def test_arbiter(profile: str | None, idle_seconds: int, cull: bool) -> None:
    arbiter = culling.make_cull_arbiter(CATALOGUE)
    # inactive_limit is the culler's global --timeout; the arbiter must ignore it for the profile's own.
    assert arbiter(inactive=timedelta(seconds=idle_seconds), inactive_limit=3600, server=server(profile)) is cull


def with_timeouts(default: int, per_profile: dict[int, int]) -> Any:
    doc = yaml.safe_load(EXAMPLE_PATH.read_text())
    doc = copy.deepcopy(doc)
    doc["defaults"]["idleTimeout"] = default
    for i, p in enumerate(doc["profiles"]):
        p.pop("idleTimeout", None)
        if i in per_profile:
            p["idleTimeout"] = per_profile[i]
    return parse_catalogue(doc, "test.yaml")


@pytest.mark.parametrize(
    ("default", "per_profile", "timeouts", "every"),
    [
        (3600, {2: 1800}, [1800, 3600], 300),
        (3600, {}, [3600], 300),
        (600, {2: 60}, [60, 600], 15),
        (60, {}, [60], 15),
        (86400, {0: 7200}, [7200, 86400], 300),
    ],
    ids=["example", "one-timeout", "short-gpu", "minimum", "long"],
)
def test_timeouts_and_interval(default: int, per_profile: dict[int, int], timeouts: list[int], every: int) -> None:
    cat = with_timeouts(default, per_profile)
    assert culling.timeouts(cat) == timeouts
    assert culling.cull_every(cat) == every


def test_service_definition(tmp_path: Any) -> None:
    service, role = culling.idle_culler_service(CATALOGUE, EXAMPLE_PATH)
    assert service["name"] == role["name"] == "idle-culler"
    assert service["command"][:3] == [sys.executable, "-m", "jupyterhub_idle_culler"]
    flags = service["command"][3:]
    # The global timeout is the longest, so the arbiter (not the culler) decides every cull.
    assert "--timeout=3600" in flags
    assert "--cull-every=300" in flags
    # Culling stops servers only: users and named servers (and so their PVCs) stay.
    assert "--cull-users=false" in flags
    assert "--remove-named-servers=false" in flags
    assert f"--config={culling.CULLER_CONFIG_FILE}" in flags
    assert service["environment"] == {"KUBELAB_CONFIG": str(EXAMPLE_PATH.resolve())}
    assert role["services"] == ["idle-culler"]
    assert set(role["scopes"]) == {"list:users", "read:users:activity", "read:servers", "delete:servers"}


def test_culler_config_file_installs_arbiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file the culler loads really sets the hook (run through the culler's own loader)."""
    from jupyterhub_idle_culler import IdleCuller

    monkeypatch.setenv("KUBELAB_CONFIG", str(EXAMPLE_PATH))
    app = IdleCuller()
    app.load_config_file(str(culling.CULLER_CONFIG_FILE))
    hook = app.cull_arbiter_hook
    assert hook(inactive=timedelta(seconds=1800), inactive_limit=3600, server=server("a100")) is True
    assert hook(inactive=timedelta(seconds=1800), inactive_limit=3600, server=server("cpu-small")) is False
