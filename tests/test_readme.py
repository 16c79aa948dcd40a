"""The README's code works as written: the quickstart bot and the test that tests it."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Dict

import pytest

from dingsync.testing import FakeDingTalk

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _python_block(first_line: str) -> str:
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"README has no python block starting with {first_line!r}")


def test_quickstart_bot_and_its_test_run_as_written(
    dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bot.py` from the quickstart replies, and `test_bot.py` from "Testing your bot" passes."""
    bot = types.ModuleType("bot")
    exec(compile(_python_block("# bot.py"), "README:bot.py", "exec"), bot.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "bot", bot)
    namespace: Dict[str, object] = {}
    exec(compile(_python_block("# test_bot.py"), "README:test_bot.py", "exec"), namespace)  # noqa: S102
    namespace["test_echo"](dingtalk)  # type: ignore[operator]
    assert dingtalk.replies[-1].text == "you said: hello"


def test_transcript_block_replays_a_saved_chat(
    dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The "Chat with your bot" test replays a chat with the quickstart bot as written."""
    import json

    import dingsync
    from dingsync.testing import record_transcript

    bot = types.ModuleType("bot")
    exec(compile(_python_block("# bot.py"), "README:bot.py", "exec"), bot.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "bot", bot)
    route = bot.route  # type: ignore[attr-defined]
    with dingsync.StreamClient(dingtalk.credentials, route, endpoints=dingtalk.endpoints):
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
