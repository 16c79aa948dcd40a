"""The sending side: :class:`ApiClient` and its areas (robot, cards, notify, media).

Example:
    >>> import dingsync
    >>> from dingsync import messages as m
    >>> api = dingsync.ApiClient(
    ...     dingsync.Credentials(client_id="id", client_secret="s"), endpoints=dingsync.Endpoints()
    ... )
    >>> api
    ApiClient(client_id='id', robot_code='id', api='https://api.dingtalk.com', oapi='https://oapi.dingtalk.com')
    >>> api.robot.send_to_group("cid==", m.Text("nightly build ok"))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import requests

from ..config import Credentials, Endpoints
from ..errors import ConfigurationError
from ..tokens import DEFAULT_MARGIN, AccessToken, TokenCache, TokenProvider
from ._http import (
    DEFAULT_POOL_SIZE,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    NO_RETRY,
    HttpCore,
    RetryPolicy,
    Timeout,
)
from .cards import CardsApi, CardStream, DeliverResult, group_space, robot_space
from .media import MediaApi, UploadedMedia
from .notify import NotifyApi, WorkNoticeResult
from .robot import BatchSendResult, ConversationReadStatus, ReadStatus, RecallResult, RobotApi

__all__ = [
    "ApiClient",
    "RetryPolicy",
    "DEFAULT_RETRY",
    "NO_RETRY",
    "DEFAULT_TIMEOUT",
    "RobotApi",
    "CardsApi",
    "CardStream",
    "NotifyApi",
    "MediaApi",
    "BatchSendResult",
    "RecallResult",
    "ReadStatus",
    "ConversationReadStatus",
    "DeliverResult",
    "UploadedMedia",
    "WorkNoticeResult",
    "group_space",
    "robot_space",
]


class ApiClient:
    """The DingTalk OpenAPI for one app: ``api.robot``, ``api.cards``, ``api.notify``, ``api.media``.

    Tokens are fetched on first use, cached in ``token_cache`` and refreshed before they expire;
    a token DingTalk rejects is replaced once. Transient failures are retried per ``retry``.
    The client is thread-safe; share one per app.

    Args:
        credentials: the app's client id and secret (``Credentials.from_env()``).
        endpoints: base URLs; default ``Endpoints.from_env()`` (``DINGTALK_OPENAPI_ENDPOINT``,
            ``DINGTALK_OAPI_ENDPOINT``), which is how tests point at the emulator.
        token_cache: :class:`~dingsync.MemoryTokenCache` (default), ``FileTokenCache`` (shared
            by the processes of a machine) or ``RedisTokenCache`` (shared by machines).
        robot_code: the robot's code; for an internal app's robot it is the client id (default).
        timeout: seconds per request, or ``(connect, read)``.
        proxy: ``http://user:pass@host:port`` for every call; default: the ``HTTPS_PROXY`` /
            ``NO_PROXY`` environment variables.
        ca_bundle: a CA bundle file for TLS verification (for TLS-inspecting proxies).
        retry: the :class:`RetryPolicy` (``NO_RETRY`` to disable).
        sleep: how retries wait (inject a no-op in tests).
        clock: wall-clock seconds for token expiry (injectable).
        session: a ``requests.Session`` to use (adapters, mounts); default: a new one.
        token_margin: refresh tokens this many seconds before they expire.
        agent_id: the app's AgentId for work notifications (``api.notify``); default
            ``$DINGTALK_AGENT_ID``.
        pool_size: connections kept open per host (requests' ``pool_maxsize`` and
            ``pool_connections``). Set it to the number of threads that share this client
            (a worker's ``handler_threads``): with fewer, the extra threads' connections are
            discarded after each call ("Connection pool is full") and reopened. Ignored when
            ``session`` is given (configure its adapters yourself).

    Redirects are never followed (DingTalk's API does not redirect; following one would carry
    the access token to another host): they raise :class:`~dingsync.errors.UnexpectedRedirect`.

    Example:
        >>> api = ApiClient(Credentials(client_id="id", client_secret="s"), robot_code="dingbot")
        >>> api.robot.robot_code
        'dingbot'
        >>> shared = ApiClient(Credentials(client_id="id", client_secret="s"), pool_size=16)
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        endpoints: Optional[Endpoints] = None,
        token_cache: Optional[TokenCache] = None,
        robot_code: Optional[str] = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        proxy: Optional[str] = None,
        ca_bundle: Optional[str] = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.time,
        session: Optional[requests.Session] = None,
        token_margin: float = DEFAULT_MARGIN,
        pool_size: int = DEFAULT_POOL_SIZE,
        agent_id: Optional[int] = None,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise ConfigurationError(
                "credentials must be a dingsync.Credentials (try Credentials.from_env())"
            )
        if robot_code is not None and not robot_code.strip():
            raise ConfigurationError("robot_code is empty; omit it to use the client id")
        self.credentials = credentials
        self.endpoints = endpoints if endpoints is not None else Endpoints.from_env()
        self._http = HttpCore(
            endpoints=self.endpoints,
            credentials=credentials,
            timeout=timeout,
            proxy=proxy,
            ca_bundle=ca_bundle,
            retry=retry,
            sleep=sleep,
            session=session,
            pool_size=pool_size,
        )
        self.tokens = TokenProvider(
            credentials,
            fetch=self._http.fetch_token,
            cache=token_cache,
            clock=clock,
            margin=token_margin,
        )
        self._http.tokens = self.tokens
        code = robot_code or credentials.client_id
        self.robot = RobotApi(self._http, robot_code=code)
        self.cards = CardsApi(self._http, robot_code=code)
        self.notify = NotifyApi(self._http, agent_id=agent_id)
        self.media = MediaApi(self._http)

    def access_token(self, kind: str = "new") -> AccessToken:
        """The current token of ``kind`` (``"new"`` or ``"old"``), fetched if needed.

        Example:
            >>> api.access_token().expires_at  # doctest: +SKIP
            1767225600.0
        """
        return self.tokens.current(kind)

    def close(self) -> None:
        """Close the HTTP session (only if the client created it)."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ApiClient(client_id={self.credentials.client_id!r}, "
            f"robot_code={self.robot.robot_code!r}, api={self.endpoints.api!r}, "
            f"oapi={self.endpoints.oapi!r})"
        )
