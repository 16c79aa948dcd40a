"""Every exception dingsync raises on purpose.

The tree::

    DingSyncError                       base of everything below
    ├── ConfigurationError (ValueError) bad credentials, options or input, found before any I/O
    │   ├── ImportFromStringError       "module:attr" cannot be resolved (dingworker APP)
    │   └── UnsupportedMessage          a message type the chosen send path cannot carry
    ├── AuthError                       DingTalk refused the client id / secret (gateway 401,
    │                                   invalidClientIdOrSecret, 40089/40096)
    ├── ApiError                        the OpenAPI answered with an error (.status .code .message
    │   │                               .request_id); both the new and the old envelope
    │   ├── RateLimited                 throttled (403 *QpsLimit*, 429, 9000x, 410100 ...); .retry_after
    │   ├── PermissionDenied            missing scope or IP whitelist; .required_scopes
    │   ├── InvalidRequest              validation errors: never retried
    │   ├── SessionExpired              a session webhook is past its expiry (300001)
    │   ├── UnexpectedRedirect          an API call answered 3xx; not followed (.location_host)
    │   └── WebhookError                a custom group robot refused a message (310000 ...)
    │       ├── WebhookSecurityError    310000: the robot's security settings refused it
    │       │   ├── KeywordMissing      "keywords not in content"
    │       │   ├── TimestampInvalid    "invalid timestamp" (clock more than 1 h off)
    │       │   ├── SignatureMismatch   "sign not match" (wrong secret)
    │       │   └── IpNotWhitelisted    "ip X.X.X.X not in whitelist"
    │       ├── WebhookNotFound         unknown, disabled or deleted robot (300005, 400101 ...)
    │       └── WebhookThrottled        (also RateLimited) 410100/130101/660026: 10-min penalty
    ├── StoreUnavailable                a shared store (Redis, a token or pacing file) failed
    ├── TransportError                  network failure talking to any DingTalk host; .maybe_sent
    │   ├── TokenUnavailable            no access token could be fetched: nothing was sent
    │   ├── RequestTimeout              the request timed out; .maybe_sent says whether it may
    │   │                               have reached the server (so a blind resend could duplicate)
    │   └── ConnectionLost              the connection dropped after the request went out;
    │                                   .maybe_sent is True
    └── StreamError                     the Stream gateway lifecycle
        ├── GatewayOpenError            /v1.0/gateway/connections/open failed (not credentials)
        ├── ConnectionClosed            the websocket closed; .code .reason
        ├── ProtocolError               a frame that cannot be decoded; .field names what is wrong
        └── ReconnectGaveUp             the ReconnectPolicy is exhausted; __cause__ = last error

Foreign exceptions (requests, websocket-client, tenacity) are translated at one boundary each and
never reach the caller untranslated. Secrets never appear in any message built here.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

__all__ = [
    "DingSyncError",
    "ConfigurationError",
    "ImportFromStringError",
    "AuthError",
    "ApiError",
    "RateLimited",
    "PermissionDenied",
    "InvalidRequest",
    "SessionExpired",
    "WebhookError",
    "TransportError",
    "RequestTimeout",
    "StreamError",
    "GatewayOpenError",
    "ConnectionClosed",
    "ProtocolError",
    "ReconnectGaveUp",
    "UnsupportedMessage",
    "MentionNotSupported",
    "MessageTooLong",
    "WebhookSecurityError",
    "KeywordMissing",
    "TimestampInvalid",
    "SignatureMismatch",
    "IpNotWhitelisted",
    "WebhookNotFound",
    "WebhookThrottled",
    "ConnectionLost",
    "UnexpectedRedirect",
    "StoreUnavailable",
    "TokenUnavailable",
]


class DingSyncError(Exception):
    """Base class of every error dingsync raises on purpose.

    ``partial`` is set when a call did part of its work before failing (``send_to_users`` over
    several chunks of 20): it holds what was done, so nothing is resent or lost by guesswork.

    Example:
        >>> try:
        ...     raise ProtocolError("frame is not valid JSON", field="frame")
        ... except DingSyncError as exc:
        ...     print(type(exc).__name__)
        ProtocolError
    """

    partial: Any = None


class ConfigurationError(DingSyncError, ValueError):
    """Bad credentials, options or arguments, detected before any network I/O."""


class ImportFromStringError(ConfigurationError):
    """A ``"module:attr"`` string could not be resolved to an object."""


class AuthError(DingSyncError):
    """DingTalk refused the app's credentials.

    Raised for the gateway's 401 ``authFailed``, the token endpoint's ``invalidClientIdOrSecret``
    and the old API's 40089 / 40096. Retrying with the same credentials cannot help.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id


class ApiError(DingSyncError):
    """The OpenAPI answered with an error.

    Attributes:
        status: the HTTP status (the old API answers 200 even for errors).
        code: DingTalk's code as a string: ``"InvalidAuthentication"`` or ``"40014"``.
        message: DingTalk's message.
        request_id: DingTalk's request id, for support tickets.
        body: the decoded response body (never contains a secret we sent).
        maybe_sent: True when the error came from a proxy or gateway after a non-idempotent
            send went out (HTTP 5xx without DingTalk's own "not processed" answer): DingTalk
            may have processed it, so it was not sent again.
    """

    maybe_sent: bool = False

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: Optional[str] = None,
        *,
        body: Optional[Mapping[str, Any]] = None,
        hint: Optional[str] = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.body = dict(body) if body is not None else {}
        self.hint = hint
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"HTTP {self.status}, code {self.code}: {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        if self.hint:
            text += f". {self.hint}"
        return text


