"""What a cron job sends is checked and shown (issue 15, item 7): unknown conversations get
DingTalk's error, the control API lists sent messages, `dingsync emulator` prints one line per
message and serves files for `dingsync download`; a push nobody subscribes to says so (item 8)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import requests
from child_processes import die_with_parent, stop_process

import dingsync
from dingsync import messages as m
from dingsync.errors import InvalidRequest
from dingsync.testing import FakeDingTalk


@pytest.fixture()
def api(dingtalk: FakeDingTalk) -> Iterator[dingsync.ApiClient]:
    client = dingsync.ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints)
    yield client
    client.close()


@pytest.mark.parametrize("cid", [" ", "nonsense", "cid with spaces"])
def test_malformed_conversation_ids_get_dingtalks_error(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient, cid: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        api.robot.send_to_group(cid, m.Text("backup finished"))
    assert info.value.status == 400 and info.value.code == "invalid.openConversationId"
    assert dingtalk.sent == []


def test_strict_emulator_knows_only_added_and_pushed_conversations(
    dingtalk: FakeDingTalk, api: dingsync.ApiClient
) -> None:
    dingtalk.strict_conversations = True
    dingtalk.add_conversation("cidNightly==")
    with pytest.raises(InvalidRequest):
        api.robot.send_to_group("cidTypo==", m.Text("x"))
    api.robot.send_to_group("cidNightly==", m.Text("ok"))
    dingtalk.push_chatbot("hi", conversation_type="2", conversation_id="cidFromChat==")
    api.robot.send_to_group("cidFromChat==", m.Text("ok too"))
    assert [s.open_conversation_id for s in dingtalk.sent] == ["cidNightly==", "cidFromChat=="]


def test_control_api_lists_sent_messages(dingtalk: FakeDingTalk, api: dingsync.ApiClient) -> None:
    api.robot.send_to_group("cidA==", m.Markdown(title="Nightly", text="all green"))
    url = dingtalk.add_webhook_robot("webhook-token-4f1c9a")
    dingsync.WebhookRobot(url).send(m.Text("disk 91%"))
    answer = requests.get(f"{dingtalk.api_base}/_emulator/sent", timeout=5)
    assert "webhook-token-4f1c9a" not in answer.text  # the robot's URL is its credential
    listed = answer.json()
    [robot] = listed["robot"]
    assert robot["open_conversation_id"] == "cidA==" and robot["text"] == "all green"
    assert robot["msg_key"] == "sampleMarkdown"
    [webhook] = listed["webhook"]
    assert webhook["text"] == "disk 91%" and "token" not in webhook


def test_a_push_no_connection_subscribes_to_says_so(dingtalk: FakeDingTalk) -> None:
    route = dingsync.Router()
    route.event("user_add_org")(lambda ev, ctx: None)
    with dingsync.StreamClient(dingtalk.credentials, route, endpoints=dingtalk.endpoints):
        dingtalk.wait_for_connections()
        answer = requests.post(
            f"{dingtalk.api_base}/_emulator/chatbot", json={"text": "1+1"}, timeout=5
        ).json()
        assert answer["pending"] is True
        assert "/v1.0/im/bot/messages/get" in answer["warning"]
        assert "EVENT *" in answer["warning"]
        handled = requests.post(
            f"{dingtalk.api_base}/_emulator/event",
            json={"event_type": "user_add_org", "data": {}},
            timeout=5,
        ).json()
        assert "warning" not in handled


def _cli(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        die_with_parent([sys.executable, "-m", "dingsync.cli", *args]),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dingsync_emulator_prints_each_message_and_serves_files(tmp_path: Path) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 nightly")
    argv = [sys.executable, "-m", "dingsync.cli", "emulator", "--group", "cidNightly=="]
    proc = subprocess.Popen(
        die_with_parent([*argv, "--file", str(report)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK_")}
        banner: List[str] = []
        for line in proc.stdout:
            banner.append(line)
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                env[name] = value
            if line.startswith("Press Ctrl-C"):
                break
        assert any("dingsync download code-1 ./report.pdf" in line for line in banner), banner

        refused = _cli("send", "--group", "nonsense", "backup finished", env=env)
        assert refused.returncode == 1 and "invalid.openConversationId" in refused.stderr
        typo = _cli("send", "--group", "cidNightIy==", "backup finished", env=env)
        assert typo.returncode == 1  # strict: only the groups it was told about
        assert _cli("send", "--group", "cidNightly==", "backup\nfinished", env=env).returncode == 0

        saved = tmp_path / "saved.pdf"
        download = _cli("download", "code-1", str(saved), env=env)
        assert download.returncode == 0, download.stderr
        assert saved.read_bytes() == report.read_bytes()

        sent = requests.get(env["DINGTALK_OPENAPI_ENDPOINT"] + "/_emulator/sent", timeout=5)
        assert [r["text"] for r in sent.json()["robot"]] == ["backup\nfinished"]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    lines = [line for line in out.splitlines() if "robot -> " in line]
    assert len(lines) == 1, out
    assert re.fullmatch(
        r'\d\d:\d\d:\d\d robot -> group cidNightly==: sampleText "backup / finished"', lines[0]
    ), lines[0]
    assert "emulator stopped" in out
