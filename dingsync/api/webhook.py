"""Custom group robots (自定义机器人): ``POST oapi /robot/send?access_token=<webhook token>``.

What :class:`WebhookRobot` takes care of (reference/openapi.md §5):

* signing (加签): HMAC-SHA256 of ``"<timestamp ms>\\n<secret>"`` keyed with the secret, base64,
  fresh for every attempt;
* the robot's keywords, checked before anything is sent;
* pacing to 20 messages a minute per robot, shared by every process of the user on the machine
  (a :class:`~dingsync.ratelimit.FileRateLimiter`; pass a
  :class:`~dingsync.ratelimit.RedisRateLimiter` to share the budget between machines);
* ``msgUuid``, so that a retry after a timeout is not posted twice;
* one exception type per refusal: the four 310000 variants, unknown robots, and the
  410100/130101/660026 throttle, after which every process of the machine waits out DingTalk's
  10-minute penalty locally instead of hammering;
* a size check (``MAX_WEBHOOK_BYTES``) before anything is sent.

The webhook token and signatures never appear in ``repr()``, exceptions or logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable, Dict, Optional, Sequence
from urllib.parse import parse_qsl, urlsplit

import requests

from .._files import user_cache_dir
from ..config import Endpoints
from ..errors import (
    ApiError,
    ConfigurationError,
    InvalidRequest,
    IpNotWhitelisted,
    KeywordMissing,
    RateLimited,
    SessionExpired,
    SignatureMismatch,
    TimestampInvalid,
    WebhookError,
    WebhookNotFound,
    WebhookSecurityError,
    WebhookThrottled,
)
from ..limits import LIMITS, check_size
from ..messages import Message, MessageLike, as_message
from ..metrics import counting
from ..ratelimit import SHARED_WINDOW, FileRateLimiter, MemoryRateLimiter, RateLimiter
from ._envelopes import decode_old, json_body
from ._http import DEFAULT_RETRY, DEFAULT_TIMEOUT, Budget, HttpCore, RetryPolicy, Timeout

__all__ = [
    "WebhookRobot",
    "sign",
    "decode_webhook",
    "MESSAGES_PER_MINUTE",
    "PENALTY_SECONDS",
    "MAX_WEBHOOK_BYTES",
]

logger = logging.getLogger(__name__)

MESSAGES_PER_MINUTE = 20
PENALTY_SECONDS = 600.0
# DingTalk publishes no size limit for custom robots; 20 KB of JSON is what common clients cap
# at, and a refusal is better found here than as a message that never shows up
MAX_WEBHOOK_BYTES = LIMITS["custom robot"]
_WINDOW = SHARED_WINDOW
_THROTTLE_CODES = {"410100", "130101", "660026"}
_NOT_FOUND_CODES = {"300005", "400101", "300001", "400102", "400106", "400013"}


_shared_limiters: Dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def _machine_limiter() -> RateLimiter:
    """The pacing file of this user's cache directory, one object per process and path.

    Without a usable cache directory (a read-only container), pacing holds within the process.
    """
    try:
        path = os.path.join(user_cache_dir(), "webhook-pacing.json")
    except (ConfigurationError, OSError) as exc:
        logger.warning("webhook pacing is shared by this process only: %s", exc)
        path = ""
    with _shared_lock:
        limiter = _shared_limiters.get(path)
        if limiter is None:
            limiter = (
                FileRateLimiter(path, limit=MESSAGES_PER_MINUTE, period=_WINDOW)
                if path
                else MemoryRateLimiter(limit=MESSAGES_PER_MINUTE, period=_WINDOW)
            )
            _shared_limiters[path] = limiter
        return limiter


def sign(secret: str, timestamp_ms: int) -> str:
    """The 加签 signature: base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")), not URL-encoded.

    Example:
        >>> sign("SECabc", 1700000000000)
        'jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM='
    """
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def decode_webhook(resp: requests.Response) -> Dict[str, Any]:
    """Decode a custom robot's answer, raising the specific :class:`WebhookError` subclass."""
    body = json_body(resp)
    if not isinstance(body, dict) or "errcode" not in body:
        return decode_old(resp)
    code = str(body.get("errcode"))
    if code == "0":
        return body
    message = str(body.get("errmsg") or "")
    args = (resp.status_code, code, message, body.get("request_id"))
    if code == "310000":
        lowered = message.lower()
        if "keywords" in lowered:
            raise KeywordMissing(
                *args, body=body, hint="the message must contain one of the robot's keywords"
            )
        if "timestamp" in lowered:
            raise TimestampInvalid(
                *args, body=body, hint="this machine's clock is more than 1 hour off; sync it"
            )
        if "sign" in lowered:
            raise SignatureMismatch(
                *args,
                body=body,
                hint="secret= must be the SEC... string of the robot's 加签 security setting",
            )
        if "whitelist" in lowered:
            raise IpNotWhitelisted(
                *args, body=body, hint="add this egress IP to the robot's IP security setting"
            )
        raise WebhookSecurityError(*args, body=body)
    if code in _THROTTLE_CODES:
        raise WebhookThrottled(
            *args,
            body=body,
            retry_after=PENALTY_SECONDS,
            hint="more than 20 messages a minute: DingTalk refuses this robot for 10 minutes",
        )
    if code == "300001" and "session" in message:
        raise SessionExpired(
            *args, body=body, hint="the session webhook expired; reply through the robot OpenAPI"
        )
    if code in _NOT_FOUND_CODES:
        raise WebhookNotFound(
            *args, body=body, hint="check the webhook URL; the robot may be deleted or disabled"
        )
    if code == "43004":
        raise InvalidRequest(*args, body=body)
    if code == "90030":
        raise RateLimited(*args, body=body, hint="the webhook quota is used up")
    if code == "-1":
        raise ApiError(*args, body=body)  # "system busy": retried
    raise WebhookError(*args, body=body)


