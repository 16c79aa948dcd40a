"""Fixtures for the stream tests: a client factory on the emulator (redis: tests/conftest.py)."""

from __future__ import annotations

import shutil
from typing import Any, Callable, Iterator, List

import pytest

import dingsync
from dingsync.testing import FakeDingTalk

from ._ticks import Ticks

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

#: Fast settings: faults are noticed within a fraction of a second, backoff is tiny.
FAST = dict(open_timeout=5.0, dead_after=5.0, disconnect_grace=5.0)
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
            k: options.pop(k)
            for k in ("dedupe", "api", "clock", "sleep", "connector", "name")
            if k in options
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


@pytest.fixture
def ticks() -> Iterator[Ticks]:
    """A sleep the test releases tick by tick (see _ticks.py); freed at teardown."""
    ticks = Ticks()
    yield ticks
    ticks.free()
