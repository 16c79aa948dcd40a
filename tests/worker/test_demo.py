"""``make demo`` (``python -m dingworker.demo``) as a subprocess: the scripted conversation."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dingworker.demo import reply_text

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.skipif(sys.platform == "win32", reason="the demo stops the worker with SIGTERM")
def test_demo_runs_the_calculator_conversation() -> None:
    """Every question gets the calculator's answer and the worker stops cleanly, within 10 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "dingworker.demo"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(REPO),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    out = result.stdout
    assert "you> 1+1\nbot> 2\n" in out
    assert "you> 2*(3+4)\nbot> 14\n" in out
    assert "you> hello\nbot> I am a calculator" in out
    assert "worker stopped cleanly" in out


def test_demo_reports_a_missing_reply(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the bot does not answer, the demo exits 1 and names the unanswered question."""
    from dingworker import demo

    monkeypatch.setattr(demo, "REPLY_TIMEOUT", 0.5)
    monkeypatch.setattr(
        demo, "Demo", functools.partial(demo.Demo, app="dw_silent_app:route", app_dir=FIXTURES)
    )
    assert demo.main(["1+1"]) == 1
    captured = capsys.readouterr()
    assert "you> 1+1" in captured.out
    assert "demo failed: no reply to '1+1' within 0.5s" in captured.err


def test_demo_reports_a_worker_that_does_not_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker that exits at once (bad APP) is reported with its own error line."""
    from dingworker import demo

    monkeypatch.setattr(
        demo, "Demo", functools.partial(demo.Demo, app="dw_no_such_module:route", app_dir=FIXTURES)
    )
    assert demo.main(["1+1"]) == 1
    err = capsys.readouterr().err
    assert "demo failed: dingworker exited with code 2 without printing its emulator address" in err
    assert "no module named 'dw_no_such_module'" in err


def test_reply_text_reads_text_and_markdown() -> None:
    """reply_text understands the reply shapes a bot can send."""
    assert reply_text({"body": {"msgtype": "text", "text": {"content": "2"}}}) == "2"
    assert (
        reply_text({"body": {"msgtype": "markdown", "markdown": {"title": "t", "text": "**2**"}}})
        == "**2**"
    )
    assert reply_text({"body": {"msgtype": "link"}}) == '{"msgtype": "link"}'
