"""Log redaction: session ids and OAuth codes stay out of the hub's log."""

from __future__ import annotations

import logging
import secrets
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from kubelab.hub_config import logredact
from tests.harness import HubProcess


@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        ("Setting new xsrf cookie for %r %r", (b"sess:browser", {"path": "/hub/"}), "Setting new xsrf cookie for '[secret]' {'path': '/hub/'}"),
        ("Setting new xsrf cookie for %r", (b"None:abc",), "Setting new xsrf cookie for '[secret]'"),
        ("200 GET /hub/login %s", ("x",), "200 GET /hub/login x"),
        ("no args", (), "no args"),
    ],
    ids=["xsrf-two-args", "xsrf-one-arg", "other-message", "no-args"],
)
def test_xsrf_filter(msg: str, args: tuple, expected: str) -> None:
    record = logging.LogRecord("tornado.application", logging.INFO, __file__, 1, msg, args, None)
    assert logredact.RedactXsrfSessionIds().filter(record) is True
    assert record.getMessage() == expected


def test_install_pins_oauthlib_and_filters(caplog: pytest.LogCaptureFixture) -> None:
    import jupyterhub.oauth.provider  # noqa: F401 (loads oauthlib's loggers, as the hub does)

    logredact.install()
    logredact.install()  # idempotent
    code_logger = logging.getLogger("oauthlib.oauth2.rfc6749.grant_types.authorization_code")
    # JupyterHub sets the parent to the hub's level; the module logger must stay at INFO.
    logging.getLogger("oauthlib").setLevel(logging.DEBUG)
    assert code_logger.getEffectiveLevel() == logging.INFO
    assert not code_logger.isEnabledFor(logging.DEBUG)
    app = logging.getLogger("tornado.application")
    assert sum(isinstance(f, logredact.RedactXsrfSessionIds) for f in app.filters) == 1
    with caplog.at_level(logging.INFO, logger="tornado.application"):
        app.info("Setting new xsrf cookie for %r %r", b"live-session-id:browser", {})
    assert "live-session-id" not in caplog.text
    assert "[secret]" in caplog.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200 GET /hub/api/user?token=abc123 (a@1)", "200 GET /hub/api/user?token=[secret] (a@1)"),
        ("/hub/login?next=%2Fuser%2Fa%2Flab%3Ftoken%3Dsecret99%26x%3D1",
         "/hub/login?next=%2Fuser%2Fa%2Flab%3Ftoken%3D[secret]%26x%3D1"),
        ("next=%252Fx%253Ftoken%253Dsec%2526y", "next=%252Fx%253Ftoken%253D[secret]%2526y"),
        ("a?access_token=zz&api_token=yy&b=1", "a?access_token=[secret]&api_token=[secret]&b=1"),
        ("Location: /x?TOKEN=Up (alice)", "Location: /x?TOKEN=[secret] (alice)"),
        ("?token=[secret] stays", "?token=[secret] stays"),
        ("tokens and token counts stay", "tokens and token counts stay"),
    ],
    ids=["plain", "encoded-in-next", "double-encoded", "other-token-names", "any-case", "already-redacted",
         "no-parameter"],
)
def test_redact_tokens(text: str, expected: str) -> None:
    assert logredact.redact_tokens(text) == expected


def test_token_records_redact_every_logger_and_keep_other_records(caplog: pytest.LogCaptureFixture) -> None:
    before = logging.getLogRecordFactory()
    try:
        logredact.install()
        logredact.install()  # idempotent: wrapped once
        factory = logging.getLogRecordFactory()
        assert isinstance(factory, logredact.TokenRecords) and not isinstance(factory.inner, logredact.TokenRecords)
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("some.library").debug("fetching %s", "http://h/api?token=live-one")
            logging.getLogger("tornado.access").info("302 GET %s -> %s", "/a", "/b?x=1&token=live-two")
            logging.getLogger("JupyterHub").info("%d servers", 3)
        assert "live-one" not in caplog.text and "live-two" not in caplog.text
        assert caplog.text.count("token=[secret]") == 2
        assert "3 servers" in caplog.text
    finally:
        logging.setLogRecordFactory(before)


HUB_CONFIG = """
from kubelab.hub_config import logredact
logredact.install()  # what kubelab's hub config does (kubelab.hub_config.wiring.configure)
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "pw"
c.Authenticator.allow_all = True
c.ConfigurableHTTPProxy.debug = True  # the proxy then logs every request it routes
"""


def test_no_token_from_a_url_reaches_the_hub_or_proxy_log(tmp_path: Path) -> None:
    """Tokens in URLs, as users paste them, through the npm proxy: neither log prints one."""
    with HubProcess(config=HUB_CONFIG, workdir=tmp_path) as hub:
        hub.ensure_user("alice")
        token = hub.user_token("alice")
        forged = secrets.token_hex(16)
        nested = urllib.parse.quote(f"/hub/user/alice/lab?token={token}", safe="")
        requests_made = [
            (f"/hub/api/user?token={token}", 403),  # JupyterHub 5+ reads API tokens from headers only
            (f"/hub/api/users?token={forged}", 403),
            (f"/hub/login?next={nested}", 200),  # where a bookmarked ?token= link lands
            (f"/hub/api/user?access_token={forged}&x=1", 403),
            (f"/hub/no-such-page?token={token}", 404),
            (f"/user/alice/lab?token={token}", 200),  # no server: the proxy's default route, the hub
        ]
        for path, status in requests_made:
            r = requests.get(hub.url + path, timeout=30)
            assert r.status_code == status, (path, r.status_code, r.text[:300])
        hub_log = hub.log_text()
        deadline = time.monotonic() + 10
        while "/hub/no-such-page" not in hub.proxy_log_text() and time.monotonic() < deadline:
            time.sleep(0.2)  # the proxy writes its log lines after the response
        proxy_log = hub.proxy_log_text()
    for secret in (token, forged):
        assert secret not in hub_log, [line for line in hub_log.splitlines() if secret in line]
        assert secret not in proxy_log, [line for line in proxy_log.splitlines() if secret in line]
    # The requests were logged, with the values redacted (not dropped).
    assert "GET /hub/login?next=%2Fhub%2Fuser%2Falice%2Flab%3Ftoken%3D[secret]" in hub_log
    assert "GET /hub/api/user?token=[secret]" in hub_log
    assert "PROXY WEB /hub/no-such-page to" in proxy_log, proxy_log[-2000:]
    assert "PROXY WEB /user/alice/lab to" in proxy_log
