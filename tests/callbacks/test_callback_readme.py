"""The README's "Receiving without a websocket" code works as written."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Dict

import pytest
from test_readme import _python_block as _block

from dingsync.callbacks import CallbackApp
from dingsync.testing import FakeDingTalk


def _module(name: str, first_line: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(_block(first_line), f"README:{name}.py", "exec"), module.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_callbacks_block_builds_the_app_from_the_environment(
    dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in dingtalk.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DINGTALK_EVENT_TOKEN", dingtalk.event_token)
    monkeypatch.setenv("DINGTALK_EVENT_AES_KEY", dingtalk.event_aes_key)
    monkeypatch.setenv("DINGTALK_CARD_CALLBACK_SECRET", "a-card-secret-of-24-chars")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    _module("bot", "# bot.py", monkeypatch)
    callbacks = _module("callbacks", "# callbacks.py", monkeypatch)
    app = callbacks.app
    assert isinstance(app, CallbackApp)
    assert app.crypto is not None and app.card_auth is not None
    assert app.card_url("https://x.example/").endswith("dingsync_card=a-card-secret-of-24-chars")


def test_testing_block_passes_as_written(
    dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch
) -> None:
    _module("bot", "# bot.py", monkeypatch)
    namespace: Dict[str, object] = {}
    exec(compile(_block("# test_callbacks.py"), "README:test_callbacks.py", "exec"), namespace)  # noqa: S102
    namespace["test_echo_over_http"](dingtalk)  # type: ignore[operator]
    assert dingtalk.violations == []