def _split(url_or_token: str, endpoints: Optional[Endpoints]) -> tuple[str, str]:
    if not isinstance(url_or_token, str) or not url_or_token.strip():
        raise ConfigurationError("url_or_token must be the robot's webhook URL or its access_token")
    value = url_or_token.strip()
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        token = dict(parse_qsl(parts.query)).get("access_token", "")
        if not token:
            raise ConfigurationError("the webhook URL has no access_token parameter")
        return f"{parts.scheme}://{parts.netloc}{parts.path}", token
    base = (endpoints or Endpoints.from_env()).oapi
    return f"{base}/robot/send", value


class WebhookRobot:
    """A custom group robot, addressed by its webhook URL (or just its access token).

    Args:
        url_or_token: ``https://oapi.dingtalk.com/robot/send?access_token=...`` or the token.
        secret: the ``SEC...`` secret when the robot uses signing (加签).
        keywords: the robot's keywords; a message containing none of them is refused locally.
        rate_limiter: pacing shared by everything using this robot; default: 20 messages per
            minute, shared by every process of this user on the machine (a
            :class:`~dingsync.ratelimit.FileRateLimiter` in the per-user cache directory), so a
            DingTalk penalty seen by one cron run is honoured by the next. Use a
            :class:`~dingsync.ratelimit.RedisRateLimiter` to share it between machines.
        endpoints: where a bare token is sent (default ``Endpoints.from_env()``).
        clock: wall-clock seconds for signatures (and the default limiter); injectable.
        sleep: how pacing waits; injectable.
        max_wait: the longest a send waits for a slot (or for a penalty to end) before raising
            :class:`~dingsync.errors.WebhookThrottled` without calling DingTalk. The default
            covers pacing but not DingTalk's 10-minute penalty; raise it above 600 to wait that
            out too. Waits over a second are logged as warnings.
        retry: the :class:`~dingsync.api.RetryPolicy`. A whole send, retries and waits for a
            slot included, takes at most ``max(retry.deadline, max_wait)`` seconds.

    Example:
        >>> robot = WebhookRobot(
        ...     "https://oapi.dingtalk.com/robot/send?access_token=0123abcd",
        ...     secret="SECxyz",
        ...     keywords=["alert"],
        ... )
        >>> robot
        WebhookRobot(url='https://oapi.dingtalk.com/robot/send', signed=True, keywords=('alert',))
        >>> robot.send("alert: disk 91%")  # doctest: +SKIP
    """

    def __init__(
        self,
        url_or_token: str,
        *,
        secret: Optional[str] = None,
        keywords: Optional[Sequence[str]] = None,
        rate_limiter: Optional[RateLimiter] = None,
        endpoints: Optional[Endpoints] = None,
        clock: Optional[Callable[[], float]] = None,
        sleep: Callable[[float], Any] = time.sleep,
        max_wait: float = 90.0,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        proxy: Optional[str] = None,
        ca_bundle: Optional[str] = None,
        session: Optional[requests.Session] = None,
    ) -> None:
        self._url, self._token = _split(url_or_token, endpoints)
        if secret is not None and not secret.strip():
            raise ConfigurationError("secret is empty; omit it when the robot does not sign")
        if isinstance(keywords, str):
            raise ConfigurationError("keywords must be a list of strings, not a single string")
        self._secret = secret.strip() if secret else None
        self.keywords = tuple(k for k in (keywords or ()) if k)
        self._clock = clock or time.time
        if rate_limiter is not None:
            self._limiter: RateLimiter = rate_limiter
        elif clock is None and sleep is time.sleep:
            # the budget belongs to the robot, not to this object or process: share it
            self._limiter = _machine_limiter()
        else:
            self._limiter = MemoryRateLimiter(
                limit=MESSAGES_PER_MINUTE,
                period=_WINDOW,
                clock=clock or time.monotonic,
                sleep=sleep,
            )
        self._max_wait = max_wait
        # the limiter key identifies the robot without revealing its token
        self.key = "webhook:" + hashlib.sha256(self._token.encode()).hexdigest()[:16]
        self._http = HttpCore(
            endpoints=endpoints or Endpoints(),
            timeout=timeout,
            proxy=proxy,
            ca_bundle=ca_bundle,
            retry=retry,
            sleep=sleep,
            session=session,
        )

    def __repr__(self) -> str:
        return (
            f"WebhookRobot(url={self._url!r}, signed={self._secret is not None}, "
            f"keywords={self.keywords!r})"
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()

    def __enter__(self) -> WebhookRobot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: MessageLike, *, msg_uuid: Optional[str] = None) -> str:
        """Send a message (a str becomes :class:`~dingsync.messages.Text`); returns its msgUuid.

        Waits for a free slot of the 20-a-minute budget (at most ``max_wait`` seconds). Pass the
        returned ``msg_uuid`` again when you retry a send yourself: DingTalk drops duplicates.

        Example:
            >>> robot.send(m.Markdown("Deploy", "**v1.2** is live", at_all=True))  # doctest: +SKIP

        Raises:
            UnsupportedMessage: the type cannot go through a webhook (images, files...).
            KeywordMissing: none of ``keywords`` is in the message (nothing was sent).
            WebhookThrottled: the budget or DingTalk's penalty would need a longer wait.
            SignatureMismatch, TimestampInvalid, IpNotWhitelisted, WebhookNotFound: refusals.
        """
        msg = as_message(message)
        body = msg.to_webhook()
        self._check_keywords(msg)
        body["msgUuid"] = msg_uuid or uuid.uuid4().hex
        check_size("custom robot", body)
        # one deadline for the whole send, waits for a slot included; a max_wait raised above
        # it (to wait out a penalty) raises the deadline with it
        budget = Budget(max(self._http.retry.deadline, self._max_wait))

        def attempt() -> Dict[str, Any]:
            self._take_slot(budget)
            try:
                answer: Dict[str, Any] = self._http.send_once(
                    "POST",
                    self._url,
                    decode=decode_webhook,
                    idempotent=True,
                    json=body,
                    params=self._query(),
                )
            except WebhookThrottled:
                self._limiter.penalize(self.key, PENALTY_SECONDS)
                raise
            except TimestampInvalid as exc:
                if self._secret is None:
                    raise SignatureMismatch(
                        exc.status,
                        exc.code,
                        exc.message,
                        exc.request_id,
                        body=exc.body,
                        hint="this robot signs its messages (加签) and no secret was given: set "
                        "secret= (DINGTALK_WEBHOOK_SECRET) to its SEC... string",
                    ) from exc
                raise
            return answer

        with counting("custom_robot"):
            self._http.retrying(attempt, idempotent=True, budget=budget)
        return str(body["msgUuid"])

    def _query(self) -> Dict[str, str]:
        query = {"access_token": self._token}
        if self._secret is not None:
            timestamp = int(self._clock() * 1000)
            # requests encodes params once; quoting the signature here would double-encode it
            query["timestamp"] = str(timestamp)
            query["sign"] = sign(self._secret, timestamp)
        return query

    def _check_keywords(self, message: Message) -> None:
        if not self.keywords:
            return
        text = message.searchable_text()
        if not any(k in text for k in self.keywords):
            raise KeywordMissing(
                200,
                "310000",
                "keywords not in content",
                hint=f"checked locally, nothing was sent; include one of {list(self.keywords)}",
            )

    def _take_slot(self, budget: Budget) -> None:
        max_wait = min(self._max_wait, max(0.0, budget.left()))
        wait = self._limiter.wait_for_slot(self.key, max_wait=max_wait, around_sleep=budget.sleep)
        if wait <= 0:
            return
        penalty = self._limiter.penalty_remaining(self.key)
        if penalty > 0:
            message = f"DingTalk's 10-minute penalty has {penalty:.0f} s left; not sending"
            code = "410100"
        else:
            message = (
                f"the 20-a-minute budget frees a slot in {wait:.1f} s; waiting longer than "
                f"{max_wait:.0f} s would pass max_wait or the send's deadline"
            )
            code = "local"
        raise WebhookThrottled(
            200, code, message, retry_after=wait, hint="checked locally, nothing was sent"
        )
