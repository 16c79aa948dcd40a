"""Card replies from a handler (issue 13, item 3): ``ctx.reply_card`` and ``ctx.reply_ai_card``.

Cards go to the conversation the message came from (group or 1:1 with the robot) through the
card OpenAPI, and fall back to an ordinary reply through the session webhook when there is no
ApiClient or DingTalk refuses the card, never when the card may already be showing.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest

import dingsync
from dingsync import ChatbotMessage, Context
from dingsync.errors import ConfigurationError, PermissionDenied, TransportError
from dingsync.frames import Frame
from dingsync.testing import FakeDingTalk

CREATE_AND_DELIVER = "/v1.0/card/instances/createAndDeliver"
STREAMING = "/v1.0/card/streaming"
DENIED = {
    "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
    "message": "没有调用该接口的权限",
    "requestid": "r-1",
    "accessdenieddetail": {"requiredScopes": ["Card.Instance.Write"]},
}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def api(dingtalk: FakeDingTalk) -> Iterator[dingsync.ApiClient]:
    client = dingsync.ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, sleep=lambda _s: None, timeout=5.0
    )
    yield client
    client.close()


def pending(fake: FakeDingTalk, **kwargs: Any) -> Tuple[ChatbotMessage, Frame]:
    mid = fake.push_chatbot("question", **kwargs)
    push = next(p for p in fake.pending if p.message_id == mid)
    return ChatbotMessage.from_wire(push.data), Frame.from_dict(push.frame)


def group_ctx(fake: FakeDingTalk, api: Any) -> Context:
    msg, frame = pending(fake, conversation_type="2", conversation_id="cidG==")
    return Context(frame=frame, message=msg, api=api)


def only_card(fake: FakeDingTalk) -> Any:
    cards = list(fake.card_store.values())
    assert len(cards) == 1, cards
    return cards[0]


# -- reply_card -------------------------------------------------------------------------------


def test_reply_card_in_a_group_goes_to_that_group(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    result = group_ctx(dingtalk, api).reply_card("vote.schema", {"question": "Lunch?", "n": 2})
    assert result is not None and result.ok
    card = only_card(dingtalk)
    assert card.template_id == "vote.schema"
    assert card.card_data == {"question": "Lunch?", "n": "2"}
    assert card.spaces == ["IM_GROUP.cidG=="]
    assert dingtalk.replies == []


def test_reply_card_in_a_1on1_chat_goes_to_the_sender(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    msg, frame = pending(dingtalk, sender_staff_id="staff-5")
    Context(frame=frame, message=msg, api=api).reply_card("vote.schema", {"q": "x"})
    assert only_card(dingtalk).spaces == ["IM_ROBOT.staff-5"]


def test_a_refused_card_falls_back_to_the_session_webhook(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    """A missing card scope: the fallback message is the reply; without one, the error."""
    dingtalk.fail_next("POST", CREATE_AND_DELIVER, status=403, body=DENIED, times=2)
    ctx = group_ctx(dingtalk, api)
    assert ctx.reply_card("vote.schema", {"q": "x"}, fallback="Lunch? Answer yes or no") is None
    assert dingtalk.wait_for_reply().text == "Lunch? Answer yes or no"
    with pytest.raises(PermissionDenied) as info:
        ctx.reply_card("vote.schema", {"q": "x"})
    assert list(info.value.required_scopes) == ["Card.Instance.Write"]


def test_a_card_that_reached_no_space_falls_back(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    """DingTalk answers 200 with a failed space: the fallback goes out."""
    dingtalk.mark_users_invalid("ghost")
    msg, frame = pending(dingtalk, sender_staff_id="ghost")
    ctx = Context(frame=frame, message=msg, api=api)
    assert ctx.reply_card("vote.schema", {"q": "x"}, fallback="plain answer") is None
    assert dingtalk.wait_for_reply().text == "plain answer"


def test_no_fallback_when_the_card_may_be_showing(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    """A connection reset after sending may have delivered the card: no second reply."""
    dingtalk.fail_next("POST", CREATE_AND_DELIVER, reset=True)
    with pytest.raises(TransportError) as info:
        group_ctx(dingtalk, api).reply_card("vote.schema", fallback="would double it")
    assert info.value.maybe_sent
    assert dingtalk.replies == []


def test_without_an_api_client_the_fallback_is_the_reply(dingtalk: FakeDingTalk) -> None:
    ctx = group_ctx(dingtalk, None)
    ctx.reply_card("vote.schema", fallback=dingsync.messages.Markdown("Vote", "**Lunch?**"))
    assert dingtalk.wait_for_reply().msgtype == "markdown"
    with pytest.raises(ConfigurationError, match="session webhook cannot carry cards"):
        ctx.reply_card("vote.schema")


# -- reply_ai_card ----------------------------------------------------------------------------


def test_reply_ai_card_streams_into_the_conversation(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    """Each append is an update (interval 0); the card ends finished with the whole text."""
    with group_ctx(dingtalk, api).reply_ai_card("ai.schema", interval=0) as card:
        for chunk in ("Sunlight ", "is ", "scattered."):
            card.append(chunk)
    stored = only_card(dingtalk)
    assert stored.spaces == ["IM_GROUP.cidG=="]
    assert stored.streams["content"] == "Sunlight is scattered."
    assert stored.status == "finished"
    assert [c["content"] for c in stored.stream_calls][:3] == [
        "Sunlight ",
        "Sunlight is ",
        "Sunlight is scattered.",
    ]
    assert not card.fell_back and dingtalk.replies == []


def test_reply_ai_card_marks_the_card_failed_when_the_block_raises(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    with pytest.raises(RuntimeError):
        with group_ctx(dingtalk, api).reply_ai_card("ai.schema", interval=0) as card:
            card.append("half an ans")
            raise RuntimeError("model crashed")
    assert only_card(dingtalk).status == "failed"


def test_a_refused_ai_card_becomes_one_markdown_reply(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    dingtalk.fail_next("POST", CREATE_AND_DELIVER, status=403, body=DENIED)
    with group_ctx(dingtalk, api).reply_ai_card("ai.schema", title="Sky", interval=0) as card:
        card.append("Rayleigh ")
        card.append("scattering.")
    assert card.fell_back and card.card is None
    reply = dingtalk.wait_for_reply()
    assert (reply.msgtype, reply.body["markdown"]["title"]) == ("markdown", "Sky")
    assert reply.text == "Rayleigh scattering."
    assert dingtalk.count("PUT", STREAMING) == 0


def test_without_an_api_client_the_ai_answer_is_one_reply_with_the_error_note(
    dingtalk: FakeDingTalk,
) -> None:
    """The fallback sends what was written plus error_text when the block raises."""
    with pytest.raises(RuntimeError):
        with group_ctx(dingtalk, None).reply_ai_card("ai.schema", error_text="(cut off)") as c:
            c.append("partial")
            raise RuntimeError("model crashed")
    assert dingtalk.wait_for_reply().text == "partial\n\n(cut off)"


def test_card_replies_need_a_chatbot_message() -> None:
    with pytest.raises(ConfigurationError, match="needs a chatbot message"):
        Context.for_testing({"event": 1}).reply_ai_card("ai.schema")


# -- the example bot --------------------------------------------------------------------------


def test_the_ai_reply_example_streams_an_answer_chunk_by_chunk(dingtalk: FakeDingTalk) -> None:
    """examples/ai_reply.py under a StreamClient: the card fills in, then finishes."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    example = importlib.import_module("examples.ai_reply")
    expected = "".join(example.answer_chunks("Why blue?", delay=0))
    client = dingsync.StreamClient(
        dingtalk.credentials,
        example.route,
        endpoints=dingtalk.endpoints,
        api=dingsync.ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints),
    )
    client.start()
    try:
        dingtalk.wait_for_connections(1)
        mid = dingtalk.push_chatbot("Why blue?", conversation_type="2", conversation_id="cidAI")
        assert dingtalk.wait_for_ack(mid, timeout=10)["code"] == 200
        card = only_card(dingtalk)
        assert card.status == "finished"
        assert card.streams["content"] == expected
        assert card.card_data["question"] == "Why blue?"
        calls = card.stream_calls
        assert len(calls) >= 2 and len(calls[0]["content"]) < len(expected)  # chunk by chunk
    finally:
        client.stop(timeout=5)


