"""Work notifications (issue 13, item 2): DINGTALK_AGENT_ID, ``dingsync send --notify``, the
cron example, and the README's cron recipe and Python block, run as written.

The CLI lists the recipients DingTalk skipped (unknown, forbidden, flow-controlled) and exits 1
when nobody got the notification.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest
from click.testing import CliRunner, Result

import dingsync
from dingsync.api.notify import agent_id_from_env
from dingsync.cli import EXIT_REFUSED, EXIT_USAGE, main
from dingsync.errors import ConfigurationError
from dingsync.testing import FakeDingTalk

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
AGENT = "3180001"
RESULT = "/topapi/message/corpconversation/getsendresult"


@pytest.fixture
def env(dingtalk: FakeDingTalk, tmp_path: Path) -> Dict[str, str]:
    return {**dingtalk.env(), "DINGTALK_AGENT_ID": AGENT, "DINGSYNC_CACHE_DIR": str(tmp_path)}


def invoke(env: Dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


# -- the library --------------------------------------------------------------------------------


@pytest.fixture
def no_agent_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("DINGTALK_AGENT_ID", raising=False)
    yield


def test_the_agent_id_comes_from_the_environment(
    dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINGTALK_AGENT_ID", AGENT)
    with dingsync.ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints) as api:
        task_id = api.notify.send("payroll", user_ids=["u1"])
        assert api.notify.send_result(task_id).all_delivered
    assert dingtalk.work_notices[0].agent_id == int(AGENT)


def test_the_client_agent_id_wins_over_the_environment(
    dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINGTALK_AGENT_ID", AGENT)
    with dingsync.ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, agent_id=42) as api:
        api.notify.send("payroll", user_ids=["u1"])
    assert dingtalk.work_notices[0].agent_id == 42


def test_a_missing_or_bad_agent_id_says_where_to_find_it(
    dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch, no_agent_env: None
) -> None:
    with dingsync.ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints) as api:
        with pytest.raises(ConfigurationError, match="DINGTALK_AGENT_ID"):
            api.notify.send("payroll", user_ids=["u1"])
        monkeypatch.setenv("DINGTALK_AGENT_ID", "my-app")
        with pytest.raises(ConfigurationError, match="Credentials & Basic Info"):
            agent_id_from_env()
    assert dingtalk.work_notices == []


# -- the CLI ------------------------------------------------------------------------------------


def test_send_notify_to_users(dingtalk: FakeDingTalk, env: Dict[str, str]) -> None:
    """--notify with --users (comma-separated) and --user, the agent id from the environment."""
    result = invoke(env, "send", "--notify", "--users", "u1,u2", "--user", "u3", "hello")
    assert result.exit_code == 0, result.output
    notice = dingtalk.work_notices[0]
    assert notice.agent_id == int(AGENT)
    assert sorted(notice.user_ids) == ["u1", "u2", "u3"]
    assert notice.msg == {"msgtype": "text", "text": {"content": "hello"}}
    assert f"work notification task {notice.task_id}" in result.output
    assert dingtalk.sent == []  # not a robot message


def test_agent_id_on_the_command_line_implies_notify(
    dingtalk: FakeDingTalk, env: Dict[str, str]
) -> None:
    env.pop("DINGTALK_AGENT_ID")
    result = invoke(env, "send", "--agent-id", "77", "--users", "u1", "--markdown", "T", "body")
    assert result.exit_code == 0, result.output
    assert dingtalk.work_notices[0].agent_id == 77
    assert dingtalk.work_notices[0].msg["markdown"] == {"title": "T", "text": "body"}


def test_skipped_recipients_are_listed_and_nobody_is_exit_1(
    dingtalk: FakeDingTalk, env: Dict[str, str]
) -> None:
    """Unknown ids and same-content-today are listed; exit 0 while one got it, 1 when none."""
    dingtalk.mark_users_invalid("ghost")
    first = invoke(env, "send", "--notify", "--users", "u1,ghost", "backup done")
    assert first.exit_code == 0, first.output
    assert "unknown user ids: ghost" in first.output
    again = invoke(env, "send", "--notify", "--users", "u1,ghost", "backup done")
    assert again.exit_code == EXIT_REFUSED
    assert "u1 (143106)" in again.output
    assert "nobody got the notification" in again.output


def test_flow_controlled_recipients_are_listed(dingtalk: FakeDingTalk, env: Dict[str, str]) -> None:
    """The per-minute quota (143103) is told apart from other refusals: send again later."""
    dingtalk.fail_next(
        "POST",
        RESULT,
        status=200,
        body={
            "errcode": 0,
            "errmsg": "ok",
            "send_result": {
                "forbidden_user_id_list": ["u2"],
                "forbidden_list": [{"code": "143103", "count": 1, "userid": "u2"}],
            },
        },
    )
    result = invoke(env, "send", "--notify", "--users", "u1,u2", "hi")
    assert result.exit_code == 0, result.output
    assert "flow-controlled (not delivered; send again in a minute): u2 (143103)" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["send", "--notify", "hi"], "--user/--users"),
        (["send", "--notify", "--agent-id", "abc", "--users", "u1", "hi"], "AgentId"),
    ],
)
def test_notify_usage_errors_exit_2(
    dingtalk: FakeDingTalk,
    env: Dict[str, str],
    args: list,
    needle: str,  # type: ignore[type-arg]
) -> None:
    result = invoke(env, *args)
    assert result.exit_code == EXIT_USAGE
    assert needle in result.output
    assert dingtalk.work_notices == []


def test_notify_without_an_agent_id_names_the_variable(
    dingtalk: FakeDingTalk, env: Dict[str, str]
) -> None:
    env.pop("DINGTALK_AGENT_ID")
    result = invoke(env, "send", "--notify", "--users", "u1", "hi")
    assert result.exit_code == EXIT_USAGE
    assert "DINGTALK_AGENT_ID" in result.output


# -- the example and the README -----------------------------------------------------------------


def test_the_cron_example_sends_and_lists_the_skipped(
    dingtalk: FakeDingTalk, env: Dict[str, str]
) -> None:
    dingtalk.mark_users_invalid("ghost")
    run_env = {**os.environ, **env, "NOTICE_USERS": "manager593, ghost"}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "work_notice.py"), "Backup", "done"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "delivered to 1 of 2" in result.stdout
    assert "skipped ghost: unknown user id" in result.stderr
    notice = dingtalk.work_notices[0]
    assert notice.msg["markdown"]["title"] == "Backup done"
    assert notice.user_ids == ("manager593", "ghost")


def _block(language: str, first_line: str) -> str:
    for block in re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"README has no {language} block starting with {first_line!r}")


def test_the_readme_cron_recipe_runs_as_written(
    dingtalk: FakeDingTalk, env: Dict[str, str], tmp_path: Path
) -> None:
    """The shell script of "Recipe: a work notification from cron", run by sh."""
    script = tmp_path / "disk-notice.sh"
    script.write_text(_block("sh", "#!/bin/sh\n# disk-notice.sh"), encoding="utf-8")
    bin_dir = str(Path(sys.executable).parent)  # where the dingsync command is installed
    run_env = {**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["sh", str(script)], env=run_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    notice = dingtalk.work_notices[0]
    assert notice.user_ids == ("manager593", "ops-2")
    assert notice.msg["markdown"]["title"] == "Disk report"
    assert re.search(r"is \*\*\d+%\*\* full", notice.msg["markdown"]["text"])
    # and it fails when nobody got it: the same content twice in a day is skipped
    again = subprocess.run(
        ["sh", str(script)], env=run_env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == EXIT_REFUSED, again.stderr


def test_the_readme_work_notification_block_runs_as_written(
    dingtalk: FakeDingTalk, env: Dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    dingtalk.mark_users_invalid("u2")
    namespace: Dict[str, object] = {}
    code = _block("python", "# work_notice_snippet.py")
    exec(compile(code, "README:work-notifications", "exec"), namespace)  # noqa: S102
    assert namespace["result"].skipped_user_ids == ("u2",)  # type: ignore[attr-defined]
    assert dingtalk.work_notices[0].user_ids == ("manager593", "u2")
