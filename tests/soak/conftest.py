"""Fixtures of the soak: a throw-away redis-server, and the processes it must never leak."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Iterator, List

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SETPRIV = shutil.which("setpriv")


def die_with_parent(argv: List[str]) -> List[str]:
    """``argv`` run so that the kernel kills it if the test process dies (Linux ``setpriv
    --pdeathsig``); teardown kills it anyway, this covers a test process killed hard."""
    if SETPRIV is None:
        return argv
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate, then kill; never raises, never leaves a zombie."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL always ends it
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    """``redis://127.0.0.1:<port>`` of a redis-server without persistence (add ``/<db>``)."""
    if not os.path.exists(REDIS_SERVER):
        message = f"redis-server not found at {REDIS_SERVER}"
        if os.environ.get("DINGSYNC_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message}, and DINGSYNC_REQUIRE_REDIS=1")
        pytest.skip(f"{message}: install redis-server to run the soak")
    redis = pytest.importorskip("redis")
    proc = None
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
