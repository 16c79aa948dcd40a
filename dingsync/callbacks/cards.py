"""How a card click over HTTP is authenticated: the one replaceable place.

DingTalk registers a card callback URL with an ``apiSecret`` (``api.cards.register_callback``),
but how it signs the requests with that secret is not published (reference/http-callbacks.md
§3), so dingsync does not guess an algorithm. What can be authenticated is the URL: it carries
an unguessable secret in its query string, and only DingTalk (which got the URL at
registration) knows it. :class:`UrlSecret` checks that; pass another object with the same two
methods as ``CallbackApp(card_auth=...)`` once DingTalk documents a signature.

Example:
    >>> auth = UrlSecret("s3cr3t-abcdefghijklmnop")
    >>> auth.url("https://fc.example.com/dingtalk")
    'https://fc.example.com/dingtalk?dingsync_card=s3cr3t-abcdefghijklmnop'
"""

from __future__ import annotations

import hmac
from typing import Mapping, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError
from .crypto import CallbackRejected

__all__ = ["CardAuth", "UrlSecret", "CARD_PARAM"]

#: The query parameter that carries the card callback secret.
CARD_PARAM = "dingsync_card"
_MIN_SECRET = 16


class CardAuth(Protocol):
    """What CallbackApp asks of a card-callback authenticator."""

    def claims(self, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        """True when the request presents itself as a card click (checked after robot
        messages and events were ruled out)."""
        ...

    def verify(self, query: Mapping[str, str], headers: Mapping[str, str]) -> None:
        """Return if the click is authentic; raise CallbackRejected (401) if not."""
        ...


class UrlSecret:
    """Card clicks are authentic when the URL's ``dingsync_card`` parameter is the secret.

    Args:
        secret: at least 16 characters, e.g. ``secrets.token_urlsafe(24)``; keep it with the
            app's other credentials (``DINGTALK_CARD_CALLBACK_SECRET`` for dingworker).

    Raises:
        ConfigurationError: the secret is shorter than 16 characters.

    Example:
        >>> auth = UrlSecret("s3cr3t-abcdefghijklmnop")
        >>> auth.claims({"dingsync_card": "guess"}, {})
        True
        >>> auth.verify({"dingsync_card": "guess"}, {})
        Traceback (most recent call last):
        ...
        dingsync.callbacks.crypto.CallbackRejected: card callback secret does not match
    """

    def __init__(self, secret: str) -> None:
        if not isinstance(secret, str) or len(secret) < _MIN_SECRET:
            raise ConfigurationError(
                f"the card callback secret must have at least {_MIN_SECRET} characters; "
                "make one with python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        self._secret = secret.encode("utf-8")

    def __repr__(self) -> str:
        return "UrlSecret(<hidden>)"

    def claims(self, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        """See :meth:`CardAuth.claims`."""
        return CARD_PARAM in query

    def verify(self, query: Mapping[str, str], headers: Mapping[str, str]) -> None:
        """See :meth:`CardAuth.verify`."""
        given = query.get(CARD_PARAM, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._secret):
            raise CallbackRejected(401, "card callback secret does not match")

    def url(self, base: str) -> str:
        """``base`` with the secret added to its query: the URL to register with DingTalk
        (``api.cards.register_callback(route_key, auth.url(base), api_secret)``)."""
        parts = urlsplit(base)
        extra = urlencode({CARD_PARAM: self._secret.decode("utf-8")})
        query = f"{parts.query}&{extra}" if parts.query else extra
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
