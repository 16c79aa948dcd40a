"""The `dingsync` command (click CliRunner against the emulator) and its exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest
import requests
from click.testing import CliRunner

from dingsync.api import RetryPolicy
from dingsync.cli import main
from dingsync.testing import FakeDingTalk

TOKEN = "clitoken123"


def invoke(env: Dict[str, str], *args: str, stdin: str = "") -> object:
    runner = CliRunner()
    return runner.invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


def test_help_documents_the_exit_codes() -> None:
    """Every command's help lists the exit codes a cron job can act on."""
    for args in ([], ["send"], ["doctor"]):
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0
        assert "3  network failure or timeout" in result.output


def test_send_to_group(dingtalk: FakeDingTalk) -> None:
    """--group sends as the app robot and prints the processQueryKey."""
    result = invoke(
        dingtalk.env(), "send", "--group", "cid1", "--markdown", "Build", "all", "green"
    )
    assert result.exit_code == 0, result.output
    sent = dingtalk.group_messages("cid1")[0]
    assert sent.msg_param == {"title": "Build", "text": "all green"}
    assert sent.process_query_key in result.output


def test_send_from_stdin_to_users(dingtalk: FakeDingTalk) -> None:
    """The text can come from stdin; --user repeats."""
    result = invoke(dingtalk.env(), "send", "--user", "u1", "--user", "u2", stdin="from a pipe\n")
    assert result.exit_code == 0, result.output
    assert dingtalk.sent[0].user_ids == ("u1", "u2")
    assert dingtalk.sent[0].text == "from a pipe"


def test_undelivered_users_exit_1(dingtalk: FakeDingTalk) -> None:
    """Flow-controlled recipients make the exit code 1 and are listed on stderr."""
    dingtalk.mark_users_flow_controlled("busy")
    result = invoke(dingtalk.env(), "send", "--user", "ok", "--user", "busy", "hi")
    assert result.exit_code == 1
    assert "busy" in result.output


def test_send_to_a_signed_webhook(dingtalk: FakeDingTalk) -> None:
    """--webhook/--secret (or DINGTALK_WEBHOOK/_SECRET) post to a custom robot with mentions."""
    url = dingtalk.add_webhook_robot(TOKEN, secret="SECcli")
    env = {**dingtalk.env(), "DINGTALK_WEBHOOK": url, "DINGTALK_WEBHOOK_SECRET": "SECcli"}
    result = invoke(env, "send", "--at-mobile", "13800000000", "disk", "91%")
    assert result.exit_code == 0, result.output
    body = dingtalk.webhook_messages[0].body
    assert body["text"]["content"] == "disk 91% @13800000000"


def test_refused_webhook_exits_1_without_leaking(dingtalk: FakeDingTalk) -> None:
    """A bad signature is exit 1; the output names the problem, not the token."""
    url = dingtalk.add_webhook_robot(TOKEN, secret="SECcli")
    result = invoke(dingtalk.env(), "send", "--webhook", url, "--secret", "SECwrong", "hi")
    assert result.exit_code == 1
    assert "sign not match" in result.output
    assert TOKEN not in result.output and "SECwrong" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["send", "hi"],
        ["send", "--group", "cid1", "--user", "u1", "hi"],
        ["send", "--group", "cid1", "--at-all", "hi"],
    ],
)
def test_usage_errors_exit_2(dingtalk: FakeDingTalk, args: list) -> None:  # type: ignore[type-arg]
    """Wrong option combinations are usage errors and send nothing."""
    result = invoke(dingtalk.env(), *args)
    assert result.exit_code == 2
    assert dingtalk.sent == []


