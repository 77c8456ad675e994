"""Spawn progress on the spawn-pending page, in Chromium, through the npm configurable-http-proxy.

The page reads the hub's progress event stream through the proxy. The Python port of the proxy
buffered that stream, so every message arrived at once when the server was already up (checked
by hand with it: all six messages 0.01-0.08 s after the hub reported ready); the npm proxy (the
one z2jh runs) streams it. The test records, in the browser, when each progress message appears
on the page, and, from the hub's REST API, when the server became ready. On the devcluster the
spawner's first messages come within a second of the request, before the page subscribes, so
they arrive together when it does (the progress generator replays them to a new subscriber); the last comes live
when the server answers, seconds later.
"""

from __future__ import annotations

import re
import threading
import time

import kubernetes
import pytest
from labhub import make_namespace, start_hub, uname

from tests.hub.hubtools import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = uname("progress")
#: Reports each new entry of the page's progress log to Python as it is added.
WATCH_PROGRESS = """
new MutationObserver((changes) => {
  for (const change of changes) {
    for (const node of change.addedNodes) {
      if (node.classList && node.classList.contains("progress-log-event")) {
        window.klProgress(node.textContent.trim());
      }
    }
  }
}).observe(document, {childList: true, subtree: true});
"""


@pytest.fixture
def hub(cluster, tmp_path):
    api = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    ns = make_namespace(core, "kl-progress")
    # Straight to the pending page: the form's POST does not wait up to 10 s for a quick spawn.
    h = start_hub(cluster, ns, tmp_path / "hub", extra="c.JupyterHub.slow_spawn_timeout = 0\n")
    h.ensure_user(USER)
    yield h
    h.stop()
    core.delete_namespace(ns)
    api.close()


def ready_time(hub, stop: threading.Event, out: dict[str, float]) -> None:
    """Record when the hub's REST API first reports the user's server ready."""
    while not stop.is_set():
        if hub.api("GET", f"/users/{USER}").json().get("servers", {}).get("", {}).get("ready"):
            out["ready"] = time.monotonic()
            return
        time.sleep(0.1)


def test_progress_messages_appear_one_by_one_before_the_server_is_ready(hub):
    from playwright.sync_api import sync_playwright

    seen: list[tuple[float, str]] = []
    ready: dict[str, float] = {}
    stop = threading.Event()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context()
            context.expose_function("klProgress", lambda text: seen.append((time.monotonic(), text)))
            context.add_init_script(WATCH_PROGRESS)
            page = context.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", "pw")
            page.click("input[type=submit], button[type=submit]")
            page.wait_for_url(re.compile(r"/hub/(spawn|home)"), timeout=30000)
            page.goto(f"{hub.url}/hub/spawn")
            page.check("#kl-radio-cpu-small")
            poller = threading.Thread(target=ready_time, args=(hub, stop, ready), daemon=True)
            poller.start()
            page.click("#spawn_form button[type=submit]")
            page.wait_for_url(re.compile(rf"/hub/spawn-pending/{USER}"), timeout=30000)
            # The page sends the browser on to the server once the stream says it is ready.
            page.wait_for_url(re.compile(rf"/user/{USER}/"), timeout=150000)
            poller.join(30)
        finally:
            stop.set()
            browser.close()
    assert "ready" in ready, "the hub never reported the server ready"
    first_seen: dict[str, float] = {}
    for at, text in seen:
        first_seen.setdefault(text, at)
    timeline = sorted((round(at - ready["ready"], 2), text) for text, at in first_seen.items())
    before = [text for text, at in first_seen.items() if at < ready["ready"]]
    assert len(before) >= 2, f"fewer than two distinct messages before the server was ready: {timeline}"
    # As they happen: the first message shows while the server is still starting, and the others
    # follow later. A buffering proxy delivers all of them in one chunk once the server is ready.
    assert ready["ready"] - min(first_seen.values()) > 1.0, f"the first message came late: {timeline}"
    assert max(first_seen.values()) - min(first_seen.values()) > 1.0, f"the messages came at once: {timeline}"
    assert len({round(at, 1) for at in first_seen.values()}) >= 2, timeline
