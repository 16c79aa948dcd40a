"""The `dingsync` command at the edges (issue 14): env-first secrets, bad input, doctor, recipients."""

from __future__ import annotations

from typing import Any, Dict

import pytest
from click.testing import CliRunner, Result

from dingsync.cli import main
from dingsync.testing import FakeDingTalk

TOKEN = "clitoken123"
SECRET = "SECclisecret0123"
BATCH = "/v1.0/robot/oToMessages/batchSend"


def invoke(env: Dict[str, str], *args: str, stdin: object = "") -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


def test_help_leads_with_environment_variables() -> None:
    """The examples put the webhook and its secret in the environment, never in argv."""
    result = CliRunner().invoke(main, ["send", "--help"])
    assert result.exit_code == 0
    examples = result.output[result.output.index("Examples:") : result.output.index("Options:")]
    assert "export DINGTALK_WEBHOOK=" in examples and "export DINGTALK_WEBHOOK_SECRET=" in examples
    assert "--webhook" not in examples and "--secret" not in examples
    assert "visible to every user in ps" in result.output


def test_webhook_and_secret_from_the_environment(dingtalk: FakeDingTalk) -> None:
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    env = {**dingtalk.env(), "DINGTALK_WEBHOOK": dingtalk.webhook_url(TOKEN)}
    env["DINGTALK_WEBHOOK_SECRET"] = SECRET
    result = invoke(env, "send", "from cron")
    assert result.exit_code == 0, result.output
    assert [x.text for x in dingtalk.webhook_messages] == ["from cron"]


def test_a_webhook_in_the_environment_does_not_block_group_sends(dingtalk: FakeDingTalk) -> None:
    env = {**dingtalk.env(), "DINGTALK_WEBHOOK": dingtalk.webhook_url(TOKEN)}
    result = invoke(env, "send", "--group", "cid1", "hi")
    assert result.exit_code == 0, result.output
    assert len(dingtalk.group_messages("cid1")) == 1


def test_a_secret_in_argv_is_warned_about(dingtalk: FakeDingTalk) -> None:
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    env = {**dingtalk.env(), "DINGTALK_WEBHOOK": dingtalk.webhook_url(TOKEN)}
    result = invoke(env, "send", "--secret", SECRET, "hi")
    assert result.exit_code == 0
    assert "--secret is visible to every user in ps" in result.output


@pytest.mark.parametrize("command", [["send", "--group", "cid1"], ["token"], ["doctor"]])
def test_a_zero_timeout_is_a_usage_error(dingtalk: FakeDingTalk, command: list) -> None:  # type: ignore[type-arg]
    result = invoke(
        dingtalk.env(), *command, "--timeout", "0", *(["hi"] if "send" in command else [])
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "timeout" in result.output.lower()


def test_binary_stdin_is_a_usage_error(dingtalk: FakeDingTalk) -> None:
    result = invoke(dingtalk.env(), "send", "--group", "cid1", stdin=b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert result.exit_code == 2
    assert "not UTF-8" in result.output
    assert dingtalk.sent == []


def test_an_oversized_webhook_message_exits_2(dingtalk: FakeDingTalk) -> None:
    dingtalk.add_webhook_robot(TOKEN)
    env = {**dingtalk.env(), "DINGTALK_WEBHOOK": dingtalk.webhook_url(TOKEN)}
    result = invoke(env, "send", stdin="x" * 30_000)
    assert result.exit_code == 2
    assert "nothing was sent" in result.output
    assert dingtalk.webhook_messages == []


def test_a_missing_secret_gets_the_right_advice(dingtalk: FakeDingTalk) -> None:
    """Leaving out the secret of a signed robot says so, not 'the clock is off'."""
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    env = {**dingtalk.env(), "DINGTALK_WEBHOOK": dingtalk.webhook_url(TOKEN)}
    result = invoke(env, "send", "hi")
    assert result.exit_code == 1
    assert "DINGTALK_WEBHOOK_SECRET" in result.output
    assert "clock" not in result.output


def test_doctor_survives_a_bad_port_and_hides_endpoint_passwords(dingtalk: FakeDingTalk) -> None:
    env = {**dingtalk.env(), "DINGTALK_OPENAPI_ENDPOINT": "http://bob:hunter2@127.0.0.1:99999"}
    result = invoke(env, "doctor", "--timeout", "1")
    assert result.exit_code == 1
    assert "Port out of range" in result.output and "Traceback" not in result.output
    assert "hunter2" not in result.output
    assert "http://***@127.0.0.1:99999" in result.output


def test_a_token_outage_says_nothing_was_sent(dingtalk: FakeDingTalk) -> None:
    """A dead token endpoint is exit 3 with 'nothing was sent', not 'may have been processed'."""
    dingtalk.fail_next("POST", "/v1.0/oauth2/accessToken", reset=True, times=50)
    result = invoke(dingtalk.env(), "send", "--group", "cid1", "--timeout", "1", "hi")
    assert result.exit_code == 3
    assert "nothing was sent" in result.output
    assert "may have been" not in result.output


def test_send_to_users_says_who_got_it(dingtalk: FakeDingTalk) -> None:
    """After a failed second chunk the CLI lists who received, who may have, who did not."""
    users = [f"u{i}" for i in range(45)]
    dingtalk.fail_next("POST", BATCH, reset=True, after=1)
    args = [arg for u in users for arg in ("--user", u)]
    result = invoke(dingtalk.env(), "send", *args, "hi")
    assert result.exit_code == 3
    assert "delivered to: " + ", ".join(users[:20]) in result.output
    assert "may have been sent to (check before resending): " + ", ".join(users[20:40]) in (
        result.output
    )
    assert "not sent to: " + ", ".join(users[40:]) in result.output


def test_redis_shares_webhook_pacing_and_tokens_between_machines(
    dingtalk: FakeDingTalk, redis_url: str, redis_client: Any
) -> None:
    """DINGSYNC_REDIS_URL puts the webhook's pacing and the app's token in Redis."""
    dingtalk.add_webhook_robot(TOKEN)
    env = {
        **dingtalk.env(),
        "DINGTALK_WEBHOOK": dingtalk.webhook_url(TOKEN),
        "DINGSYNC_REDIS_URL": redis_url,
    }
    assert invoke(env, "send", "paced by redis").exit_code == 0
    assert invoke(env, "send", "--group", "cid1", "hi").exit_code == 0
    keys = {k.decode() for k in redis_client.keys("*")}
    assert any(k.startswith("dingsync:ratelimit:webhook:") for k in keys), keys
    assert any(k.startswith("dingsync:token:") for k in keys), keys
