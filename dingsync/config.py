"""Configuration value objects: credentials, endpoints, stream and reconnect settings.

All are frozen attrs classes with keyword-only arguments, validated at construction so that a
typo fails before any network I/O. Secrets are ``repr=False``.
"""

from __future__ import annotations

import os
import random as _random
import time
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
    ``give_up_after`` (seconds of consecutive failure; no wait runs past it, so the last attempt
    is made at the deadline) or ``max_attempts`` make the client raise ``ReconnectGaveUp``; by
    default it never gives up.

    Example:
        >>> policy = ReconnectPolicy(initial=0.5, max=30.0, jitter=0.0, give_up_after=600.0)
        >>> [policy.delay(n) for n in (1, 2, 3, 10)]
        [0.5, 1.0, 2.0, 30.0]
    """

    initial: float = attrs.field(default=1.0, validator=_positive)
    max: float = attrs.field(default=60.0, validator=_positive)
    jitter: float = attrs.field(default=1.0, validator=_non_negative)
    auth_wait: float = attrs.field(default=60.0, validator=_non_negative)
    give_up_after: Optional[float] = attrs.field(default=None, validator=_positive)
    max_attempts: Optional[int] = attrs.field(default=None, validator=_positive)

    def delay(
        self, failures: int, *, auth: bool = False, random: Callable[[], float] = _random.random
    ) -> float:
        """Seconds to wait after ``failures`` consecutive failures (``auth``: credentials refused).

        Example:
            >>> ReconnectPolicy(initial=1.0, jitter=0.0, auth_wait=60.0).delay(1, auth=True)
            60.0
        """
        exponent = min(max(failures, 1) - 1, 64)  # 2**64 already dwarfs any sane max
        wait = min(self.initial * 2.0**exponent, self.max) + self.jitter * random()
        return max(wait, self.auth_wait) if auth else wait

    def retrying(
        self,
        stop_event: threading.Event,
        *,
        sleep: Optional[Callable[[float], Any]] = None,
        clock: Callable[[], float] = time.monotonic,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        auth_errors: tuple[type[BaseException], ...] = (),
        fatal: Callable[[BaseException], bool] = lambda error: False,
        before_sleep: Optional[Callable[[BaseException, int, float], Any]] = None,
    ) -> tenacity.Retrying:
        """Build the tenacity controller; sleeping waits on ``stop_event`` so stop() interrupts it.

        Args:
            stop_event: once set, no further attempt is made.
            sleep: replaces the wait on ``stop_event`` (tests pass a fake that advances ``clock``).
            clock: measures ``give_up_after``; tenacity's own timer cannot be injected.
            retry_on: exception types worth another attempt; anything else propagates.
            auth_errors: failures that wait at least ``auth_wait``.
            fatal: failures of a ``retry_on`` type that propagate all the same.
            before_sleep: called with (error, failures so far, seconds about to be slept).

        Example:
            >>> import threading
            >>> r = ReconnectPolicy(initial=0.01, jitter=0).retrying(threading.Event())
        """
        import tenacity

        started = clock()

        def give_up(state: tenacity.RetryCallState) -> bool:
            if stop_event.is_set():
                return True
            if self.max_attempts is not None and state.attempt_number >= self.max_attempts:
                return True
            return self.give_up_after is not None and clock() - started >= self.give_up_after

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            auth = bool(auth_errors) and isinstance(error, auth_errors)
            seconds = self.delay(state.attempt_number, auth=auth)
            if self.give_up_after is not None:
                # Never sleep past the deadline (auth_wait alone is a minute): the last attempt
                # is made at it, and giving up follows at once if that one fails too.
                seconds = min(seconds, max(0.0, started + self.give_up_after - clock()))
            return seconds

        def announce(state: tenacity.RetryCallState) -> None:
            if before_sleep is None or state.outcome is None:
                return
            error = state.outcome.exception()
            if error is not None:
                before_sleep(error, state.attempt_number, state.upcoming_sleep)

        def wait_on_stop_event(seconds: float) -> None:
            stop_event.wait(seconds)

        return tenacity.Retrying(
            sleep=sleep if sleep is not None else wait_on_stop_event,
            stop=give_up,
            wait=wait,
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, retry_on) and not fatal(e)),
            before_sleep=announce,
            reraise=False,
        )


@attrs.frozen(kw_only=True)
class StreamConfig:
    """Settings of :class:`dingsync.StreamClient`.

    Args:
        concurrency: handler threads, at most: two start with the client, more when
            handlers stall (messages wait and none finished for 10 ms); replies share an HTTP
            connection pool of this size. Frames beyond
            ``concurrency + max_pending`` make the reader wait (backpressure) instead of
            queueing without bound. ``concurrency=1`` runs every handler in order.
        max_pending: frames read and waiting for a handler thread.
        ping_interval: the client pings a connection that has been quiet this long; by
            default ``0.48 * dead_after`` (12 s): two pings fit in ``dead_after``.
        dead_after: a connection that shows no sign of life (frame or pong) for this long, or
            that takes no bytes of a write for this long, is declared dead and replaced.
        open_timeout: timeout of the gateway HTTP call, the websocket handshake and replies
            through session webhooks.
        dedupe_ttl: seconds a handled messageId is remembered for redeliveries.
        dedupe_max_entries: the memory dedupe store's bound (about 450 bytes a message): it
            keeps ``dedupe_ttl`` at up to ``dedupe_max_entries / dedupe_ttl`` messages/s.
        drain_timeout: how long :meth:`~dingsync.StreamClient.stop` waits for running
            handlers by default (``with`` blocks, ``dingworker``).
        disconnect_grace: after a server ``disconnect``, how long the old connection is still
            read (the gateway closes it after 10 s) while the new one already receives.
        proxy: ``http://user:pass@host:port`` for both the HTTP call and the websocket; by
            default the usual ``HTTPS_PROXY``/``NO_PROXY`` environment variables apply.
        ca_bundle: a CA bundle path for TLS verification (verification is always on).
        reconnect: the :class:`ReconnectPolicy`.
        user_agent: the product name sent as ``ua`` (``<user_agent>/<version>``).

    Example:
        >>> StreamConfig(concurrency=16, dead_after=2.0).ping_interval
        0.96
    """

    # Handlers mostly wait on HTTP (replies, LLMs): 16 threads is what the Java SDK uses, and a
    # 100-message burst of 50 ms handlers then takes 7 waves instead of 13.
    concurrency: int = attrs.field(default=16, validator=_positive)
    # Room to keep reading (and answering SYSTEM pings) through a burst while every handler is
    # busy; a few hundred chatbot frames are well under a MiB.
    max_pending: int = attrs.field(default=256, validator=_non_negative)
    dead_after: float = attrs.field(default=25.0, validator=_positive)
    ping_interval: float = attrs.field(validator=_positive)
    open_timeout: float = attrs.field(default=10.0, validator=_positive)
    dedupe_ttl: float = attrs.field(default=600.0, validator=_positive)
    dedupe_max_entries: int = attrs.field(default=100_000, validator=_positive)
    drain_timeout: float = attrs.field(default=30.0, validator=_non_negative)
    disconnect_grace: float = attrs.field(default=15.0, validator=_non_negative)
    proxy: Optional[str] = attrs.field(default=None, repr=False)  # may carry a password
    ca_bundle: Optional[str] = None
    reconnect: ReconnectPolicy = attrs.field(factory=ReconnectPolicy)
    user_agent: str = "dingsync"

    @ping_interval.default
    def _ping_interval_default(self) -> float:
        # Two pings fit in dead_after (at 48 % and 96 % of it), so one pong held up alone never
        # kills a healthy connection; an idle client wakes twice a ping (keepalive, reader).
        return 0.48 * self.dead_after

    @proxy.validator
    def _check_proxy(self, _attribute: Any, value: Optional[str]) -> None:
        if value is None:
            return
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "proxy must look like http://[user:password@]host:port "
                f"(got a {parts.scheme or 'scheme-less'} URL)"
            )

    def __attrs_post_init__(self) -> None:
        if self.dead_after <= self.ping_interval:
            raise ConfigurationError(
                f"dead_after ({self.dead_after}) must be longer than ping_interval "
                f"({self.ping_interval}), or every quiet connection would be declared dead"
            )