class RateLimited(ApiError):
    """DingTalk throttled the call; ``retry_after`` is the suggested wait in seconds."""

    def __init__(self, *args: Any, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class PermissionDenied(ApiError):
    """The app lacks a permission scope (``required_scopes``) or its IP is not whitelisted."""

    def __init__(self, *args: Any, required_scopes: Sequence[str] = (), **kwargs: Any) -> None:
        self.required_scopes = tuple(required_scopes)
        super().__init__(*args, **kwargs)


class InvalidRequest(ApiError):
    """DingTalk rejected the request's content (``invalidParameter.*``, ``param.*``, 40035)."""


class SessionExpired(ApiError):
    """A chatbot message's session webhook has expired (errcode 300001)."""


class WebhookError(ApiError):
    """A custom group robot refused the message (security check, unknown token, ...)."""


class TransportError(DingSyncError):
    """The network failed while talking to a DingTalk host.

    ``maybe_sent`` is True only when the request may have reached DingTalk (so a blind resend
    of a non-idempotent send could duplicate it); False means nothing was processed.
    """

    maybe_sent: bool = False


class TokenUnavailable(TransportError):
    """No access token could be fetched (after its own retries), so the call was not sent.

    ``maybe_sent`` is always False; ``__cause__`` is the token endpoint's failure.
    """


class StoreUnavailable(DingSyncError):
    """A shared store failed: Redis (down, timed out) or a token / pacing file.

    Raised only where dingsync cannot fall back (see the README's "Redis failure policy"); the
    token caches degrade to fetching without the cache instead. ``store`` names the store.
    """

    def __init__(self, message: str, *, store: str) -> None:
        super().__init__(message)
        self.store = store


class UnexpectedRedirect(ApiError):
    """An API call was answered with a redirect, which DingTalk's API never sends.

    The redirect is not followed: that would carry the access token to ``location_host`` and
    turn a POST into a GET. A proxy or a wrong endpoint setting is the usual cause.
    """

    def __init__(self, status: int, location_host: str, **kwargs: Any) -> None:
        self.location_host = location_host
        super().__init__(
            status,
            f"HTTP{status}",
            f"the API answered with a redirect to {location_host or 'an unknown host'}; "
            "not followed (it would carry the access token there)",
            **kwargs,
        )


class RequestTimeout(TransportError):
    """A request timed out.

    ``maybe_sent`` is True when the request may have reached DingTalk (a read timeout), in which
    case a non-idempotent send is not retried automatically.
    """

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class StreamError(DingSyncError):
    """Base class of Stream gateway errors."""


class GatewayOpenError(StreamError):
    """``/v1.0/gateway/connections/open`` failed for a reason other than bad credentials."""

    def __init__(
        self, message: str, *, status: Optional[int] = None, code: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ConnectionClosed(StreamError):
    """The websocket closed; ``code`` and ``reason`` come from the close frame when there was one."""

    def __init__(
        self, message: str, *, code: Optional[int] = None, reason: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ProtocolError(StreamError):
    """A frame or payload that cannot be decoded; ``field`` names the offending field."""

    def __init__(self, message: str, *, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


class ReconnectGaveUp(StreamError):
    """The reconnect policy gave up; ``__cause__`` is the last error seen."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class UnsupportedMessage(ConfigurationError):
    """The message type cannot go through the chosen path.

    For example an :class:`~dingsync.messages.Image` sent to a session webhook or a custom
    group robot, which only carry text, markdown, link, actionCard and feedCard.
    """


class MentionNotSupported(UnsupportedMessage):
    """The message @-mentions someone and the chosen path cannot.

    DingTalk's robot OpenAPI and work notifications have no mentions; only a custom robot's
    webhook (:class:`~dingsync.WebhookRobot`) and a session webhook (``ctx.reply``) carry them.
    """


class MessageTooLong(ConfigurationError):
    """The message is over the size limit of the path it was sent to (nothing was sent).

    Attributes:
        channel: the path ("robot 1:1", "robot group", "session webhook", ...).
        size: the message's size, in bytes of UTF-8 as DingTalk counts it.
        limit: the path's limit, in the same unit.
    """

    def __init__(self, message: str, *, channel: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.channel = channel
        self.size = size
        self.limit = limit


class WebhookSecurityError(WebhookError):
    """errcode 310000: the custom robot's security settings refused the message.

    DingTalk tells the four variants apart only by ``errmsg``; each has its own subclass.
    """


class KeywordMissing(WebhookSecurityError):
    """``keywords not in content``: the message contains none of the robot's keywords."""


class TimestampInvalid(WebhookSecurityError):
    """``invalid timestamp``: the signed timestamp is more than one hour from DingTalk's clock."""


class SignatureMismatch(WebhookSecurityError):
    """``sign not match``: the signature was made with the wrong secret."""


class IpNotWhitelisted(WebhookSecurityError):
    """``ip X.X.X.X not in whitelist``: the robot only accepts listed egress IPs."""


class WebhookNotFound(WebhookError):
    """The webhook token names no usable robot (unknown token, robot disabled or deleted)."""


class WebhookThrottled(WebhookError, RateLimited):
    """More than 20 messages a minute: DingTalk refuses the robot for 10 minutes.

    ``retry_after`` is the number of seconds until the penalty ends.
    """


class ConnectionLost(TransportError):
    """The connection dropped after the request was sent; DingTalk may have processed it.

    ``maybe_sent`` is always True, so a non-idempotent send is not retried automatically.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.maybe_sent = True
