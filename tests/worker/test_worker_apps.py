"""Several bots in one dingworker: named APPs, their credentials, per-app health and metrics,
and one app's refused credentials leaving the others running."""

from __future__ import annotations

import io
import json
import logging
import signal
from pathlib import Path
from typing import Dict, List

import pytest
from cli_runner import cli_runner
from test_worker_subprocess import Worker, free_port, poll_metrics, poll_status, workers

import dingsync
from dingsync.testing import FakeDingTalk
from dingworker import cli
from dingworker.apps import AppSpec, credentials_for, env_names, parse_apps

FIXTURES = str(Path(__file__).resolve().parent / "fixtures")
__all__ = ["workers"]  # a fixture, used by name


def test_one_app_needs_no_name_and_several_need_one_each() -> None:
    """``module:attr`` alone is the unnamed app; with several, each is NAME=module:attr."""
    assert parse_apps(["bot:route"]) == [AppSpec(None, "bot:route")]
    assert parse_apps(["a=x:route", "b-2=y:route"]) == [
        AppSpec("a", "x:route"),
        AppSpec("b-2", "y:route"),
    ]
    with pytest.raises(ValueError, match="NAME=y:route"):
        parse_apps(["a=x:route", "y:route"])
    with pytest.raises(ValueError, match="given twice"):
        parse_apps(["a=x:route", "A=y:route"])
    with pytest.raises(ValueError, match="use a letter"):
        parse_apps(["1st=x:route"])


def test_a_named_app_reads_its_own_variables() -> None:
    """DINGTALK_<NAME>_CLIENT_ID/_SECRET, the name upper-cased; a missing one is named."""
    assert env_names("sales-cn") == (
        "DINGTALK_SALES_CN_CLIENT_ID",
        "DINGTALK_SALES_CN_CLIENT_SECRET",
    )
    env = {"DINGTALK_SALES_CLIENT_ID": "id-s", "DINGTALK_SALES_CLIENT_SECRET": "secret-s"}
    creds = credentials_for(AppSpec("sales", "x:route"), env)
    assert (creds.client_id, creds.client_secret) == ("id-s", "secret-s")
    with pytest.raises(dingsync.ConfigurationError, match="DINGTALK_HR_CLIENT_SECRET"):
        credentials_for(AppSpec("hr", "x:route"), {"DINGTALK_HR_CLIENT_ID": "id-h"})


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["a=dw_ok_app:route", "dw_ok_app:route"], "each needs a name"),
        (["a=dw_ok_app:route", "b=dw_ok_app:route"], "DINGTALK_B_CLIENT_ID"),
        (["--emulator", "a=dw_ok_app:route"], "named apps stream"),
    ],
)
def test_app_mistakes_are_one_line_usage_errors(args: List[str], fragment: str) -> None:
    env = {"DINGTALK_A_CLIENT_ID": "id-a", "DINGTALK_A_CLIENT_SECRET": "secret-a"}
    result = cli_runner().invoke(cli.main, ["--app-dir", FIXTURES, *args], env=env)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def named_env(fake: FakeDingTalk, secrets: Dict[str, str]) -> Dict[str, str]:
    env = {k: v for k, v in fake.env().items() if "CLIENT" not in k}
    for name, secret in secrets.items():
        client_id, client_secret = env_names(name)
        env[client_id], env[client_secret] = fake.client_id, secret
    return env


def test_one_apps_refused_credentials_leave_the_other_running(
    fake: FakeDingTalk, workers: List[Worker]
) -> None:
    """App b's secret is wrong: it is logged and left out, app a receives and replies;
    /healthz (503) and /metrics show each app; SIGTERM drains a and exits 1 (b failed)."""
    port = free_port()
    env = named_env(fake, {"a": fake.client_secret, "b": "wrong-secret-value"})
    args = [
        "--app-dir",
        FIXTURES,
        "--health-port",
        str(port),
        "a=dw_ok_app:route",
        "b=dw_ok_app:route",
    ]
    worker = Worker(args, env)
    workers.append(worker)
    line = worker.wait_for_log("app b: stream client stopped: DingTalk refused")
    assert "IP allow-list" in line
    body = json.loads(poll_status(f"http://127.0.0.1:{port}/healthz", 503))
    assert body["apps"]["a"]["healthy"] is True and body["apps"]["a"]["connected"] is True
    assert body["apps"]["b"]["healthy"] is False and "refused" in body["apps"]["b"]["failed"]
    fake.wait_for_ack(fake.push_chatbot("hello"))
    assert fake.wait_for_reply().text == "echo: hello"
    samples = poll_metrics(
        f"http://127.0.0.1:{port}/metrics",
        lambda s: s['dingsync_acks_sent_total{app="a"}'][1] >= 1,
    )
    assert samples['dingsync_app_healthy{app="a"}'] == ("gauge", 1.0)
    assert samples['dingsync_app_healthy{app="b"}'] == ("gauge", 0.0)
    assert samples['dingsync_acks_sent_total{app="a"}'][1] >= 1
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=10) == 1
    assert not any("wrong-secret-value" in line for line in worker.stderr)


def test_two_apps_each_hold_a_connection(fake: FakeDingTalk, workers: List[Worker]) -> None:
    """Two named apps in one process open two gateway connections and drain cleanly; each
    log line from an app's threads, its handler's included, says which app."""
    env = named_env(fake, {"sales": fake.client_secret, "support": fake.client_secret})
    worker = Worker(
        ["--app-dir", FIXTURES, "sales=dw_ok_app:route", "support=dw_ok_app:route"], env
    )
    workers.append(worker)
    fake.wait_for_connections(2, timeout=10)
    for text in ("one", "two", "three"):
        fake.wait_for_ack(fake.push_chatbot(text))
    for conn in fake.connections:
        mid = fake.push_chatbot("sleep 0", connection=conn)
        fake.wait_for_ack(mid)
        line = worker.wait_for_log(f"message_id={mid}")
        assert "handler sleeping [app=" in line, line
    connected = [line for line in worker.stderr if "dingsync.stream: connected to" in line]
    assert sorted(line.rsplit("[app=", 1)[-1] for line in connected) == ["sales]", "support]"]
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    stopping = [line for line in worker.stderr if "dingsync.stream: stopping" in line]
    assert sorted(line.rsplit("[app=", 1)[-1] for line in stopping) == ["sales]", "support]"]


def test_a_log_line_from_an_apps_thread_names_the_app_in_json() -> None:
    record = logging.LogRecord("dingsync.stream", logging.INFO, "f", 1, "gone", None, None)
    record.threadName = "dingsync-sales-cn-writer-2"
    other = logging.LogRecord("dingsync.stream", logging.INFO, "f", 1, "mine", None, None)
    other.threadName = "dingsync-reader"  # a client of the user's own, not one of the apps
    out = io.StringIO()
    with cli.configure_logging("info", "json", out, apps=["sales", "sales-cn"]) as handler:
        handler.handle(record)
        handler.handle(other)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["app"] == "sales-cn" and first["message"] == "gone"
    assert "app" not in second
