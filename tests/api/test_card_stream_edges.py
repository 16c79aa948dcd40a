"""AI card streaming at the edges (issue 14): no stuck cards, no stalled producer, idle flush."""

from __future__ import annotations

import threading
from typing import List

import pytest
from _servers import wait_until

from dingsync.api import ApiClient
from dingsync.api.cards import group_space, robot_space
from dingsync.errors import ConfigurationError, InvalidRequest
from dingsync.testing import FakeDingTalk

STREAMING = "/v1.0/card/streaming"
QPS = {"code": "Forbidden.AccessDenied.QpsLimitForApi", "message": "请求过于频繁"}
REFUSED = {"code": "param.invalid", "message": "no"}


def test_a_failed_final_update_marks_the_card_failed(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """The card does not stay 'streaming' when the final update is refused."""
    with pytest.raises(InvalidRequest):
        with api.cards.ai_card("tpl", robot_space("u1"), interval=100) as card:
            card.append("x")
            card.append("y")
            dingtalk.fail_next("PUT", STREAMING, status=400, body=REFUSED)
    stored = dingtalk.cards[card.out_track_id]
    assert stored.status == "failed"
    assert stored.stream_calls[-1]["isError"] is True
    assert stored.streams["content"] == "xy"
    assert card.failed and card.finished


def test_a_throttled_update_is_dropped_not_retried(
    dingtalk: FakeDingTalk, api: ApiClient, sleeps: List[float]
) -> None:
    """Throttled intermediate updates neither block the producer nor kill the answer."""
    with api.cards.ai_card("tpl", group_space("cid1"), interval=0) as card:
        card.append("a")
        dingtalk.fail_next("PUT", STREAMING, status=403, body=QPS, times=5)
        for chunk in "bcdef":
            card.append(chunk)
        card.append("g")
    assert sleeps == []
    assert card.dropped == 5
    stored = dingtalk.cards[card.out_track_id]
    assert stored.streams["content"] == "abcdefg" and stored.status == "finished"
    assert [c["content"] for c in stored.stream_calls] == ["a", "abcdefg", "abcdefg"]


def test_a_dropped_append_mode_delta_goes_out_with_the_next(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """In append mode the text of a dropped delta is not lost: the next delta carries it."""
    with api.cards.ai_card("tpl", group_space("cid1"), interval=0, full=False) as card:
        card.append("a")
        dingtalk.fail_next("PUT", STREAMING, status=403, body=QPS)
        card.append("b")
        card.append("c")
    calls = [(c["content"], c["isFull"]) for c in dingtalk.cards[card.out_track_id].stream_calls]
    assert calls == [("a", False), ("bc", False), ("abc", True)]
    assert dingtalk.cards[card.out_track_id].streams["content"] == "abc"


def test_pending_text_is_flushed_when_the_producer_pauses(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """Text held back by the interval goes out on a timer, without waiting for a next chunk."""
    with api.cards.ai_card("tpl", group_space("cid1"), interval=0.05) as card:
        card.append("Thinking")
        card.append("...")  # within the interval: held back
        stored = dingtalk.cards[card.out_track_id]
        wait_until(lambda: stored.streams.get("content") == "Thinking...")
        assert not stored.stream_calls[-1]["isFinalize"]
    assert stored.status == "finished"


def test_finish_waits_for_an_in_flight_update_and_a_late_append_raises(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """finish() and append() share one lock: text appended during the final update is refused."""
    card = api.cards.ai_card("tpl", group_space("cid1"), interval=0)
    card.__enter__()
    card.append("answer")
    before = dingtalk.count("PUT", STREAMING)
    dingtalk.fail_next("PUT", STREAMING, status=200, body={"success": True}, delay=0.5)
    finisher = threading.Thread(target=card.finish)
    finisher.start()
    wait_until(lambda: dingtalk.count("PUT", STREAMING) > before)  # the final update is out
    with pytest.raises(ConfigurationError, match="already finished"):
        card.append(" and a late word")
    finisher.join()
    assert card.finished and card.text == "answer"
