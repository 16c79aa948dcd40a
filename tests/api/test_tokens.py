"""Token providers and caches: single flight, refresh margin, file/Redis sharing, redaction."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest

import dingsync
from dingsync.api import ApiClient
from dingsync.config import Credentials
from dingsync.errors import AuthError
from dingsync.testing import FakeDingTalk
from dingsync.tokens import (
    AccessToken,
    FileTokenCache,
    MemoryTokenCache,
    RedisTokenCache,
    TokenProvider,
)

CREDS = Credentials(client_id="dingapp", client_secret="top-secret-value")
TOKEN_PATH = "/v1.0/oauth2/accessToken"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counting_fetch(calls: List[str], lifetime: float = 7200.0, delay: float = 0.0) -> Any:
    def fetch(kind: str) -> Tuple[str, float]:
        calls.append(kind)
        if delay:
            time.sleep(delay)
        return f"{kind}-token-{len(calls)}", lifetime

    return fetch


def test_new_and_old_tokens_are_cached_separately() -> None:
    """Each kind is fetched once and then served from the cache."""
    calls: List[str] = []
    provider = TokenProvider(CREDS, fetch=counting_fetch(calls))
    assert provider.get("new") == "new-token-1"
    assert provider.get("old") == "old-token-2"
    assert provider.get("new") == "new-token-1"
    assert calls == ["new", "old"]


def test_threads_share_one_fetch() -> None:
    """Concurrent callers wait for the single fetch in flight instead of starting their own."""
    calls: List[str] = []
    provider = TokenProvider(CREDS, fetch=counting_fetch(calls, delay=0.05))
    results: List[str] = []
    threads = [threading.Thread(target=lambda: results.append(provider.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["new"]
    assert set(results) == {"new-token-1"}


def test_refresh_happens_a_margin_before_expiry() -> None:
    """A token is replaced `margin` seconds before it expires, not after."""
    calls: List[str] = []
    clock = Clock()
    provider = TokenProvider(CREDS, fetch=counting_fetch(calls), clock=clock, margin=300)
    provider.get()
    clock.now += 7200 - 301
    provider.get()
    assert len(calls) == 1
    clock.now += 2
    assert provider.get() == "new-token-2"


def test_tiny_lifetimes_do_not_cause_refresh_loops() -> None:
    """expireIn=0 from a broken server is floored instead of refetching on every call."""
    calls: List[str] = []
    provider = TokenProvider(CREDS, fetch=counting_fetch(calls, lifetime=0), clock=Clock())
    provider.get()
    provider.get()
    assert len(calls) == 1


def test_invalidate_only_drops_the_rejected_token() -> None:
    """A stale rejection does not throw away a token another caller just fetched."""
    calls: List[str] = []
    provider = TokenProvider(CREDS, fetch=counting_fetch(calls))
    first = provider.get()
    provider.invalidate("new", "some-older-token")
    assert provider.get() == first
    provider.invalidate("new", first)
    assert provider.get() == "new-token-2"


def test_cache_key_names_client_and_kind_but_not_the_secret() -> None:
    """Keys identify the app and kind; the secret only appears hashed."""
    provider = TokenProvider(CREDS, fetch=counting_fetch([]))
    key = provider.cache_key("old")
    assert key.startswith("dingapp:old:")
    assert "top-secret" not in key
    other = TokenProvider(
        Credentials(client_id="dingapp", client_secret="rotated"), fetch=counting_fetch([])
    )
    assert other.cache_key("old") != key


def test_tokens_never_show_in_reprs(tmp_path: Path) -> None:
    """repr() of tokens, providers and caches never contains the token or the secret."""
    calls: List[str] = []
    cache = FileTokenCache(tmp_path / "t.json")
    provider = TokenProvider(CREDS, fetch=counting_fetch(calls), cache=cache)
    token = provider.current()
    for obj in (token, provider, cache, MemoryTokenCache()):
        text = repr(obj)
        assert token.value not in text
        assert "top-secret" not in text


def test_unknown_kind_is_a_configuration_error() -> None:
    """Only "new" and "old" exist."""
    provider = TokenProvider(CREDS, fetch=counting_fetch([]))
    with pytest.raises(dingsync.ConfigurationError):
        provider.get("newest")


# -- FileTokenCache ----------------------------------------------------------------------------
def test_file_cache_is_private_to_the_user(tmp_path: Path) -> None:
    """The token file is written with mode 0600."""
    path = tmp_path / "tokens.json"
    TokenProvider(CREDS, fetch=counting_fetch([]), cache=FileTokenCache(path)).get()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_corrupt_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    """Garbage in the file means 'no token', never a crash; the next store repairs it."""
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    calls: List[str] = []
    provider = TokenProvider(CREDS, fetch=counting_fetch(calls), cache=FileTokenCache(path))
    assert provider.get() == "new-token-1"
    stored = json.loads(path.read_text())
    assert provider.cache_key("new") in stored
    path.write_text(json.dumps({provider.cache_key("new"): {"value": 3}}))
    assert provider.get() == "new-token-2"


def test_file_cache_survives_a_new_process_object(tmp_path: Path) -> None:
    """A second provider (another process in real life) reads the stored token."""
    path = tmp_path / "tokens.json"
    calls: List[str] = []
    TokenProvider(CREDS, fetch=counting_fetch(calls), cache=FileTokenCache(path)).get()
    again = TokenProvider(CREDS, fetch=counting_fetch(calls), cache=FileTokenCache(path))
    assert again.get() == "new-token-1"
    assert calls == ["new"]


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from dingsync.api import ApiClient
    from dingsync.config import Credentials, Endpoints
    from dingsync.tokens import FileTokenCache

    go = sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.005)
    api = ApiClient(Credentials.from_env(), endpoints=Endpoints.from_env(),
                    token_cache=FileTokenCache(sys.argv[1]))
    print(api.access_token().expires_at > 0)
    """
)


