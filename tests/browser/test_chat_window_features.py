"""The rest of the chat window in a real browser: groups and @-mentions, compose keys, files,
events, side panels, read and recalled robot messages, stall/resume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List

import pytest

import dingsync
from benchmarks.chromium import running_bot
from dingsync import messages as m
from examples import calc

try:
    from playwright.sync_api import expect
except ImportError:
    if os.environ.get("DINGSYNC_REQUIRE_BROWSER"):
        raise
    pytest.skip("browser tests skipped: Playwright is not installed", allow_module_level=True)


def recorder(seen: List[dingsync.ChatbotMessage]) -> dingsync.Router:
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        seen.append(msg)
        ctx.reply_text(f"got {msg.msgtype}")

    return route


def test_group_message_reaches_the_bot_only_when_it_is_mentioned(page: Any) -> None:
    """In a group, a message without @Bot stays in the window; with @Bot it reaches the bot
    from the chosen sender, with isInAtList set, the bot mention cut from the text and the
    other mentioned user in atUsers."""
    seen: List[dingsync.ChatbotMessage] = []
    with running_bot(recorder(seen)) as (fake, _):
        page.goto(fake.api_base + "/")
        page.click("li[data-conv=cid-group-team]")
        page.select_option("#sender", "user-2")
        page.fill("#input", "lunch anyone?")
        page.press("#input", "Enter")
        expect(page.locator(".msg.mine .note")).to_have_text(
            "not sent to the bot: @Bot to talk to it"
        )
        page.click("#mentions button:text-is('@Bot')")
        page.click("#mentions button:text-is('@Carol')")
        page.type("#input", "hello")
        page.press("#input", "Enter")
        expect(page.locator(".msg.bot .bubble")).to_have_text(["got text"])
    assert len(seen) == 1 and len(fake.pushes) == 1
    msg = seen[0]
    assert (msg.conversation_type, msg.conversation_id) == ("2", "cid-group-team")
    assert (msg.sender_staff_id, msg.sender_nick, msg.conversation_title) == (
        "user-2",
        "Bob",
        "Team",
    )
    assert msg.is_in_at_list is True
    assert msg.content.content == " @Carol hello"  # type: ignore[union-attr]
    assert [u.staff_id for u in msg.at_users] == [None, "user-3"]
    assert msg.at_users[0].dingtalk_id == msg.chatbot_user_id


def test_arrow_up_brings_back_the_last_message(page: Any) -> None:
    """↑ in an empty box brings back the last message sent; Enter sends it again."""
    with running_bot(calc.route) as (fake, _):
        page.goto(fake.api_base + "/")
        page.fill("#input", "6*7")
        page.press("#input", "Enter")
        expect(page.locator(".msg.bot .bubble")).to_have_text(["42"])
        expect(page.locator("#input")).to_have_value("")
        page.press("#input", "ArrowUp")
        expect(page.locator("#input")).to_have_value("6*7")
        page.press("#input", "Enter")
        expect(page.locator(".msg.bot .bubble")).to_have_text(["42", "42"])


def test_file_and_rich_text_messages_reach_the_bot(page: Any, tmp_path: Path) -> None:
    """A file chosen in the window reaches the bot as a download code it can fetch; rich text
    arrives as richText items."""
    got: List[bytes] = []
    seen: List[dingsync.ChatbotMessage] = []
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        seen.append(msg)
        if msg.msgtype == "file":
            assert ctx.api is not None
            code = msg.content.download_code  # type: ignore[union-attr]
            got.append(Path(ctx.api.robot.download(code, tmp_path / "got")).read_bytes())
        ctx.reply_text(f"got {msg.msgtype}")

    with running_bot(route) as (fake, _):
        page.goto(fake.api_base + "/")
        page.select_option("#msgtype", "file")
        page.set_input_files(
            "#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"abc"}]
        )
        page.click("#send")
        expect(page.locator(".msg.bot .bubble")).to_have_text(["got file"])
        page.select_option("#msgtype", "richText")
        page.fill("#input", "line one\nline two")
        page.click("#send")
        expect(page.locator(".msg.bot .bubble")).to_have_text(["got file", "got richText"])
    assert got == [b"abc"]
    assert seen[0].content.file_name == "notes.txt"  # type: ignore[union-attr]
    items = seen[1].content.items  # type: ignore[union-attr]
    assert [item.text for item in items] == ["line one", "line two"]


def test_events_form_and_side_panels(page: Any) -> None:
    """The events form pushes an event to the bot; work notifications and custom-robot
    messages appear in their tabs."""
    events: List[dingsync.Event] = []
    route = dingsync.Router()

    @route.event("user_add_org")
    def on_join(event: dingsync.Event, ctx: dingsync.Context) -> None:
        events.append(event)

    with running_bot(route) as (fake, _):
        page.goto(fake.api_base + "/")
        page.click(".tabs button[data-tab=events]")
        page.fill("#event-form textarea", '{"userId": ["user-9"]}')
        page.click("#event-form button")
        expect(page.locator("#inspector li.ack")).to_have_count(1)
        url = fake.add_webhook_robot("tok")
        dingsync.WebhookRobot(url, endpoints=fake.endpoints).send(m.Text("disk 91%"))
        with dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints) as api:
            api.notify.send(m.Markdown("Leave", "**approved**"), agent_id=7, user_ids=["user-1"])
        page.click(".tabs button[data-tab=webhooks]")
        expect(page.locator("#webhooks li .bubble")).to_have_text("disk 91%")
        page.click(".tabs button[data-tab=notices]")
        expect(page.locator("#notices li strong")).to_have_text("approved")
        expect(page.locator("#notices li .note")).to_contain_text("to Alice")
    assert [e.event_type for e in events] == ["user_add_org"]
    assert events[0].data == {"userId": ["user-9"]}


def test_robot_message_is_marked_read_then_recalled(page: Any) -> None:
    """A robot OpenAPI message shows in the user's chat, is marked read once seen there, and is
    replaced by a recall notice when the bot recalls it."""
    with running_bot(calc.route) as (fake, _):
        page.goto(fake.api_base + "/")
        with dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints) as api:
            sent = api.robot.send_to_users(["user-1"], m.Markdown("t", "**build** ok"))
            key = sent.process_query_keys[0]
            message = page.locator(".msg.bot")
            expect(message.locator("strong")).to_have_text("build")
            expect(message.locator(".note")).to_have_text("read by Alice")
            assert api.robot.read_status(key).read_user_ids == ("user-1",)
            api.robot.recall_users([key])
            expect(message.locator(".bubble")).to_have_text("The bot recalled a message")


def test_stall_and_resume_show_in_the_indicator(page: Any) -> None:
    """Stall turns the indicator amber and holds messages; Resume lets them through."""
    with running_bot(calc.route) as (fake, _):
        page.goto(fake.api_base + "/")
        indicator = page.locator("#conn")
        expect(indicator).to_contain_text("connected")
        page.click("#stall")
        expect(indicator).to_have_text("● stalled")
        expect(page.locator("#stall")).to_have_text("Resume")
        page.fill("#input", "1+2")
        page.press("#input", "Enter")
        expect(page.locator(".msg.mine .note")).to_have_text("sent · waiting for the ack")
        page.click("#stall")
        expect(page.locator(".msg.bot .bubble")).to_have_text(["3"])
        expect(indicator).to_contain_text("connected")


def test_bot_messages_are_drawn_as_dingtalk_shows_them(page: Any) -> None:
    """Action cards (buttons side by side or stacked), feed cards, links and files are drawn
    as cards; a button whose URL is not a web link is not clickable."""
    route = dingsync.Router()

    @route.chatbot
    def answer(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        ctx.reply(
            m.ActionCard(
                "Deploy?",
                "v1.2 is **ready**",
                buttons=[("Yes", "https://ci.example/yes"), ("No", "javascript:alert(1)")],
                orientation="horizontal",
            )
        )
        ctx.reply(m.FeedCard([("Release notes", "https://x.example/n", "https://x.example/p.png")]))
        ctx.reply(m.Link("Report", "Nightly numbers", "https://x.example/r"))
        assert ctx.api is not None
        ctx.api.robot.send_to_users(["user-1"], m.File("@lAmedia", "report.pdf"))

    with running_bot(route) as (fake, _):
        page.goto(fake.api_base + "/")
        page.fill("#input", "show me")
        page.press("#input", "Enter")
        card = page.locator(".card:has(.title:text-is('Deploy?'))")
        expect(card.locator(".text strong")).to_have_text("ready")
        expect(card.locator(".btns")).not_to_have_class("btns vertical")
        expect(card.locator(".btns a")).to_have_text(["Yes", "No"])
        assert card.locator(".btns a").nth(0).get_attribute("href") == "https://ci.example/yes"
        assert card.locator(".btns a").nth(1).get_attribute("href") == "#"
        feed = page.locator(".card.feed a")
        expect(feed).to_have_text("Release notes")
        assert feed.get_attribute("href") == "https://x.example/n"
        expect(page.locator("a.bubble.link")).to_contain_text("Report")
        expect(page.locator(".bubble.file")).to_contain_text("report.pdf")


def test_new_group_from_the_sidebar(page: Any) -> None:
    """The + form makes a group of the chosen users; the bot sees its title and members."""
    seen: List[dingsync.ChatbotMessage] = []
    with running_bot(recorder(seen)) as (fake, _):
        page.goto(fake.api_base + "/")
        page.click("#new-chat")
        page.select_option("#new-conv select[name=type]", "2")
        page.fill("#new-conv input[name=title]", "Ops")
        page.check("#new-conv input[value=user-2]")
        page.check("#new-conv input[value=user-3]")
        page.click("#new-conv button[type=submit]")
        expect(page.locator("#chat-title")).to_have_text("Ops")
        expect(page.locator("#sender option")).to_have_text(["Bob", "Carol"])
        page.fill("#input", "@Bot status?")
        page.press("#input", "Enter")
        expect(page.locator(".msg.bot .bubble")).to_have_text(["got text"])
    assert seen[0].conversation_title == "Ops" and seen[0].sender_staff_id == "user-2"
    assert seen[0].conversation_id and seen[0].conversation_id.startswith("cid-group-")


def test_redelivery_button_turns_redelivery_on_and_off(page: Any) -> None:
    """The Redelivery button sets the emulator's redelivery of un-acked frames (5 s) and
    clears it again."""
    with running_bot(calc.route) as (fake, _):
        page.goto(fake.api_base + "/")
        button = page.locator("#redelivery")
        button.click()
        expect(button).to_have_text("Redelivery: on")
        assert (fake.redeliver_events_after, fake.redeliver_callbacks_after) == (5.0, 5.0)
        button.click()
        expect(button).to_have_text("Redelivery: off")
        assert fake.redeliver_events_after is None and fake.redeliver_callbacks_after is None


def test_ping_and_disconnect_buttons(page: Any) -> None:
    """Ping shows the SYSTEM ping and its pong ack in the inspector; Disconnect makes the bot
    open a new connection before the old one closes, and the indicator counts the reconnect."""
    with running_bot(calc.route) as (fake, _):
        page.goto(fake.api_base + "/")
        indicator = page.locator("#conn")
        expect(indicator).to_have_text("● connected (1) · reconnects: 0")
        page.click("button[data-fault=ping]")
        expect(page.locator("#inspector li.push", has_text="SYSTEM ping")).to_have_count(1)
        expect(page.locator("#inspector li.ack")).to_have_count(1)
        assert fake.pongs and fake.pongs[0].matched
        page.click("button[data-fault=disconnect]")
        expect(indicator).to_have_text("● connected (1) · reconnects: 1")
        fake.wait_until(lambda: not fake.connections[0].alive, timeout=10)
        expect(page.locator("#inspector li.connection", has_text="closed")).to_have_count(1)
        page.fill("#input", "3*3")
        page.press("#input", "Enter")
        expect(page.locator(".msg.bot .bubble")).to_have_text(["9"])
