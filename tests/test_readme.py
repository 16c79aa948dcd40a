"""The README's code works as written: every Python block of it runs in a test.

Blocks run here against the emulator; blocks that a section's own tests run are listed in
``ELSEWHERE``, and :func:`test_every_python_block_is_run_by_a_test` fails for a block that
nothing runs.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import dingsync
from dingsync.testing import FakeDingTalk

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS: List[str] = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)

#: First line of a block -> the test file that runs it (found by a prefix of that line).
ELSEWHERE = {
    "# callbacks.py": "tests/callbacks/test_callback_readme.py",
    "# test_callbacks.py": "tests/callbacks/test_callback_readme.py",
    "# test_bot_offline.py": "tests/testing/test_builders.py",
    "# card_bot.py": "tests/test_card_replies.py",
    "# work_notice_snippet.py": "tests/api/test_work_notifications.py",
    "# metrics_export.py": "tests/test_metrics.py",
}


def _python_block(first_line: str) -> str:
    for block in BLOCKS:
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"README has no python block starting with {first_line!r}")


def _block_with(text: str) -> str:
    found = [b for b in BLOCKS if text in b]
    assert len(found) == 1, f"{len(found)} README blocks contain {text!r}"
    return found[0]


RUN_HERE = {
    _python_block("# bot.py"),
    _python_block("# test_bot.py"),
    _block_with("client.start()          # background thread"),
    _block_with("@route.card_callback"),
    _block_with("api.robot.send_to_group("),
    _python_block("# test_transcripts.py"),
}


def test_every_python_block_is_run_by_a_test() -> None:
    """A block nothing runs fails here: add it to a test (or to ELSEWHERE with its test)."""
    for block in BLOCKS:
        if block in RUN_HERE:
            continue
        first = block.splitlines()[0]
        owners = [path for prefix, path in ELSEWHERE.items() if first.startswith(prefix)]
        assert owners, f"no test runs the README block starting {first!r}"
        source = (ROOT / owners[0]).read_text(encoding="utf-8")
        prefix = next(p for p in ELSEWHERE if first.startswith(p))
        assert repr(prefix)[1:-1] in source or prefix in source, (owners[0], prefix)


@pytest.fixture
def bot(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The quickstart's ``bot.py``, importable as ``bot``."""
    module = types.ModuleType("bot")
    exec(compile(_python_block("# bot.py"), "README:bot.py", "exec"), module.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "bot", module)
    return module


@pytest.fixture
def emulator_env(dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The environment the README's shell lines export, pointed at the emulator."""
    for name, value in dingtalk.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DINGSYNC_CACHE_DIR", str(tmp_path))


def test_quickstart_bot_and_its_test_run_as_written(
    dingtalk: FakeDingTalk, bot: types.ModuleType
) -> None:
    """`bot.py` from the quickstart replies, and `test_bot.py` from "Testing your bot" passes."""
    namespace: Dict[str, object] = {}
    exec(compile(_python_block("# test_bot.py"), "README:test_bot.py", "exec"), namespace)  # noqa: S102
    namespace["test_echo"](dingtalk)  # type: ignore[operator]
    assert dingtalk.replies[-1].text == "you said: hello"


def test_running_the_bot_from_your_own_code(
    dingtalk: FakeDingTalk, bot: types.ModuleType, emulator_env: None
) -> None:
    """The start()/stop() block connects with the environment's credentials and stops."""
    namespace: Dict[str, object] = {"dingsync": dingsync, "route": bot.route}
    block = _block_with("client.start()          # background thread")
    exec(compile(block, "README:own-code", "exec"), namespace)  # noqa: S102
    client = namespace["client"]
    assert isinstance(client, dingsync.StreamClient)
    assert client.health()[1]["state"] == "stopped" and len(dingtalk.open_requests) == 1
    dingtalk.wait_until(lambda: not dingtalk.live_connections, 5)


def test_the_receiving_block_handles_messages_events_and_card_clicks(
    dingtalk: FakeDingTalk,
) -> None:
    """The Receiving block's router: a chat message gets its markdown reply, an event and a
    card click their acks; a failing handler reaches the error hook."""
    namespace: Dict[str, object] = {}
    exec(compile(_block_with("@route.card_callback"), "README:receiving", "exec"), namespace)  # noqa: S102
    route = namespace["route"]
    assert isinstance(route, dingsync.Router)
    with dingsync.StreamClient(dingtalk.credentials, route, endpoints=dingtalk.endpoints):
        dingtalk.wait_for_ack(dingtalk.push_chatbot("hi"))
        assert dingtalk.wait_for_reply().body["markdown"]["text"] == "**you said** hi"
        joined = dingtalk.push_event("user_add_org", {"userId": ["u1"]})
        assert dingtalk.wait_for_ack(joined)["code"] == 200
        click = dingtalk.push_card_callback("card-1", {"action": "ok"})
        assert '"status":"done"' in dingtalk.wait_for_ack(click)["data"]


def llm_stream() -> Iterator[str]:
    """What the Sending block's AI card streams (the README leaves it to the reader)."""
    yield from ("The build ", "is ", "green.")


def test_the_sending_block_sends_through_every_channel(
    dingtalk: FakeDingTalk, emulator_env: None
) -> None:
    """The Sending block, with DingTalk's hosts pointed at the emulator: a group message, a
    1:1 batch, a signed custom-robot message with its mention, and a finished AI card."""
    dingtalk.add_conversation("cidXXXX==")
    dingtalk.add_webhook_robot("...", secret="SEC...")
    block = _block_with("api.robot.send_to_group(")
    block = block.replace("https://oapi.dingtalk.com", dingtalk.oapi_base)
    namespace: Dict[str, object] = {"llm_stream": llm_stream}
    exec(compile(block, "README:sending", "exec"), namespace)  # noqa: S102
    assert [m.open_conversation_id for m in dingtalk.sent][:1] == ["cidXXXX=="]
    (webhook,) = dingtalk.webhook_messages
    assert webhook.text == "disk 91% @13800000000"  # DingTalk shows a mention in the text
    assert webhook.body["at"]["atMobiles"] == ["13800000000"]
    (card,) = dingtalk.cards.values()
    assert card.status == "finished" and "The build is green." in card.streams.values()


def test_transcript_block_replays_a_saved_chat(
    dingtalk: FakeDingTalk,
    bot: types.ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The "Chat with your bot" test replays a chat with the quickstart bot as written."""
    import json

    from dingsync.testing import record_transcript

    with dingsync.StreamClient(dingtalk.credentials, bot.route, endpoints=dingtalk.endpoints):
        dingtalk.wait_for_ack(dingtalk.push_chatbot("hello", conversation_id="cid-readme"))
        dingtalk.wait_for_reply()
    saved = tmp_path / "tests" / "transcripts" / "hello.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps(record_transcript(dingtalk, "cid-readme")))
    monkeypatch.chdir(tmp_path)
    namespace: Dict[str, object] = {}
    block = _python_block("# test_transcripts.py")
    exec(compile(block, "README:test_transcripts.py", "exec"), namespace)  # noqa: S102
    namespace["test_saved_chat"]()  # type: ignore[operator]
