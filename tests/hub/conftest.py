"""Fixtures for the hub tests: the local OIDC provider, a client secret, a browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelab.hub_config.provider import OidcProvider, ProviderError, ensure_client_secret, installed_prefix
from tests.hub.hubtools import CHROMIUM, CHROMIUM_FLAGS, start_provider


@pytest.fixture(scope="session")
def provider_installed() -> Path:
    """The provider's Node packages; the tests fail (not skip) when they are missing."""
    try:
        return installed_prefix()
    except ProviderError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def client_secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh random client secret shared by the provider and the hub."""
    return ensure_client_secret(tmp_path_factory.mktemp("oidc") / "client-secret")


@pytest.fixture(scope="module")
def idle_provider(
    provider_installed: Path, client_secret_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    """A provider for tests whose hub never gets to a login (start-up checks)."""
    provider = start_provider(tmp_path_factory.mktemp("provider"), client_secret_file, "http://127.0.0.1:9")
    yield provider
    provider.stop()


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[object]:
    """A fresh headless Chromium profile driven by Playwright (Debian's chromium, never downloaded)."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
