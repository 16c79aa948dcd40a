"""Dedupe stores: claim / complete / release, TTL and LRU, and the Redis store's sharing."""

from __future__ import annotations

from typing import Any, List

import pytest

from dingsync.dedupe import MemoryDedupeStore, RedisDedupeStore
from dingsync.errors import ConfigurationError
from dingsync.frames import Ack


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_memory_store_claim_states() -> None:
    """new -> processing -> done with the cached ack."""
    store = MemoryDedupeStore(ttl=60)
    assert store.claim("k").state == "new"
    assert store.claim("k").state == "processing"
    ack = Ack.ok("m1", {"response": "x"})
    store.complete("k", ack)
    claim = store.claim("k")
    assert claim.state == "done" and claim.ack == ack


def test_memory_store_release_lets_a_retry_run_and_counts_attempts() -> None:
    """A released key can be claimed again; the claim says it is attempt 2."""
    store = MemoryDedupeStore(ttl=60)
    assert store.claim("k").attempt == 1
    store.release("k")
    retry = store.claim("k")
    assert retry.state == "new" and retry.attempt == 2
    assert store.claim("k").state == "processing"


def test_memory_store_forgets_after_ttl() -> None:
    """Entries expire after ttl seconds of the injected clock."""
    clock = Clock()
    store = MemoryDedupeStore(ttl=10, clock=clock)
    store.claim("k")
    store.complete("k", Ack.ok("m", None))
    clock.now = 9.9
    assert store.claim("k").state == "done"
    clock.now = 20.0
    assert store.claim("k").state == "new"


def test_memory_store_is_bounded_lru() -> None:
    """Beyond max_entries the least recently used key is forgotten."""
    store = MemoryDedupeStore(ttl=60, max_entries=3)
    for key in "abc":
        store.claim(key)
    store.claim("a")  # touch a: b is now the oldest
    store.claim("d")
    assert len(store) == 3
    assert store.claim("b").state == "new"
    assert store.claim("a").state == "processing"


def test_memory_store_rejects_nonsense() -> None:
    with pytest.raises(ConfigurationError):
        MemoryDedupeStore(ttl=0)


def test_redis_store_shares_state_between_instances(redis_client: Any) -> None:
    """Two stores on one Redis see each other's claims and acks."""
    one = RedisDedupeStore(redis_client, ttl=60, prefix="t:")
    two = RedisDedupeStore(redis_client, ttl=60, prefix="t:")
    assert one.claim("k").state == "new"
    assert two.claim("k").state == "processing"
    ack = Ack.ok("m1", {"response": None})
    one.complete("k", ack)
    claim = two.claim("k")
    assert claim.state == "done" and claim.ack == ack
    assert redis_client.ttl("t:k") > 50


def test_redis_store_release_and_processing_ttl(redis_client: Any) -> None:
    """Release deletes only a processing claim; the processing claim has its own short TTL."""
    store = RedisDedupeStore(redis_client, ttl=600, prefix="t:", processing_ttl=7)
    store.claim("k")
    assert 0 < redis_client.ttl("t:k") <= 7
    store.release("k")
    retry = store.claim("k")
    assert retry.state == "new" and retry.attempt == 2
    store.complete("k", Ack.ok("m", None))
    store.release("k")  # a done key is never released
    assert store.claim("k").state == "done"


def test_redis_store_from_url_and_repr_hide_the_password(redis_url: str) -> None:
    """A URL is accepted; repr() shows no connection details."""
    store = RedisDedupeStore(redis_url.replace("redis://", "redis://:s3cret@"), prefix="p:")
    assert "s3cret" not in repr(store)


def test_redis_store_treats_foreign_values_as_done(redis_client: Any) -> None:
    """A value that is not an ack is never re-run."""
    redis_client.set("t:k", b"garbage")
    claim = RedisDedupeStore(redis_client, prefix="t:").claim("k")
    assert claim.state == "done" and claim.ack is None


def test_stores_satisfy_the_protocol() -> None:
    """Both stores have the three methods the client calls."""
    names: List[str] = ["claim", "complete", "release"]
    for cls in (MemoryDedupeStore, RedisDedupeStore):
        assert all(callable(getattr(cls, n)) for n in names)
