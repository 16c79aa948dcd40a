"""Fixtures for the stream tests: a client factory on the emulator, and a real redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Any, Callable, Iterator, List

import pytest

import dingsync
from dingsync.testing import FakeDingTalk

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

#: Fast settings: faults are noticed within a fraction of a second, backoff is tiny.
FAST = dict(recv_timeout=0.05, open_timeout=5.0, dead_after=5.0, disconnect_grace=5.0)
FAST_RECONNECT = dingsync.ReconnectPolicy(initial=0.05, max=0.2, jitter=0.0, auth_wait=0.05)

MakeClient = Callable[..., dingsync.StreamClient]


@pytest.fixture
def make_client(dingtalk: FakeDingTalk) -> Iterator[MakeClient]:
    """Build StreamClients on the emulator (started unless ``start=False``); all are stopped
    (hard) at teardown so a failing test never leaves threads behind."""
    clients: List[dingsync.StreamClient] = []

    def make(
        router: dingsync.Router,
        *,
        start: bool = True,
        credentials: Any = None,
        **options: Any,
    ) -> dingsync.StreamClient:
        client_kwargs = {
            k: options.pop(k) for k in ("dedupe", "api", "clock", "sleep") if k in options
        }
        settings = {**FAST, "reconnect": FAST_RECONNECT, **options}
        client = dingsync.StreamClient(
            credentials or dingtalk.credentials,
            router,
            endpoints=dingtalk.endpoints,
            config=dingsync.StreamConfig(**settings),
            **client_kwargs,
        )
        clients.append(client)
        if start:
            client.start()
        return client

    yield make
    for client in clients:
        client.stop(timeout=2.0, drain=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throw-away redis-server on an ephemeral port (no persistence)."""
    if not os.path.exists(REDIS_SERVER):
        message = f"redis-server not found at {REDIS_SERVER}"
        if os.environ.get("DINGSYNC_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message}, and DINGSYNC_REQUIRE_REDIS=1")
        pytest.skip(f"{message}: install redis-server to run the shared-dedupe tests")
    import redis

    for _ in range(5):  # the port may be taken between probing and binding
        port = _free_port()
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(
            [REDIS_SERVER, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 5.0
        ready = False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = bool(redis.Redis.from_url(url).ping())
            except redis.ConnectionError:
                time.sleep(0.02)
        if ready:
            break
        proc.kill()
        proc.wait(timeout=5)
    else:
        pytest.fail("could not start redis-server")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A client on a freshly flushed database."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()
