"""Send-side metrics (issue 13, item 6): messages sent by channel and outcome.

The counter ``dingsync_messages_sent_total{channel, outcome}`` counts each send of the four
channels with its outcome; it is in prometheus-client's default registry (any process can export
it) and on dingworker's ``/metrics``. Without prometheus-client nothing is imported or counted.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional

import prometheus_client
import pytest

import dingsync
from dingsync import ChatbotMessage, Context, WebhookRobot, metrics
from dingsync.api import NO_RETRY, ApiClient
from dingsync.errors import DingSyncError
from dingsync.frames import Frame
from dingsync.testing import FakeDingTalk
from dingworker.health import HealthServer

NAME = "dingsync_messages_sent_total"
GROUP_SEND = "/v1.0/robot/groupMessages/send"


def count(channel: str, outcome: str) -> float:
    value: Optional[float] = prometheus_client.REGISTRY.get_sample_value(
        NAME, {"channel": channel, "outcome": outcome}
    )
    return value or 0.0


class Delta:
    """Counter values before a block, to compare after it (the registry is process-wide)."""

    def __init__(self) -> None:
        self.before = {(c, o): count(c, o) for c in metrics.CHANNELS for o in metrics.OUTCOMES}

    def __call__(self, channel: str, outcome: str) -> float:
        return count(channel, outcome) - self.before[(channel, outcome)]

    def changed(self) -> dict:  # type: ignore[type-arg]
        return {k: self(*k) for k in self.before if self(*k)}


@pytest.fixture
def api(dingtalk: FakeDingTalk) -> Iterator[ApiClient]:
    client = ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, retry=NO_RETRY, timeout=5.0
    )
    yield client
    client.close()


def test_robot_api_outcomes(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """ok, refused (400), throttled (403 QpsLimit) and failed (a reset) are told apart."""
    delta = Delta()
    api.robot.send_to_group("cid1", "ok")
    api.robot.send_to_users(["u1"], "ok")
    dingtalk.fail_next(
        "POST",
        GROUP_SEND,
        status=400,
        body={"code": "invalidParameter.msgKey.invalid", "message": "bad", "requestid": "r"},
    )
    dingtalk.fail_next(
        "POST",
        GROUP_SEND,
        status=403,
        body={"code": "Forbidden.AccessDenied.QpsLimitForApi", "message": "slow", "requestid": "r"},
    )
    dingtalk.fail_next("POST", GROUP_SEND, reset=True)
    for _ in range(3):
        with pytest.raises(DingSyncError):
            api.robot.send_to_group("cid1", "no")
    assert delta.changed() == {
        ("robot_api", "ok"): 2,
        ("robot_api", "refused"): 1,
        ("robot_api", "throttled"): 1,
        ("robot_api", "failed"): 1,
    }


def test_custom_robot_outcomes(dingtalk: FakeDingTalk) -> None:
    url = dingtalk.add_webhook_robot("metricstoken", secret="SECmetrics")
    delta = Delta()
    WebhookRobot(url, secret="SECmetrics", sleep=lambda _s: None, clock=dingtalk.now).send("ok")
    with pytest.raises(DingSyncError):
        WebhookRobot(url, secret="SECwrong", sleep=lambda _s: None, clock=dingtalk.now).send("x")
    dingtalk.fail_next("POST", "/robot/send", status=200, body={"errcode": 410100, "errmsg": "x"})
    with pytest.raises(DingSyncError):
        WebhookRobot(url, secret="SECmetrics", sleep=lambda _s: None, clock=dingtalk.now).send("y")
    assert delta.changed() == {
        ("custom_robot", "ok"): 1,
        ("custom_robot", "refused"): 1,
        ("custom_robot", "throttled"): 1,
    }


def test_work_notification_and_session_webhook(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    delta = Delta()
    api.notify.send("payroll", agent_id=3180001, user_ids=["u1"])
    mid = dingtalk.push_chatbot("hi")
    push = next(p for p in dingtalk.pending if p.message_id == mid)
    msg, frame = ChatbotMessage.from_wire(push.data), Frame.from_dict(push.frame)
    Context(frame=frame, message=msg).reply("hello")
    dingtalk.expire_session(mid)
    with pytest.raises(DingSyncError):
        Context(frame=frame, message=msg).reply("too late")
    assert delta.changed() == {
        ("work_notification", "ok"): 1,
        ("session_webhook", "ok"): 1,
        ("session_webhook", "refused"): 1,
    }


def test_the_counter_is_in_the_default_registry_and_on_dingworkers_metrics(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """Any process exporting prometheus-client's registry has it; so does dingworker."""
    api.robot.send_to_group("cid1", "counted")
    exported = prometheus_client.generate_latest().decode()
    assert f'{NAME}{{channel="robot_api",outcome="ok"}}' in exported
    with HealthServer(lambda: (True, {"connected": True}), port=0) as server:
        with urllib.request.urlopen(server.url + "/metrics") as resp:
            body = resp.read().decode()
    assert "dingsync_connected 1" in body
    assert f"# TYPE {NAME} counter" in body
    assert f'{NAME}{{channel="robot_api",outcome="ok"}}' in body


def test_a_local_refusal_before_sending_is_not_a_send(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """A message refused by a local check (too long, mentions) never reached a channel."""
    delta = Delta()
    with pytest.raises(DingSyncError):
        api.robot.send_to_group("cid1", dingsync.messages.Text("x", at_all=True))
    assert delta.changed() == {}


def test_without_prometheus_client_nothing_is_imported_or_counted() -> None:
    """The extra absent: record() is a no-op, render() is empty, sends still work."""
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # as if not installed\n"
        "from dingsync import metrics\n"
        "import dingsync.api, dingsync.api.webhook, dingsync.context\n"
        "metrics.record('robot_api', 'ok')\n"
        "with metrics.counting('custom_robot'):\n"
        "    pass\n"
        "print(metrics.ENABLED, repr(metrics.render()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False ''"


def test_a_session_expiring_locally_is_not_a_webhook_send(dingtalk: FakeDingTalk) -> None:
    """No request was made, so nothing is counted."""
    mid = dingtalk.push_chatbot("hi")
    push = next(p for p in dingtalk.pending if p.message_id == mid)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    ctx = Context(
        frame=Frame.from_dict(push.frame),
        message=ChatbotMessage.from_wire(push.data),
        now=lambda: later,
    )
    delta = Delta()
    with pytest.raises(DingSyncError):
        ctx.reply("late")
    assert delta.changed() == {}


def test_the_readme_export_block_runs_as_written(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """README "Metrics": start_http_server serves the counter (on a free port here)."""
    import re
    import socket
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(
        b
        for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
        if b.startswith("# metrics_export.py")
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert "start_http_server(9100)" in block
    exec(compile(block.replace("9100", str(port)), "README:metrics", "exec"), {})  # noqa: S102
    api.robot.send_to_group("cid1", "exported")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert f'{NAME}{{channel="robot_api",outcome="ok"}}' in body
