"""Keep tokens and session identifiers out of the hub's log.

Tokens passed in a URL (``?token=...``). JupyterHub's access log scrubs a query parameter
whose *name* holds ``token``, but not one nested in another URL: ``/hub/login?next=
%2Fuser%2Fa%2Flab%3Ftoken%3D...`` (where a bookmarked ``?token=`` link lands), nor
debug lines and other loggers that print a URL. :class:`TokenRecords` wraps the log record
factory, so every record of the hub process, whichever logger or handler it goes to (and
even after traitlets rebuilds the handlers when it applies ``log_level``), has the value of
every ``...token=`` parameter, plain or URL-encoded once or twice, replaced by ``[secret]``.
The npm configurable-http-proxy strips the query from every URL it logs (``_logUrl`` in its
``lib/configproxy.js``), so its log holds no token either.

JupyterHub logs "Setting new xsrf cookie for <session id>:<browser id>" at INFO level. The
session id is the value of the ``jupyterhub-session-id`` cookie, so the log would hold a
value that identifies a live browser session. kubelab's rule is that logs hold no tokens or
session values, so this filter replaces those arguments with ``[secret]``, the way JupyterHub
already scrubs ``?code=`` and ``?state=`` in its access log.

oauthlib (the hub's own OAuth provider for single-user servers) logs whole authorization
codes at DEBUG ("Created authorization code grant {'code': ...}"). JupyterHub sets the
``oauthlib`` logger to the hub's level, so ``--debug`` would write live codes to the log; its
module loggers are pinned to INFO instead, which drops only those DEBUG lines.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

#: A query parameter whose name ends in ``token`` (``token``, ``access_token``, ``api_token``...),
#: with its ``=`` plain or URL-encoded once (``%3D``) or twice (``%253D``); the value runs up to the
#: next separator, plain or encoded (``&``, ``%26``, ``%2526``).
TOKEN_PARAM = re.compile(r"(?i)(token(?:=|%3D|%253D))((?:(?!%26|%2526)[^&\s\"'#<>,;()\[\]])+)")

#: The loggers that emit the message: tornado's application log, which JupyterHub re-parents.
XSRF_LOGGERS = ("tornado.application", "JupyterHub")
REDACTED = "[secret]"


class RedactXsrfSessionIds(logging.Filter):
    """Replace the session/browser ids in JupyterHub's "Setting new xsrf cookie" lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Setting new xsrf cookie for") and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = (REDACTED, *args[1:])
        return True  # never drop a record, only redact it


def redact_tokens(text: str) -> str:
    """``text`` with the value of every token query parameter replaced by ``[secret]``."""
    return TOKEN_PARAM.sub(lambda m: m.group(1) + REDACTED, text)


class TokenRecords:
    """A log record factory that redacts token parameters from each record's message.

    Args:
        inner: The factory it wraps (the one installed before).
    """

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return record  # a malformed call; logging reports it when it formats the record
        if TOKEN_PARAM.search(message):
            record.msg, record.args = redact_tokens(message), None
        return record


def quiet_oauthlib() -> list[str]:
    """Pin every loaded ``oauthlib.*`` module logger to INFO.

    JupyterHub imports all of oauthlib's OAuth2 modules before it reads its config, so their
    loggers exist by then; the parent ``oauthlib`` logger is left to JupyterHub.

    Returns:
        The loggers pinned.
    """
    names = sorted(n for n in logging.root.manager.loggerDict if n.startswith("oauthlib."))
    for name in names:
        logging.getLogger(name).setLevel(logging.INFO)
    return names


def install() -> None:
    """Redact tokens from every record, attach the xsrf filter and pin oauthlib's loggers (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, TokenRecords):
        logging.setLogRecordFactory(TokenRecords(factory))
    for name in XSRF_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactXsrfSessionIds) for f in logger.filters):
            logger.addFilter(RedactXsrfSessionIds())
    quiet_oauthlib()
