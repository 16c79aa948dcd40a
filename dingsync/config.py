"""Configuration value objects: credentials, endpoints, stream and reconnect settings.

All are frozen attrs classes with keyword-only arguments, validated at construction so that a
typo fails before any network I/O. Secrets are ``repr=False``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional
from urllib.parse import urlsplit

import attrs

from .errors import ConfigurationError

if TYPE_CHECKING:  # tenacity stays out of the import path of send-only scripts
    import threading

    import tenacity

__all__ = [
    "Credentials",
    "Endpoints",
    "ReconnectPolicy",
    "StreamConfig",
    "DEFAULT_API_ENDPOINT",
    "DEFAULT_OAPI_ENDPOINT",
]

DEFAULT_API_ENDPOINT = "https://api.dingtalk.com"
DEFAULT_OAPI_ENDPOINT = "https://oapi.dingtalk.com"


def _non_empty_token(name: str) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{name} must be a non-empty string")
        if value != value.strip() or any(ch.isspace() for ch in value):
            raise ConfigurationError(
                f"{name} contains whitespace; copy it again from the developer console"
            )

    return check


@attrs.frozen(kw_only=True)
class Credentials:
    """An app's client id (AppKey) and client secret (AppSecret).

    The secret never appears in ``repr()`` or in logs.

    Example:
        >>> creds = Credentials(client_id="dingabc", client_secret="s3cret")
        >>> creds
        Credentials(client_id='dingabc')
    """

    client_id: str = attrs.field(validator=_non_empty_token("client_id"))
    client_secret: str = attrs.field(repr=False, validator=_non_empty_token("client_secret"))

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Credentials:
        """Read ``DINGTALK_CLIENT_ID`` and ``DINGTALK_CLIENT_SECRET``.

        Example:
            >>> Credentials.from_env({"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "s"})
            Credentials(client_id='id')

        Raises:
            ConfigurationError: a variable is missing or empty.
        """
        env = os.environ if environ is None else environ
        missing = [n for n in ("DINGTALK_CLIENT_ID", "DINGTALK_CLIENT_SECRET") if not env.get(n)]
        if missing:
            raise ConfigurationError(
                f"set {' and '.join(missing)} (the app's Client ID and Client Secret "
                "from the DingTalk developer console)"
            )
        return cls(
            client_id=env["DINGTALK_CLIENT_ID"].strip(),
            client_secret=env["DINGTALK_CLIENT_SECRET"].strip(),
        )


def _base_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"endpoint must be a string URL, got {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"endpoint {value!r} must be an http(s) URL such as {DEFAULT_API_ENDPOINT}"
        )
    return value.strip().rstrip("/")


@attrs.frozen(kw_only=True)
class Endpoints:
    """Base URLs of the new-style (``api``) and old-style (``oapi``) DingTalk APIs.

    Example:
        >>> Endpoints(api="http://127.0.0.1:8080/").api
        'http://127.0.0.1:8080'
    """

    api: str = attrs.field(default=DEFAULT_API_ENDPOINT, converter=_base_url)
    oapi: str = attrs.field(default=DEFAULT_OAPI_ENDPOINT, converter=_base_url)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Endpoints:
        """Read ``DINGTALK_OPENAPI_ENDPOINT`` (the variable the official SDK reads) and
        ``DINGTALK_OAPI_ENDPOINT``; unset variables keep the public DingTalk hosts.

        Example:
            >>> Endpoints.from_env({"DINGTALK_OPENAPI_ENDPOINT": "http://127.0.0.1:9"}).api
            'http://127.0.0.1:9'
        """
        env = os.environ if environ is None else environ
        return cls(
            api=env.get("DINGTALK_OPENAPI_ENDPOINT") or DEFAULT_API_ENDPOINT,
            oapi=env.get("DINGTALK_OAPI_ENDPOINT") or DEFAULT_OAPI_ENDPOINT,
        )


def _positive(_instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or value <= 0):
        raise ConfigurationError(f"{attribute.name} must be a positive number, got {value!r}")


def _non_negative(_instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ReconnectPolicy:
    """How the stream client waits between connection attempts.

    Exponential backoff with jitter: the n-th consecutive failure waits
    ``min(initial * 2**(n-1), max) + uniform(0, jitter)`` seconds. The count resets after a healthy
    session. Bad credentials wait at least ``auth_wait`` seconds so that DingTalk is not hammered.
    ``give_up_after`` (seconds of consecutive failure) or ``max_attempts`` make the client raise
    ``ReconnectGaveUp``; by default it never gives up.

    Example:
        >>> ReconnectPolicy(initial=0.5, max=30.0, give_up_after=600.0).max
        30.0
    """

    initial: float = attrs.field(default=1.0, validator=_positive)
    max: float = attrs.field(default=60.0, validator=_positive)
    jitter: float = attrs.field(default=1.0, validator=_non_negative)
    auth_wait: float = attrs.field(default=60.0, validator=_non_negative)
    give_up_after: Optional[float] = attrs.field(default=None, validator=_positive)
    max_attempts: Optional[int] = attrs.field(default=None, validator=_positive)

    def retrying(
        self,
        stop_event: threading.Event,
        *,
        sleep: Optional[Callable[[float], Any]] = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> tenacity.Retrying:
        """Build the tenacity controller; sleeping waits on ``stop_event`` so stop() interrupts it.

        Example:
            >>> import threading
            >>> r = ReconnectPolicy(initial=0.01, jitter=0).retrying(threading.Event())
        """
        import tenacity

        stop: Any = tenacity.stop_never
        if self.give_up_after is not None:
            stop = tenacity.stop_after_delay(self.give_up_after)
        if self.max_attempts is not None:
            stop = stop | tenacity.stop_after_attempt(self.max_attempts)

        def stopped(_state: tenacity.RetryCallState) -> bool:
            return stop_event.is_set()

        def wait_on_stop_event(seconds: float) -> None:
            stop_event.wait(seconds)

        return tenacity.Retrying(
            sleep=sleep if sleep is not None else wait_on_stop_event,
            stop=stop | stopped,
            wait=tenacity.wait_exponential(multiplier=self.initial, max=self.max)
            + tenacity.wait_random(0, self.jitter),
            retry=tenacity.retry_if_exception_type(retry_on),
            reraise=False,
        )


@attrs.frozen(kw_only=True)
class StreamConfig:
    """Settings of :class:`dingsync.StreamClient`.

    Args:
        concurrency: handler threads; frames beyond ``concurrency + max_pending`` make the
            reader wait (backpressure) instead of queueing without bound.
        ping_interval: seconds between websocket pings sent by the client; by default
            ``min(10, dead_after / 2.5)``.
        dead_after: a connection that shows no sign of life (frame or pong) for this long is
            declared dead and replaced.
        recv_timeout: how often the reader wakes up to notice stop() and the watchdog.
        open_timeout: timeout of the gateway HTTP call and the websocket handshake.
        dedupe_ttl: seconds a handled messageId is remembered for redeliveries.
        proxy: ``http://user:pass@host:port`` for both the HTTP call and the websocket; by
            default the usual ``HTTPS_PROXY``/``NO_PROXY`` environment variables apply.
        ca_bundle: a CA bundle path for TLS verification (verification is always on).
        reconnect: the :class:`ReconnectPolicy`.

    Example:
        >>> StreamConfig(concurrency=16, dead_after=2.0).ping_interval
        0.8
    """

    concurrency: int = attrs.field(default=8, validator=_positive)
    max_pending: int = attrs.field(default=64, validator=_non_negative)
    dead_after: float = attrs.field(default=25.0, validator=_positive)
    ping_interval: float = attrs.field(validator=_positive)
    recv_timeout: float = attrs.field(default=1.0, validator=_positive)
    open_timeout: float = attrs.field(default=10.0, validator=_positive)
    dedupe_ttl: float = attrs.field(default=600.0, validator=_positive)
    drain_timeout: float = attrs.field(default=30.0, validator=_non_negative)
    proxy: Optional[str] = None
    ca_bundle: Optional[str] = None
    reconnect: ReconnectPolicy = attrs.field(factory=ReconnectPolicy)
    user_agent: str = "dingsync"

    @ping_interval.default
    def _ping_interval_default(self) -> float:
        # Two pings fit in dead_after, so one lost pong alone never kills a healthy connection.
        return min(10.0, self.dead_after / 2.5)

    def __attrs_post_init__(self) -> None:
        if self.dead_after <= self.ping_interval:
            raise ConfigurationError(
                f"dead_after ({self.dead_after}) must be longer than ping_interval "
                f"({self.ping_interval}), or every quiet connection would be declared dead"
            )