def test_missing_credentials_exit_2(dingtalk: FakeDingTalk) -> None:
    """No client id/secret is a configuration error (exit 2)."""
    env = {**dingtalk.env(), "DINGTALK_CLIENT_SECRET": ""}
    result = invoke(env, "send", "--group", "cid1", "hi")
    assert result.exit_code == 2
    assert "DINGTALK_CLIENT_SECRET" in result.output


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_network_failure_exits_3(dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable DingTalk is exit 3."""
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, n, error: 0.0)
    dead = f"http://127.0.0.1:{_closed_port()}"
    env = {**dingtalk.env(), "DINGTALK_OPENAPI_ENDPOINT": dead}
    result = invoke(env, "send", "--group", "cid1", "--timeout", "1", "hi")
    assert result.exit_code == 3
    assert "could not connect" in result.output


def test_token_prints_expiry_not_the_token(dingtalk: FakeDingTalk) -> None:
    """The token is shown only with --show; the secret never."""
    result = invoke(dingtalk.env(), "token")
    assert result.exit_code == 0, result.output
    assert "valid for 7200 s" in result.output or "valid for 7199 s" in result.output
    assert len(dingtalk.requests_to("POST", "/v1.0/oauth2/accessToken")) == 1
    assert dingtalk.issue_token("new")[0] not in result.output  # the same token, renewed
    assert dingtalk.client_secret not in result.output
    shown = invoke(dingtalk.env(), "token", "--old", "--show")
    assert shown.exit_code == 0
    assert shown.output.strip().splitlines()[-1].startswith("old-")
    assert dingtalk.client_secret not in shown.output


def test_download_writes_the_file(dingtalk: FakeDingTalk, tmp_path: Path) -> None:
    """download CODE DEST saves the bytes (progress goes to stderr)."""
    dingtalk.add_file("dl-1", b"z" * 200_000, filename="z.bin")
    dest = tmp_path / "z.bin"
    result = invoke(dingtalk.env(), "download", "dl-1", str(dest))
    assert result.exit_code == 0, result.output
    assert dest.read_bytes() == b"z" * 200_000
    assert "saved 200000 bytes" in result.output


def test_download_of_an_unknown_code_exits_1(dingtalk: FakeDingTalk, tmp_path: Path) -> None:
    """DingTalk refusing the code is exit 1 and leaves no file."""
    result = invoke(dingtalk.env(), "download", "nope", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert os.listdir(tmp_path) == []


def test_doctor_passes_against_the_emulator(dingtalk: FakeDingTalk) -> None:
    """Every check passes; TLS is skipped for the emulator's http:// endpoints."""
    result = invoke(dingtalk.env(), "doctor")
    assert result.exit_code == 0, result.output
    assert "[skip] TLS api" in result.output and "plain http://" in result.output
    assert "[ ok ] token (new-style)" in result.output
    assert "[ ok ] token (old-style)" in result.output
    assert dingtalk.client_secret not in result.output


def test_doctor_reports_failures_with_hints(dingtalk: FakeDingTalk) -> None:
    """Wrong credentials fail the token checks with a hint; exit 1."""
    env = {**dingtalk.env(), "DINGTALK_CLIENT_SECRET": "wrong-secret"}
    result = invoke(env, "doctor")
    assert result.exit_code == 1
    assert "[FAIL] token (new-style)" in result.output
    assert "hint: check DINGTALK_CLIENT_ID" in result.output
    assert "wrong-secret" not in result.output


def test_doctor_without_credentials(dingtalk: FakeDingTalk) -> None:
    """Missing credentials are a failed check, not a crash."""
    env = {**dingtalk.env(), "DINGTALK_CLIENT_ID": "", "DINGTALK_CLIENT_SECRET": ""}
    result = invoke(env, "doctor")
    assert result.exit_code == 1
    assert "[FAIL] credentials" in result.output


def test_doctor_shows_proxies_redacted(dingtalk: FakeDingTalk) -> None:
    """Proxy settings are listed with their password masked."""
    env = {
        **dingtalk.env(),
        "HTTPS_PROXY": "http://bob:hunter2@proxy.local:3128",
        "NO_PROXY": "127.0.0.1",
    }
    result = invoke(env, "doctor")
    assert "HTTPS_PROXY=http://***@proxy.local:3128" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_emulator_command_runs_until_interrupted(stop: int) -> None:
    """`dingsync emulator` prints the env lines, serves requests, and stops on Ctrl-C/SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dingsync.cli", "emulator", "--webhook", "tok1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        env: Dict[str, str] = {}
        deadline = time.monotonic() + 30
        assert process.stdout is not None
        while "DINGTALK_OAPI_ENDPOINT" not in env and time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                env[name] = value
        assert env["DINGTALK_CLIENT_ID"] == "test-client-id"
        answer = requests.post(
            env["DINGTALK_OPENAPI_ENDPOINT"] + "/v1.0/oauth2/accessToken",
            json={"appKey": env["DINGTALK_CLIENT_ID"], "appSecret": env["DINGTALK_CLIENT_SECRET"]},
            timeout=5,
        )
        assert answer.json()["expireIn"] == 7200
        posted = requests.post(
            env["DINGTALK_OAPI_ENDPOINT"] + "/robot/send?access_token=tok1",
            json={"msgtype": "text", "text": {"content": "hi"}},
            timeout=5,
        )
        assert posted.json()["errcode"] == 0
        process.send_signal(stop)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "emulator stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
