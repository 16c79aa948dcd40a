"""One place that keeps secrets out of log lines and error messages.

URLs are the leak: old-style API calls, ``/gettoken``, custom robots, session webhooks and the
gateway's ``/connect`` carry an access token, the app secret, a signature, a session key or a
ticket in their query string, and libraries (urllib3, websockets) log request lines at DEBUG.
"""

from __future__ import annotations

import logging
import re

__all__ = ["scrub", "redact_logger"]

_SECRET_QUERY = re.compile(
    r"(access_token|appsecret|sign|session|ticket)=([^&\s'\")]+)", re.IGNORECASE
)


def scrub(text: str) -> str:
    """Mask the values of secret-bearing query parameters.

    Example:
        >>> scrub("GET /gettoken?appkey=k&appsecret=s3cret HTTP/1.1")
        'GET /gettoken?appkey=k&appsecret=*** HTTP/1.1'
    """
    return _SECRET_QUERY.sub(r"\1=***", text)


class _ScrubFilter(logging.Filter):
    """Rewrites a record's text only: no handler, level or propagation is touched."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Arguments may be objects whose str() holds a URL (websockets logs whole frames), so
        # the message is rendered once and scrubbed as text.
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


_FILTER = _ScrubFilter()


def redact_logger(name: str) -> None:
    """Scrub every record logged directly to logger ``name`` (idempotent).

    Example:
        >>> redact_logger("urllib3.connectionpool")
    """
    target = logging.getLogger(name)
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)