def test_two_processes_fetch_one_token(dingtalk: FakeDingTalk, tmp_path: Path) -> None:
    """Two processes sharing a FileTokenCache hit the token endpoint exactly once."""
    path = str(tmp_path / "tokens.json")
    go = str(tmp_path / "go")
    env = {**os.environ, **dingtalk.env()}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, path, go], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    time.sleep(0.3)  # both children are waiting at the start line
    Path(go).touch()
    outputs = [child.communicate(timeout=30)[0].strip() for child in children]
    assert outputs == ["True", "True"]
    assert all(child.returncode == 0 for child in children)
    assert dingtalk.count("POST", TOKEN_PATH) == 1


# -- Redis ---------------------------------------------------------------------------------------
def test_redis_cache_shares_tokens_and_expires_them(redis_client: Any) -> None:
    """Tokens are stored with a TTL; a second provider reuses them."""
    calls: List[str] = []
    first = TokenProvider(CREDS, fetch=counting_fetch(calls), cache=RedisTokenCache(redis_client))
    second = TokenProvider(CREDS, fetch=counting_fetch(calls), cache=RedisTokenCache(redis_client))
    assert first.get() == second.get()
    assert calls == ["new"]
    key = "dingsync:token:" + first.cache_key("new")
    assert 7000 < redis_client.ttl(key) <= 7200
    raw = redis_client.get(key)
    assert b"top-secret" not in raw


def test_redis_lock_makes_machines_fetch_once(redis_url: str) -> None:
    """Providers with separate Redis clients (separate machines) still fetch once."""
    calls: List[str] = []
    providers = [
        TokenProvider(
            CREDS, fetch=counting_fetch(calls, delay=0.1), cache=RedisTokenCache(redis_url)
        )
        for _ in range(4)
    ]
    for provider in providers:
        provider.cache.delete(provider.cache_key("new"))
    threads = [threading.Thread(target=p.get) for p in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["new"]


def test_redis_invalidate_compares_the_value(redis_client: Any) -> None:
    """Only the rejected token is deleted."""
    cache = RedisTokenCache(redis_client)
    token = AccessToken(value="v1", kind="new", expires_at=time.time() + 100, refresh_at=0)
    cache.set("k", token, ttl=100)
    cache.delete("k", value="other")
    assert cache.get("k") == token
    cache.delete("k", value="v1")
    assert cache.get("k") is None


# -- through the ApiClient ---------------------------------------------------------------------
def test_expired_token_is_refreshed_exactly_once(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """An expired new-style token is replaced once and the call succeeds."""
    api.robot.send_to_group("cid1", "before")
    dingtalk.expire_tokens()
    api.robot.send_to_group("cid1", "after")
    assert dingtalk.count("POST", TOKEN_PATH) == 2
    assert dingtalk.count("POST", "/v1.0/robot/groupMessages/send") == 3
    assert [m.text for m in dingtalk.sent] == ["before", "after"]


def test_expired_old_token_is_refreshed_exactly_once(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """The old-style 88/40014 answer at HTTP 200 triggers one refresh too."""
    api.notify.send("one", agent_id=7, user_ids=["u1"])
    dingtalk.expire_tokens()
    api.notify.send("two", agent_id=7, user_ids=["u1"])
    assert dingtalk.count("GET", "/gettoken") == 2
    assert len(dingtalk.work_notices) == 2


def test_token_rejected_twice_is_an_auth_error(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A freshly fetched token that is refused too raises AuthError, without a loop."""
    body = {"code": "InvalidAuthentication", "message": "不合法的access_token", "requestid": "r"}
    dingtalk.fail_next("POST", "/v1.0/robot/groupMessages/send", status=400, body=body, times=2)
    with pytest.raises(AuthError):
        api.robot.send_to_group("cid1", "hi")
    assert dingtalk.count("POST", TOKEN_PATH) == 2
    assert dingtalk.count("POST", "/v1.0/robot/groupMessages/send") == 2


@pytest.mark.parametrize("kind", ["new", "old"])
def test_wrong_credentials_fail_fast(dingtalk: FakeDingTalk, kind: str) -> None:
    """invalidClientIdOrSecret / 40096 raise AuthError on the first attempt."""
    api = ApiClient(
        Credentials(client_id=dingtalk.client_id, client_secret="wrong"),
        endpoints=dingtalk.endpoints,
        sleep=lambda s: None,
    )
    with pytest.raises(AuthError) as info:
        api.access_token(kind)
    assert "wrong" not in str(info.value)
    path = ("POST", TOKEN_PATH) if kind == "new" else ("GET", "/gettoken")
    assert dingtalk.count(*path) == 1
