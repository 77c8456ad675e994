"""Keep session identifiers out of the hub's log.

JupyterHub logs "Setting new xsrf cookie for <session id>:<browser id>" at INFO level. The
session id is the value of the ``jupyterhub-session-id`` cookie, so the log would hold a
value that identifies a live browser session. kubelab's rule is that logs hold no tokens or
session values, so this filter replaces those arguments with ``[secret]``, the way JupyterHub
already scrubs ``?code=`` and ``?state=`` in its access log.
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


def install() -> None:
    """Attach the filter to the loggers that emit the message (idempotent)."""
    for name in XSRF_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactXsrfSessionIds) for f in logger.filters):
            logger.addFilter(RedactXsrfSessionIds())
