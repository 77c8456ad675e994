"""The npm configurable-http-proxy: pinned, installed by ``make proxy``, and chosen by the hub config."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
from traitlets.config import Config

from kubelab.hub_config import proxy
from kubelab.hub_config.wiring import configure_proxy

PINNED = json.loads((proxy.CHP_DIR / "package.json").read_text())["dependencies"]["configurable-http-proxy"]


def test_install_script_and_locator_agree_and_the_pinned_version_runs() -> None:
    printed = subprocess.run(["bash", str(proxy.INSTALL_SCRIPT)], capture_output=True, text=True, check=True,
                             timeout=300).stdout.strip()
    assert Path(printed) == proxy.chp_prefix()
    (binary,) = proxy.chp_command()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert version.stdout.strip() == PINNED
    lock = json.loads((proxy.CHP_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/configurable-http-proxy"]["version"] == PINNED


def test_hub_config_runs_the_npm_proxy() -> None:
    c = Config()
    configure_proxy(c)
    assert c.ConfigurableHTTPProxy.command == proxy.chp_command()


@pytest.mark.parametrize(
    ("preset", "expected"),
    [({"command": ["/opt/my-proxy"]}, ["/opt/my-proxy"]), ({"should_start": False}, None)],
    ids=["command-set-by-the-site", "proxy-not-started-by-the-hub"],
)
def test_hub_config_leaves_a_sites_proxy_alone(preset: dict, expected: list[str] | None) -> None:
    c = Config()
    for key, value in preset.items():
        c.ConfigurableHTTPProxy[key] = value
    configure_proxy(c)
    assert c.ConfigurableHTTPProxy.get("command") == expected


def test_without_the_install_the_default_from_path_stays_and_the_log_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KUBELAB_CACHE", str(tmp_path))
    with pytest.raises(proxy.ProxyNotInstalled, match=r"run `make proxy`"):
        proxy.chp_command()
    c = Config()
    with caplog.at_level(logging.INFO, logger="JupyterHub"):
        configure_proxy(c)
    assert "command" not in c.ConfigurableHTTPProxy
    assert "using configurable-http-proxy from PATH" in caplog.text
