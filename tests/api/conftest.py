"""Fixtures of the sending-side tests: an ApiClient on the emulator and a real redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Iterator, List

import pytest

from dingsync.api import ApiClient
from dingsync.testing import FakeDingTalk


@pytest.fixture
def sleeps() -> List[float]:
    """Every wait the client asked for, instead of really sleeping."""
    return []


@pytest.fixture
def api(dingtalk: FakeDingTalk, sleeps: List[float]) -> Iterator[ApiClient]:
    """An ApiClient pointed at the emulator whose retries never really sleep."""
    client = ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, sleep=sleeps.append, timeout=5.0
    )
    yield client
    client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on an ephemeral port (no persistence), killed afterwards.

    Skips when redis-server is not installed, unless DINGSYNC_REQUIRE_REDIS=1 (CI), where a
    missing server is a failure.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not on PATH (apt-get install redis-server)"
        if os.environ.get("DINGSYNC_REQUIRE_REDIS") == "1":
            pytest.fail(f"DINGSYNC_REQUIRE_REDIS=1 but {reason}")
        pytest.skip(reason)
    pytest.importorskip("redis")
    for _ in range(3):  # the port may be taken between choosing it and redis binding it
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and process.poll() is None:
            if _ping(port):
                try:
                    yield f"redis://127.0.0.1:{port}/0"
                finally:
                    process.terminate()
                    try:
                        process.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                return
            time.sleep(0.02)
        process.kill()
        process.wait()
    pytest.fail("redis-server did not start")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[object]:
    """A client of the session's redis-server, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()
