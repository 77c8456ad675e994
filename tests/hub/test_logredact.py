"""Log redaction: session ids and OAuth codes stay out of the hub's log."""

from __future__ import annotations

import logging

import pytest

from kubelab.hub_config import logredact


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
