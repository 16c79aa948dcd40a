"""Message builders: validation at construction and the three renderings."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dingsync import messages as m
from dingsync.errors import ConfigurationError, UnsupportedMessage


def test_text_renders_for_webhook_and_openapi() -> None:
    """Mentions go in the at block and into the text; the OpenAPI form is the text alone."""
    msg = m.Text("disk 91%", at_user_ids=["manager593"], at_mobiles=["13800000000"], at_all=False)
    assert msg.to_webhook() == {
        "msgtype": "text",
        "text": {"content": "disk 91% @manager593 @13800000000"},
        "at": {"atUserIds": ["manager593"], "atMobiles": ["13800000000"], "isAtAll": False},
    }
    assert msg.without_mentions().to_openapi() == ("sampleText", '{"content":"disk 91%"}')


def test_mentions_already_in_the_text_are_not_repeated() -> None:
    """'@id' present in the text is left alone."""
    msg = m.Markdown("t", "ping @u1 please", at_user_ids=["u1"])
    assert msg.to_webhook()["markdown"]["text"] == "ping @u1 please"


def test_plain_messages_have_no_at_block() -> None:
    """No mentions, no 'at' key."""
    assert "at" not in m.Text("hi").to_webhook()


def test_msg_param_is_a_json_string_of_strings() -> None:
    """Every msgParam decodes to a dict of strings (DingTalk rejects anything else)."""
    samples = [
        m.Audio("@a", duration_ms=1500),
        m.Video("@v", "@p", duration=9, width=10, height=20),
        m.File("@f", "Q3.DOCX"),
    ]
    for msg in samples:
        key, param = msg.to_openapi()
        decoded = json.loads(param)
        assert all(isinstance(v, str) for v in decoded.values()), key
    assert json.loads(m.File("@f", "Q3.DOCX").to_openapi()[1])["fileType"] == "docx"


@pytest.mark.parametrize(
    ("count", "orientation", "key"),
    [
        (1, "vertical", "sampleActionCard"),
        (2, "vertical", "sampleActionCard2"),
        (3, "vertical", "sampleActionCard3"),
        (4, "vertical", "sampleActionCard4"),
        (5, "vertical", "sampleActionCard5"),
        (2, "horizontal", "sampleActionCard6"),
    ],
)
def test_action_card_keys_follow_the_button_count(count: int, orientation: str, key: str) -> None:
    """1..5 buttons map to sampleActionCard..5; two horizontal ones to sampleActionCard6."""
    buttons = [m.Button(f"B{i}", f"https://x/{i}") for i in range(count)]
    card = m.ActionCard("T", "body", buttons=buttons, orientation=orientation)
    assert card.to_openapi()[0] == key


def test_action_card_webhook_forms() -> None:
    """One button: singleTitle/singleURL; several: btns with actionURL."""
    one = m.ActionCard("T", "b", buttons=m.Button("Go", "https://go")).to_webhook()["actionCard"]
    assert (one["singleTitle"], one["singleURL"]) == ("Go", "https://go")
    many = m.ActionCard(
        "T",
        "b",
        buttons=[("A", "https://a"), ("B", "https://b"), ("C", "https://c")],
        orientation="horizontal",
    ).to_webhook()["actionCard"]
    assert many["btns"][2] == {"title": "C", "actionURL": "https://c"}
    assert many["btnOrientation"] == "1"


def test_three_horizontal_buttons_have_no_openapi_form() -> None:
    """The OpenAPI only lays out exactly two buttons horizontally."""
    card = m.ActionCard("T", "b", buttons=[("A", "https://a")] * 3, orientation="horizontal")
    with pytest.raises(UnsupportedMessage):
        card.to_openapi()


@pytest.mark.parametrize(
    "build",
    [
        lambda: m.Text(""),
        lambda: m.Text("x", at_user_ids="u1"),
        lambda: m.Text("x", at_mobiles=["138 0000"]),
        lambda: m.Markdown("", "x"),
        lambda: m.ActionCard("T", "b", buttons=[]),
        lambda: m.ActionCard("T", "b", buttons=[("B", "https://x")] * 6),
        lambda: m.ActionCard("T", "b", buttons=[("B", "https://x")], orientation="horizontal"),
        lambda: m.ActionCard("T", "b", buttons=[("B", "https://x")], orientation="diagonal"),
        lambda: m.Button("x" * 21, "https://x"),
        lambda: m.Button("ok", "https://x/" + "a" * 500),
        lambda: m.File("@f", "notes.txt"),
        lambda: m.Audio("@a", duration_ms=0),
        lambda: m.FeedCard([]),
        lambda: m.Link("t", "x", ""),
    ],
)
def test_invalid_messages_fail_at_construction(build) -> None:  # type: ignore[no-untyped-def]
    """Required fields, sizes, at-lists and button counts are checked when built."""
    with pytest.raises(ConfigurationError):
        build()


@pytest.mark.parametrize(
    "msg",
    [
        m.Image("@i"),
        m.File("@f", "a.pdf"),
        m.Audio("@a", duration_ms=1),
        m.Video("@v", "@p", duration=1),
    ],
)
def test_webhooks_refuse_media_messages(msg: m.Message) -> None:
    """Only text, markdown, link, actionCard and feedCard travel through webhooks."""
    with pytest.raises(UnsupportedMessage):
        msg.to_webhook()


def test_feed_card_is_webhook_only() -> None:
    """FeedCard renders for webhooks and refuses the OpenAPI."""
    card = m.FeedCard([m.FeedLink("News", "https://n", "https://n.png")])
    assert card.to_webhook()["feedCard"]["links"][0]["messageURL"] == "https://n"
    with pytest.raises(UnsupportedMessage):
        card.to_openapi()


def test_link_needs_a_picture_for_the_openapi() -> None:
    """picUrl is optional on webhooks and required by sampleLink."""
    link = m.Link("t", "x", "https://example.com")
    assert "picUrl" not in link.to_webhook()["link"]
    with pytest.raises(ConfigurationError):
        link.to_openapi()


def test_work_notice_forms() -> None:
    """Work notifications use snake_case and seconds for voice."""
    assert m.Audio("@a", duration_ms=2500).to_work_notice() == {
        "msgtype": "voice",
        "voice": {"media_id": "@a", "duration": "3"},
    }
    assert m.Image("@i").to_work_notice() == {"msgtype": "image", "image": {"media_id": "@i"}}


def test_messages_are_frozen_values() -> None:
    """Messages are immutable and comparable."""
    msg = m.Text("a", at_user_ids=["u"])
    assert msg == m.Text("a", at_user_ids=("u",))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        msg.content = "b"  # type: ignore[misc]


def test_as_message() -> None:
    """Strings become Text; messages pass through; other objects are refused."""
    assert m.as_message("hi") == m.Text("hi")
    card = m.Markdown("t", "x")
    assert m.as_message(card) is card
    with pytest.raises(ConfigurationError):
        m.as_message(42)  # type: ignore[arg-type]


@given(st.text(min_size=1).filter(lambda s: s.strip()))
def test_text_survives_the_json_string(content: str) -> None:
    """Any non-blank text round-trips through msgParam."""
    assert json.loads(m.Text(content).to_openapi()[1]) == {"content": content}
