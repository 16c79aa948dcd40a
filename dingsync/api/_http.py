"""The one HTTP boundary of the sending side: session, error mapping, retries, token refresh.

Everything the OpenAPI wrappers send goes through :class:`HttpCore`:

1. ``requests`` exceptions are translated here, and only here, into dingsync's
   :class:`~dingsync.errors.TransportError` family (``raise ... from exc``). Their messages are
   scrubbed of query strings first, because old-style URLs carry the access token and ``/gettoken``
   carries the app secret.
2. Both response envelopes are mapped to :class:`~dingsync.errors.ApiError` subclasses: the
   new-style ``{code, message, requestid}`` with an HTTP error status, and the old-style
   ``{errcode, errmsg}`` at HTTP 200; non-JSON bodies (an HTML ban page, ``punish: deny``) too.
3. A rejected token is invalidated and the call repeated once with a fresh token.
4. Transient failures are retried with exponential backoff and jitter (reference/openapi.md §9.3),
   within one total deadline per call; DingTalk's Retry-After is honoured, and every wait over a
   second is logged. A call that may already have reached DingTalk (read timeout, dropped
   connection, a proxy's 5xx) is only repeated when it is idempotent; sends are not, so they
   raise with ``maybe_sent=True`` instead.
5. Redirects are never followed: DingTalk's API does not redirect, and following one would carry
   the access token to another host.
6. Tokens are fetched under their own retries (fetching is idempotent); a token that cannot be
   fetched raises :class:`~dingsync.errors.TokenUnavailable`, which says nothing was sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, TypeVar, Union
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .._redact import redact_logger
from .._version import __version__
from ..config import Credentials, Endpoints
from ..errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    ConnectionLost,
    DingSyncError,
    RateLimited,
    RequestTimeout,
    TokenUnavailable,
    TransportError,
    UnexpectedRedirect,
)
from ..tokens import TokenProvider
from ._envelopes import (
    BAN_CODE,
    decode_new,
    decode_old,
    json_body,
    mark_maybe_sent,
    old_error,
    scrub,
    snippet,
    token_rejected,
    where,
)
from ._retry import (
    _EXHAUSTED,
    DEFAULT_RETRY,
    NO_RETRY,
    Budget,
    RetryPolicy,
    Sleep,
    run_with_retries,
)

__all__ = [
    "HttpCore",
    "RetryPolicy",
    "DEFAULT_TIMEOUT",
    "DEFAULT_RETRY",
    "NO_RETRY",
    "DEFAULT_POOL_SIZE",
    "Budget",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Timeout = Union[float, Tuple[float, float]]
Decoder = Callable[[requests.Response], Any]

DEFAULT_TIMEOUT: Timeout = 10.0
DEFAULT_POOL_SIZE = 10
_CHUNK = 64 * 1024


class HttpCore:
    """One ``requests.Session`` plus the error mapping, retries and token refresh.

    Not public: :class:`~dingsync.api.ApiClient` and :class:`~dingsync.api.webhook.WebhookRobot`
    own one each.
    """

    def __init__(
        self,
        *,
        endpoints: Endpoints,
        credentials: Optional[Credentials] = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        proxy: Optional[str] = None,
        ca_bundle: Optional[str] = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Sleep = time.sleep,
        session: Optional[requests.Session] = None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigurationError(f"pool_size must be a positive integer, got {pool_size!r}")
        self.endpoints = endpoints
        self.credentials = credentials
        self.timeout = timeout
        self.retry = retry
        self.tokens: Optional[TokenProvider] = None
        self._sleep = sleep
        self._session = session if session is not None else _new_session(pool_size)
        self._owns_session = session is None
        # explicit per-request proxies beat HTTPS_PROXY; session.proxies would not (requests quirk)
        self._proxies = {"http": proxy, "https": proxy} if proxy else None
        self._verify: Union[bool, str] = ca_bundle if ca_bundle else True
        self._headers = {"Accept": "application/json", "User-Agent": f"dingsync/{__version__}"}
        self._banned_until = 0.0
        self._ban: Optional[RateLimited] = None
        self._local = threading.local()
        redact_logger("urllib3.connectionpool")

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # -- public entry points ------------------------------------------------------------------
    def api(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        idempotent: bool = True,
        retry: bool = True,
    ) -> Any:
        """Call the new-style API with the header token; returns the decoded body.

        ``retry=False`` makes one attempt (for updates that a newer one will supersede).
        """
        return self.request(
            method,
            self.endpoints.api + path,
            json=json,
            params=params,
            auth="new",
            decode=decode_new,
            idempotent=idempotent,
            retry=retry,
        )

    def oapi(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        files: Any = None,
        data: Any = None,
        idempotent: bool = True,
    ) -> Dict[str, Any]:
        """Call the old-style API with the query token; returns the decoded body."""
        result: Dict[str, Any] = self.request(
            method,
            self.endpoints.oapi + path,
            json=json,
            params=params,
            files=files,
            data=data,
            auth="old",
            decode=decode_old,
            idempotent=idempotent,
        )
        return result

    def fetch_token(self, kind: str) -> Tuple[str, float]:
        """Fetch a token of ``kind`` from DingTalk (the :class:`TokenProvider`'s ``fetch``).

        Runs its own retry loop even inside a send's attempt: fetching a token is idempotent,
        and a blip on the token endpoint must neither fail the send nor make it "maybe sent".
        """
        creds = self.credentials
        if creds is None:
            raise ConfigurationError("this client has no credentials to fetch tokens with")

        def once() -> Any:
            if kind == "new":
                return self.send_once(
                    "POST",
                    self.endpoints.api + "/v1.0/oauth2/accessToken",
                    json={"appKey": creds.client_id, "appSecret": creds.client_secret},
                    decode=decode_new,
                    idempotent=True,
                )
            return self.send_once(
                "GET",
                self.endpoints.oapi + "/gettoken",
                params={"appkey": creds.client_id, "appsecret": creds.client_secret},
                decode=decode_old,
                idempotent=True,
            )

        try:
            if self.retry.attempts <= 1:
                body = once()
            else:
                body = self._retry_loop(once, idempotent=True, budget=self._current_budget())
        except TransportError as exc:
            raise TokenUnavailable(
                f"could not fetch the {kind}-style access token, so nothing was sent: {exc}"
            ) from exc
        except DingSyncError as exc:
            setattr(exc, _EXHAUSTED, True)  # the call's own loop must not repeat these retries
            raise
        if kind == "new":
            value, expires = body.get("accessToken"), body.get("expireIn", 7200)
        else:
            value, expires = body.get("access_token"), body.get("expires_in", 7200)
        if not isinstance(value, str) or not value:
            raise ApiError(200, "InvalidResponse", f"the {kind}-style token endpoint sent no token")
        return value, float(expires) if isinstance(expires, (int, float)) else 7200.0

    def request(
        self,
        method: str,
        url: str,
        *,
        decode: Decoder,
        idempotent: bool,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        files: Any = None,
        data: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        auth: Optional[str] = None,
        retry: bool = True,
    ) -> Any:
        """Send with retries, token refresh and error mapping; ``decode`` reads the answer."""

        def attempt() -> Any:
            return self._authed(
                method,
                url,
                decode=decode,
                idempotent=idempotent,
                json=json,
                params=params,
                files=files,
                data=data,
                headers=headers,
                auth=auth,
            )

        return self.retrying(attempt, idempotent=idempotent) if retry else attempt()

    def retrying(
        self, fn: Callable[[], T], *, idempotent: bool, budget: Optional[Budget] = None
    ) -> T:
        """Run ``fn`` under the retry policy and the call's deadline (``budget``).

        Loops do not nest: a call made inside another call's attempt makes one attempt, and the
        outer loop retries it. Token fetches are the exception (see :meth:`fetch_token`).
        """
        if self.retry.attempts <= 1 or getattr(self._local, "budget", None) is not None:
            return fn()
        self._local.budget = budget if budget is not None else Budget(self.retry.deadline)
        try:
            return self._retry_loop(fn, idempotent=idempotent, budget=self._local.budget)
        finally:
            self._local.budget = None

    def new_budget(self) -> Budget:
        """A fresh deadline budget for one call (``retry.deadline`` seconds)."""
        return Budget(self.retry.deadline)

    def _current_budget(self) -> Budget:
        budget: Optional[Budget] = getattr(self._local, "budget", None)
        return budget if budget is not None else self.new_budget()

    def _retry_loop(self, fn: Callable[[], T], *, idempotent: bool, budget: Budget) -> T:
        return run_with_retries(
            fn, policy=self.retry, idempotent=idempotent, budget=budget, sleep=self._sleep
        )

    def download_to(
        self,
        url: str,
        dest: str,
        *,
        progress: Optional[Callable[[int, Optional[int]], Any]] = None,
    ) -> int:
        """Stream ``url`` into ``dest`` atomically (temp file + rename); returns the byte count.

        No token is sent: DingTalk's download URLs are pre-signed, and a token must never reach
        another host. On any failure the temporary file is removed and ``dest`` is untouched.
        """

        def attempt() -> int:
            directory = os.path.dirname(os.path.abspath(dest))
            fd, tmp = tempfile.mkstemp(
                prefix=f".{os.path.basename(dest)}.", suffix=".part", dir=directory
            )
            try:
                with os.fdopen(fd, "wb") as out:
                    done = self._stream_into(url, out, progress)
                os.replace(tmp, dest)
                return done
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

        return self.retrying(attempt, idempotent=True)

    # -- internals ------------------------------------------------------------------------------
    def _stream_into(
        self, url: str, out: Any, progress: Optional[Callable[[int, Optional[int]], Any]]
    ) -> int:
        self._check_ban()
        with self._translate("GET", url, idempotent=True):
            with self._session.get(
                url,
                stream=True,
                timeout=self.timeout,
                proxies=self._proxies,
                verify=self._verify,
                headers={"User-Agent": self._headers["User-Agent"]},
            ) as resp:
                if resp.status_code >= 300:
                    body = json_body(resp)
                    if isinstance(body, dict) and "errcode" in body:
                        raise old_error(resp.status_code, body)
                    if isinstance(body, dict):
                        decode_new(resp)
                    raise ApiError(
                        resp.status_code,
                        f"HTTP{resp.status_code}",
                        f"download failed: {snippet(resp)}",
                        hint="download URLs are temporary; ask for a new one with download_url()",
                    )
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                done = 0
                for chunk in resp.iter_content(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
                if total is not None and done != total:
                    raise ConnectionLost(f"download truncated: got {done} of {total} bytes")
                return done

    def _check_ban(self) -> None:
        remaining = self._banned_until - time.monotonic()
        if remaining > 0 and self._ban is not None:
            raise RateLimited(
                self._ban.status,
                self._ban.code,
                f"not calling DingTalk: this IP is blocked for another {remaining:.0f} s",
                self._ban.request_id,
                retry_after=remaining,
            )

    def _authed(
        self,
        method: str,
        url: str,
        *,
        decode: Decoder,
        idempotent: bool,
        json: Any,
        params: Optional[Mapping[str, Any]],
        files: Any,
        data: Any,
        headers: Optional[Mapping[str, str]],
        auth: Optional[str],
    ) -> Any:
        def send(token: Optional[str]) -> Any:
            merged = dict(self._headers)
            merged.update(headers or {})
            query = dict(params or {})
            if auth == "new" and token is not None:
                merged["x-acs-dingtalk-access-token"] = token
            elif auth == "old" and token is not None:
                query["access_token"] = token
            return self.send_once(
                method,
                url,
                decode=decode,
                idempotent=idempotent,
                json=json,
                params=query,
                files=files,
                data=data,
                headers=merged,
            )

        if auth is None:
            return send(None)
        if self.tokens is None:
            raise ConfigurationError("this client has no token provider")
        token = self.tokens.get(auth)
        try:
            return send(token)
        except ApiError as exc:
            if not token_rejected(exc):
                raise
            logger.info("the %s-style token was rejected (%s); fetching a new one", auth, exc.code)
            self.tokens.invalidate(auth, token)
        token = self.tokens.get(auth)
        try:
            return send(token)
        except ApiError as exc:
            if not token_rejected(exc):
                raise
            raise AuthError(
                f"DingTalk rejected a freshly fetched access token ({exc.code}: {exc.message})",
                status=exc.status,
                code=exc.code,
                request_id=exc.request_id,
            ) from exc

    def send_once(
        self,
        method: str,
        url: str,
        *,
        decode: Decoder,
        idempotent: bool,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        files: Any = None,
        data: Any = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Any:
        """One request, no retry and no token: errors mapped, the answer decoded."""
        self._check_ban()
        started = time.monotonic()
        with self._translate(method, url, idempotent=idempotent):
            resp = self._session.request(
                method,
                url,
                params=params or None,
                json=json,
                files=files,
                data=data,
                headers=headers if headers is not None else self._headers,
                timeout=self.timeout,
                proxies=self._proxies,
                verify=self._verify,
                allow_redirects=False,
            )
        logger.debug(
            "%s -> %s in %.0f ms",
            where(method, url),
            resp.status_code,
            (time.monotonic() - started) * 1000,
        )
        if 300 <= resp.status_code < 400:
            location = resp.headers.get("Location") or ""
            raise UnexpectedRedirect(
                resp.status_code,
                urlsplit(location).hostname or "",
                request_id=resp.headers.get("x-acs-request-id"),
                hint="check the endpoint settings and any proxy between you and DingTalk",
            )
        try:
            return decode(resp)
        except RateLimited as exc:
            if exc.code == BAN_CODE:
                self._ban = exc
                self._banned_until = time.monotonic() + (exc.retry_after or 300.0)
            raise
        except ApiError as exc:
            if not idempotent:
                mark_maybe_sent(exc)
            raise

    @contextlib.contextmanager
    def _translate(self, method: str, url: str, *, idempotent: bool) -> Iterator[None]:
        """Map ``requests`` exceptions to dingsync's; the one place where that happens."""
        location = where(method, url)
        try:
            yield
        except requests.RequestException as exc:
            mapped = _map_requests_error(exc, location, idempotent)
            _scrub_chain(exc)
            raise mapped from exc


def _new_session(pool_size: int) -> requests.Session:
    """A session whose connection pools hold ``pool_size`` connections per host.

    requests' default of 10 makes the 11th concurrent thread open and then discard a connection
    ("Connection pool is full"); sized to the number of threads, every one is reused.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _map_requests_error(
    exc: requests.RequestException, where: str, idempotent: bool
) -> DingSyncError:
    resend = (
        "it was not retried automatically because this call is not idempotent; check whether "
        "it arrived before sending again"
    )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RequestTimeout(f"{where}: timed out while connecting", maybe_sent=False)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        text = f"{where}: timed out waiting for the answer"
        if not idempotent:
            text = f"{text}; the request may have been processed, and {resend}"
        return RequestTimeout(text, maybe_sent=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportError(
            f"{where}: TLS failed ({_root_reason(exc)}); behind a TLS-inspecting proxy pass "
            "ca_bundle= with its CA certificate"
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        return TransportError(
            f"{where}: the proxy failed ({_root_reason(exc)}); check proxy= or HTTPS_PROXY"
        )
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return ConfigurationError(f"{where}: invalid URL")
    if isinstance(exc, requests.exceptions.ConnectionError) and _never_connected(exc):
        return TransportError(f"{where}: could not connect ({_root_reason(exc)})")
    if isinstance(
        exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)
    ):
        text = f"{where}: the connection dropped ({_root_reason(exc)})"
        if not idempotent:
            text = f"{text}; it may have been processed, and {resend}"
        return ConnectionLost(text)
    return TransportError(f"{where}: {type(exc).__name__}: {scrub(str(exc))}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 12:
        yield current
        reason = getattr(current, "reason", None)
        nested = (
            current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        )
        if isinstance(reason, BaseException):
            current = reason
        elif nested is not None:
            current = nested
        else:
            current = current.__cause__ or current.__context__
        seen += 1


def _never_connected(exc: BaseException) -> bool:
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    return any(isinstance(e, (NewConnectionError, ConnectTimeoutError)) for e in _chain(exc))


def _root_reason(exc: BaseException) -> str:
    *_, root = _chain(exc)
    text = str(root) or type(root).__name__
    # urllib3 prefixes "<connection object at 0x...>: "; the address says nothing useful
    text = re.sub(r"<[^>]+ object at 0x[0-9a-f]+>:\s*", "", text)
    return scrub(text)


def _scrub_chain(exc: BaseException) -> None:
    """Remove query strings (tokens, secrets) from a foreign exception chain: the messages, and
    the URLs kept as attributes (``requests``' ``.request.url``, urllib3's ``.url``)."""
    for item in _chain(exc):
        with contextlib.suppress(Exception):
            item.args = tuple(
                scrub(str(a)) if not isinstance(a, BaseException) else a for a in item.args
            )
        for holder in (item, getattr(item, "request", None), getattr(item, "response", None)):
            url = getattr(holder, "url", None)
            if isinstance(url, str):
                with contextlib.suppress(Exception):
                    holder.url = scrub(url)  # type: ignore[union-attr]
        context = item.__context__
        if context is not None and context is not item.__cause__:
            with contextlib.suppress(Exception):
                context.args = tuple(scrub(str(a)) for a in context.args)
