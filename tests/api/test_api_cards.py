"""api.cards and CardStream against the emulator's card store."""

from __future__ import annotations

import pytest

from dingsync.api import ApiClient
from dingsync.api.cards import CardStream, group_space, join_spaces, render_params, robot_space
from dingsync.errors import ApiError, ConfigurationError, InvalidRequest
from dingsync.testing import FakeDingTalk

STREAMING = "/v1.0/card/streaming"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_create_deliver_and_update_by_key(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Values are rendered as strings; by-key updates keep the other keys."""
    api.cards.create("tpl.schema", "order-1", {"status": "new", "items": [1, 2], "count": 2})
    card = dingtalk.card_store["order-1"]
    assert card.card_data == {"status": "new", "items": "[1, 2]", "count": "2"}
    assert card.callback_type == "STREAM"
    result = api.cards.deliver("order-1", join_spaces(group_space("cid1"), robot_space("u1")))
    assert result.ok and [s.space_type for s in result.spaces] == ["IM_GROUP", "IM_ROBOT"]
    assert card.spaces == ["IM_GROUP.cid1", "IM_ROBOT.u1"]
    api.cards.update("order-1", {"status": "shipped"})
    assert card.card_data["status"] == "shipped" and card.card_data["count"] == "2"
    api.cards.update("order-1", {"status": "done"}, by_key=False)
    assert card.card_data == {"status": "done"}


def test_private_data_updates(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Per-user private data is merged by key as well."""
    api.cards.create("tpl", "p-1", {"a": "1"}, private_data={"u1": {"seen": False}})
    api.cards.update("p-1", private_data={"u1": {"vote": 3}})
    assert dingtalk.cards["p-1"].private_data == {"u1": {"seen": "false", "vote": "3"}}


def test_failed_space_is_reported(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """One space can fail while another succeeds; the result says which."""
    dingtalk.mark_users_invalid("ghost")
    result = api.cards.create_and_deliver(
        "tpl", "d-1", {"a": "1"}, join_spaces(group_space("cid1"), robot_space("ghost"))
    )
    assert not result.ok
    assert [(s.space_id, s.error_msg) for s in result.failed] == [("ghost", "user not found")]


def test_duplicate_out_track_id_is_rejected(api: ApiClient) -> None:
    """outTrackId identifies the card; creating it twice is a param.* error."""
    api.cards.create("tpl", "dup", {})
    with pytest.raises(InvalidRequest) as info:
        api.cards.create("tpl", "dup", {})
    assert info.value.code == "param.outTrackIdDuplicated"


def test_bad_space_ids_fail_before_sending(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """An openSpaceId without the dtv1.card// prefix is caught locally."""
    with pytest.raises(ConfigurationError):
        api.cards.create_and_deliver("tpl", "x", {}, "IM_GROUP.cid1")
    assert dingtalk.count("POST", "/v1.0/card/instances/createAndDeliver") == 0


def test_stream_append_replace_and_finalize(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Streaming appends or replaces, finalizes, and is refused after the end."""
    api.cards.create("tpl", "ai-1", {"content": ""})
    api.cards.stream("ai-1", "content", "Hello", full=True)
    api.cards.stream("ai-1", "content", ", world", full=False)
    assert dingtalk.cards["ai-1"].streams["content"] == "Hello, world"
    api.cards.stream("ai-1", "content", "Bye", finalize=True)
    card = dingtalk.cards["ai-1"]
    assert card.status == "finished" and card.card_data["content"] == "Bye"
    with pytest.raises(InvalidRequest) as info:
        api.cards.stream("ai-1", "content", "late")
    assert info.value.code == "param.streamingFinished"


def test_retried_stream_update_is_applied_once(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A stream call repeated after a drop keeps its guid, so an append is not doubled."""
    api.cards.create("tpl", "ai-2", {"content": ""})
    dingtalk.fail_next("PUT", STREAMING, status=503)
    api.cards.stream("ai-2", "content", "abc", full=False)
    guids = {r.json()["guid"] for r in dingtalk.requests_to("PUT", STREAMING)}
    assert len(guids) == 1
    assert dingtalk.cards["ai-2"].streams["content"] == "abc"


def test_card_stream_coalesces_chunks(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Chunks arriving faster than `interval` go out together; the end is one final update."""
    clock = Clock()
    with api.cards.ai_card("tpl", group_space("cid1"), interval=1.0, clock=clock) as card:
        for i in range(20):
            card.append(f"w{i} ")
            clock.now += 0.25
    stored = dingtalk.cards[card.out_track_id]
    calls = stored.stream_calls
    assert len(calls) == 6  # t=0, 1, 2, 3, 4 and the final update
    assert calls[-1]["isFinalize"] is True and calls[-1]["isFull"] is True
    assert stored.streams["content"] == "".join(f"w{i} " for i in range(20))
    assert stored.status == "finished" and card.finished
    assert stored.spaces == ["IM_GROUP.cid1"]


def test_card_stream_append_mode_sends_deltas(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """full=False sends only the new text, and the final update carries the full text."""
    with api.cards.ai_card("tpl", group_space("cid1"), interval=0, full=False) as card:
        card.append("a")
        card.append("b")
    contents = [(c["content"], c["isFull"]) for c in dingtalk.cards[card.out_track_id].stream_calls]
    assert contents == [("a", False), ("b", False), ("ab", True)]


def test_card_stream_fails_the_card_when_the_block_raises(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """The card is finalized as failed and the caller's exception propagates."""
    with pytest.raises(RuntimeError, match="llm down"):
        with api.cards.ai_card("tpl", robot_space("u1"), error_text="(generation failed)") as card:
            card.append("partial")
            raise RuntimeError("llm down")
    stored = dingtalk.cards[card.out_track_id]
    assert stored.status == "failed"
    assert stored.stream_calls[-1]["isError"] is True
    assert stored.streams["content"] == "partial\n\n(generation failed)"


def test_card_stream_keeps_the_original_error_if_reporting_fails(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """If marking the card failed also fails, the block's exception still wins."""
    with pytest.raises(ValueError):
        with api.cards.ai_card("tpl", robot_space("u1"), interval=0) as card:
            card.append("x")
            dingtalk.fail_next(
                "PUT", STREAMING, status=400, body={"code": "param.invalid", "message": "no"}
            )
            raise ValueError("boom")
    assert card.failed


def test_final_update_failure_is_raised(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A finalize that DingTalk refuses is not swallowed."""
    with pytest.raises(InvalidRequest):
        with api.cards.ai_card("tpl", robot_space("u1"), interval=100) as card:
            card.append("x")
            card.append("y")
            dingtalk.fail_next(
                "PUT", STREAMING, status=400, body={"code": "param.invalid", "message": "no"}
            )


def test_card_stream_rejects_use_after_finish(api: ApiClient) -> None:
    """A finished stream cannot be appended to."""
    stream = CardStream(api.cards, "never-created")
    stream.finished = True
    with pytest.raises(ConfigurationError):
        stream.append("x")


def test_ai_card_reaching_no_space_raises(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Entering the block fails loudly when the card was delivered nowhere."""
    dingtalk.mark_users_invalid("ghost")
    with pytest.raises(ApiError, match="reached no space"):
        with api.cards.ai_card("tpl", robot_space("ghost")):
            pass


def test_card_callback_response_is_applied_to_the_store(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """The emulator applies a callback handler's answer like DingTalk does."""
    api.cards.create("tpl", "cb-1", {"status": "new", "title": "t"})
    dingtalk._apply_card_callback_response(
        "cb-1",
        "u1",
        {
            "cardUpdateOptions": {"updateCardDataByKey": True, "updatePrivateDataByKey": True},
            "cardData": {"cardParamMap": {"status": "agree"}},
            "userPrivateData": {"cardParamMap": {"submitted": "true"}},
        },
    )
    card = dingtalk.cards["cb-1"]
    assert card.card_data == {"status": "agree", "title": "t"}
    assert card.private_data["u1"] == {"submitted": "true"}


def test_render_params() -> None:
    """Strings stay, everything else is JSON."""
    assert render_params({"a": "x", "b": True, "c": None, "d": {"k": 1}}) == {
        "a": "x",
        "b": "true",
        "c": "null",
        "d": '{"k": 1}',
    }


def test_http_callbacks_need_a_route_key(api: ApiClient) -> None:
    """callback_type='HTTP' without callback_route_key is a configuration error."""
    with pytest.raises(ConfigurationError):
        api.cards.create("tpl", "h", {}, callback_type="HTTP")
