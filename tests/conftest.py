"""Fixtures shared by every test directory: a started emulator (``fake``), an HTTP session that
ignores proxy settings (``http``), and a real, throw-away redis-server.

Redis-backed features (token cache, rate limiter, dedupe store, the soak's replicas) are tested
against the real server. Without the binary those tests skip with the reason, except when
``DINGSYNC_REQUIRE_REDIS=1`` (CI), where a missing server is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Any, Iterator

import pytest
import requests
from child_processes import die_with_parent, stop_process

from dingsync.testing import FakeDingTalk

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture()
def fake() -> Iterator[FakeDingTalk]:
    """A started emulator with default settings (files needing a seed or a secret override it)."""
    with FakeDingTalk() as running:
        yield running


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    """A requests session for loopback: proxy variables of the environment are ignored."""
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    """``redis://127.0.0.1:<port>`` of a redis-server without persistence (add ``/<db>``)."""
    if not os.path.exists(REDIS_SERVER):
        message = f"redis-server not found at {REDIS_SERVER} (apt-get install redis-server)"
        if os.environ.get("DINGSYNC_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message}, and DINGSYNC_REQUIRE_REDIS=1")
        pytest.skip(message)
    redis = pytest.importorskip("redis")
    for _ in range(5):  # the port may be taken between probing and binding
        port = _free_port()
        argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no"]
        proc = subprocess.Popen(
            die_with_parent(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 5.0
        ready = False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = bool(redis.Redis.from_url(url).ping())
            except redis.ConnectionError:
                time.sleep(0.02)
        if ready:
            break
        stop_process(proc)
    else:
        pytest.fail("could not start redis-server")
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def redis_url(redis_base_url: str) -> str:
    """Database 0 of the session's redis-server."""
    return f"{redis_base_url}/0"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A client of the session's redis-server, every database emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: Any) -> None:
    """Each test (and the processes it starts) gets its own token cache and webhook pacing.

    The default webhook pacing is shared by every process of the user (a file), so without this
    the messages of one test would count against the next test's 20-a-minute budget.
    """
    monkeypatch.setenv("DINGSYNC_CACHE_DIR", str(tmp_path_factory.mktemp("dingsync-cache")))
