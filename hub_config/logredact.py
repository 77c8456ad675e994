"""Keep session identifiers out of the hub's log.

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
    """Attach the filter and pin oauthlib's loggers (idempotent)."""
    for name in XSRF_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactXsrfSessionIds) for f in logger.filters):
            logger.addFilter(RedactXsrfSessionIds())
    quiet_oauthlib()
