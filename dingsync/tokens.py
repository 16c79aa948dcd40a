"""Access tokens: fetched once, cached, refreshed before they expire, shared across workers.

DingTalk has two kinds of app token, fetched and cached separately (reference/openapi.md §2):
``"new"`` from ``POST /v1.0/oauth2/accessToken`` (header auth on api.dingtalk.com) and ``"old"``
from ``GET /gettoken`` (query auth on oapi.dingtalk.com). Both live 7200 s.

:class:`TokenProvider` is the single-flight logic; a *cache* only stores tokens:

* :class:`MemoryTokenCache`: this process (the default).
* :class:`FileTokenCache`: every process of this user on the machine (cron jobs, serverless
  /tmp, gunicorn workers). Locked read-modify-write, mode 0600, atomic replace, in a per-user
  directory; a corrupt file is ignored and rewritten, a file owned by another user is refused.
* :class:`RedisTokenCache`: every machine using the same Redis. When Redis fails, it degrades:
  tokens are fetched and kept in this process's memory (one warning), and sends go on.

A token that cannot be refreshed while the cached one is still valid (inside the refresh margin)
is used as it is, with a warning: a blip on the token endpoint does not fail a send.

Only one fetch per key runs at a time: a thread lock inside the process, plus the cache's own lock
(a file lock, or a Redis ``SET NX PX`` lock) across processes. Cache keys hold the client id and
the kind but never the secret (only a short hash of it, so a rotated secret gets a new key).
Token values never appear in ``repr()`` or in logs.

Example:
    >>> cache = MemoryTokenCache()
    >>> provider = TokenProvider(
    ...     Credentials(client_id="id", client_secret="s"),
    ...     fetch=lambda kind: ("tok-" + kind, 7200.0),
    ...     cache=cache,
    ... )
    >>> provider.get("new")
    'tok-new'
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    Optional,
    Tuple,
    Union,
)

import attrs

from ._files import FileLock, read_json, user_cache_dir, write_json
from .config import Credentials
from .errors import ConfigurationError, DingSyncError, StoreUnavailable
from .ratelimit import redis_call, redis_from

if TYPE_CHECKING:
    import redis

__all__ = [
    "AccessToken",
    "TokenCache",
    "MemoryTokenCache",
    "FileTokenCache",
    "RedisTokenCache",
    "TokenProvider",
    "TOKEN_KINDS",
    "DEFAULT_MARGIN",
]

logger = logging.getLogger(__name__)

TOKEN_KINDS = ("new", "old")
DEFAULT_MARGIN = 300.0  # the official SDK refreshes 5 minutes early as well
_MIN_LIFETIME = 60.0  # a server answering expireIn=0 must not cause a refresh loop
_STILL_VALID = 60.0  # a cached token this close to expiry is not used when a refresh fails

Fetch = Callable[[str], Tuple[str, float]]


@attrs.frozen(kw_only=True)
class AccessToken:
    """A token and when it expires (epoch seconds). The value is never shown by ``repr()``.

    Example:
        >>> AccessToken(value="abc", kind="new", expires_at=100.0, refresh_at=50.0)
        AccessToken(kind='new', expires_at=100.0, refresh_at=50.0)
    """

    value: str = attrs.field(repr=False)
    kind: str
    expires_at: float
    refresh_at: float

    def fresh(self, now: float) -> bool:
        """True while the token is usable and not yet due for a refresh."""
        return now < self.refresh_at and now < self.expires_at

    def to_json(self) -> Dict[str, Any]:
        return {
            "value": self.value,
            "kind": self.kind,
            "expires_at": self.expires_at,
            "refresh_at": self.refresh_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> Optional[AccessToken]:
        """Parse a stored entry; None for anything malformed (caches never crash on bad data)."""
        if not isinstance(data, dict):
            return None
        value, kind = data.get("value"), data.get("kind")
        expires_at, refresh_at = data.get("expires_at"), data.get("refresh_at")
        if not isinstance(value, str) or not value or not isinstance(kind, str):
            return None
        if not isinstance(expires_at, (int, float)) or not isinstance(refresh_at, (int, float)):
            return None
        return cls(value=value, kind=kind, expires_at=float(expires_at), refresh_at=refresh_at)


class TokenCache(abc.ABC):
    """Where tokens are stored. Subclass it to plug in another store.

    ``lock(key)`` must exclude other processes (and threads) sharing the store for as long as
    the context is held; ``set``/``delete`` may be called while it is held.
    """

    @abc.abstractmethod
    def get(self, key: str) -> Optional[AccessToken]: ...

    @abc.abstractmethod
    def set(self, key: str, token: AccessToken, *, ttl: float) -> None:
        """Store ``token``; ``ttl`` is its remaining lifetime in seconds."""

    @abc.abstractmethod
    def delete(self, key: str, *, value: Optional[str] = None) -> None:
        """Remove ``key``; with ``value``, only if the stored token is that one."""

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        yield


class MemoryTokenCache(TokenCache):
    """Tokens in this process's memory (the default).

    Example:
        >>> MemoryTokenCache()
        MemoryTokenCache(entries=0)
    """

    def __init__(self) -> None:
        self._tokens: Dict[str, AccessToken] = {}
        self._guard = threading.Lock()

    def get(self, key: str) -> Optional[AccessToken]:
        with self._guard:
            return self._tokens.get(key)

    def set(self, key: str, token: AccessToken, *, ttl: float) -> None:
        with self._guard:
            self._tokens[key] = token

    def delete(self, key: str, *, value: Optional[str] = None) -> None:
        with self._guard:
            current = self._tokens.get(key)
            if current is not None and (value is None or current.value == value):
                del self._tokens[key]

    def __repr__(self) -> str:
        return f"MemoryTokenCache(entries={len(self._tokens)})"


def _default_path() -> str:
    return os.path.join(user_cache_dir(), "tokens.json")


class FileTokenCache(TokenCache):
    """Tokens in a JSON file shared by every process of this user on the machine.

    Writes take an exclusive ``flock`` on ``<path>.lock``, read the file, change it, write a
    temporary file with mode 0600 and ``os.replace`` it over the old one, so readers never see a
    half-written file. A file that cannot be parsed is ignored (logged once) and rewritten on the
    next store. Holding :meth:`lock` around a fetch makes the other processes wait for its result
    instead of fetching their own token. A token or lock file owned by another user is refused
    with a :class:`~dingsync.errors.ConfigurationError` (its owner could read the tokens or hold
    the lock forever).

    Args:
        path: the JSON file; default ``tokens.json`` in the per-user cache directory:
            ``$DINGSYNC_CACHE_DIR``, else ``$XDG_CACHE_HOME/dingsync`` (``~/.cache/dingsync``),
            else ``<tmp>/dingsync-<uid>`` when there is no usable home (AWS Lambda).

    Example:
        >>> cache = FileTokenCache("/tmp/dingsync-doctest-tokens.json")
        >>> cache.path
        '/tmp/dingsync-doctest-tokens.json'
    """

    def __init__(self, path: Union[str, os.PathLike[str], None] = None) -> None:
        self.path = os.fspath(path) if path is not None else _default_path()
        self._file_lock = FileLock(self.path + ".lock")

    @contextlib.contextmanager
    def lock(self, key: str = "") -> Iterator[None]:
        with self._file_lock:
            yield

    def get(self, key: str) -> Optional[AccessToken]:
        return AccessToken.from_json(read_json(self.path).get(key))

    def set(self, key: str, token: AccessToken, *, ttl: float) -> None:
        with self._file_lock:
            data = read_json(self.path)
            # drop entries that expired a day before this token was issued, so the file does not
            # grow forever (measured on the writer's clock, which may be injected)
            horizon = token.expires_at - ttl - 86400.0
            data = {
                k: v
                for k, v in data.items()
                if (entry := AccessToken.from_json(v)) is not None and entry.expires_at > horizon
            }
            data[key] = token.to_json()
            write_json(self.path, data)

    def delete(self, key: str, *, value: Optional[str] = None) -> None:
        with self._file_lock:
            data = read_json(self.path)
            current = AccessToken.from_json(data.get(key))
            if key in data and (value is None or current is None or current.value == value):
                del data[key]
                write_json(self.path, data)

    def __repr__(self) -> str:
        return f"FileTokenCache(path={self.path!r})"


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_DELETE_IF = """
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local ok, entry = pcall(cjson.decode, raw)
if (not ok) or type(entry) ~= 'table' or entry['value'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisTokenCache(TokenCache):
    """Tokens in Redis, shared by every machine using the same server.

    Entries expire in Redis with the token. The fetch lock is ``SET <key>:lock <uuid> NX PX``,
    released only by its owner and renewed every ``lock_ttl / 3`` seconds while the fetch runs,
    so a holder that is killed frees it within ``lock_ttl`` seconds.

    Redis failures never fail a send: while Redis is unreachable (or slower than the client's
    ``socket_timeout``, 2 s for a URL), tokens are fetched without the shared cache and kept in
    this process's memory; one warning says so, and an info line when Redis is back.

    Args:
        redis_client_or_url: a ``redis.Redis`` client or a ``redis://`` URL.
        prefix: key prefix.
        lock_ttl: seconds after which the lock of a holder that died frees itself.
        lock_timeout: how long to wait for the lock before fetching anyway (better a second
            fetch than a failed call).

    Example:
        >>> cache = RedisTokenCache("redis://127.0.0.1:6379/0")  # doctest: +SKIP
    """

    def __init__(
        self,
        redis_client_or_url: Union[str, redis.Redis],
        *,
        prefix: str = "dingsync:token:",
        lock_ttl: float = 5.0,
        lock_timeout: float = 30.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        if lock_ttl <= 0:
            raise ConfigurationError(f"lock_ttl must be positive, got {lock_ttl!r}")
        self._redis = redis_from(redis_client_or_url)
        self._prefix = prefix
        self._lock_ttl = lock_ttl
        self._lock_timeout = lock_timeout
        self._sleep = sleep
        self._release = self._redis.register_script(_RELEASE)
        self._delete_if = self._redis.register_script(_DELETE_IF)
        self._renew = self._redis.register_script(_RENEW)
        self._local = MemoryTokenCache()  # where tokens live while Redis is down
        self._down = False
        self._retry_at = 0.0

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one Redis call; on failure log once per outage and return ``_FAILED``.

        After a failure Redis is left alone for ``_REDIS_PAUSE`` seconds, so a Redis that
        times out costs one timeout per pause, not one per call.
        """
        if self._down and time.monotonic() < self._retry_at:
            return _FAILED
        try:
            with redis_call("token cache"):
                result = fn()
        except StoreUnavailable as exc:
            self._retry_at = time.monotonic() + _REDIS_PAUSE
            if not self._down:
                self._down = True
                logger.warning(
                    "the Redis token cache failed (%s: %s); fetching tokens without it until "
                    "Redis is back",
                    what,
                    exc,
                )
            return _FAILED
        if self._down:
            self._down = False
            logger.info("the Redis token cache is reachable again")
        return result

    def get(self, key: str) -> Optional[AccessToken]:
        raw = self._call("read", lambda: self._redis.get(self._prefix + key))
        if raw is _FAILED:
            return self._local.get(key)
        if raw is None:
            return None
        try:
            return AccessToken.from_json(json.loads(raw))
        except ValueError:
            return None

    def set(self, key: str, token: AccessToken, *, ttl: float) -> None:
        self._local.set(key, token, ttl=ttl)
        ttl_ms = max(1, int(ttl * 1000))
        self._call(
            "write",
            lambda: self._redis.set(self._prefix + key, json.dumps(token.to_json()), px=ttl_ms),
        )

    def delete(self, key: str, *, value: Optional[str] = None) -> None:
        self._local.delete(key, value=value)
        if value is None:
            self._call("delete", lambda: self._redis.delete(self._prefix + key))
        else:
            self._call("delete", lambda: self._delete_if(keys=[self._prefix + key], args=[value]))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        name = self._prefix + key + ":lock"
        owner = os.urandom(16).hex()  # uuid4's randomness, without importing uuid
        ttl_ms = max(1, int(self._lock_ttl * 1000))
        deadline = time.monotonic() + self._lock_timeout
        acquired = False
        while True:
            taken = self._call("lock", lambda: self._redis.set(name, owner, nx=True, px=ttl_ms))
            if taken is _FAILED:
                break  # no Redis, no lock to share: this process fetches on its own
            if taken:
                acquired = True
                break
            if time.monotonic() >= deadline:
                logger.warning(
                    "token lock %s still held after %.0f s; fetching anyway",
                    key,
                    self._lock_timeout,
                )
                break
            self._sleep(0.05)
        stop = threading.Event()
        renewer = None
        if acquired:
            renewer = threading.Thread(
                target=self._keep_lock,
                args=(name, owner, ttl_ms, stop),
                name="dingsync-token-lock",
                daemon=True,
            )
            renewer.start()
        try:
            yield
        finally:
            stop.set()
            if renewer is not None:
                renewer.join()
            if acquired:
                self._call("unlock", lambda: self._release(keys=[name], args=[owner]))

    def _keep_lock(self, name: str, owner: str, ttl_ms: int, stop: threading.Event) -> None:
        while not stop.wait(self._lock_ttl / 3):
            self._call("lock renewal", lambda: self._renew(keys=[name], args=[owner, ttl_ms]))

    def __repr__(self) -> str:
        return f"RedisTokenCache(prefix={self._prefix!r})"


_FAILED = object()
_REDIS_PAUSE = 5.0


class TokenProvider:
    """Hands out a valid token of each kind, fetching it at most once at a time.

    Args:
        credentials: the app's credentials (only a hash of the secret goes into cache keys).
        fetch: ``fetch(kind) -> (token, expires_in_seconds)``; the HTTP layer provides it.
        cache: where tokens live; default :class:`MemoryTokenCache`.
        clock: wall-clock seconds (tokens are shared across processes, so not monotonic).
        margin: refresh this many seconds before expiry (at most half the lifetime).

    Example:
        >>> provider = TokenProvider(
        ...     Credentials(client_id="id", client_secret="s"), fetch=lambda kind: ("t", 7200.0)
        ... )
        >>> provider.current("old").kind
        'old'
    """

    def __init__(
        self,
        credentials: Credentials,
        fetch: Fetch,
        *,
        cache: Optional[TokenCache] = None,
        clock: Callable[[], float] = time.time,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self._credentials = credentials
        self._fetch = fetch
        self.cache: TokenCache = cache if cache is not None else MemoryTokenCache()
        self._clock = clock
        self._margin = margin
        self._locks = {kind: threading.Lock() for kind in TOKEN_KINDS}

    def cache_key(self, kind: str) -> str:
        """``<client id>:<kind>:<12 hex of sha256(client id + secret)>``."""
        _check_kind(kind)
        creds = self._credentials
        digest = hashlib.sha256(f"{creds.client_id}\0{creds.client_secret}".encode()).hexdigest()[
            :12
        ]
        return f"{creds.client_id}:{kind}:{digest}"

    def current(self, kind: str = "new") -> AccessToken:
        """The cached token of ``kind``, fetched first when missing or due for refresh.

        When the refresh fails but the cached token is still valid for more than a minute, the
        cached token is returned (with a warning) instead of failing the caller.
        """
        key = self.cache_key(kind)
        token = self.cache.get(key)
        if token is not None and token.fresh(self._clock()):
            return token
        with self._locks[kind]:
            token = self.cache.get(key) or token
            if token is not None and token.fresh(self._clock()):
                return token
            try:
                return self._refresh(kind, key)
            except DingSyncError as exc:
                left = token.expires_at - self._clock() if token is not None else 0.0
                if token is None or left <= _STILL_VALID:
                    raise
                logger.warning(
                    "could not refresh the %s-style token (%s); using the cached one, valid "
                    "for another %.0f s",
                    kind,
                    type(exc).__name__,
                    left,
                )
                return token

    def _refresh(self, kind: str, key: str) -> AccessToken:
        with self.cache.lock(key):
            # another process may have fetched while we waited for the lock
            token = self.cache.get(key)
            if token is not None and token.fresh(self._clock()):
                return token
            value, expires_in = self._fetch(kind)
            token = self._make(kind, value, expires_in)
            try:
                self.cache.set(key, token, ttl=token.expires_at - self._clock())
            except OSError as exc:  # a full disk must not fail the send the token is for
                logger.warning("could not store the %s-style token (%s)", kind, exc)
            logger.debug("fetched a %s-style token, valid for %.0f s", kind, expires_in)
            return token

    def get(self, kind: str = "new") -> str:
        """The token value of ``kind`` (``"new"`` or ``"old"``)."""
        return self.current(kind).value

    def invalidate(self, kind: str, value: str) -> None:
        """Forget ``value`` (DingTalk rejected it) unless another caller already replaced it."""
        self.cache.delete(self.cache_key(kind), value=value)

    def _make(self, kind: str, value: str, expires_in: float) -> AccessToken:
        lifetime = float(expires_in)
        if lifetime < _MIN_LIFETIME:
            logger.warning(
                "token endpoint returned expireIn=%r; using %.0f s", expires_in, _MIN_LIFETIME
            )
            lifetime = _MIN_LIFETIME
        now = self._clock()
        early = max(lifetime - self._margin, lifetime / 2)
        return AccessToken(
            value=value, kind=kind, expires_at=now + lifetime, refresh_at=now + early
        )

    def __repr__(self) -> str:
        return f"TokenProvider(client_id={self._credentials.client_id!r}, cache={self.cache!r})"


def _check_kind(kind: str) -> None:
    if kind not in TOKEN_KINDS:
        raise ConfigurationError(f"token kind must be 'new' or 'old', got {kind!r}")
