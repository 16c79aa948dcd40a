"""Mistakes in a handler module give one line and exit 2, as the README promises (issue 15,
item 3): a syntax error, an exception while importing, a handler named where the Router should
be, and --factory on something that is not a factory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from child_processes import die_with_parent

SYNTAX_ERROR = """import dingsync

route = dingsync.Router(
"""
RAISES_AT_IMPORT = """import dingsync

route = dingsync.Router()
SETTINGS = {"region": "cn"}
TIMEOUT = int(SETTINGS["timeout_seconds"])
"""
HANDLER_ONLY = """import dingsync

route = dingsync.Router()


def echo(msg, ctx):
    ctx.reply_text(msg.text)


def broken_factory():
    return {}["route"]
"""


def dingworker(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK_")}
    argv = [sys.executable, "-m", "dingworker", "--app-dir", str(app_dir), *args]
    return subprocess.run(
        die_with_parent(argv), env=env, capture_output=True, text=True, timeout=60, check=False
    )


def one_line(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "syntax_bot.py").write_text(SYNTAX_ERROR, encoding="utf-8")
    (tmp_path / "raising_bot.py").write_text(RAISES_AT_IMPORT, encoding="utf-8")
    (tmp_path / "handler_bot.py").write_text(HANDLER_ONLY, encoding="utf-8")
    return tmp_path


def test_syntax_error_is_one_line_with_file_and_line(app_dir: Path) -> None:
    line = one_line(dingworker(app_dir, "syntax_bot:route"), "syntax error", "syntax_bot.py")
    assert "line 3" in line or "line 4" in line  # where the parser gave up


def test_exception_at_import_is_one_line_with_where_it_was_raised(app_dir: Path) -> None:
    one_line(
        dingworker(app_dir, "raising_bot:route"),
        "KeyError",
        "'timeout_seconds'",
        f"{app_dir / 'raising_bot.py'}, line 5",
        "--log-level debug",
    )


def test_log_level_debug_adds_the_traceback(app_dir: Path) -> None:
    done = dingworker(app_dir, "--log-level", "debug", "raising_bot:route")
    assert done.returncode == 2
    assert "Traceback" in done.stderr and 'SETTINGS["timeout_seconds"]' in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: APP 'raising_bot:route'")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["handler_bot:echo"], ["not a dingsync.Router", "looks like a handler", "@route.chatbot"]),
        (["--factory", "handler_bot:echo"], ["takes arguments (msg, ctx)", "not a factory"]),
        (["--factory", "handler_bot:broken_factory"], ["calling the factory raised KeyError"]),
    ],
)
def test_handler_or_broken_factory_named_as_app(
    app_dir: Path, args: List[str], fragments: List[str]
) -> None:
    line = one_line(dingworker(app_dir, *args), *fragments)
    assert "did you mean --factory" not in line
