"""The sending examples run as scripts (subprocesses) against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

from dingsync.testing import FakeDingTalk

REPO = Path(__file__).resolve().parents[2]


def run(script: str, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / script), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )


def test_nightly_report_posts_markdown(dingtalk: FakeDingTalk, tmp_path: Path) -> None:
    """The cron example sends one markdown message and caches its token in the file."""
    cache = tmp_path / "tokens.json"
    env = {
        **dingtalk.env(),
        "REPORT_CONVERSATION_ID": "cidNIGHTLY==",
        "REPORT_TOKEN_CACHE": str(cache),
    }
    for _ in range(2):
        result = run("nightly_report.py", env)
        assert result.returncode == 0, result.stderr
        assert "report sent" in result.stdout
    sent = dingtalk.group_messages("cidNIGHTLY==")
    assert [s.msg_key for s in sent] == ["sampleMarkdown", "sampleMarkdown"]
    assert sent[0].msg_param["title"] == "Nightly report"
    assert "disk /" in sent[0].msg_param["text"]
    assert cache.exists()
    assert dingtalk.count("POST", "/v1.0/oauth2/accessToken") == 1


def test_nightly_report_exit_codes(dingtalk: FakeDingTalk, tmp_path: Path) -> None:
    """A missing setting is exit 2; refused credentials are exit 1."""
    env = {**dingtalk.env(), "REPORT_TOKEN_CACHE": str(tmp_path / "t.json")}
    env.pop("REPORT_CONVERSATION_ID", None)
    assert run("nightly_report.py", env).returncode == 2
    env.update(REPORT_CONVERSATION_ID="cid1", DINGTALK_CLIENT_SECRET="wrong")
    result = run("nightly_report.py", env)
    assert result.returncode == 1 and "wrong" not in result.stderr


def test_ai_card_streams_and_finalizes(dingtalk: FakeDingTalk) -> None:
    """The AI card example streams the whole answer and finishes the card."""
    env = {
        **dingtalk.env(),
        "CARD_TEMPLATE_ID": "ai.template.schema",
        "CARD_CONVERSATION_ID": "cidAI==",
        "CARD_WORD_DELAY": "0",
    }
    result = run("ai_card.py", env, "Why", "blue?")
    assert result.returncode == 0, result.stderr
    [card] = dingtalk.cards.values()
    assert card.status == "finished"
    assert card.spaces == ["IM_GROUP.cidAI=="]
    assert card.card_data["question"] == "Why blue?"
    assert card.streams["content"].strip().endswith("so the sky looks blue.")
    assert card.stream_calls[-1]["isFinalize"] is True