def test_the_readme_card_bot_runs_as_written(dingtalk: FakeDingTalk) -> None:
    """README "Replying with a card": a vote card, then an AI card, from one handler."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    code = next(
        b
        for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
        if b.startswith("# card_bot.py")
    )
    namespace: dict = {}  # type: ignore[type-arg]
    exec(compile(code, "README:card_bot.py", "exec"), namespace)  # noqa: S102
    client = dingsync.StreamClient(
        dingtalk.credentials,
        namespace["route"],  # type: ignore[arg-type]
        endpoints=dingtalk.endpoints,
        api=dingsync.ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints),
    )
    with client:
        dingtalk.wait_for_connections(1)
        for text in ("vote Lunch?", "why is the sky blue"):
            mid = dingtalk.push_chatbot(text, conversation_type="2", conversation_id="cidR")
            assert dingtalk.wait_for_ack(mid, timeout=10)["code"] == 200
    answer, vote = sorted(dingtalk.card_store.values(), key=lambda c: c.template_id)
    assert answer.template_id == "ai.schema" and answer.status == "finished"
    assert answer.streams["content"] == "Rayleigh scattering makes it blue."
    assert vote.card_data == {"question": "Lunch?", "yes": "0", "no": "0"}
    assert vote.spaces == answer.spaces == ["IM_GROUP.cidR"]


def test_card_reply_fallbacks_log_no_secret(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The fallback paths log why they fell back, never a token, the secret or the session."""
    import logging
    from urllib.parse import parse_qs, urlsplit

    caplog.set_level(logging.DEBUG)
    ctx = group_ctx(dingtalk, api)
    dingtalk.fail_next("POST", CREATE_AND_DELIVER, status=403, body=DENIED, times=2)
    ctx.reply_card("vote.schema", fallback="plain")
    with ctx.reply_ai_card("ai.schema", interval=0) as card:
        card.append("answer")
    assert card.fell_back and "refused" in caplog.text
    session = parse_qs(urlsplit(ctx.message.session_webhook).query)["session"][0]
    secrets = [dingtalk.client_secret, api.access_token().value, session]
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        assert not any(secret in text for secret in secrets), text
