"""Fixtures of the sending-side tests: an ApiClient on the emulator (redis: tests/conftest.py)."""

from __future__ import annotations

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
