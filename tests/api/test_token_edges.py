"""Token storage at the edges (issue 14): per-user files, Redis outages, the lock, stale tokens."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

import dingsync._files
from dingsync.api import ApiClient
from dingsync.config import Credentials
from dingsync.errors import ConfigurationError
from dingsync.ratelimit import REDIS_TIMEOUT, redis_from
from dingsync.testing import FakeDingTalk
from dingsync.tokens import FileTokenCache, RedisTokenCache, TokenProvider

CREDS = Credentials(client_id="dingapp", client_secret="top-secret-value")
TOKEN_PATH = "/v1.0/oauth2/accessToken"
GROUP = "/v1.0/robot/groupMessages/send"


def _fetch(kind: str) -> Any:
    return f"{kind}-token", 7200.0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


# -- 9. the default token file is per user ------------------------------------------------------
def test_default_token_file_is_in_the_users_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a path: $XDG_CACHE_HOME/dingsync/tokens.json, in a 0700 directory."""
    monkeypatch.delenv("DINGSYNC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = FileTokenCache()
    assert cache.path == str(tmp_path / "xdg" / "dingsync" / "tokens.json")
    assert stat.S_IMODE(os.stat(tmp_path / "xdg" / "dingsync").st_mode) == 0o700


def test_without_a_home_the_token_file_is_per_uid_in_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No usable home (serverless): <tmp>/dingsync-<uid>/tokens.json, never a shared name."""
    monkeypatch.delenv("DINGSYNC_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    not_a_dir = tmp_path / "home-is-a-file"
    not_a_dir.write_text("")
    monkeypatch.setenv("HOME", str(not_a_dir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = FileTokenCache().path
    assert path == str(tmp_path / f"dingsync-{os.getuid()}" / "tokens.json")


def test_a_token_file_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token or lock file of another user is a ConfigurationError, not a hang or a leak."""
    path = tmp_path / "tokens.json"
    provider = TokenProvider(CREDS, fetch=_fetch, cache=FileTokenCache(path))
    provider.get()
    provider.invalidate("new", "new-token")
    monkeypatch.setattr(dingsync._files, "_uid", lambda: os.getuid() + 4242)
    with pytest.raises(ConfigurationError, match="owned by uid"):
        TokenProvider(CREDS, fetch=_fetch, cache=FileTokenCache(path)).get()


def test_a_lock_file_planted_by_another_user_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone else's lock file is refused at once instead of being waited on."""
    path = tmp_path / "tokens.json"
    (tmp_path / "tokens.json.lock").write_text("")
    monkeypatch.setattr(dingsync._files, "_uid", lambda: os.getuid() + 4242)
    with pytest.raises(ConfigurationError, match="tokens.json.lock"):
        TokenProvider(CREDS, fetch=_fetch, cache=FileTokenCache(path)).get()


# -- 4. Redis outages ---------------------------------------------------------------------------
def test_redis_clients_made_from_urls_have_timeouts() -> None:
    pytest.importorskip("redis")
    kwargs = redis_from("redis://127.0.0.1:1/0").connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == REDIS_TIMEOUT
    assert kwargs["socket_connect_timeout"] == REDIS_TIMEOUT


def test_a_client_without_a_timeout_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    redis = pytest.importorskip("redis")
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        RedisTokenCache(redis.Redis(port=_closed_port(), socket_timeout=None))
    assert any("socket_timeout" in r.getMessage() for r in caplog.records)


def test_a_redis_outage_degrades_the_token_cache_with_one_warning(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: sends go on, the token is fetched once and kept in memory, one warning."""
    pytest.importorskip("redis")
    cache = RedisTokenCache(f"redis://127.0.0.1:{_closed_port()}/0")
    api = ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, token_cache=cache)
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        for i in range(3):
            api.robot.send_to_group("cid1", f"hello {i}")
    api.close()
    assert len(dingtalk.sent) == 3
    assert dingtalk.count("POST", TOKEN_PATH) == 1
    warnings = [r for r in caplog.records if "Redis token cache failed" in r.getMessage()]
    assert len(warnings) == 1


def test_a_silent_redis_does_not_hang_a_send(dingtalk: FakeDingTalk, silent_redis: str) -> None:
    """A Redis that never answers costs a timeout, then the send goes out."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(silent_redis, socket_timeout=0.2, socket_connect_timeout=0.2)
    api = ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, token_cache=RedisTokenCache(client)
    )
    api.robot.send_to_group("cid1", "hello")
    api.robot.send_to_group("cid1", "again")
    api.close()
    assert len(dingtalk.sent) == 2


# -- 5. the Redis lock, and a valid token when a refresh fails ----------------------------------
def test_the_redis_lock_is_short_and_renewed_while_held(redis_url: str) -> None:
    """The lock expires within lock_ttl of a holder's death, but a live holder keeps it."""
    cache = RedisTokenCache(redis_url, lock_ttl=0.3)
    client = redis_from(redis_url)
    with cache.lock("k"):
        assert 0 < client.pttl("dingsync:token:k:lock") <= 300
        threading.Event().wait(0.7)  # longer than lock_ttl: only renewal keeps the lock
        assert client.exists("dingsync:token:k:lock")
    assert not client.exists("dingsync:token:k:lock")


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from dingsync.tokens import RedisTokenCache
    with RedisTokenCache(sys.argv[1]).lock("k"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_a_killed_holder_frees_the_lock_within_seconds(redis_url: str) -> None:
    """The default lock lives 5 s (not 30): a killed holder stalls others for at most that."""
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, redis_url], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"held"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        left = redis_from(redis_url).pttl("dingsync:token:k:lock")
        assert 0 < left <= 5000
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


class _Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_failed_refresh_uses_the_still_valid_token(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    """Inside the refresh margin a token-endpoint outage does not fail the send."""
    clock = _Clock()
    api = ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, clock=clock, sleep=lambda s: None
    )
    api.access_token()
    clock.now += 7200 - 200  # past refresh_at (300 s margin), 200 s before expiry
    dingtalk.fail_next("POST", TOKEN_PATH, status=503, times=50)
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        api.robot.send_to_group("cid1", "hello")
    api.close()
    assert len(dingtalk.sent) == 1
    assert any("using the cached one" in r.getMessage() for r in caplog.records)


def test_an_expired_token_is_not_used_when_the_refresh_fails(dingtalk: FakeDingTalk) -> None:
    """Past its expiry the old token is useless: the refresh error is raised."""
    clock = _Clock()
    api = ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, clock=clock, sleep=lambda s: None
    )
    api.access_token()
    clock.now += 7200 + 1
    dingtalk.fail_next("POST", TOKEN_PATH, status=503, times=50)
    with pytest.raises(Exception, match="503"):
        api.robot.send_to_group("cid1", "hello")
    api.close()
    assert dingtalk.count("POST", GROUP) == 0


def test_an_unreadable_token_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's file we may not open gives a ConfigurationError, not a raw PermissionError."""
    path = tmp_path / "tokens.json"
    path.write_text("{}")

    def denied(*args: Any, **kwargs: Any) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(dingsync._files.os, "open", denied)
    with pytest.raises(ConfigurationError, match="permission denied"):
        FileTokenCache(path).get("k")
